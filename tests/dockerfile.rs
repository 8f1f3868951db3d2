//! The Dockerfile cannot be built here (no Docker engine), so it has to be
//! right by construction: these tests read it and check it against the
//! workspace's manifests and source tree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// One Dockerfile instruction: the keyword (upper case) and its arguments,
/// continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its `FROM` image, its name, and its instructions.
#[derive(Debug, Default)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        let keyword = keyword.to_string();
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.all(keyword).last()
    }
}

fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            // A comment inside a continued instruction.
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, args) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        instructions.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
        pending.clear();
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    instructions
}

fn stages() -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in parse_dockerfile(&read("Dockerfile")) {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                image: words.first().expect("FROM image").to_string(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before the first FROM")
                .instructions
                .push(instruction);
        }
    }
    stages
}

/// The value of `key = "value"` under `header` (`[package]`, `[[bin]]`) in
/// the manifest `manifest` (a path from the root); the first match.
fn cargo_value(manifest: &str, header: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in read(manifest).lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

/// The CLI crate, which owns the `stackhook` binary.
const CLI_MANIFEST: &str = "crates/cli/Cargo.toml";

fn bin_name() -> String {
    cargo_value(CLI_MANIFEST, "[[bin]]", "name").expect("a [[bin]] name in the CLI's manifest")
}

fn cli_package() -> String {
    cargo_value(CLI_MANIFEST, "[package]", "name").expect("the CLI package's name")
}

/// The workspace's member directories, from `members = [...]` in Cargo.toml.
fn members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let start = manifest
        .find("members = [")
        .expect("members in [workspace]")
        + 11;
    let list = &manifest[start..start + manifest[start..].find(']').expect("the end of members")];
    let members: Vec<String> = list
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.len() > 1, "members {members:?}");
    members
}

/// `(major, minor)` from `1.85`, `1.95-slim-bookworm` or `1.95.0`.
fn version(text: &str) -> (u32, u32) {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let major = parts.next().and_then(|p| p.parse().ok()).expect("major");
    let minor = parts.next().and_then(|p| p.parse().ok()).expect("minor");
    (major, minor)
}

/// The JSON-array (exec) form of ENTRYPOINT or CMD.
fn exec_form(instruction: &Instruction) -> Vec<String> {
    serde_json::from_str(&instruction.args).unwrap_or_else(|e| {
        panic!(
            "{} is not in exec form (a JSON array), so signals would not reach stackhook: {e}",
            instruction.keyword
        )
    })
}

fn build_stage(stages: &[Stage]) -> &Stage {
    stages
        .iter()
        .find(|s| s.image.starts_with("rust:"))
        .expect("a build stage FROM rust:")
}

fn final_stage(stages: &[Stage]) -> &Stage {
    stages.last().expect("at least one stage")
}

/// The source paths of the build stage's COPY instructions (not --from).
fn copied_sources(stage: &Stage) -> BTreeSet<String> {
    let mut sources = BTreeSet::new();
    for copy in stage.all("COPY").chain(stage.all("ADD")) {
        let words: Vec<&str> = copy
            .args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        if copy.args.contains("--from") || words.len() < 2 {
            continue;
        }
        for source in &words[..words.len() - 1] {
            sources.insert(
                source
                    .trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_string(),
            );
        }
    }
    sources
}

/// Top-level files and directories the workspace is built from: the root
/// manifest, the lock file, every member's directory, every target's or
/// dependency's `path` in a member's manifest (and `benches/` when bench
/// targets are declared), every `#[path]` module, and every file pulled in
/// with `include_str!` or `include_bytes!`.
fn needed_by_the_build() -> BTreeSet<String> {
    let mut needed: BTreeSet<String> = ["Cargo.toml", "Cargo.lock", "src"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut sources = Vec::new();
    for member in members() {
        let dir = root().join(&member);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("reading {member}/Cargo.toml: {e}"));
        for line in manifest.lines() {
            for part in line.split([',', '{', '}']) {
                if let Some((key, value)) = part.split_once('=')
                    && key.trim() == "path"
                {
                    let path = normalise(&dir.join(value.trim().trim_matches('"')));
                    // `path = "."`: the root package itself.
                    if path.as_os_str().is_empty() {
                        continue;
                    }
                    needed.insert(top_level(&path));
                }
            }
        }
        if manifest.contains("[[bench]]") {
            // Cargo checks every declared target exists, even for `--bin` builds.
            needed.insert(top_level(&normalise(&dir.join("benches"))));
        }
        if member != "." {
            needed.insert(top_level(Path::new(&member)));
        }
        collect_rust_files(&dir.join("src"), &mut sources);
    }
    for file in sources {
        let text = std::fs::read_to_string(&file).expect("read source");
        for marker in ["#[path = \"", "include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(marker) {
                let rest = &text[at + marker.len()..];
                let target = rest.split('"').next().unwrap_or_default();
                let resolved = file.parent().expect("dir").join(target);
                let relative = normalise(&resolved);
                needed.insert(top_level(&relative));
            }
        }
    }
    needed
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `path` relative to the crate root, with `..` resolved.
fn normalise(path: &Path) -> PathBuf {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    for component in path
        .strip_prefix(root())
        .expect("inside the crate")
        .components()
    {
        match component {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(part) => parts.push(part.to_os_string()),
            _ => {}
        }
    }
    parts.iter().collect()
}

