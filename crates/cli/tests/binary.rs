//! The `stackhook` binary starts and names itself.
//!
//! Besides what it checks, this test makes Cargo build the binary whenever
//! the workspace's tests are built (`cargo test`, `cargo nextest run
//! --workspace`): Cargo builds a package's binaries for its own integration
//! tests only, and the top-level tests/ find the binary beside their own
//! executables (`tests/common::stackhook_bin`).

use std::process::Command;

#[test]
fn version_names_the_binary_and_its_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_stackhook"))
        .arg("--version")
        .output()
        .expect("run stackhook --version");
    assert!(output.status.success(), "stackhook --version failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.trim(),
        format!("stackhook {}", env!("CARGO_PKG_VERSION")),
        "unexpected --version output"
    );
}
