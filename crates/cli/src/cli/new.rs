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
    /// Depend on a local stackhook checkout instead of the released version
    #[arg(long, value_name = "PATH")]
    stackhook_path: Option<PathBuf>,
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
];

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
    let stackhook_path = match &args.stackhook_path {
        Some(path) => Some(
            path.canonicalize()
                .with_context(|| format!("finding the stackhook checkout {}", path.display()))?,
        ),
        None => None,
    };
    let resource_type = args
        .resource_type
        .clone()
        .unwrap_or_else(|| format!("Custom::{}", pascal_case(&args.name)));
    check_resource_type(&resource_type)?;
    let values = Values {
        name: args.name.clone(),
        crate_name: args.name.replace('-', "_"),
        resource_type,
        stackhook_path,
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
    println!("Next:");
    println!("  cd {}", dir.display());
    println!("  cargo test          # lifecycles against the mock ROS");
    println!("  cargo run           # serve on 0.0.0.0:9000");
    println!("  stackhook mock-ros run scenario.yaml --url http://127.0.0.1:9000/");
    Ok(ExitCode::SUCCESS)
}

struct Values {
    name: String,
    crate_name: String,
    resource_type: String,
    stackhook_path: Option<PathBuf>,
}

fn render(template: &str, values: &Values) -> String {
    let version = format!(
        "{}.{}",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    let source = match &values.stackhook_path {
        Some(path) => format!("path = {}", toml_string(path)),
        None => format!("version = \"{version}\""),
    };
    template
        .replace(
            "{{stackhook_dep}}",
            &format!("{{ {source}, default-features = false }}"),
        )
        .replace(
            "{{stackhook_dev_dep}}",
            &format!("{{ {source}, features = [\"test-util\"] }}"),
        )
        .replace("{{crate_name}}", &values.crate_name)
        .replace("{{resource_type}}", &values.resource_type)
        .replace("{{name}}", &values.name)
}

/// A TOML basic string.
fn toml_string(path: &Path) -> String {
    let text = path.to_string_lossy();
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

    fn values(path: Option<&str>) -> Values {
        Values {
            name: "dns-record".into(),
            crate_name: "dns_record".into(),
            resource_type: "Custom::DnsRecord".into(),
            stackhook_path: path.map(PathBuf::from),
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for (file, template) in FILES {
            let text = render(template, &values(Some("/a \"b\"/c")));
            assert!(!text.contains("{{"), "{file} keeps a placeholder");
        }
    }

    #[test]
    fn dependency_by_version_or_path() {
        let cargo = FILES[0].1;
        let by_version = render(cargo, &values(None));
        assert!(by_version.contains("stackhook = { version = \"0.1\", default-features = false }"));
        let by_path = render(cargo, &values(Some("/src/stack\\hook")));
        assert!(by_path.contains(r#"path = "/src/stack\\hook", features = ["test-util"]"#));
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
