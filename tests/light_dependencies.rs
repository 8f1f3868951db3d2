//! A handler author's build stays light: the core crate's normal
//! dependencies (what `stackhook = …` in `[dependencies]` compiles) include
//! no command-line, logging-setup, allocator or test-kit crate, and the
//! embedded journal only with its feature. Read from `cargo tree`, so a
//! dependency added to the wrong manifest fails here.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Crates that belong to the binary or the test kit, never to the core.
const NEVER_IN_THE_CORE: &[&str] = &[
    "anyhow",
    "clap",
    "mimalloc",
    "tracing-subscriber",
    "serde_norway",
    "stackhook-cli",
    "stackhook-testing",
    "stackhook-handlers",
    "stackhook-cloud",
];

/// The package names in `cargo tree -p stackhook -e normal` with `extra`
/// arguments, offline and locked.
fn core_tree(extra: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "stackhook",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .args(extra)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("run cargo tree");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed:\n{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let names: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(String::from)
        .collect();
    // The tree was read: the core itself and its runtime are in it.
    for expected in ["stackhook", "tokio", "hyper"] {
        assert!(names.contains(expected), "{expected} missing from:\n{text}");
    }
    names
}

fn assert_none_of(names: &BTreeSet<String>, forbidden: &[&str]) {
    let found: Vec<&&str> = forbidden
        .iter()
        .filter(|name| names.contains(**name))
        .collect();
    assert!(
        found.is_empty(),
        "the core crate's normal dependencies include {found:?}: move them to the crate \
         that needs them (crates/cli, crates/testing) or to [dev-dependencies]"
    );
}

#[test]
fn the_core_has_no_cli_allocator_or_test_kit() {
    let names = core_tree(&[]);
    assert_none_of(&names, NEVER_IN_THE_CORE);
    // The default features bring the durable embedded journal.
    assert!(names.contains("redb"), "redb is a default feature");
}

#[test]
fn without_default_features_the_embedded_journal_is_gone() {
    let names = core_tree(&["--no-default-features"]);
    assert_none_of(&names, NEVER_IN_THE_CORE);
    assert_none_of(&names, &["redb"]);
}
