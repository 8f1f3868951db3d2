//! `stackhook new`: scaffold a provider crate from the files in `templates/provider/`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use clap::Args;

#[derive(Args)]
pub(crate) struct NewArgs {
    /// The crate's name (letters, digits, `-` and `_`), also the directory's
    name: String,
    /// Where to create it [default: ./NAME]
    #[arg(long)]
    path: Option<PathBuf>,
    /// Copy the stackhook crates into the project's vendor/ from this checkout [default: the checkout this binary was built from]
    #[arg(long, value_name = "PATH", conflicts_with = "stackhook_git")]
    stackhook_path: Option<PathBuf>,
    /// Depend on the stackhook crates in this git repository instead of a checkout
    #[arg(long, value_name = "URL")]
    stackhook_git: Option<String>,
    /// The resource type the handler serves [default: Custom::<Name in PascalCase>]
    #[arg(long)]
    resource_type: Option<String>,
}

/// Each scaffolded file: where it goes and its template.
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/provider/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/provider/lib.rs.tmpl"),
    ),
    (
        "src/main.rs",
        include_str!("../../templates/provider/main.rs.tmpl"),
    ),
    (
        "tests/lifecycle.rs",
        include_str!("../../templates/provider/lifecycle_test.rs.tmpl"),
    ),
    (
        "Dockerfile",
        include_str!("../../templates/provider/Dockerfile.tmpl"),
    ),
    (
        "s.yaml",
        include_str!("../../templates/provider/s.yaml.tmpl"),
    ),
    (
        "template.yaml",
        include_str!("../../templates/provider/template.yaml.tmpl"),
    ),
    (
        "scenario.yaml",
        include_str!("../../templates/provider/scenario.yaml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/provider/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/provider/gitignore.tmpl"),
    ),
    (
        ".dockerignore",
        include_str!("../../templates/provider/dockerignore.tmpl"),
    ),
];

/// The workspace this binary was built from (`crates/cli/../..`), where its
/// crates are when the binary runs on the machine that built it.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The workspace's crates a generated project builds with, copied into its
/// `vendor/`: the core, the kit (a dev-dependency), and the SMQ crate the kit
/// depends on. The scaffold test builds a project, which proves the list
/// complete.
const VENDORED: &[&str] = &["stackhook", "stackhook-smq", "stackhook-testing"];

/// Where the generated project gets the stackhook crates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// Packaged from a checkout of the workspace into the project's
    /// `vendor/`, so the project (and `docker build` in it) needs nothing
    /// outside its own directory.
    Checkout(PathBuf),
    /// A git repository holding the workspace.
    Git(String),
}

impl Source {
    /// `--stackhook-git`, `--stackhook-path`, or the checkout this binary was
    /// built from when it is still there.
    fn choose(args: &NewArgs) -> anyhow::Result<Source> {
        if let Some(url) = &args.stackhook_git {
            anyhow::ensure!(!url.trim().is_empty(), "--stackhook-git needs a URL");
            return Ok(Source::Git(url.clone()));
        }
        if let Some(path) = &args.stackhook_path {
            let path = path
                .canonicalize()
                .with_context(|| format!("finding the stackhook checkout {}", path.display()))?;
            anyhow::ensure!(
                is_checkout(&path),
                "{} is not a stackhook checkout (no Cargo.toml and crates/testing/Cargo.toml)",
                path.display()
            );
            return Ok(Source::Checkout(path));
        }
        match Path::new(BUILT_FROM).canonicalize() {
            Ok(path) if is_checkout(&path) => Ok(Source::Checkout(path)),
            _ => anyhow::bail!(
                "the stackhook checkout this binary was built from ({BUILT_FROM}) is not here, \
                 so the project would have no stackhook to build against: pass \
                 --stackhook-path CHECKOUT or --stackhook-git URL"
            ),
        }
    }

