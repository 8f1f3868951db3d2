//! The fault matrix: the real `stackhook` binary under every fault the
//! reliability guarantees cover. Each case checks that the request gets its
//! final answer and that no handler runs twice for one request.

use std::time::Duration;

use serde_json::json;
use stackhook::Status;
use stackhook::sink::CallbackSink;

mod common;
#[path = "common/provider.rs"]
mod provider;

use common::ros::{answers, create, one_answer};
use provider::{ack, started};

/// How many times handlers of `resource_type` ran, by the provider's
/// `/metrics` text.
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
    let provider = started(dir.path(), &["--timeout", "3"]).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = create(
        &sink,
        "Custom::Echo",
        "hang-1",
        json!({"SleepSeconds": 600}),
    );
    assert_eq!(ack(&provider, &body).await, 200);
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
    let provider = started(dir.path(), &[]).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = create(
        &sink,
        "Custom::Echo",
        "panic-1",
        json!({"PanicWith": "kaboom"}),
    );
    assert_eq!(ack(&provider, &body).await, 200);
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
    let provider = started(dir.path(), &["--timeout", "60"]).await;
    let placeholder = CallbackSink::start().await.expect("sink");
    let addr = placeholder.addr();
    let body = create(
        &placeholder,
        "Custom::Echo",
        "down-1",
        json!({"Greeting": "hi"}),
    );
    drop(placeholder);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ack(&provider, &body).await, 200);
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
    let provider = started(dir.path(), &[]).await;
    let sink = CallbackSink::start().await.expect("sink");
    sink.script([500, 429]);
    let body = create(&sink, "Custom::Echo", "retry-1", json!({}));
    assert_eq!(ack(&provider, &body).await, 200);
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Success);
    let statuses: Vec<u16> = sink.received().iter().map(|r| r.answered).collect();
    assert_eq!(statuses, [500, 429, 200]);
}

#[tokio::test]
async fn sigterm_mid_flight_answers_failed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut provider = started(dir.path(), &["--shutdown-grace", "1"]).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = create(
        &sink,
        "Custom::Echo",
        "term-1",
        json!({"SleepSeconds": 600}),
    );
    assert_eq!(ack(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.signal("TERM");
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Failed);
    assert!(answer.reason.expect("reason").contains("shut down"));
    let status = provider.wait_exit(Duration::from_secs(20)).await;
    assert!(status.expect("the provider exits").success());
}

#[tokio::test]
async fn sigterm_lets_in_flight_work_finish_within_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut provider = started(dir.path(), &["--shutdown-grace", "15"]).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = create(&sink, "Custom::Echo", "term-2", json!({"SleepSeconds": 1}));
    assert_eq!(ack(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    provider.signal("TERM");
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Success);
    let status = provider.wait_exit(Duration::from_secs(20)).await;
    assert!(status.expect("the provider exits").success());
}

#[tokio::test]
async fn sigkill_mid_flight_then_restart_gives_exactly_one_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    let provider = started(dir.path(), &[]).await;
    let body = create(
        &sink,
        "Custom::Echo",
        "kill-1",
        json!({"SleepSeconds": 2, "Greeting": "again"}),
    );
    assert_eq!(ack(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.kill_hard();
    assert!(sink.received().is_empty(), "no answer before the crash");
    // Echo is idempotent: the restarted provider runs the operation again.
    let _restarted = started(dir.path(), &[]).await;
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Success);
    assert_eq!(answer.data.expect("data")["Greeting"], "again");
}

#[tokio::test]
async fn sigkill_then_restart_fails_when_the_policy_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    let policy = ["--restart-policy", "Custom::Echo=fail"];
    let provider = started(dir.path(), &policy).await;
    let body = create(&sink, "Custom::Echo", "kill-2", json!({"SleepSeconds": 30}));
    assert_eq!(ack(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.kill_hard();
    let _restarted = started(dir.path(), &policy).await;
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
    let provider = started(dir.path(), &[]).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = create(&sink, "Custom::Echo", "dup-1", json!({"SleepSeconds": 1}));
    let sends = (0..10).map(|_| ack(&provider, &body));
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let answer = one_answer(&sink, Duration::from_secs(20)).await;
    assert_eq!(answer.status, Status::Success);
    assert_eq!(handler_runs(&provider.metrics().await, "Custom::Echo"), 1);

    // A redelivery after the answer gets the same answer again, without a run.
    assert_eq!(ack(&provider, &body).await, 200);
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
    let provider = started(dir.path(), &timeouts).await;
    let body = create(&sink, "Custom::Wait", "wait-1", json!({"Seconds": "3"}));
    assert_eq!(ack(&provider, &body).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    provider.kill_hard();
    let _restarted = started(dir.path(), &timeouts).await;
    let answer = one_answer(&sink, Duration::from_secs(30)).await;
    assert_eq!(answer.status, Status::Success, "{:?}", answer.reason);
    let waited = answer.data.expect("data")["WaitedSeconds"]
        .as_u64()
        .expect("number");
    assert!(waited >= 3, "waited {waited} s");
}
