//! `stackhook new`: scaffold a provider crate from the files in `templates/provider/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

#[derive(Args)]
pub(crate) struct NewArgs {
    /// The crate's name (letters, digits, `-` and `_`), also the directory's
    name: String,
    /// Where to create it [default: ./NAME]
    #[arg(long)]
    path: Option<PathBuf>,
    /// Depend on the stackhook crates in this checkout [default: the checkout this binary was built from]
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

/// Where the generated project gets the stackhook crates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A checkout of the workspace: the core at its root, the kit in
    /// `crates/testing`.
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

    /// The dependency lines' value for `package`, found at `dir` in a
    /// checkout (`""` for the root).
    fn dependency(&self, dir: &str) -> String {
        match self {
            Source::Checkout(root) => {
                let path = if dir.is_empty() {
                    root.clone()
                } else {
                    root.join(dir)
                };
                format!("{{ path = {} }}", toml_string(&path.to_string_lossy()))
            }
            Source::Git(url) => format!("{{ git = {} }}", toml_string(url)),
        }
    }
}

fn is_checkout(path: &Path) -> bool {
    path.join("Cargo.toml").is_file() && path.join("crates/testing/Cargo.toml").is_file()
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
    let (docker_build, docker_copy) = match &values.source {
        // The checkout goes to its own absolute path inside the image too,
        // so the path dependencies resolve there as they do here.
        Source::Checkout(root) => (
            format!(
                "# The stackhook crates come from a checkout, given as the `stackhook` build\n\
                 # context:\n\
                 #   docker build --build-context stackhook={root} -t {name} .",
                root = root.display(),
                name = values.name
            ),
            format!("COPY --from=stackhook . {}\n", root.display()),
        ),
        Source::Git(_) => (
            format!(
                "# The stackhook crates are fetched from git during the build:\n\
                 #   docker build -t {name} .",
                name = values.name
            ),
            String::new(),
        ),
    };
    let install = match &values.source {
        Source::Checkout(root) => {
            format!("cargo install --path {}", root.join("crates/cli").display())
        }
        Source::Git(url) => format!("cargo install --git {url} stackhook-cli"),
    };
    template
        .replace("{{stackhook_dep}}", &values.source.dependency(""))
        .replace(
            "{{stackhook_testing_dep}}",
            &values.source.dependency("crates/testing"),
        )
        .replace("{{docker_build_command}}", &docker_build)
        .replace("{{docker_copy_stackhook}}", &docker_copy)
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
        let by_path = render(cargo, &values(Source::Checkout("/src/stack\\hook".into())));
        let (normal, dev) = by_path
            .split_once("[dev-dependencies]")
            .expect("dev-dependencies");
        assert!(
            normal.contains(r#"stackhook = { path = "/src/stack\\hook" }"#),
            "{normal}"
        );
        assert!(!normal.contains("stackhook-testing"), "{normal}");
        assert!(
            dev.contains(r#"stackhook-testing = { path = "/src/stack\\hook/crates/testing" }"#),
            "{dev}"
        );
        let by_git = render(cargo, &values(Source::Git("https://git.example/s".into())));
        assert!(
            by_git.contains(r#"stackhook = { git = "https://git.example/s" }"#),
            "{by_git}"
        );
        assert!(by_git.contains(r#"stackhook-testing = { git = "https://git.example/s" }"#));
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