    /// The dependency lines' value for `package`.
    fn dependency(&self) -> String {
        match self {
            // The version the vendored copy has; `[patch.crates-io]` points
            // it at `vendor/`.
            Source::Checkout(_) => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
            Source::Git(url) => format!("{{ git = {} }}", toml_string(url)),
        }
    }

    /// The manifest's `[patch.crates-io]` section: each vendored crate by
    /// its path, which is also how the vendored crates find each other.
    fn patch(&self) -> String {
        match self {
            Source::Checkout(root) => {
                let mut section = format!(
                    "\n# The stackhook crates, packaged from {} into vendor/ by\n\
                     # `stackhook new`. They name each other by version; these lines point\n\
                     # every one of them here.\n\
                     [patch.crates-io]\n",
                    root.display()
                );
                for name in VENDORED {
                    section.push_str(&format!("{name} = {{ path = \"vendor/{name}\" }}\n"));
                }
                section
            }
            Source::Git(_) => String::new(),
        }
    }
}

fn is_checkout(path: &Path) -> bool {
    path.join("Cargo.toml").is_file() && path.join("crates/testing/Cargo.toml").is_file()
}

/// Copies the [`VENDORED`] crates of the checkout at `root` into
/// `project/vendor/NAME/`, as `cargo package` makes them: only the files a
/// published crate holds, and a manifest that stands alone (no workspace
/// inheritance, sibling crates by version).
fn vendor(root: &Path, project: &Path) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut package = Command::new(&cargo);
    package
        .current_dir(root)
        .args(["package", "--no-verify", "--allow-dirty", "--quiet"])
        .arg("--target-dir")
        .arg(scratch.path());
    for name in VENDORED {
        package.args(["--package", name]);
    }
    let output = package.output().with_context(|| {
        format!(
            "running `{} package` to copy the stackhook crates (is cargo on PATH?)",
            Path::new(&cargo).display()
        )
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.starts_with("warning: ignoring"))
            .collect();
        anyhow::bail!(
            "`cargo package` could not package the stackhook crates in {}:\n{}",
            root.display(),
            errors.join("\n")
        );
    }
    let packaged = scratch.path().join("package");
    let vendor = project.join("vendor");
    for name in VENDORED {
        let archive = crate_file(&packaged, name)?;
        let file = std::fs::File::open(&archive)
            .with_context(|| format!("opening {}", archive.display()))?;
        tar::Archive::new(flate2::read::GzDecoder::new(file))
            .unpack(scratch.path())
            .with_context(|| format!("unpacking {}", archive.display()))?;
        // The archive holds one directory, NAME-VERSION.
        let unpacked = scratch
            .path()
            .join(archive.file_stem().context("a .crate file has a name")?);
        std::fs::create_dir_all(&vendor)
            .with_context(|| format!("creating {}", vendor.display()))?;
        copy_tree(&unpacked, &vendor.join(name))?;
    }
    Ok(())
}

/// The `NAME-VERSION.crate` file `cargo package` wrote for `name`.
fn crate_file(packaged: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let entries =
        std::fs::read_dir(packaged).with_context(|| format!("reading {}", packaged.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(stem) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let version = stem
            .strip_suffix(".crate")
            .and_then(|s| s.strip_prefix(name))
            .and_then(|s| s.strip_prefix('-'));
        if version.is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())) {
            return Ok(path);
        }
    }
    anyhow::bail!("`cargo package` made no .crate file for {name}")
}

/// Copies the directory `from` to `to`, which must not exist yet (a rename
/// would fail across file systems, and the scratch directory may be on
/// another one).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("writing {}", target.display()))?;
        }
    }
    Ok(())
}

