//! A newcomer's first hour: `stackhook new` generates a provider, its own
//! tests pass against the mock ROS, and the generated scenario passes
//! against the provider running for real. Builds the generated crate offline
//! against this checkout, with its target directory under `target/scaffold`
//! so later runs reuse the dependencies. Skipped (with a message) where cargo
//! is not available.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;

fn cargo() -> Option<PathBuf> {
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let works = Command::new(&cargo)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    works.then_some(cargo)
}

#[test]
fn scaffolded_provider_passes_its_own_tests_offline() {
    let Some(cargo) = cargo() else {
        eprintln!("skipped: cargo is not available here");
        return;
    };
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("demo-provider");

    let output = Command::new(common::stackhook_bin())
        .args(["new", "demo-provider", "--path"])
        .arg(&project)
        .arg("--stackhook-path")
        .arg(checkout)
        .output()
        .expect("run stackhook new");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("Custom::DemoProvider"), "{said}");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "src/main.rs",
        "tests/lifecycle.rs",
        "Dockerfile",
        "s.yaml",
        "template.yaml",
        "scenario.yaml",
        "README.md",
    ] {
        assert!(project.join(file).is_file(), "{file} was not generated");
    }
    // A second run must not overwrite the project.
    let again = Command::new(common::stackhook_bin())
        .args(["new", "demo-provider", "--path"])
        .arg(&project)
        .output()
        .expect("run stackhook new");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // Pin the same dependency versions as this checkout, so the build works
    // offline and reuses what is already compiled.
    std::fs::copy(checkout.join("Cargo.lock"), project.join("Cargo.lock"))
        .expect("copy Cargo.lock");
    let output = Command::new(&cargo)
        .args(["test", "--offline", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", checkout.join("target/scaffold"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo test in the generated project");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "cargo test failed in the generated project:\n{out}"
    );
    assert!(out.contains("test result: ok. 4 passed"), "{out}");

    // `cargo test` built the provider's binary too: serve it and run the
    // generated scenario against it, as the README says.
    let provider = Provider::start(&checkout.join("target/scaffold/debug/demo-provider"));
    let output = Command::new(common::stackhook_bin())
        .args(["mock-ros", "run"])
        .arg(project.join("scenario.yaml"))
        .args(["--url", &provider.url])
        .output()
        .expect("run stackhook mock-ros");
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("Custom::DemoProvider"), "{report}");
    assert!(
        report.contains("PASS: every ROS rule held in 6 step(s)"),
        "{report}"
    );
}

/// The generated provider, running on an ephemeral loopback port; killed on drop.
struct Provider {
    child: Child,
    url: String,
}

impl Provider {
    fn start(binary: &Path) -> Provider {
        let mut child = Command::new(binary)
            .env("PROVIDER_LISTEN", "127.0.0.1:0")
            // The mock ROS takes answers on loopback.
            .env("STACKHOOK_CALLBACK_ALLOW", "127.0.0.1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the generated provider");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    let _ = tx.send(addr);
                }
            }
        });
        let mut provider = Provider {
            child,
            url: String::new(),
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the provider logs its address");
        provider.url = format!("http://{addr}/");
        provider
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