fn top_level(path: &Path) -> String {
    path.components()
        .find_map(|c| match c {
            std::path::Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .expect("a path")
}

#[test]
fn builds_and_ships_the_cargo_binary() {
    let stages = stages();
    let bin = bin_name();
    let build = build_stage(&stages);
    let cargo = build
        .all("RUN")
        .find(|r| r.args.contains("cargo build"))
        .expect("a RUN with cargo build");
    let package = cli_package();
    for flag in [
        "--release",
        "--locked",
        &format!("-p {package}"),
        &format!("--bin {bin}"),
    ] {
        assert!(
            cargo.args.contains(flag),
            "cargo build lacks {flag}: {}",
            cargo.args
        );
    }

    let last = final_stage(&stages);
    let entrypoint = exec_form(last.last("ENTRYPOINT").expect("ENTRYPOINT"));
    assert_eq!(
        entrypoint,
        [format!("/usr/local/bin/{bin}"), "serve".to_string()]
    );
    let copy = last
        .all("COPY")
        .find(|c| c.args.contains("--from"))
        .expect("the final stage copies the binary from the build stage");
    let from = copy
        .args
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--from="))
        .expect("--from=");
    assert_eq!(
        Some(from),
        build.name.as_deref(),
        "copied from another stage"
    );
    let words: Vec<&str> = copy.args.split_whitespace().collect();
    let (source, dest) = (words[words.len() - 2], words[words.len() - 1]);
    assert!(
        source.ends_with(&format!("/{bin}")),
        "copies {source}, not the {bin} binary"
    );
    assert_eq!(
        dest, entrypoint[0],
        "the entrypoint is not the copied binary"
    );
    // Where the build stage put it.
    assert!(
        cargo
            .args
            .contains(&format!("target/release/{bin} {source}"))
            || source.ends_with(&format!("target/release/{bin}")),
        "the build stage does not put the binary at {source}: {}",
        cargo.args
    );
}

#[test]
fn the_build_copies_everything_the_crate_needs() {
    let stages = stages();
    let copied = copied_sources(build_stage(&stages));
    let needed = needed_by_the_build();
    for member in ["handlers", "crates", "benches"] {
        assert!(needed.contains(member), "{member} not in {needed:?}");
    }
    for item in &needed {
        assert!(
            copied.contains(item) || copied.contains("."),
            "the build stage does not COPY {item} (copies {copied:?})"
        );
        assert!(root().join(item).exists(), "{item} is needed but missing");
    }
}

#[test]
fn the_runtime_is_small_and_not_root() {
    let stages = stages();
    assert!(stages.len() >= 2, "not a multi-stage build");
    let last = final_stage(&stages);
    assert!(
        last.image.starts_with("debian:") && last.image.contains("slim")
            || last.image.starts_with("gcr.io/distroless/cc"),
        "runtime image {} is not a minimal one",
        last.image
    );
    let user = last
        .last("USER")
        .expect("USER in the final stage")
        .args
        .clone();
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        !name.is_empty() && name != "root" && name != "0",
        "runs as {user}"
    );
    let exposed: Vec<&str> = last
        .all("EXPOSE")
        .flat_map(|e| e.args.split_whitespace())
        .collect();
    assert!(
        exposed.iter().any(|p| *p == "9000" || *p == "9000/tcp"),
        "EXPOSE {exposed:?}"
    );
    let env: Vec<&str> = last.all("ENV").map(|e| e.args.as_str()).collect();
    assert!(
        env.iter()
            .any(|e| e.contains("STACKHOOK_STATE_DIR=/var/lib/stackhook")),
        "ENV {env:?}"
    );
    let setup: String = last
        .all("RUN")
        .map(|r| r.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    if last.image.starts_with("debian:") {
        assert!(setup.contains("ca-certificates"), "no CA certificates");
    }
    // The state directory belongs to the user the server runs as.
    let owner = format!("chown {user} /var/lib/stackhook");
    let owner_name = format!("chown {name}:");
    assert!(
        setup.contains(&owner)
            || (setup.contains(&owner_name) && setup.contains("/var/lib/stackhook")),
        "/var/lib/stackhook is not chowned to {user}: {setup}"
    );
}

#[test]
fn the_rust_image_is_not_older_than_rust_version() {
    let stages = stages();
    let image = &build_stage(&stages).image;
    let tag = image.split_once(':').expect("a tagged image").1;
    let msrv = cargo_value("Cargo.toml", "[workspace.package]", "rust-version")
        .expect("rust-version in Cargo.toml's [workspace.package]");
    assert!(
        version(tag) >= version(&msrv),
        "{image} is older than rust-version {msrv}"
    );
}

#[test]
fn dockerignore_keeps_out_build_output_and_state() {
    let ignore = read(".dockerignore");
    let patterns: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for needed in ["target", ".git", ".stackhook"] {
        assert!(patterns.contains(needed), ".dockerignore lacks {needed}");
    }
    for item in needed_by_the_build() {
        assert!(
            !patterns.contains(item.as_str()),
            ".dockerignore hides {item}"
        );
    }
}

#[test]
fn cargo_lock_is_committed() {
    assert!(root().join("Cargo.lock").is_file());
    let gitignore = std::fs::read_to_string(root().join(".gitignore")).unwrap_or_default();
    assert!(
        !gitignore.lines().any(|l| l.trim() == "Cargo.lock"),
        "Cargo.lock is git-ignored"
    );
    // Where this is a git checkout, the lock file must be tracked.
    let tracked = std::process::Command::new("git")
        .args(["ls-files", "--error-unmatch", "Cargo.lock"])
        .current_dir(root())
        .output();
    if let Ok(output) = tracked
        && !String::from_utf8_lossy(&output.stderr).contains("not a git repository")
    {
        assert!(
            output.status.success(),
            "Cargo.lock is not tracked: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