pub(crate) fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!("{} already exists and is not empty", dir.display());
    }
    let source = Source::choose(&args)?;
    let resource_type = args
        .resource_type
        .clone()
        .unwrap_or_else(|| format!("Custom::{}", pascal_case(&args.name)));
    check_resource_type(&resource_type)?;
    let values = Values {
        name: args.name.clone(),
        crate_name: args.name.replace('-', "_"),
        resource_type,
        source,
    };
    for (relative, template) in FILES {
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, render(template, &values))
            .with_context(|| format!("writing {}", target.display()))?;
    }
    if let Source::Checkout(root) = &values.source {
        vendor(root, &dir)?;
    }
    println!(
        "Created the provider `{}` ({}) in {}",
        values.name,
        values.resource_type,
        dir.display()
    );
    for line in next_steps(&dir, &values.source) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What to do next, as commands that work when typed as they are (a test
/// runs them).
fn next_steps(dir: &Path, source: &Source) -> Vec<String> {
    let mut lines = vec![
        "Next:".to_string(),
        format!("  cd {}", dir.display()),
        "  cargo test                                    # lifecycles against the mock ROS".into(),
        "  STACKHOOK_CALLBACK_ALLOW=127.0.0.1 cargo run  # serve on 0.0.0.0:9000, answering local callbacks".into(),
        "  stackhook mock-ros run scenario.yaml --url http://127.0.0.1:9000/  # in another terminal".into(),
    ];
    if let Source::Checkout(root) = source {
        lines.push(format!(
            "(`stackhook` not on your PATH? cargo install --path {})",
            root.join("crates/cli").display()
        ));
    }
    lines
}

struct Values {
    name: String,
    crate_name: String,
    resource_type: String,
    source: Source,
}

fn render(template: &str, values: &Values) -> String {
    let install = match &values.source {
        Source::Checkout(root) => {
            format!("cargo install --path {}", root.join("crates/cli").display())
        }
        Source::Git(url) => format!("cargo install --git {url} stackhook-cli"),
    };
    let origin = match &values.source {
        Source::Checkout(root) => format!(
            "a copy of the crates in {}, in `vendor/`, so the project and its\n\
             image build from this directory alone",
            root.display()
        ),
        Source::Git(url) => format!("{url}, fetched by cargo (and by `docker build`)"),
    };
    template
        .replace("{{stackhook_dep}}", &values.source.dependency())
        .replace("{{stackhook_testing_dep}}", &values.source.dependency())
        .replace("{{stackhook_patch}}", &values.source.patch())
        .replace("{{stackhook_origin}}", &origin)
        .replace("{{install_stackhook}}", &install)
        .replace("{{crate_name}}", &values.crate_name)
        .replace("{{resource_type}}", &values.resource_type)
        .replace("{{name}}", &values.name)
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    anyhow::ensure!(
        valid,
        "`{name}` is not a crate name: start with a letter, then letters, digits, `-` or `_`"
    );
    anyhow::ensure!(
        !matches!(
            name,
            "stackhook" | "test" | "core" | "std" | "alloc" | "proc_macro"
        ),
        "`{name}` would clash with a crate the provider uses; pick another name"
    );
    Ok(())
}

/// `Custom::` and a name ROS accepts: at most 68 characters in all, of
/// letters, digits, `_`, `@` and `-` after the prefix.
fn check_resource_type(resource_type: &str) -> anyhow::Result<()> {
    let name = resource_type.strip_prefix("Custom::").unwrap_or("");
    anyhow::ensure!(
        !name.is_empty()
            && resource_type.len() <= 68
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '-')),
        "`{resource_type}` is not a ROS custom resource type: `Custom::` then letters, digits, `_`, `@` or `-`, 68 characters at most"
    );
    Ok(())
}

