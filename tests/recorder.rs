//! `stackhook::server::Recorder`, the async intake for transports other
//! than HTTP, through `serve_with`: what each kind of body becomes, and the
//! extra route and metrics beside the receiver's own.

mod common;

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use stackhook::server::{Extras, RecordOutcome, Recorder, serve_with};
use stackhook::sink::CallbackSink;
use tokio::sync::oneshot;

use common::{answer_of, builtin_router, fixture_for, test_config};

const WITHIN: Duration = Duration::from_secs(10);

/// A server with an intake that hands its recorder to the test, and an
/// extra route that records its body.
async fn start() -> (Recorder, String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (give, take) = oneshot::channel();
    let extras = Extras::new()
        .intake("test", move |recorder, stop| async move {
            let _ = give.send(recorder);
            stop.await;
        })
        .route("/records", |request, recorder| async move {
            let outcome = recorder.record(request.into_body()).await;
            http::Response::new(Bytes::from(format!("{outcome:?}")))
        });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_with(
        listener,
        builtin_router(),
        test_config(),
        extras,
        async move {
            let _ = stopped.await;
        },
    ));
    let recorder = tokio::time::timeout(WITHIN, take)
        .await
        .expect("the intake starts")
        .expect("a recorder");
    (recorder, format!("http://{addr}"), stop)
}

fn bytes(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_is_recorded_once_and_answered_once() {
    let (recorder, _, _stop) = start().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("echo-create.json", &sink);
    assert_eq!(recorder.record(bytes(&body)).await, RecordOutcome::Recorded);
    let calls = sink.wait_for(1, WITHIN).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(answer_of(&calls[0]).status.as_str(), "SUCCESS");
    // The same request again: the journal knows it.
    let again = recorder.record(bytes(&body)).await;
    assert_eq!(again, RecordOutcome::Duplicate);
    assert!(again.is_handled());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_are_answered_or_refused_as_on_post() {
    let (recorder, _, _stop) = start().await;
    let sink = CallbackSink::start().await.expect("sink");

    // Malformed, but it names its callback: answered FAILED there.
    let mut broken = fixture_for("echo-create.json", &sink);
    broken["RequestType"] = Value::String("Explode".into());
    let outcome = recorder.record(bytes(&broken)).await;
    assert!(
        matches!(&outcome, RecordOutcome::Answered { .. }),
        "{outcome:?}"
    );
    assert!(outcome.is_handled());
    let calls = sink.wait_for(1, WITHIN).await;
    assert_eq!(answer_of(&calls[0]).status.as_str(), "FAILED");

    // Not a request at all: nothing to answer.
    let outcome = recorder.record(Bytes::from_static(b"not json")).await;
    assert!(
        matches!(outcome, RecordOutcome::Refused { .. }),
        "{outcome:?}"
    );
    assert!(!outcome.is_handled());

    // No callback URL.
    let mut no_callback = fixture_for("echo-create.json", &sink);
    let map = no_callback.as_object_mut().expect("object");
    map.remove("ResponseURL");
    map.remove("IntranetResponseURL");
    let outcome = recorder.record(bytes(&no_callback)).await;
    assert!(
        matches!(outcome, RecordOutcome::Refused { .. }),
        "{outcome:?}"
    );

    // Every callback refused by the guard: refused, never run.
    let mut refused = fixture_for("echo-create.json", &sink);
    refused["ResponseURL"] = Value::String("http://169.254.169.254/cb".into());
    refused
        .as_object_mut()
        .expect("object")
        .remove("IntranetResponseURL");
    let outcome = recorder.record(bytes(&refused)).await;
    match &outcome {
        RecordOutcome::Refused { reason } => assert!(reason.contains("callback"), "{reason}"),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.received().len(), 1, "only the FAILED answer arrived");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_extra_route_records_and_the_receiver_keeps_its_own() {
    let (_recorder, url, stop) = start().await;
    let sink = CallbackSink::start().await.expect("sink");
    let client = reqwest::Client::new();
    let reply = client
        .post(format!("{url}/records"))
        .body(fixture_for("echo-create.json", &sink).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(reply.text().await.expect("body"), "Recorded");
    assert_eq!(sink.wait_for(1, WITHIN).await.len(), 1);
    let health = client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let unknown = client
        .get(format!("{url}/elsewhere"))
        .send()
        .await
        .expect("get");
    assert_eq!(unknown.status().as_u16(), 404);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorder_refuses_work_once_shutdown_began() {
    let (recorder, _, stop) = start().await;
    let sink = CallbackSink::start().await.expect("sink");
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = recorder
        .record(bytes(&fixture_for("echo-create.json", &sink)))
        .await;
    assert!(
        matches!(outcome, RecordOutcome::Unavailable { .. }),
        "{outcome:?}"
    );
}
