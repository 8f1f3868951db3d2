//! Bodies that are not valid requests: a 4xx with a JSON body saying what is
//! wrong, plus a FAILED answer at the callback whenever the body still names
//! one and the identifiers, so the stack does not hang until its timeout.

mod common;

use serde_json::json;
use stackhook::sink::CallbackSink;
use stackhook::{Router, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;

/// Each invalid fixture on the async route: what the 400 says, and whether a
/// FAILED answer can still reach ROS (a callback URL, RequestId,
/// LogicalResourceId and StackId are all there).
const INVALID: &[(&str, &str, bool)] = &[
    ("empty-request-id.json", "`RequestId` is empty", false),
    (
        "missing-callback.json",
        "no ResponseURL or IntranetResponseURL",
        false,
    ),
    (
        "missing-request-type.json",
        "missing field `RequestType`",
        true,
    ),
    ("missing-stack-id.json", "missing field `StackId`", false),
    ("not-an-object.json", "an array, not a JSON object", false),
    ("not-json.json", "not valid JSON", false),
    (
        "unknown-request-type.json",
        "unknown variant `Replace`",
        true,
    ),
    ("wrong-type-properties.json", "`ResourceProperties`", true),
    ("wrong-type-request-id.json", "`RequestId`", true),
];

/// A fixture's bytes with its callback URLs pointed at `sink`, when it is a
/// JSON object at all.
fn invalid_body(file: &str, sink: &CallbackSink) -> Vec<u8> {
    let raw = fixture_bytes(&format!("invalid/{file}"));
    match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(mut value) if value.is_object() => {
            if value.get("ResponseURL").is_some() {
                stackhook_testing::invoke::redirect_callbacks(&mut value, sink);
            }
            value.to_string().into_bytes()
        }
        _ => raw,
    }
}

