//! `POST /` (a `web:` ServiceToken): an immediate 200, then exactly one
//! answer at the callback URL, sent the way Alibaba's samples send it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use stackhook::config::{CallbackEndpoint, CallbackMethod};
use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::sink::CallbackSink;
use stackhook::{Router, Status};
use tokio::sync::Semaphore;

use common::*;

/// Finishes only when the test lets it through.
struct Gate(Arc<Semaphore>);

impl Gate {
    async fn pass(&self) {
        self.0.acquire().await.expect("gate open").forget();
    }
}

impl Handler for Gate {
    type Properties = Map<String, Value>;
    type Error = std::io::Error;

    async fn create(&self, _: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
        self.pass().await;
        Ok(Created::with_id("gate-1").with_data("Passed", true))
    }
    async fn update(&self, _: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
        self.pass().await;
        Ok(Updated::new())
    }
    async fn delete(&self, _: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
        self.pass().await;
        Ok(Deleted::new())
    }
}

/// Panics in every operation.
struct Panicky;

impl Handler for Panicky {
    type Properties = Map<String, Value>;
    type Error = std::io::Error;

    async fn create(&self, _: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
        panic!("the create handler fell over")
    }
    async fn update(&self, _: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
        panic!("the update handler fell over")
    }
    async fn delete(&self, _: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
        panic!("the delete handler fell over")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not create the bucket")]
struct BucketError(#[source] std::io::Error);

/// Returns an error with a source in every operation.
struct Failing;

impl Failing {
    fn error() -> BucketError {
        BucketError(std::io::Error::other("quota exceeded"))
    }
}

impl Handler for Failing {
    type Properties = Map<String, Value>;
    type Error = BucketError;

    async fn create(&self, _: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
        Err(Failing::error())
    }
    async fn update(&self, _: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
        Err(Failing::error())
    }
    async fn delete(&self, _: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
        Err(Failing::error())
    }
}

/// A fixture re-typed to `resource_type`, its callbacks at `sink`.
fn as_type(file: &str, resource_type: &str, sink: &CallbackSink) -> Value {
    let mut body = fixture_for(file, sink);
    body["ResourceType"] = json!(resource_type);
    body
}

#[tokio::test]
async fn acknowledges_at_once_then_answers_exactly_once() {
    let gate = Arc::new(Semaphore::new(0));
    let router = Router::new().route("Custom::Gate", Gate(Arc::clone(&gate)));
    let server = TestServer::start(router, test_config()).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = as_type("echo-create.json", "Custom::Gate", &sink);

    // The handler cannot finish before the gate opens, so this 200 is the ack.
    let ack = post_json(&server.url("/"), &body).await;
    assert_eq!(ack.status, 200);
    assert_eq!(ack.header("content-type"), Some("application/json"));
    assert_eq!(ack.json()["accepted"], true);
    assert_eq!(ack.json()["requestId"], body["RequestId"]);
    assert!(
        sink.received().is_empty(),
        "answered before the handler ran"
    );

    gate.add_permits(1);
    let calls = exactly(&sink, 1).await;
    let answer = answer_of(&calls[0]);
    assert_eq!(answer.status, Status::Success);
    assert_eq!(answer.physical_resource_id, "gate-1");
    assert_eq!(answer.data.as_ref().expect("data")["Passed"], true);
    assert_identifiers_copied(&answer, &body);
    server.stop().await;
}

#[tokio::test]
async fn callback_is_a_post_with_the_documented_headers() {
    let server = TestServer::start(
        builtin_router(),
        test_config().callback_endpoint(CallbackEndpoint::Public),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("echo-create.json", &sink);
    post_json(&server.url("/"), &body).await;
    let calls = exactly(&sink, 1).await;
    let call = &calls[0];

    assert_eq!(call.method, "POST");
    assert_eq!(path_of(call), "/public");
    // The presigned query string arrives untouched.
    assert_eq!(
        call.uri,
        body["ResponseURL"]
            .as_str()
            .expect("url")
            .split_once(&sink.addr().to_string())
            .expect("sink url")
            .1
    );
    let header = |name: &str| {
        call.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_string()
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("accept"), "application/json");
    let date = header("date");
    assert!(date.ends_with(" GMT"), "{date}");
    let sent = httpdate::parse_http_date(&date).expect("an RFC 7231 date");
    let skew = std::time::SystemTime::now()
        .duration_since(sent)
        .unwrap_or_default();
    assert!(skew < Duration::from_secs(300), "Date is {date}");
    assert!(header("user-agent").starts_with("stackhook/"));
    assert_eq!(header("content-length"), call.body.len().to_string());

    let raw: Value = serde_json::from_slice(&call.body).expect("JSON body");
    assert_eq!(raw["Status"], "SUCCESS");
    for field in ["RequestId", "LogicalResourceId", "StackId"] {
        assert_eq!(raw[field], body[field], "{field}");
    }
    assert_eq!(raw["Data"], body["ResourceProperties"]);
    server.stop().await;
}

#[tokio::test]
async fn callback_is_a_put_when_configured() {
    let config = test_config().callback_method(CallbackMethod::Put);
    let server = TestServer::start(builtin_router(), config).await;
    let sink = CallbackSink::start().await.expect("sink");
    post_json(&server.url("/"), &fixture_for("echo-create.json", &sink)).await;
    let calls = exactly(&sink, 1).await;
    assert_eq!(calls[0].method, "PUT");
    assert_eq!(answer_of(&calls[0]).status, Status::Success);
    server.stop().await;
}

#[tokio::test]
async fn update_and_delete_echo_the_request_ids_exactly() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    for file in ["echo-update.json", "echo-delete.json"] {
        let body = fixture_for(file, &sink);
        let answer = run_async(&server, &sink, &body).await;
        assert_eq!(answer.status, Status::Success, "{file}: {answer:?}");
        assert_identifiers_copied(&answer, &body);
        assert_eq!(
            answer.physical_resource_id, body["PhysicalResourceId"],
            "{file}"
        );
    }
    server.stop().await;
}

/// Where the answer goes for each endpoint policy.
async fn delivered_to(endpoint: CallbackEndpoint, intranet: Option<&str>) -> Vec<String> {
    let server =
        TestServer::start(builtin_router(), test_config().callback_endpoint(endpoint)).await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-create.json", &sink);
    if let Some(url) = intranet {
        body["IntranetResponseURL"] = json!(url);
    }
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Success);
    server.stop().await;
    sink.received()
        .iter()
        .map(|c| path_of(c).to_string())
        .collect()
}

#[tokio::test]
async fn public_policy_answers_at_the_response_url() {
    assert_eq!(
        delivered_to(CallbackEndpoint::Public, None).await,
        ["/public"]
    );
}

#[tokio::test]
async fn intranet_policy_answers_at_the_intranet_url() {
    assert_eq!(
        delivered_to(CallbackEndpoint::Intranet, None).await,
        ["/intranet"]
    );
}

#[tokio::test]
async fn auto_policy_prefers_the_intranet_url() {
    assert_eq!(
        delivered_to(CallbackEndpoint::Auto, None).await,
        ["/intranet"]
    );
}

#[tokio::test]
async fn auto_policy_falls_back_to_public_when_intranet_is_unreachable() {
    // Nothing listens on port 1: the connect is refused at once.
    assert_eq!(
        delivered_to(
            CallbackEndpoint::Auto,
            Some("http://127.0.0.1:1/cb?Signature=x")
        )
        .await,
        ["/public"]
    );
}

#[tokio::test]
async fn a_policy_falls_back_to_the_other_url_when_its_own_is_missing() {
    for (policy, keep, expected) in [
        (CallbackEndpoint::Intranet, "ResponseURL", "/public"),
        (CallbackEndpoint::Public, "IntranetResponseURL", "/intranet"),
    ] {
        let server =
            TestServer::start(builtin_router(), test_config().callback_endpoint(policy)).await;
        let sink = CallbackSink::start().await.expect("sink");
        let mut body = fixture_for("echo-create.json", &sink);
        let url = body[keep].clone();
        body.as_object_mut().expect("object").remove("ResponseURL");
        body.as_object_mut()
            .expect("object")
            .remove("IntranetResponseURL");
        body[keep] = url;
        let answer = run_async(&server, &sink, &body).await;
        assert_eq!(answer.status, Status::Success, "{policy:?}");
        assert_eq!(path_of(&sink.received()[0]), expected, "{policy:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn intranet_alias_inner_response_url_is_used() {
    let server = TestServer::start(
        builtin_router(),
        test_config().callback_endpoint(CallbackEndpoint::Intranet),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("inner-response-url.json", &sink);
    assert!(body.get("InnerResponseURL").is_some());
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Success);
    assert_eq!(path_of(&sink.received()[0]), "/intranet");
    server.stop().await;
}

#[tokio::test]
async fn callback_answering_500_then_200_is_retried() {
    let server = TestServer::start(
        builtin_router(),
        test_config().callback_endpoint(CallbackEndpoint::Public),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    sink.script([500, 429]);
    post_json(&server.url("/"), &fixture_for("echo-create.json", &sink)).await;
    let calls = exactly(&sink, 3).await;
    let statuses: Vec<u16> = calls.iter().map(|c| c.answered).collect();
    assert_eq!(statuses, [500, 429, 200]);
    // Every try carries the same answer.
    assert!(calls.iter().all(|c| c.body == calls[0].body));
    assert_eq!(answer_of(&calls[2]).status, Status::Success);
    server.stop().await;
}

#[tokio::test]
async fn callback_answering_403_is_not_retried() {
    let server = TestServer::start(
        builtin_router(),
        test_config().callback_endpoint(CallbackEndpoint::Public),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    sink.script([403]);
    post_json(&server.url("/"), &fixture_for("echo-create.json", &sink)).await;
    sink.wait_for(1, WAIT).await;
    // A retry would come after at most the first backoff step (250 ms).
    let calls = sink.wait_for(2, Duration::from_millis(800)).await;
    assert_eq!(calls.len(), 1, "a 403 was retried: {calls:#?}");
    assert_eq!(calls[0].answered, 403);
    server.stop().await;
}

#[tokio::test]
async fn panicking_handler_answers_failed() {
    let server = TestServer::start(
        Router::new().route("Custom::Panicky", Panicky),
        test_config(),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    let create = as_type("echo-create.json", "Custom::Panicky", &sink);
    let answer = run_async(&server, &sink, &create).await;
    assert_eq!(answer.status, Status::Failed);
    assert_eq!(
        answer.reason.as_deref(),
        Some("handler panicked: the create handler fell over")
    );
    assert!(
        answer
            .physical_resource_id
            .starts_with("stackhook-create-failed-")
    );
    assert_identifiers_copied(&answer, &create);

    let update = as_type("echo-update.json", "Custom::Panicky", &sink);
    let answer = run_async(&server, &sink, &update).await;
    assert_eq!(answer.status, Status::Failed);
    assert_eq!(answer.physical_resource_id, update["PhysicalResourceId"]);
    // The server is still up and answering.
    let health = reqwest::get(server.url("/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn erroring_handler_answers_failed_with_the_error_chain() {
    let server = TestServer::start(
        Router::new().route("Custom::Failing", Failing),
        test_config(),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    for file in ["echo-create.json", "echo-update.json", "echo-delete.json"] {
        let body = as_type(file, "Custom::Failing", &sink);
        let answer = run_async(&server, &sink, &body).await;
        assert_eq!(answer.status, Status::Failed, "{file}");
        assert_eq!(
            answer.reason.as_deref(),
            Some("could not create the bucket: quota exceeded"),
            "{file}"
        );
        assert_identifiers_copied(&answer, &body);
    }
    server.stop().await;
}

#[tokio::test]
async fn handler_past_its_deadline_answers_failed() {
    // 2 s in all; 1 s of it is kept back for delivery.
    let config = test_config().type_timeout("Custom::Sleepy", Duration::from_secs(2));
    let server = TestServer::start(Router::new().route("Custom::Sleepy", Sleepy), config).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = as_type("echo-create.json", "Custom::Sleepy", &sink);
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.expect("reason");
    assert!(reason.starts_with("timed out after 1 s: "), "{reason}");
    assert!(
        reason.contains("Custom::Sleepy's timeout (2 s)")
            && reason.contains("--type-timeout Custom::Sleepy=SECONDS"),
        "{reason}"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_callback_body_fits_in_4096_bytes() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-create.json", &sink);
    body["ResourceProperties"] = json!({"Blob": "x".repeat(10_000), "Greeting": "hi"});
    let answer = run_async(&server, &sink, &body).await;
    let call = &sink.received()[0];
    assert!(call.body.len() <= 4096, "{} bytes", call.body.len());
    assert_eq!(answer.status, Status::Failed);
    assert!(answer.data.is_none());
    let reason = answer.reason.as_deref().expect("reason");
    assert!(reason.contains("4096"), "{reason}");
    assert_identifiers_copied(&answer, &body);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_answers_requests_still_running_failed() {
    let gate = Arc::new(Semaphore::new(0));
    let router = Router::new().route("Custom::Gate", Gate(Arc::clone(&gate)));
    let config = test_config().shutdown_grace(Duration::from_millis(300));
    let server = TestServer::start(router, config).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = as_type("echo-create.json", "Custom::Gate", &sink);
    assert_eq!(post_json(&server.url("/"), &body).await.status, 200);
    // The gate never opens: the grace period runs out, and the answer is
    // FAILED before `serve` returns.
    server.stop().await;
    let calls = sink.received();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let answer = answer_of(&calls[0]);
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(reason.contains("shut down"), "{reason}");
    assert_identifiers_copied(&answer, &body);
}

#[tokio::test]
async fn shutdown_lets_running_requests_finish_within_the_grace_period() {
    let gate = Arc::new(Semaphore::new(0));
    let router = Router::new().route("Custom::Gate", Gate(Arc::clone(&gate)));
    let server = TestServer::start(
        router,
        test_config().shutdown_grace(Duration::from_secs(30)),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = as_type("echo-create.json", "Custom::Gate", &sink);
    assert_eq!(post_json(&server.url("/"), &body).await.status, 200);
    let stopping = tokio::spawn(server.stop());
    gate.add_permits(1);
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("stops once the request is done")
        .expect("stop did not panic");
    let calls = sink.received();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(answer_of(&calls[0]).status, Status::Success);
}

#[tokio::test]
async fn concurrent_requests_each_get_exactly_one_answer() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let bodies: Vec<Value> = (0..24)
        .map(|i| {
            let mut body = fixture_for("echo-create.json", &sink);
            body["RequestId"] = json!(format!("concurrent-{i:02}"));
            body["ResourceProperties"] = json!({"Index": i});
            body
        })
        .collect();
    let url = server.url("/");
    let acks = futures_util::future::join_all(bodies.iter().map(|b| post_json(&url, b))).await;
    assert!(acks.iter().all(|a| a.status == 200));
    let calls = exactly(&sink, bodies.len()).await;
    let mut seen: Vec<(String, Value)> = calls
        .iter()
        .map(answer_of)
        .map(|a| {
            assert_eq!(a.status, Status::Success);
            (a.request_id.clone(), a.data.expect("data")["Index"].clone())
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<(String, Value)> = (0..24)
        .map(|i| (format!("concurrent-{i:02}"), json!(i)))
        .collect();
    assert_eq!(seen, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_huge_error_message_is_cut_to_fit_4096_bytes() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-create.json", &sink);
    let message = format!("START {} END", "overflow ".repeat(2_000));
    body["ResourceProperties"] = json!({"FailWith": message});
    let answer = run_async(&server, &sink, &body).await;
    let call = &sink.received()[0];
    assert!(call.body.len() <= 4096, "{} bytes", call.body.len());
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(
        reason.starts_with("START") && reason.ends_with("END"),
        "{reason}"
    );
    assert!(reason.contains("bytes cut"), "{reason}");
    server.stop().await;
}
