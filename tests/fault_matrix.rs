//! The fault matrix: the real `stackhook` binary under every fault the
//! reliability guarantees cover. Each case checks that the request gets its
//! final answer and that no handler runs twice for one request.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use stackhook::sink::{CallbackSink, Received};
use stackhook::{Response, Status};

mod common;

/// A `stackhook serve` process; killed when dropped.
struct Provider {
    child: Child,
    addr: SocketAddr,
}

impl Provider {
    fn start(state_dir: &Path, extra: &[&str]) -> Provider {
        let mut child = Command::new(common::stackhook_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--callback-endpoint",
                "public",
                // The test's callback sink listens on loopback.
                "--callback-allow",
                "127.0.0.1",
            ])
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stackhook serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                    if entry["message"] == "stackhook is listening" {
                        let _ = tx.send(entry["addr"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the provider reports its address")
            .parse()
            .expect("a socket address");
        Provider { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// SIGKILL, and wait until the process is gone.
    fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Wait for the process to exit by itself.
    fn wait_exit(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the provider did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(sink: &CallbackSink, resource_type: &str, request_id: &str, properties: Value) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": request_id,
        "ResponseURL": sink.url("/callback"),
        "IntranetResponseURL": sink.url("/intranet"),
        "ResourceType": resource_type,
        "LogicalResourceId": "Res",
        "StackId": "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff",
        "StackName": "fault-matrix",
        "ResourceOwnerId": "123456789",
        "CallerId": "123456789",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": properties,
    })
}

async fn send(provider: &Provider, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(provider.url("/"))
        .json(body)
        .send()
        .await
        .expect("provider reachable")
        .status()
        .as_u16()
}

/// The answers among the callbacks that were accepted (2xx).
fn answers(received: &[Received]) -> Vec<Response> {
    received
        .iter()
        .filter(|r| r.answered < 300)
        .filter_map(Received::response)
        .collect()
}

/// Wait for the first accepted answer, then a little longer to catch duplicates.
async fn one_answer(sink: &CallbackSink, within: Duration) -> Response {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = answers(&sink.received());
        if !got.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer within {within:?}"
        );
        sink.wait_for(sink.received().len() + 1, Duration::from_millis(200))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = answers(&sink.received());
    assert_eq!(got.len(), 1, "exactly one answer must arrive: {got:?}");
    got.into_iter().next().expect("one answer")
}

fn handler_runs(metrics: &str, resource_type: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("stackhook_handler_runs_total{")
                && l.contains(&format!("resource_type=\"{resource_type}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn handler_that_hangs_past_its_deadline_is_answered_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(dir.path(), &["--timeout", "3"]);
    let sink = CallbackSink::start().await.expect("sink");
    let body = request(
        &sink,
        "Custom::Echo",
        "hang-1",
        json!({"SleepSeconds": 600}),
    );
    assert_eq!(send(&provider, &body).await, 200);
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.expect("reason");
    // 3 s in all, 1 s of it kept for delivering the answer.
    assert!(reason.starts_with("timed out after 2 s: "), "{reason}");
    assert!(
        reason.contains("Custom::Echo's timeout (3 s)")
            && reason.contains("--type-timeout Custom::Echo=SECONDS"),
        "{reason}"
    );
    assert!(
        answer
            .physical_resource_id
            .starts_with("stackhook-create-failed")
    );
}

#[tokio::test]
async fn handler_that_panics_is_answered_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(dir.path(), &[]);
    let sink = CallbackSink::start().await.expect("sink");
    let body = request(
        &sink,
        "Custom::Echo",
        "panic-1",
        json!({"PanicWith": "kaboom"}),
    );
    assert_eq!(send(&provider, &body).await, 200);
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Failed);
    assert_eq!(answer.reason.as_deref(), Some("handler panicked: kaboom"));
    // The process survives a panicking handler.
    let health = reqwest::get(provider.url("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn callback_down_for_ten_seconds_is_retried_until_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(dir.path(), &["--timeout", "60"]);
    let placeholder = CallbackSink::start().await.expect("sink");
    let addr = placeholder.addr();
    let body = request(
        &placeholder,
        "Custom::Echo",
        "down-1",
        json!({"Greeting": "hi"}),
    );
    drop(placeholder);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(send(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let sink = CallbackSink::bind(addr)
        .await
        .expect("the callback comes back on the same port");
    let answer = one_answer(&sink, Duration::from_secs(30)).await;
    assert_eq!(answer.status, Status::Success);
    assert_eq!(answer.data.expect("data")["Greeting"], "hi");
    assert!(
        provider
            .metrics()
            .await
            .contains("stackhook_deliveries_total{outcome=\"delivered\"} 1")
    );
}

#[tokio::test]
async fn callback_answering_500_then_429_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(dir.path(), &[]);
    let sink = CallbackSink::start().await.expect("sink");
    sink.script([500, 429]);
    let body = request(&sink, "Custom::Echo", "retry-1", json!({}));
    assert_eq!(send(&provider, &body).await, 200);
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Success);
    let statuses: Vec<u16> = sink.received().iter().map(|r| r.answered).collect();
    assert_eq!(statuses, [500, 429, 200]);
}

#[tokio::test]
async fn sigterm_mid_flight_answers_failed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(dir.path(), &["--shutdown-grace", "1"]);
    let sink = CallbackSink::start().await.expect("sink");
    let body = request(
        &sink,
        "Custom::Echo",
        "term-1",
        json!({"SleepSeconds": 600}),
    );
    assert_eq!(send(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.signal("TERM");
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Failed);
    assert!(answer.reason.expect("reason").contains("shut down"));
    assert!(provider.wait_exit(Duration::from_secs(20)).success());
}

#[tokio::test]
async fn sigterm_lets_in_flight_work_finish_within_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(dir.path(), &["--shutdown-grace", "15"]);
    let sink = CallbackSink::start().await.expect("sink");
    let body = request(&sink, "Custom::Echo", "term-2", json!({"SleepSeconds": 1}));
    assert_eq!(send(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    provider.signal("TERM");
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Success);
    assert!(provider.wait_exit(Duration::from_secs(20)).success());
}

#[tokio::test]
async fn sigkill_mid_flight_then_restart_gives_exactly_one_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    let provider = Provider::start(dir.path(), &[]);
    let body = request(
        &sink,
        "Custom::Echo",
        "kill-1",
        json!({"SleepSeconds": 2, "Greeting": "again"}),
    );
    assert_eq!(send(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.kill_hard();
    assert!(sink.received().is_empty(), "no answer before the crash");
    // Echo is idempotent: the restarted provider runs the operation again.
    let _restarted = Provider::start(dir.path(), &[]);
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Success);
    assert_eq!(answer.data.expect("data")["Greeting"], "again");
}

#[tokio::test]
async fn sigkill_then_restart_fails_when_the_policy_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    let policy = ["--restart-policy", "Custom::Echo=fail"];
    let provider = Provider::start(dir.path(), &policy);
    let body = request(&sink, "Custom::Echo", "kill-2", json!({"SleepSeconds": 30}));
    assert_eq!(send(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.kill_hard();
    let _restarted = Provider::start(dir.path(), &policy);
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Failed);
    assert!(
        answer
            .reason
            .expect("reason")
            .contains("restarted during the operation")
    );
}

#[tokio::test]
async fn ten_concurrent_redeliveries_run_the_handler_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(dir.path(), &[]);
    let sink = CallbackSink::start().await.expect("sink");
    let body = request(&sink, "Custom::Echo", "dup-1", json!({"SleepSeconds": 1}));
    let sends = (0..10).map(|_| send(&provider, &body));
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Success);
    assert_eq!(handler_runs(&provider.metrics().await, "Custom::Echo"), 1);

    // A redelivery after the answer gets the same answer again, without a run.
    assert_eq!(send(&provider, &body).await, 200);
    let received = sink.wait_for(2, Duration::from_secs(10)).await;
    let all = answers(&received);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], all[1]);
    assert_eq!(handler_runs(&provider.metrics().await, "Custom::Echo"), 1);
}

#[tokio::test]
async fn long_running_poll_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    // With `fail` as the restart policy, only a poll that was persisted and
    // resumed can succeed: a request still marked running would be failed.
    let timeouts = [
        "--type-timeout",
        "Custom::Wait=120",
        "--restart-policy",
        "Custom::Wait=fail",
    ];
    let provider = Provider::start(dir.path(), &timeouts);
    let body = request(&sink, "Custom::Wait", "wait-1", json!({"Seconds": "3"}));
    assert_eq!(send(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    provider.kill_hard();
    let _restarted = Provider::start(dir.path(), &timeouts);
    let answer = one_answer(&sink, Duration::from_secs(30)).await;
    assert_eq!(answer.status, Status::Success, "{:?}", answer.reason);
    let waited = answer.data.expect("data")["WaitedSeconds"]
        .as_u64()
        .expect("number");
    assert!(waited >= 3, "waited {waited} s");
}
