//! The real `stackhook` binary: `serve` on 127.0.0.1:0, `invoke` against it,
//! FC's stdout log lines, `--help`, and SIGTERM. Every child process is
//! killed by a guard when its test ends, whatever happens.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

/// Generous: a passing test never waits this long.
const WAIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A command with a clean environment: no `STACKHOOK_*` from the machine.
fn stackhook() -> Command {
    let mut command = Command::new(common::stackhook_bin());
    command.env_clear().env("RUST_LOG", "info");
    command
}

/// A running `stackhook serve`, killed on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    _state: tempfile::TempDir,
}

impl Served {
    fn start(extra: &[&str]) -> Served {
        Served::start_with_env(extra, &[])
    }

    fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Served {
        let state = tempfile::tempdir().expect("state dir");
        let mut child = stackhook()
            .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state.path())
            // `stackhook invoke` receives answers on loopback.
            .args(["--callback-allow", "127.0.0.1"])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn stackhook serve");
        let stdout = lines(child.stdout.take().expect("stdout"), None);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_lines = lines(
            child.stderr.take().expect("stderr"),
            Some(Arc::clone(&stderr)),
        );
        let mut served = Served {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout,
            stderr,
            _state: state,
        };
        served.addr = served.wait_for_address(&stderr_lines);
        served
    }

    /// Read the address from `stackhook is listening addr=127.0.0.1:PORT ...`.
    fn wait_for_address(&mut self, stderr: &Receiver<String>) -> SocketAddr {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = stderr.recv_timeout(left) else {
                break;
            };
            if let Some(addr) = listening_address(&line) {
                return addr;
            }
        }
        panic!(
            "no `stackhook is listening` line; stderr: {:#?}",
            self.stderr_log()
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn stderr_log(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stdout lines until `wanted` appears, or panic after the wait.
    fn stdout_until(&self, wanted: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let done = line == wanted;
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("`{wanted}` never came on stdout; saw {seen:#?}");
    }

    /// Send SIGTERM and wait for the exit.
    fn terminate(&mut self) -> ExitStatus {
        // The shell's builtin `kill`: std cannot send SIGTERM, and a fresh
        // machine may have no procps.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -TERM failed");
        wait_with_timeout(&mut self.child, WAIT).unwrap_or_else(|| {
            panic!(
                "stackhook did not exit after SIGTERM; stderr: {:#?}",
                self.stderr_log()
            )
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process that is killed and reaped when the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Forward a pipe's lines to a channel (and to `log`), on a thread of its
/// own so the child never blocks on a full pipe.
fn lines(
    pipe: impl Read + Send + 'static,
    log: Option<Arc<Mutex<Vec<String>>>>,
) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(log) = &log
                && let Ok(mut log) = log.lock()
            {
                log.push(line.clone());
            }
            if tx.send(line).is_err() && log.is_none() {
                break;
            }
        }
    });
    rx
}

/// The address in the `stackhook is listening` log line, text or JSON.
fn listening_address(line: &str) -> Option<SocketAddr> {
    if line.starts_with('{') {
        let entry: Value = serde_json::from_str(line).ok()?;
        if entry["message"] != "stackhook is listening" {
            return None;
        }
        return entry["addr"].as_str()?.parse().ok();
    }
    let rest = line.split("stackhook is listening").nth(1)?;
    let addr = rest.split("addr=").nth(1)?.split_whitespace().next()?;
    addr.trim_matches('"').parse().ok()
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// One HTTP/1.1 request over a plain socket; returns status line, headers
/// and body as text.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read reply");
    reply
}

/// Run `stackhook invoke FIXTURE --url URL` to completion (bounded by --wait).
fn invoke(fixture_name: &str, url: &str, wait_s: u32) -> Output {
    stackhook()
        .arg("invoke")
        .arg(fixture(fixture_name))
        .args(["--url", url, "--wait", &wait_s.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run stackhook invoke")
}

fn answer_on_stdout(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the answer JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn invoke_exits_0_on_success_in_every_mode() {
    let served = Served::start(&[]);
    for path in ["/", "/sync", "/invoke"] {
        let output = invoke("echo-create.json", &served.url(path), 20);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer = answer_on_stdout(&output);
        assert_eq!(answer["Status"], "SUCCESS", "{path}");
        assert_eq!(answer["LogicalResourceId"], "Greeter");
        assert_eq!(answer["Data"]["Greeting"], "hello");
    }
}

#[test]
fn invoke_exits_1_on_failed() {
    let served = Served::start(&[]);
    let output = invoke("echo-create-fail.json", &served.url("/"), 20);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer = answer_on_stdout(&output);
    assert_eq!(answer["Status"], "FAILED");
    assert_eq!(answer["Reason"], "the template asked Custom::Echo to fail");
}

#[test]
fn invoke_exits_2_when_nothing_answers() {
    // Nothing listens on port 1.
    let output = invoke("echo-create.json", "http://127.0.0.1:1/", 2);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not reach the provider"), "{stderr}");
}

#[test]
fn invoke_exits_2_when_the_provider_never_calls_back() {
    // Something that acknowledges every request and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buffer = [0u8; 8192];
            let _ = stream.read(&mut buffer);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    let output = invoke("echo-create.json", &format!("http://{addr}/"), 1);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no answer arrived"), "{stderr}");
}

#[test]
fn fc_invoke_logs_start_and_end_on_stdout() {
    let served = Served::start(&[]);
    // Callbacks to a closed loopback port: the answer cannot be delivered,
    // so this also checks that the End line comes on failure.
    let mut event: Value =
        serde_json::from_slice(&std::fs::read(fixture("echo-create.json")).expect("fixture"))
            .expect("json");
    event["ResponseURL"] = Value::from("http://127.0.0.1:1/public?Signature=x");
    event["IntranetResponseURL"] = Value::from("http://127.0.0.1:1/intranet?Signature=x");
    let body = event.to_string().into_bytes();
    let reply = http(
        served.addr,
        "POST",
        "/invoke",
        &[
            ("Content-Type", "application/octet-stream"),
            ("x-fc-request-id", "fc-cli-7f3a"),
            // Keep the delivery attempts short.
            ("x-fc-function-timeout", "2"),
        ],
        &body,
    );
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("x-fc-status: 404"),
        "{reply}"
    );
    let lines = served.stdout_until("FC Invoke End RequestId: fc-cli-7f3a");
    assert_eq!(
        lines,
        [
            "FC Invoke Start RequestId: fc-cli-7f3a",
            "FC Invoke End RequestId: fc-cli-7f3a"
        ]
    );

    let reply = http(
        served.addr,
        "POST",
        "/initialize",
        &[("x-fc-request-id", "fc-cli-init")],
        b"",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let lines = served.stdout_until("FC Initialize End RequestId: fc-cli-init");
    assert_eq!(
        lines,
        [
            "FC Initialize Start RequestId: fc-cli-init",
            "FC Initialize End RequestId: fc-cli-init"
        ]
    );
}

#[test]
fn stdout_carries_only_fc_lines_and_logs_go_to_stderr() {
    let mut served = Served::start(&[]);
    let output = invoke("echo-create.json", &served.url("/invoke"), 20);
    assert_eq!(output.status.code(), Some(0));
    served.stdout_until("FC Invoke End RequestId: -");
    assert_eq!(served.terminate().code(), Some(0));
    let rest: Vec<String> = served.stdout.try_iter().collect();
    assert!(rest.is_empty(), "unexpected stdout: {rest:#?}");
    let log = served.stderr_log().join("\n");
    assert!(log.contains("answer delivered"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log: {log}"
    );
    // The presigned query string never reaches the log.
    assert!(!log.contains("Signature=sink-"), "{log}");
}

#[test]
fn sigterm_stops_the_server_with_exit_0() {
    let mut served = Served::start(&[]);
    let health = http(served.addr, "GET", "/healthz", &[], b"");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("Custom::RandomString"), "{health}");
    let status = served.terminate();
    assert_eq!(status.code(), Some(0), "stderr: {:#?}", served.stderr_log());
    let log = served.stderr_log().join("\n");
    assert!(log.contains("shutdown signal received"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn serve_keeps_its_secret_key_in_the_state_dir() {
    let served = Served::start(&[]);
    let key = served._state.path().join("secret.key");
    assert!(key.is_file(), "no {}", key.display());
    let first = invoke(
        "random-string-update-unchanged.json",
        &served.url("/sync"),
        20,
    );
    drop(served);
    assert_eq!(first.status.code(), Some(0));
    // A server with another state dir has another key, so another value.
    let other = Served::start(&[]);
    let second = invoke(
        "random-string-update-unchanged.json",
        &other.url("/sync"),
        20,
    );
    assert_ne!(
        answer_on_stdout(&first)["Data"]["Value"],
        answer_on_stdout(&second)["Data"]["Value"]
    );
}

#[test]
fn json_log_format_carries_the_address() {
    let served = Served::start(&["--log-format", "json"]);
    let line = served
        .stderr_log()
        .into_iter()
        .find(|l| l.contains("stackhook is listening"))
        .expect("listening line");
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["addr"], served.addr.to_string());
}

#[test]
fn serve_help_documents_every_flag_and_its_env_var() {
    let output = stackhook()
        .args(["serve", "--help"])
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    // Split the options section into one block per flag.
    let mut blocks: Vec<String> = Vec::new();
    for line in help
        .lines()
        .skip_while(|l| !l.starts_with("Options:"))
        .skip(1)
    {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            blocks.push(trimmed.to_string());
        } else if let Some(last) = blocks.last_mut() {
            last.push(' ');
            last.push_str(trimmed);
        }
    }
    let flags: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b.split_whitespace().find(|w| w.starts_with("--")))
        .collect();
    for expected in [
        "--listen",
        "--callback-endpoint",
        "--callback-method",
        "--body-limit",
        "--timeout",
        "--type-timeout",
        "--shutdown-grace",
        "--generic-type",
        "--state-dir",
        "--secret-key",
        "--log-format",
        "--journal",
        "--retention-days",
        "--max-concurrency",
        "--type-concurrency",
        "--max-queue",
        "--restart-policy",
        "--auth-token",
        "--callback-allow",
        "--tls-cert",
    ] {
        assert!(
            flags.contains(&expected),
            "{expected} missing from:\n{help}"
        );
    }
    for block in &blocks {
        if block.contains("--help") || block.contains("--version") {
            continue;
        }
        assert!(
            block.contains("[env: STACKHOOK_"),
            "no env var documented for: {block}"
        );
        // Drop the flag itself and its value placeholder; what is left describes it.
        let description = block
            .split_whitespace()
            .skip_while(|w| w.starts_with('-') || w.starts_with('<'))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(description.len() > 20, "no description for: {block}");
    }
    // The secret key's value is never shown, even when set.
    let output = stackhook()
        .env("STACKHOOK_SECRET_KEY", "a-very-secret-value-1234567890")
        .args(["serve", "--help"])
        .output()
        .expect("run --help");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("a-very-secret-value"));
}

#[test]
fn invoke_reports_a_refused_request_without_waiting_for_a_callback() {
    let served = Served::start(&[]);
    // Broken but answerable: the FAILED answer arrives before the 400.
    let output = invoke("invalid/missing-request-type.json", &served.url("/"), 600);
    assert_eq!(output.status.code(), Some(1));
    let answer = answer_on_stdout(&output);
    assert_eq!(answer["Status"], "FAILED");
    assert!(
        answer["Reason"]
            .as_str()
            .is_some_and(|r| r.contains("RequestType")),
        "{answer}"
    );

    // Not answerable at all: nothing will come, so no reason to wait 600 s.
    let mut child = Reaped(
        stackhook()
            .arg("invoke")
            .arg(fixture("invalid/not-json.json"))
            .args(["--url", &served.url("/"), "--wait", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stackhook invoke"),
    );
    let status =
        wait_with_timeout(&mut child.0, WAIT).expect("invoke waited for a callback after a 400");
    assert_eq!(status.code(), Some(2));
}

#[test]
fn generic_type_flag_maps_the_generic_resource_type() {
    let served = Served::start(&["--generic-type", "Custom::Echo"]);
    let output = invoke("generic-create.json", &served.url("/"), 20);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        answer_on_stdout(&output)["Data"]["Greeting"],
        "from the generic type"
    );

    let unmapped = Served::start(&[]);
    let output = invoke("generic-create.json", &unmapped.url("/"), 20);
    assert_eq!(output.status.code(), Some(1));
    let reason = answer_on_stdout(&output)["Reason"].to_string();
    assert!(
        reason.contains("Custom::Echo,") && reason.contains("Custom::RandomString"),
        "{reason}"
    );
}

#[test]
fn serve_refuses_a_generic_type_that_is_not_registered() {
    let state = tempfile::tempdir().expect("state dir");
    let mut child = Reaped(
        stackhook()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--generic-type",
                "Custom::Nope",
            ])
            .arg("--state-dir")
            .arg(state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let status = wait_with_timeout(&mut child.0, WAIT).expect("serve exits");
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(
        stderr.contains("Custom::Nope is not a registered type"),
        "{stderr}"
    );
}

#[test]
fn environment_variables_configure_serve() {
    let served = Served::start_with_env(
        &[],
        &[
            ("STACKHOOK_CALLBACK_METHOD", "PUT"),
            ("STACKHOOK_CALLBACK_ENDPOINT", "public"),
        ],
    );
    let output = invoke("echo-create.json", &served.url("/"), 20);
    assert_eq!(output.status.code(), Some(0));
    // `invoke` says on stderr how the answer came.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SUCCESS by PUT to /public"), "{stderr}");
}

#[test]
fn every_fixture_gets_its_expected_answer_through_invoke() {
    // The fixtures double as `stackhook invoke` inputs: each one works as-is.
    let served = Served::start(&[]);
    let failing = ["echo-create-fail.json", "generic-create.json"];
    let mut names: Vec<String> = std::fs::read_dir(fixture(""))
        .expect("fixtures dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 12, "{names:?}");
    for name in names {
        let output = invoke(&name, &served.url("/sync"), 20);
        let answer = answer_on_stdout(&output);
        let (status, code) = if failing.contains(&name.as_str()) {
            ("FAILED", 1)
        } else {
            ("SUCCESS", 0)
        };
        assert_eq!(answer["Status"], status, "{name}: {answer}");
        assert_eq!(output.status.code(), Some(code), "{name}");
    }
}
