//! Back-pressure: requests beyond the concurrency limit wait in the queue and
//! are answered in turn; beyond the queue limit they are answered FAILED
//! "overloaded" at once, never dropped: at the callback on the async and FC
//! routes, in the reply on the sync route. The answer is journaled, so a
//! redelivery gets the same one rather than a run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::sink::CallbackSink;
use stackhook::{Response, Router, Status};
use tokio::sync::Semaphore;

use common::{TestServer, WAIT, exactly, post_json, post_with};

/// Creates wait for a permit the test hands out; counts its runs.
#[derive(Clone)]
struct Held {
    go: Arc<Semaphore>,
    runs: Arc<AtomicUsize>,
}

impl Held {
    fn new() -> Self {
        Held {
            go: Arc::new(Semaphore::new(0)),
            runs: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Handler for Held {
    type Properties = Map<String, Value>;
    type Error = std::io::Error;

    async fn create(&self, _: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let permit = self.go.acquire().await.map_err(std::io::Error::other)?;
        permit.forget();
        Ok(Created::with_id("held"))
    }
    async fn update(&self, _: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
        Ok(Updated::new())
    }
    async fn delete(&self, _: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
        Ok(Deleted::new())
    }
}

fn request(sink: &CallbackSink, id: &str) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": id,
        "ResponseURL": sink.url("/cb"),
        "ResourceType": "Custom::Held",
        "LogicalResourceId": format!("Res-{id}"),
        "StackId": "stack-backpressure",
        "ResourceProperties": {},
    })
}

async fn metric(server: &TestServer, name: &str) -> Option<f64> {
    let text = reqwest::get(server.url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// One request running (holding the only slot) and one queued.
async fn full_server(held: &Held, sink: &CallbackSink) -> TestServer {
    let config = common::test_config().max_concurrency(1).max_queue(1);
    let server = TestServer::start(Router::new().route("Custom::Held", held.clone()), config).await;
    assert_eq!(
        post_json(&server.url("/"), &request(sink, "running"))
            .await
            .status,
        200
    );
    assert_eq!(
        post_json(&server.url("/"), &request(sink, "queued"))
            .await
            .status,
        200
    );
    // Wait until the second request is really waiting for the slot.
    let mut queued = false;
    for _ in 0..500 {
        if metric(&server, "stackhook_queue_depth").await == Some(1.0) {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(queued, "the second request never queued");
    assert_eq!(held.runs.load(Ordering::SeqCst), 1);
    server
}

fn overloaded(answer: &Response, id: &str) {
    assert_eq!(answer.request_id, id);
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(
        reason.contains("overloaded") && reason.contains("--max-queue"),
        "{reason}"
    );
}

#[tokio::test]
async fn over_the_limit_requests_queue_then_overflow_is_answered_failed_at_the_callback() {
    let held = Held::new();
    let sink = CallbackSink::start().await.expect("sink");
    let server = full_server(&held, &sink).await;

    // Its body was read: it is answered, at its callback, and acknowledged.
    let reply = post_json(&server.url("/"), &request(&sink, "overflow")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["status"], "FAILED");
    let first = exactly(&sink, 1).await;
    overloaded(&first[0].response().expect("answer"), "overflow");

    // ROS's retry of the same request gets the same answer, not a run.
    let again = post_json(&server.url("/"), &request(&sink, "overflow")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["duplicate"], true);
    let calls = exactly(&sink, 2).await;
    overloaded(&calls[1].response().expect("answer"), "overflow");

    // The running and the queued requests are answered in turn.
    held.go.add_permits(2);
    let all = sink.wait_for(4, WAIT).await;
    let answers: Vec<Response> = all.iter().filter_map(|r| r.response()).collect();
    let status_of = |id: &str| {
        answers
            .iter()
            .find(|a| a.request_id == id)
            .map(|a| a.status)
    };
    assert_eq!(status_of("running"), Some(Status::Success));
    assert_eq!(status_of("queued"), Some(Status::Success));
    assert_eq!(answers.len(), 4);
    assert_eq!(
        held.runs.load(Ordering::SeqCst),
        2,
        "the overflow never ran, even once the queue had room"
    );
    server.stop().await;
}

#[tokio::test]
async fn sync_overflow_is_answered_failed_in_the_reply_and_stays_answered() {
    let held = Held::new();
    let sink = CallbackSink::start().await.expect("sink");
    let server = full_server(&held, &sink).await;

    let reply = post_json(&server.url("/sync"), &request(&sink, "sync-overflow")).await;
    assert_eq!(reply.status, 200);
    overloaded(&reply.answer(), "sync-overflow");

    // With room again, a redelivery still gets the recorded answer.
    held.go.add_permits(2);
    exactly(&sink, 2).await;
    let again = post_json(&server.url("/sync"), &request(&sink, "sync-overflow")).await;
    overloaded(&again.answer(), "sync-overflow");
    assert_eq!(held.runs.load(Ordering::SeqCst), 2);
    // Sync answers go in the reply only.
    let calls = exactly(&sink, 2).await;
    assert!(
        calls
            .iter()
            .all(|c| c.response().expect("answer").request_id != "sync-overflow")
    );
    server.stop().await;
}

#[tokio::test]
async fn fc_overflow_is_delivered_before_the_reply() {
    let held = Held::new();
    let sink = CallbackSink::start().await.expect("sink");
    let server = full_server(&held, &sink).await;

    let reply = post_with(
        &server.url("/invoke"),
        "application/octet-stream",
        &[("x-fc-request-id", "fc-overflow")],
        request(&sink, "fc-overflow").to_string(),
    )
    .await;
    // Delivered: FC gets 200 with the answer, so it does not retry it.
    assert_eq!(reply.status, 200);
    overloaded(&reply.answer(), "fc-overflow");
    let calls = exactly(&sink, 1).await;
    overloaded(&calls[0].response().expect("answer"), "fc-overflow");

    held.go.add_permits(2);
    exactly(&sink, 3).await;
    server.stop().await;
}

#[tokio::test]
async fn an_overflow_whose_answer_cannot_be_delivered_is_reported_to_fc() {
    let held = Held::new();
    let sink = CallbackSink::start().await.expect("sink");
    let server = full_server(&held, &sink).await;
    // The callback refuses (403 is final): FC must hear it was not delivered.
    sink.script([403]);
    let reply = post_with(
        &server.url("/invoke"),
        "application/octet-stream",
        &[],
        request(&sink, "fc-refused").to_string(),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-fc-status"), Some("404"));
    let message = reply.json()["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("not delivered"), "{message}");
    held.go.add_permits(2);
    server.stop().await;
}