fn pascal_case(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(source: Source) -> Values {
        Values {
            name: "dns-record".into(),
            crate_name: "dns_record".into(),
            resource_type: "Custom::DnsRecord".into(),
            source,
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for source in [
            Source::Checkout(PathBuf::from("/a \"b\"/c")),
            Source::Git("https://git.example/stackhook".into()),
        ] {
            for (file, template) in FILES {
                let text = render(template, &values(source.clone()));
                assert!(!text.contains("{{"), "{file} keeps a placeholder");
            }
        }
    }

    #[test]
    fn the_core_in_dependencies_and_the_kit_in_dev_dependencies() {
        let cargo = FILES[0].1;
        let vendored = render(cargo, &values(Source::Checkout("/src/stack\\hook".into())));
        let (normal, dev) = vendored
            .split_once("[dev-dependencies]")
            .expect("dev-dependencies");
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            normal.contains(&format!("stackhook = \"{version}\"")),
            "{normal}"
        );
        assert!(!normal.contains("stackhook-testing"), "{normal}");
        let (dev, patch) = dev
            .split_once("[patch.crates-io]")
            .expect("a patch section");
        assert!(
            dev.contains(&format!("stackhook-testing = \"{version}\"")),
            "{dev}"
        );
        // Every vendored crate is patched to its copy inside the project.
        for name in VENDORED {
            assert!(
                patch.contains(&format!("\n{name} = {{ path = \"vendor/{name}\" }}")),
                "{patch}"
            );
        }
        let by_git = render(cargo, &values(Source::Git("https://git.example/s".into())));
        assert!(
            by_git.contains(r#"stackhook = { git = "https://git.example/s" }"#),
            "{by_git}"
        );
        assert!(by_git.contains(r#"stackhook-testing = { git = "https://git.example/s" }"#));
        assert!(!by_git.contains("[patch"), "{by_git}");
    }

    #[test]
    fn the_dockerfile_builds_from_the_project_alone() {
        for source in [
            Source::Checkout("/src/sh".into()),
            Source::Git("https://git.example/s".into()),
        ] {
            let dockerfile = render(FILES[4].1, &values(source));
            assert!(
                dockerfile.contains("docker build -t dns-record ."),
                "{dockerfile}"
            );
            assert!(!dockerfile.contains("--build-context"), "{dockerfile}");
            assert!(!dockerfile.contains("/src/sh"), "{dockerfile}");
        }
    }

    #[test]
    fn a_crate_file_is_found_by_its_exact_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in [
            "stackhook-smq-0.1.0.crate",
            "stackhook-0.2.0.crate",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(file), "").expect("write");
        }
        let core = crate_file(dir.path(), "stackhook").expect("the core");
        assert!(
            core.ends_with("stackhook-0.2.0.crate"),
            "{}",
            core.display()
        );
        let smq = crate_file(dir.path(), "stackhook-smq").expect("smq");
        assert!(smq.ends_with("stackhook-smq-0.1.0.crate"));
        assert!(crate_file(dir.path(), "stackhook-testing").is_err());
    }

    #[test]
    fn by_default_the_checkout_this_binary_was_built_from() {
        let args = NewArgs {
            name: "x".into(),
            path: None,
            stackhook_path: None,
            stackhook_git: None,
            resource_type: None,
        };
        let Ok(Source::Checkout(root)) = Source::choose(&args) else {
            panic!("the checkout that built this test is here");
        };
        assert!(
            root.join("crates/cli/Cargo.toml").is_file(),
            "{}",
            root.display()
        );
    }

    #[test]
    fn the_next_steps_allow_local_callbacks_and_say_how_to_install() {
        let steps = next_steps(Path::new("demo"), &Source::Checkout("/src/sh".into()));
        assert!(
            steps
                .iter()
                .any(|l| l.contains("STACKHOOK_CALLBACK_ALLOW=127.0.0.1 cargo run"))
        );
        assert!(
            steps
                .iter()
                .any(|l| l.contains("cargo install --path /src/sh/crates/cli"))
        );
    }

    #[test]
    fn names() {
        assert_eq!(pascal_case("dns-record_v2"), "DnsRecordV2");
        assert!(check_name("my-provider").is_ok());
        assert!(check_name("1abc").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("stackhook").is_err());
        assert!(check_resource_type("Custom::DnsRecord").is_ok());
        assert!(check_resource_type("Custom::").is_err());
        assert!(check_resource_type("AWS::X").is_err());
        assert!(check_resource_type(&format!("Custom::{}", "x".repeat(61))).is_err());
    }
}
