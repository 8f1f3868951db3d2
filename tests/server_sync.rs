//! `POST /sync` (a `web[sync]:` ServiceToken): the reply is the whole answer,
//! within ROS's 10 s, and nothing is sent to the callback URLs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::sink::CallbackSink;
use stackhook::{Router, Status};
use tokio::sync::Notify;

use common::*;

/// Nothing may arrive at the sink: sync answers go in the reply only.
async fn assert_no_callback(sink: &CallbackSink) {
    let calls = sink.wait_for(1, QUIET).await;
    assert!(
        calls.is_empty(),
        "a sync request got a callback: {calls:#?}"
    );
}

#[tokio::test]
async fn reply_is_the_full_answer_and_no_callback_is_sent() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("echo-create.json", &sink);
    let reply = post_json(&server.url("/sync"), &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let raw = reply.json();
    assert_eq!(raw["Status"], "SUCCESS");
    assert_eq!(raw["Data"], body["ResourceProperties"]);
    assert!(
        raw["PhysicalResourceId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let answer = reply.answer();
    assert_identifiers_copied(&answer, &body);
    assert_no_callback(&sink).await;
    server.stop().await;
}

#[tokio::test]
async fn failed_answer_is_the_reply_too() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("echo-create-fail.json", &sink);
    let reply = post_json(&server.url("/sync"), &body).await;
    // FAILED travels in a 200 body: ROS reads the body, not the status.
    assert_eq!(reply.status, 200);
    let answer = reply.answer();
    assert_eq!(answer.status, Status::Failed);
    assert_eq!(
        answer.reason.as_deref(),
        Some("the template asked Custom::Echo to fail")
    );
    assert!(
        answer
            .physical_resource_id
            .starts_with("stackhook-create-failed-")
    );
    assert_identifiers_copied(&answer, &body);
    assert_no_callback(&sink).await;
    server.stop().await;
}

#[tokio::test]
async fn update_and_delete_in_sync_mode_echo_the_id() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    for file in ["echo-update.json", "echo-delete.json"] {
        let body = fixture_for(file, &sink);
        let answer = post_json(&server.url("/sync"), &body).await.answer();
        assert_eq!(answer.status, Status::Success, "{file}");
        assert_eq!(answer.physical_resource_id, body["PhysicalResourceId"]);
        assert_identifiers_copied(&answer, &body);
    }
    assert_no_callback(&sink).await;
    server.stop().await;
}

#[tokio::test]
async fn sync_request_needs_no_callback_url() {
    let server = TestServer::builtin().await;
    let body = fixture("invalid/missing-callback.json");
    let reply = post_json(&server.url("/sync"), &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.answer().status, Status::Success);
    server.stop().await;
}

#[tokio::test]
async fn handler_slower_than_ros_waits_gets_failed_saying_so() {
    // ROS waits 10 s for a sync reply; a 2 s type timeout keeps this test
    // fast and takes the same path (the smaller of the two limits wins).
    let config = test_config().type_timeout("Custom::Slow", Duration::from_secs(2));
    let server = TestServer::start(Router::new().route("Custom::Slow", Sleepy), config).await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-update.json", &sink);
    body["ResourceType"] = json!("Custom::Slow");
    let reply = post_json(&server.url("/sync"), &body).await;
    assert_eq!(reply.status, 200);
    let answer = reply.answer();
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    // 2 s less 1 s to reply, and half the rest kept for delivery.
    assert!(reason.starts_with("timed out after 0.5 s: "), "{reason}");
    assert!(reason.contains("Custom::Slow's timeout (2 s)"), "{reason}");
    assert!(
        reason.contains("--type-timeout Custom::Slow=SECONDS"),
        "{reason}"
    );
    assert!(reason.contains("ROS waits only 10 s"), "{reason}");
    assert_eq!(answer.physical_resource_id, body["PhysicalResourceId"]);
    assert_identifiers_copied(&answer, &body);
    assert_no_callback(&sink).await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_sync_request_with_identifiers_gets_failed_in_the_reply() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("invalid/unknown-request-type.json", &sink);
    let reply = post_json(&server.url("/sync"), &body).await;
    assert_eq!(reply.status, 200);
    let answer = reply.answer();
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(reason.contains("Replace"), "{reason}");
    assert_identifiers_copied(&answer, &body);
    assert_no_callback(&sink).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_type_in_sync_mode_names_the_registered_types() {
    let server = TestServer::builtin().await;
    let body = fixture("generic-create.json");
    let answer = post_json(&server.url("/sync"), &body).await.answer();
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(
        reason.contains("ALIYUN::ROS::CustomResource")
            && reason.contains("Custom::Echo")
            && reason.contains("Custom::RandomString"),
        "{reason}"
    );
    server.stop().await;
}

/// Says when it starts, then takes an hour.
struct Started(Arc<Notify>);

impl Handler for Started {
    type Properties = Map<String, Value>;
    type Error = std::io::Error;

    async fn create(&self, _: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
        self.0.notify_one();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Created::new())
    }
    async fn update(&self, _: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
        self.0.notify_one();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Updated::new())
    }
    async fn delete(&self, _: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
        self.0.notify_one();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(Deleted::new())
    }
}

#[tokio::test]
async fn sync_answer_comes_before_ros_stops_waiting_even_with_a_long_timeout() {
    // The resource's timeout is an hour, but ROS waits only 10 s for a sync
    // reply. Time is paused once the handler runs, so the test takes no 10
    // real seconds: tokio jumps to the next timer when nothing else can run.
    let started = Arc::new(Notify::new());
    let config = test_config().timeout(Duration::from_secs(3600));
    let server = TestServer::start(
        Router::new().route("Custom::Started", Started(Arc::clone(&started))),
        config,
    )
    .await;
    let mut body = fixture("echo-create.json");
    body["ResourceType"] = json!("Custom::Started");
    let url = server.url("/sync");
    // No client timeout: under paused time it would fire as soon as the
    // runtime idles.
    let reply = tokio::spawn(async move {
        let reply = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("reply");
        reply.bytes().await.expect("body")
    });
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the handler starts");
    tokio::time::pause();
    let paused_at = tokio::time::Instant::now();
    let bytes = reply.await.expect("client task");
    let waited = paused_at.elapsed();
    let answer = stackhook::Response::from_slice(&bytes).expect("an answer");
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    // 10 s less 1 s to reply and 1 s kept for delivery: the handler was
    // cut off 8 s in, and the reason says so, not 9 s.
    assert!(reason.starts_with("timed out after 8 s: "), "{reason}");
    assert!(reason.contains("ROS waits only 10 s"), "{reason}");
    assert!(
        !reason.contains("--type-timeout"),
        "a longer timeout would not help: {reason}"
    );
    // Virtual time: the reply left before ROS's 10 s were up.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    tokio::time::resume();
    server.stop().await;
}
