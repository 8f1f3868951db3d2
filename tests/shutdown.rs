//! A graceful stop of the real `stackhook` binary: SIGTERM never leaves
//! long-running work unanswered. Polls due within `--shutdown-grace` run and
//! answer before exit; what still waits after it is answered FAILED when the
//! journal ends with the process (`--journal-lifetime process`, the default),
//! or resumes at the next start when the operator declared it persistent.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use stackhook::sink::{CallbackSink, Received};
use stackhook::{Response, Status};

/// Longer than any wait in these tests, so that a missing answer fails the
/// test rather than hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `stackhook serve` process; killed when dropped.
struct Provider {
    child: Child,
    addr: SocketAddr,
}

impl Provider {
    fn start(state_dir: &Path, extra: &[&str]) -> Provider {
        let mut child = serve(state_dir, extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stackhook serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line)
                    && entry["message"] == "stackhook is listening"
                {
                    let _ = tx.send(entry["addr"].as_str().unwrap_or_default().to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(PATIENCE)
            .expect("the provider reports its address")
            .parse()
            .expect("a socket address");
        Provider { child, addr }
    }

    async fn send(&self, body: &Value) {
        let status = reqwest::Client::new()
            .post(format!("http://{}/", self.addr))
            .json(body)
            .send()
            .await
            .expect("provider reachable")
            .status();
        assert_eq!(status, 200, "the request is acknowledged");
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait for the process to exit by itself, without blocking the test's
    /// runtime: the callback sink must keep answering meanwhile.
    async fn exited(mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the provider did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stackhook serve` on loopback, answering at a local callback sink.
fn serve(state_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(common::stackhook_bin());
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--callback-endpoint",
            "public",
            "--callback-allow",
            "127.0.0.1",
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .args(extra)
        .env("RUST_LOG", "info");
    command
}

fn create(sink: &CallbackSink, resource_type: &str, request_id: &str, properties: Value) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": request_id,
        "ResponseURL": sink.url("/callback"),
        "ResourceType": resource_type,
        "LogicalResourceId": "Res",
        "StackId": "9b1f2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d",
        "StackName": "shutdown",
        "ResourceOwnerId": "123456789",
        "CallerId": "123456789",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": properties,
    })
}

/// The answers among the callbacks that were accepted.
fn answers(received: &[Received]) -> Vec<Response> {
    received
        .iter()
        .filter(|r| r.answered < 300)
        .filter_map(Received::response)
        .collect()
}

/// The one answer that reached the sink.
fn the_answer(sink: &CallbackSink) -> Response {
    let mut got = answers(&sink.received());
    assert_eq!(got.len(), 1, "exactly one answer: {got:?}");
    got.remove(0)
}

/// Wait for an answer to arrive.
async fn first_answer(sink: &CallbackSink) -> Response {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while answers(&sink.received()).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer within {PATIENCE:?}"
        );
        sink.wait_for(sink.received().len() + 1, Duration::from_millis(200))
            .await;
    }
    the_answer(sink)
}

#[tokio::test]
async fn a_poll_due_within_the_grace_period_answers_before_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    let provider = Provider::start(dir.path(), &["--shutdown-grace", "3"]);
    provider
        .send(&create(
            &sink,
            "Custom::Wait",
            "due-1",
            json!({"Seconds": 2}),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.terminate();
    let status = provider.exited().await;
    assert!(status.success(), "{status:?}");
    // Delivered before the process exited: nothing runs after it.
    let answer = the_answer(&sink);
    assert_eq!(answer.status, Status::Success, "{:?}", answer.reason);
    let waited = answer.data.expect("data")["WaitedSeconds"].as_u64();
    assert!(waited.is_some_and(|s| s >= 2), "waited {waited:?} s");
}

#[tokio::test]
async fn waiting_work_is_answered_failed_before_exit_when_the_journal_ends_with_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    // The default lifetime, on the disk journal: exactly the Kubernetes
    // example without a volume, where the disk does not come back.
    let args = ["--shutdown-grace", "1"];
    let provider = Provider::start(dir.path(), &args);
    provider
        .send(&create(
            &sink,
            "Custom::Wait",
            "left-1",
            json!({"Seconds": 4}),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.terminate();
    let status = provider.exited().await;
    assert!(status.success(), "{status:?}");
    let answer = the_answer(&sink);
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.expect("reason");
    assert!(
        reason.contains("shut down before the operation finished")
            && reason.contains("--journal-lifetime process"),
        "{reason}"
    );
    assert!(
        answer
            .physical_resource_id
            .starts_with("stackhook-create-failed"),
        "{}",
        answer.physical_resource_id
    );

    // The answer is final: a later start on the same directory does not
    // resume the wait (it would have succeeded after its 4 s).
    let _restarted = Provider::start(dir.path(), &args);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = answers(&sink.received());
    assert_eq!(all.len(), 1, "no second answer after a restart: {all:?}");
}

#[tokio::test]
async fn waiting_work_resumes_at_the_next_start_when_the_journal_is_persistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    let args = ["--shutdown-grace", "1", "--journal-lifetime", "persistent"];
    let provider = Provider::start(dir.path(), &args);
    provider
        .send(&create(
            &sink,
            "Custom::Wait",
            "kept-1",
            json!({"Seconds": 4}),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.terminate();
    let status = provider.exited().await;
    assert!(status.success(), "{status:?}");
    assert!(
        sink.received().is_empty(),
        "no answer at exit: the wait stays in the journal"
    );

    let _restarted = Provider::start(dir.path(), &args);
    let answer = first_answer(&sink).await;
    assert_eq!(answer.status, Status::Success, "{:?}", answer.reason);
    let waited = answer.data.expect("data")["WaitedSeconds"].as_u64();
    assert!(waited.is_some_and(|s| s >= 4), "waited {waited:?} s");
}

#[tokio::test]
async fn a_handler_still_running_at_the_end_of_the_grace_period_is_answered_failed_before_exit() {
    // Whatever the journal's lifetime: the handler's progress is lost with
    // its task, so the answer is given now rather than at a later start.
    for lifetime in ["process", "persistent"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = CallbackSink::start().await.expect("sink");
        let args = ["--shutdown-grace", "1", "--journal-lifetime", lifetime];
        let provider = Provider::start(dir.path(), &args);
        provider
            .send(&create(
                &sink,
                "Custom::Echo",
                "cut-1",
                json!({"SleepSeconds": 600}),
            ))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        provider.terminate();
        let status = provider.exited().await;
        assert!(status.success(), "{lifetime}: {status:?}");
        let answer = the_answer(&sink);
        assert_eq!(answer.status, Status::Failed, "{lifetime}");
        let reason = answer.reason.expect("reason");
        assert!(
            reason.contains("shut down before the handler finished")
                && reason.contains("--shutdown-grace"),
            "{lifetime}: {reason}"
        );
    }
}

#[test]
fn a_persistent_lifetime_with_the_memory_journal_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = serve(
        dir.path(),
        &["--journal", "memory", "--journal-lifetime", "persistent"],
    )
    .stdout(Stdio::null())
    .output()
    .expect("run stackhook serve");
    assert!(!output.status.success(), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("--journal-lifetime persistent")
            && lines[0].contains("--journal disk"),
        "{stderr}"
    );
    // Refused before anything was created in the state directory.
    let created: Vec<_> = std::fs::read_dir(dir.path()).expect("read dir").collect();
    assert!(created.is_empty(), "{created:?}");
}
