//! The Function Compute custom-runtime contract: `POST /invoke` with the ROS
//! request as an octet-stream event, the answer delivered to the callback
//! before the reply, and FC's hooks. The `FC Invoke Start/End` stdout lines
//! are checked against the real binary in tests/cli.rs.

mod common;

use serde_json::{Value, json};
use stackhook::config::CallbackEndpoint;
use stackhook::sink::CallbackSink;
use stackhook::{Router, Status};

use common::*;

const OCTET: &str = "application/octet-stream";

async fn invoke(server: &TestServer, fc_id: &str, event: Vec<u8>) -> Reply {
    post_with(
        &server.url("/invoke"),
        OCTET,
        &[("x-fc-request-id", fc_id), ("x-fc-control-path", "/invoke")],
        event,
    )
    .await
}

fn event(body: &Value) -> Vec<u8> {
    body.to_string().into_bytes()
}

#[tokio::test]
async fn invoke_delivers_the_answer_before_replying() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("echo-create.json", &sink);
    let reply = invoke(&server, "fc-req-create", event(&body)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-fc-status"), None);
    // FC may freeze the instance once it replies: the answer is already out.
    let delivered = sink.received();
    assert_eq!(delivered.len(), 1, "no callback before the reply");
    let answer = answer_of(&delivered[0]);
    assert_eq!(answer.status, Status::Success);
    assert_identifiers_copied(&answer, &body);
    // The reply body is the same answer, for FC's own records.
    assert_eq!(reply.answer(), answer);
    exactly(&sink, 1).await;
    server.stop().await;
}

#[tokio::test]
async fn delivered_failed_answer_is_a_successful_invocation() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("echo-create-fail.json", &sink);
    let reply = invoke(&server, "fc-req-fail", event(&body)).await;
    // A 404 would make FC retry an answer that has already reached ROS.
    assert_eq!(reply.status, 200);
    let calls = exactly(&sink, 1).await;
    let answer = answer_of(&calls[0]);
    assert_eq!(answer.status, Status::Failed);
    assert_eq!(
        answer.reason.as_deref(),
        Some("the template asked Custom::Echo to fail")
    );
    server.stop().await;
}

#[tokio::test]
async fn every_request_type_through_invoke() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    for (i, file) in ["echo-create.json", "echo-update.json", "echo-delete.json"]
        .iter()
        .enumerate()
    {
        let body = fixture_for(file, &sink);
        let reply = invoke(&server, &format!("fc-req-{i}"), event(&body)).await;
        assert_eq!(reply.status, 200, "{file}");
        let calls = exactly(&sink, i + 1).await;
        let answer = answer_of(&calls[i]);
        assert_eq!(answer.status, Status::Success, "{file}");
        assert_identifiers_copied(&answer, &body);
    }
    server.stop().await;
}

#[tokio::test]
async fn undeliverable_answer_is_a_failed_invocation() {
    let server = TestServer::start(
        builtin_router(),
        test_config().callback_endpoint(CallbackEndpoint::Public),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    sink.script([403]);
    let body = fixture_for("echo-create.json", &sink);
    let reply = invoke(&server, "fc-req-403", event(&body)).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-fc-status"), Some("404"));
    let message = reply.json()["errorMessage"]
        .as_str()
        .expect("errorMessage")
        .to_string();
    assert!(message.contains("403"), "{message}");
    assert!(!message.contains("Signature="), "the URL leaked: {message}");
    server.stop().await;
}

#[tokio::test]
async fn event_that_is_not_a_request_is_a_failed_invocation() {
    let server = TestServer::builtin().await;
    let reply = invoke(
        &server,
        "fc-req-junk",
        fixture_bytes("invalid/not-json.json"),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-fc-status"), Some("404"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let message = reply.json()["errorMessage"]
        .as_str()
        .expect("errorMessage, FC's convention")
        .to_string();
    assert!(message.contains("not valid JSON"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn malformed_event_with_identifiers_still_answers_failed() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("invalid/missing-request-type.json", &sink);
    let reply = invoke(&server, "fc-req-broken", event(&body)).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-fc-status"), Some("404"));
    let calls = exactly(&sink, 1).await;
    let answer = answer_of(&calls[0]);
    assert_eq!(answer.status, Status::Failed);
    assert!(
        answer
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("RequestType")),
        "{answer:?}"
    );
    assert_identifiers_copied(&answer, &body);
    server.stop().await;
}

#[tokio::test]
async fn fc_function_timeout_caps_the_handler() {
    let server =
        TestServer::start(Router::new().route("Custom::Sleepy", Sleepy), test_config()).await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-create.json", &sink);
    body["ResourceType"] = json!("Custom::Sleepy");
    let reply = post_with(
        &server.url("/invoke"),
        OCTET,
        &[
            ("x-fc-request-id", "fc-req-slow"),
            ("x-fc-function-timeout", "2"),
        ],
        event(&body),
    )
    .await;
    assert_eq!(reply.status, 200);
    let calls = exactly(&sink, 1).await;
    let answer = answer_of(&calls[0]);
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    // FC's 2 s, not the type's 60 s, ran out; 1 s of it kept for delivery.
    assert!(reason.starts_with("timed out after 1 s: "), "{reason}");
    assert!(
        reason.contains("the function's timeout in Function Compute (2 s)"),
        "{reason}"
    );
    server.stop().await;
}

#[tokio::test]
async fn lifecycle_hooks_answer_200() {
    let server = TestServer::builtin().await;
    let reply = post_with(
        &server.url("/initialize"),
        OCTET,
        &[("x-fc-request-id", "fc-init")],
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 200);
    let client = reqwest::Client::new();
    let pre_stop = client
        .get(server.url("/pre-stop"))
        .header("x-fc-request-id", "fc-stop")
        .send()
        .await
        .expect("pre-stop");
    assert_eq!(pre_stop.status(), 200);
    let wrong_method = client
        .get(server.url("/invoke"))
        .send()
        .await
        .expect("GET /invoke");
    assert_eq!(wrong_method.status(), 405);
    server.stop().await;
}
