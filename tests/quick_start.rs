//! The README's quick start, as a newcomer follows it: the two commands at
//! the top are the ones the issue promises, the install line names the
//! package that builds `stackhook`, and the "Trying it by hand" commands,
//! run as written (with the built binary standing in for `cargo run
//! --release --`, and an ephemeral port for 9000), get a SUCCESS answer.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;

/// Generous: a passing test never waits this long.
const WAIT: Duration = Duration::from_secs(30);

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// The code blocks of `text`, in order, each as its lines.
fn code_blocks(text: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(Vec::new()),
            }
        } else if let Some(block) = current.as_mut() {
            block.push(line.to_string());
        }
    }
    blocks
}

/// The section under `heading`, up to the next `## `.
fn section(text: &str, heading: &str) -> String {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has no `{heading}`"));
    let rest = &text[start + heading.len()..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// The command without its comment.
fn command(line: &str) -> &str {
    line.split(" #").next().unwrap_or("").trim()
}

#[test]
fn the_two_commands_at_the_top() {
    let readme = readme();
    let first = code_blocks(&readme)
        .into_iter()
        .next()
        .expect("a code block");
    let commands: Vec<&str> = first.iter().map(|l| command(l)).collect();
    assert_eq!(commands, ["cargo run --release -- serve", "bash .ci/run"]);
}

#[test]
fn the_install_line_names_the_binary_package() {
    let readme = readme();
    let at = readme
        .find("cargo install --path ")
        .expect("README says how to put stackhook on PATH");
    let path: String = readme[at + "cargo install --path ".len()..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '`')
        .collect();
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(&path)
            .join("Cargo.toml"),
    )
    .unwrap_or_else(|e| panic!("{path}/Cargo.toml: {e}"));
    assert!(
        manifest.contains("[[bin]]") && manifest.contains("name = \"stackhook\""),
        "{path} does not build the stackhook binary"
    );
}

/// A background `serve`, killed on drop.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn trying_it_by_hand_works_as_written() {
    let readme = readme();
    let block = code_blocks(&section(&readme, "## Trying it by hand"))
        .into_iter()
        .next()
        .expect("a code block under Trying it by hand");
    // Run where a fresh clone is, but keep the journal out of this checkout.
    let dir = tempfile::tempdir().expect("tempdir");
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        dir.path().join("fixtures"),
    )
    .expect("link fixtures");
    let port = free_port().to_string();
    let mut served: Option<Served> = None;
    let mut answered = false;
    for line in &block {
        let line = command(line).replace("127.0.0.1:9000", &format!("127.0.0.1:{port}"));
        let (line, background) = match line.strip_suffix('&') {
            Some(line) => (line.trim().to_string(), true),
            None => (line, false),
        };
        let args: Vec<&str> = line
            .strip_prefix("cargo run --release -- ")
            .unwrap_or_else(|| panic!("`{line}` is not `cargo run --release -- …`"))
            .split_whitespace()
            .collect();
        let mut command = Command::new(common::stackhook_bin());
        command
            .args(&args)
            .current_dir(dir.path())
            .env("RUST_LOG", "info");
        if background {
            let mut child = command
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start serve");
            let stderr = child.stderr.take().expect("stderr");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("addr=") {
                        let _ = tx.send(());
                    }
                }
            });
            served = Some(Served(child));
            rx.recv_timeout(WAIT).expect("serve logs its address");
        } else {
            assert!(served.is_some(), "`{line}` runs before anything serves");
            let output = command.output().expect("run invoke");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(
                output.status.code(),
                Some(0),
                "`{line}`:\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(stdout.contains("\"SUCCESS\""), "{stdout}");
            answered = true;
        }
    }
    assert!(answered, "the block invokes the server");
}