#[tokio::test]
async fn not_json_gets_400_with_a_json_body() {
    let server = TestServer::builtin().await;
    let reply = post_with(
        &server.url("/"),
        "application/json",
        &[],
        "{\"RequestType\": ",
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(
        reply.error().contains("not valid JSON"),
        "{}",
        reply.error()
    );
    server.stop().await;
}

#[tokio::test]
async fn every_invalid_fixture_gets_400_and_failed_where_answerable() {
    let server = TestServer::builtin().await;
    for (file, expected, answerable) in INVALID {
        let sink = CallbackSink::start().await.expect("sink");
        let body = invalid_body(file, &sink);
        let reply = post_with(&server.url("/"), "application/json", &[], body.clone()).await;
        assert_eq!(reply.status, 400, "{file}");
        let error = reply.error();
        assert!(
            error.contains(expected),
            "{file}: `{expected}` not in: {error}"
        );
        if *answerable {
            let calls = exactly(&sink, 1).await;
            let answer = answer_of(&calls[0]);
            assert_eq!(answer.status, Status::Failed, "{file}");
            let reason = answer.reason.as_deref().unwrap_or_default();
            assert!(
                reason.starts_with("the provider could not read the request")
                    && reason.contains(expected),
                "{file}: {reason}"
            );
            let sent: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(
                answer.logical_resource_id, sent["LogicalResourceId"],
                "{file}"
            );
            assert_eq!(answer.stack_id, sent["StackId"], "{file}");
            assert!(
                reply.json()["callback"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("delivered"))
            );
        } else {
            let calls = sink.wait_for(1, QUIET).await;
            assert!(calls.is_empty(), "{file}: unexpected callback {calls:#?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_body_with_callback_gets_400_and_one_failed_callback() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("invalid/unknown-request-type.json", &sink);
    let reply = post_json(&server.url("/"), &body).await;
    assert_eq!(reply.status, 400);
    let calls = exactly(&sink, 1).await;
    let answer = answer_of(&calls[0]);
    assert_eq!(answer.status, Status::Failed);
    assert_identifiers_copied(&answer, &body);
    // A Create that never ran has no resource: the marker id, so the Delete
    // that may follow is a no-op.
    assert!(
        answer
            .physical_resource_id
            .starts_with("stackhook-create-failed-"),
        "{}",
        answer.physical_resource_id
    );
    assert_eq!(calls[0].method, "POST");
    assert_eq!(
        calls[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_delete_keeps_its_physical_id() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-delete.json", &sink);
    body["ResourceProperties"] = json!(["not", "a", "map"]);
    let reply = post_json(&server.url("/"), &body).await;
    assert_eq!(reply.status, 400);
    let answer = answer_of(&exactly(&sink, 1).await[0]);
    assert_eq!(answer.status, Status::Failed);
    assert_eq!(answer.physical_resource_id, body["PhysicalResourceId"]);
    server.stop().await;
}

#[tokio::test]
async fn missing_fields_get_400_naming_them() {
    let server = TestServer::builtin().await;
    let reply = post_json(&server.url("/"), &json!({"RequestType": "Create"})).await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("missing field"), "{}", reply.error());
    server.stop().await;
}

#[tokio::test]
async fn body_over_the_limit_gets_413() {
    let server = TestServer::start(builtin_router(), test_config().body_limit(4096)).await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-create.json", &sink);
    body["ResourceProperties"] = json!({"Blob": "x".repeat(8192)});
    for path in ["/", "/sync"] {
        let reply = post_json(&server.url(path), &body).await;
        assert_eq!(reply.status, 413, "{path}");
        assert!(
            reply.error().contains("limit of 4096 bytes"),
            "{path}: {}",
            reply.error()
        );
    }
    // Function Compute reads failures as 404 with `x-fc-status: 404`.
    let reply = post_with(
        &server.url("/invoke"),
        "application/octet-stream",
        &[],
        body.to_string(),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-fc-status"), Some("404"));
    let message = reply.json()["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("limit of 4096 bytes"), "{message}");
    assert!(sink.wait_for(1, QUIET).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_gets_413() {
    // No Content-Length: the limit is enforced while reading.
    let server = TestServer::start(builtin_router(), test_config().body_limit(1024)).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let chunk = "x".repeat(2048);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        server.addr,
        chunk.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("reply within the wait")
        .expect("read reply");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    server.stop().await;
}

#[tokio::test]
async fn unknown_resource_type_is_failed_naming_the_registered_types() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-create.json", &sink);
    body["ResourceType"] = json!("Custom::Database");
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(
        reason.contains("Custom::Database")
            && reason.contains("Custom::Echo")
            && reason.contains("Custom::RandomString"),
        "{reason}"
    );
    assert_identifiers_copied(&answer, &body);
    server.stop().await;
}

#[tokio::test]
async fn empty_router_says_it_has_no_handlers() {
    let server = TestServer::start(Router::new(), test_config()).await;
    let sink = CallbackSink::start().await.expect("sink");
    let answer = run_async(&server, &sink, &fixture_for("echo-create.json", &sink)).await;
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(reason.contains("no handlers registered"), "{reason}");
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let server = TestServer::builtin().await;
    let client = reqwest::Client::new();
    let missing = client
        .post(server.url("/callback"))
        .body("{}")
        .send()
        .await
        .expect("reply");
    assert_eq!(missing.status(), 404);
    let text = missing.text().await.expect("body");
    assert!(text.contains("POST /"), "{text}");
    let wrong = client.get(server.url("/")).send().await.expect("reply");
    assert_eq!(wrong.status(), 405);
    server.stop().await;
}

#[tokio::test]
async fn unusable_callback_url_fails_fast_instead_of_retrying() {
    // A URL that cannot even be sent to can never take the answer: the
    // invocation fails at once rather than retrying until the deadline.
    let server = TestServer::start(
        builtin_router(),
        test_config().callback_endpoint(stackhook::config::CallbackEndpoint::Public),
    )
    .await;
    let mut body = fixture("echo-create.json");
    body["ResponseURL"] = json!("not a url");
    let reply = post_with(
        &server.url("/invoke"),
        "application/octet-stream",
        &[("x-fc-request-id", "fc-bad-url")],
        body.to_string(),
    )
    .await;
    assert_eq!(reply.status, 404);
    let message = reply.json()["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("public URL"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn blank_callback_urls_are_no_callback() {
    let server = TestServer::builtin().await;
    let mut body = fixture("echo-create.json");
    body["ResponseURL"] = json!("");
    body["IntranetResponseURL"] = json!("  ");
    let reply = post_json(&server.url("/"), &body).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .error()
            .contains("no ResponseURL or IntranetResponseURL"),
        "{}",
        reply.error()
    );
    server.stop().await;
}
