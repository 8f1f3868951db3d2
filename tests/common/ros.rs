//! The ROS side of a test against a running provider: the request ROS sends,
//! and the answers that reach the callback sink standing in for it.

use std::time::Duration;

use serde_json::{Value, json};
use stackhook::Response;
use stackhook::sink::{CallbackSink, Received};

/// How long [`one_answer`] keeps listening after the first answer, so that
/// a second answer to the same request is seen.
const LINGER: Duration = Duration::from_millis(700);

/// A Create of `resource_type` as ROS sends it, with both callback URLs at
/// `sink` (`/callback` and `/intranet`).
pub(crate) fn create(
    sink: &CallbackSink,
    resource_type: &str,
    request_id: &str,
    properties: Value,
) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": request_id,
        "ResponseURL": sink.url("/callback"),
        "IntranetResponseURL": sink.url("/intranet"),
        "ResourceType": resource_type,
        "LogicalResourceId": "Res",
        "StackId": "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff",
        // The test file's name, so that a log line says which test sent it.
        "StackName": env!("CARGO_CRATE_NAME"),
        "ResourceOwnerId": "123456789",
        "CallerId": "123456789",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": properties,
    })
}

/// The answers among the callbacks the sink accepted (2xx): a refused
/// delivery is one the provider retries, not an answer.
pub(crate) fn answers(received: &[Received]) -> Vec<Response> {
    received
        .iter()
        .filter(|r| r.answered < 300)
        .filter_map(Received::response)
        .collect()
}

/// The one answer that has reached the sink so far; panics unless there is
/// exactly one.
pub(crate) fn the_answer(sink: &CallbackSink) -> Response {
    let mut got = answers(&sink.received());
    assert_eq!(got.len(), 1, "exactly one answer must arrive: {got:?}");
    got.remove(0)
}

/// Wait until an accepted answer reaches the sink; panics if none does
/// within `within`.
pub(crate) async fn an_answer_arrives(sink: &CallbackSink, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while answers(&sink.received()).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer within {within:?}"
        );
        sink.wait_for(sink.received().len() + 1, Duration::from_millis(200))
            .await;
    }
}

/// Wait for the first answer, then [`the_answer`]: exactly one has arrived
/// by then.
pub(crate) async fn first_answer(sink: &CallbackSink, within: Duration) -> Response {
    an_answer_arrives(sink, within).await;
    the_answer(sink)
}

/// Wait for the first answer, then a little longer to catch a duplicate:
/// exactly one arrives.
pub(crate) async fn one_answer(sink: &CallbackSink, within: Duration) -> Response {
    an_answer_arrives(sink, within).await;
    tokio::time::sleep(LINGER).await;
    the_answer(sink)
}
