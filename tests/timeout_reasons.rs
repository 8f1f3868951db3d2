//! Reasons that say time ran out state what happened and what would give
//! the operation its time, on every route: a `Custom::Wait` longer than its
//! type's timeout is answered FAILED at once, not "timed out after 10 s".

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use stackhook::Status;
use stackhook::sink::CallbackSink;

use common::{TestServer, builtin_router, exactly, post_json, post_with, run_async, test_config};

fn wait_of(seconds: u64, sink: &CallbackSink) -> Value {
    let mut body = common::fixture_for("echo-create.json", sink);
    body["ResourceType"] = json!("Custom::Wait");
    body["ResourceProperties"] = json!({"Seconds": seconds.to_string()});
    body
}

#[tokio::test]
async fn a_wait_longer_than_the_type_timeout_is_answered_failed_at_once_naming_the_setting() {
    // `--timeout 10`.
    let config = test_config().timeout(Duration::from_secs(10));
    let server = TestServer::start(builtin_router(), config).await;
    let sink = CallbackSink::start().await.expect("sink");

    let answer = run_async(&server, &sink, &wait_of(600, &sink)).await;
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.expect("reason");
    // At once: it gives up at the first step, before any poll.
    assert!(reason.starts_with("gave up after "), "{reason}");
    assert!(reason.contains("polled again in 300 s"), "{reason}");
    assert!(
        reason.contains("needs more time than Custom::Wait's timeout (10 s)"),
        "{reason}"
    );
    assert!(
        reason.contains("--type-timeout Custom::Wait=SECONDS"),
        "{reason}"
    );
    assert!(!reason.contains("timed out"), "{reason}");

    // Function Compute: the same, delivered before the reply.
    let reply = post_with(
        &server.url("/invoke"),
        "application/octet-stream",
        &[],
        wait_of(600, &sink).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let answer = reply.answer();
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.expect("reason");
    assert!(
        reason.contains("Custom::Wait's timeout (10 s)")
            && reason.contains("--type-timeout Custom::Wait=SECONDS"),
        "{reason}"
    );
    exactly(&sink, 2).await;
    server.stop().await;
}

#[tokio::test]
async fn a_sync_wait_longer_than_ros_waits_names_ros_s_wait_not_the_timeout() {
    // A long type timeout: what runs out is ROS's 10 s wait for the reply.
    let config = test_config().type_timeout("Custom::Wait", Duration::from_secs(900));
    let server = TestServer::start(builtin_router(), config).await;
    let sink = CallbackSink::start().await.expect("sink");
    let reply = post_json(&server.url("/sync"), &wait_of(600, &sink)).await;
    assert_eq!(reply.status, 200);
    let answer = reply.answer();
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.expect("reason");
    assert!(reason.starts_with("gave up after "), "{reason}");
    assert!(
        reason.contains("ROS's 10 s wait for the answer to a web[sync]: request"),
        "{reason}"
    );
    assert!(reason.contains("async web: ServiceToken"), "{reason}");
    assert!(
        !reason.contains("--type-timeout"),
        "a longer timeout would not help: {reason}"
    );
    // A wait that fits is answered SUCCESS in the reply.
    let reply = post_json(&server.url("/sync"), &wait_of(1, &sink)).await;
    assert_eq!(reply.answer().status, Status::Success);
    server.stop().await;
}
