//! A graceful stop of the real `stackhook` binary: SIGTERM never leaves
//! long-running work unanswered. Polls due within `--shutdown-grace` run and
//! answer before exit; what still waits after it is answered FAILED when the
//! journal ends with the process (`--journal-lifetime process`, the default),
//! or resumes at the next start when the operator declared it persistent.

mod common;
#[path = "common/provider.rs"]
mod provider;

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use stackhook::Status;
use stackhook::sink::CallbackSink;

use common::ros::{answers, create, first_answer, the_answer};
use provider::{Provider, ack, started};

/// Longer than any wait in these tests, so that a missing answer fails the
/// test rather than hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Send `body` to `provider`, give its handler time to start, then stop the
/// provider with SIGTERM and wait for it to exit by itself, without blocking
/// the test's runtime: the callback sink must keep answering meanwhile.
async fn send_then_terminate(mut provider: Provider, body: &Value) -> ExitStatus {
    assert_eq!(
        ack(&provider, body).await,
        200,
        "the request is acknowledged"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.signal("TERM");
    provider
        .wait_exit(PATIENCE)
        .await
        .expect("the provider did not exit after SIGTERM")
}

#[tokio::test]
async fn a_poll_due_within_the_grace_period_answers_before_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    let provider = started(dir.path(), &["--shutdown-grace", "3"]).await;
    let body = create(&sink, "Custom::Wait", "due-1", json!({"Seconds": 2}));
    let status = send_then_terminate(provider, &body).await;
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
    let provider = started(dir.path(), &args).await;
    let body = create(&sink, "Custom::Wait", "left-1", json!({"Seconds": 4}));
    let status = send_then_terminate(provider, &body).await;
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
    let _restarted = started(dir.path(), &args).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = answers(&sink.received());
    assert_eq!(all.len(), 1, "no second answer after a restart: {all:?}");
}

#[tokio::test]
async fn waiting_work_resumes_at_the_next_start_when_the_journal_is_persistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = CallbackSink::start().await.expect("sink");
    let args = ["--shutdown-grace", "1", "--journal-lifetime", "persistent"];
    let provider = started(dir.path(), &args).await;
    let body = create(&sink, "Custom::Wait", "kept-1", json!({"Seconds": 4}));
    let status = send_then_terminate(provider, &body).await;
    assert!(status.success(), "{status:?}");
    assert!(
        sink.received().is_empty(),
        "no answer at exit: the wait stays in the journal"
    );

    let _restarted = started(dir.path(), &args).await;
    let answer = first_answer(&sink, PATIENCE).await;
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
        let provider = started(dir.path(), &args).await;
        let body = create(&sink, "Custom::Echo", "cut-1", json!({"SleepSeconds": 600}));
        let status = send_then_terminate(provider, &body).await;
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
    let output = Provider::command(
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
