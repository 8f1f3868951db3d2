//! `stackhook mock-ros run` against a live `stackhook serve`: the real binary,
//! the shipped scenarios, exit codes and colour.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;

/// A `stackhook serve` child process, killed when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `stackhook serve` on an ephemeral loopback port and read the port
/// from its JSON start-up log line.
fn serve(state_dir: &Path) -> Serve {
    let mut child = Command::new(common::stackhook_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "1"])
        .args(["--callback-allow", "127.0.0.1"])
        .args(["--log-format", "json"])
        .arg("--state-dir")
        .arg(state_dir)
        .env("RUST_LOG", "info")
        .env_remove("STACKHOOK_SECRET_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stackhook serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("\"addr\":\"").nth(1) {
                let addr: String = rest.chars().take_while(|c| *c != '"').collect();
                let _ = tx.send(addr);
            }
        }
    });
    let mut guard = Serve {
        child,
        url: String::new(),
    };
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("stackhook serve logs its address");
    guard.url = format!("http://{addr}/");
    guard
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios")
}

fn mock_ros(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(common::stackhook_bin());
    command
        .arg("mock-ros")
        .arg("run")
        .args(args)
        .env_remove("NO_COLOR");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run stackhook mock-ros")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn shipped_scenarios_pass_against_stackhook_serve() {
    let state = tempfile::tempdir().expect("tempdir");
    let provider = serve(state.path());
    let mut files: Vec<String> = std::fs::read_dir(scenarios())
        .expect("fixtures/scenarios")
        .map(|e| e.expect("entry").path().display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
    args.extend(["--url", &provider.url]);
    let output = mock_ros(&args, &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("✔ [1/5] create, callback 500 first"), "{out}");
    assert!(out.contains("the provider retried"), "{out}");
    assert!(out.contains("#  step"), "a summary table: {out}");
    assert_eq!(
        out.matches("PASS: every ROS rule held").count(),
        files.len(),
        "{out}"
    );
    assert!(
        !out.contains('\x1b'),
        "no colour when stdout is not a terminal: {out}"
    );

    let coloured = mock_ros(
        &[
            files[0].as_str(),
            "--url",
            &provider.url,
            "--color",
            "always",
        ],
        &[],
    );
    assert!(text(&coloured).contains("\x1b[32m"), "{}", text(&coloured));
}

#[test]
fn broken_expectation_exits_1_with_a_clear_report() {
    let state = tempfile::tempdir().expect("tempdir");
    let provider = serve(state.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wrong.yaml");
    std::fs::write(
        &file,
        "resource_type: Custom::Echo\ntimeout: 10\nsteps:\n  - action: create\n    properties: {FailWith: boom}\n  - action: delete\n",
    )
    .expect("write");
    let output = mock_ros(
        &[file.to_str().expect("utf-8"), "--url", &provider.url],
        &[],
    );
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("✘ [1/2] create"), "{out}");
    assert!(
        out.contains("violation [expectation]: expected SUCCESS, got FAILED (Reason: boom)"),
        "{out}"
    );
    assert!(out.contains("FAIL: 1 violation(s) in 2 step(s)"), "{out}");
}

#[test]
fn unreachable_provider_exits_1_and_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    drop(listener);
    let file = scenarios().join("failed-create.yaml");
    let output = mock_ros(
        &[
            file.to_str().expect("utf-8"),
            "--url",
            &url,
            "--timeout",
            "2",
        ],
        &[],
    );
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("could not reach the provider"), "{out}");
}

#[test]
fn bad_scenario_file_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "resource_type: Custom::Echo\nsteps:\n  - action: explode\n",
    )
    .expect("write");
    let output = mock_ros(&[file.to_str().expect("utf-8")], &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("bad.yaml") && out.contains("explode"), "{out}");
}
