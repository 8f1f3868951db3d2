//! ROS client against the API emulator: signatures checked independently.

use std::time::Duration;

use stackhook_cloud::ApiErrorKind;
use stackhook_cloud::Error;
use stackhook_cloud::acs::SignatureVersion;
use stackhook_cloud::credentials::AlibabaCredentials;
use stackhook_cloud::retry::RetryPolicy;
use stackhook_cloud::ros::{
    RosClient, SignalResourceRequest, SignalStatus, StopStackGroupOperationRequest,
    WaitConditionSignal, signal_wait_condition,
};
use stackhook_testing::api_emulator::{ApiEmulator, RecordedCall, Reply, SignatureScheme};

fn fast() -> RetryPolicy {
    RetryPolicy::new(4, Duration::from_millis(1), Duration::from_millis(5))
}

fn client(url: &str) -> RosClient {
    RosClient::new(AlibabaCredentials::new("testid", "testsecret"))
        .with_endpoint(url)
        .expect("endpoint")
        .with_retry(fast())
}

fn signal() -> SignalResourceRequest {
    SignalResourceRequest::new(
        "cn-hangzhou",
        "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff",
        "WebServer",
        "signal 1",
        SignalStatus::Success,
    )
}

async fn emulator(script: Vec<Reply>) -> ApiEmulator {
    let emulator = ApiEmulator::start().await.expect("emulator");
    for reply in script {
        emulator.answer_next(1, reply);
    }
    emulator
}

/// The only call, asserting it verified.
fn single(emulator: &ApiEmulator) -> RecordedCall {
    let call = emulator
        .only_call()
        .unwrap_or_else(|| panic!("{:#?}", emulator.calls()));
    assert!(call.signature.is_verified(), "{:?}", call.signature);
    call
}

fn api(error: Error) -> stackhook_cloud::ApiError {
    match error {
        Error::Api(api) => *api,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn signal_resource_is_signed_with_v3_and_carries_every_parameter() {
    let mock = emulator(vec![]).await;
    let answer = client(&mock.url())
        .signal_resource(&signal().with_client_token("tok-1"))
        .await
        .expect("success");
    let seen = single(&mock);
    assert_eq!(Some(answer.request_id), seen.request_id);
    assert_eq!(seen.signature.scheme(), Some(SignatureScheme::V3));
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/"));
    assert!(seen.body.is_empty());
    assert_eq!(seen.header("x-acs-action"), Some("SignalResource"));
    assert_eq!(seen.header("x-acs-version"), Some("2019-09-10"));
    for (name, value) in [
        ("RegionId", "cn-hangzhou"),
        ("StackId", "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff"),
        ("LogicalResourceId", "WebServer"),
        ("UniqueId", "signal 1"),
        ("Status", "SUCCESS"),
        ("ClientToken", "tok-1"),
    ] {
        assert_eq!(seen.param(name), Some(value), "{name}");
    }
    // RFC 3986 on the wire: a space is %20, never +.
    assert!(
        seen.raw_query.contains("UniqueId=signal%201"),
        "{}",
        seen.raw_query
    );
}

#[tokio::test]
async fn signal_resource_derives_a_client_token() {
    let mock = emulator(vec![]).await;
    client(&mock.url())
        .signal_resource(&signal())
        .await
        .expect("success");
    let token = single(&mock).param("ClientToken").map(str::to_string);
    assert_eq!(token.as_deref().map(str::len), Some(64));
    assert_eq!(token, Some(signal().effective_client_token()));
}

#[tokio::test]
async fn v2_signature_with_sts_token() {
    let mock = emulator(vec![]).await;
    let ros = RosClient::new(
        AlibabaCredentials::new("testid", "testsecret").with_security_token("sts-token"),
    )
    .with_endpoint(&mock.url())
    .expect("endpoint")
    .with_signature_version(SignatureVersion::V2);
    ros.stop_stack_group_operation(&StopStackGroupOperationRequest::new(
        "cn-hangzhou",
        "6da106ca-1784-4a6f-a7e1-e723863dffff",
    ))
    .await
    .expect("success");
    let seen = single(&mock);
    assert_eq!(seen.signature.scheme(), Some(SignatureScheme::V2));
    assert_eq!(seen.param("Action"), Some("StopStackGroupOperation"));
    assert_eq!(seen.param("SecurityToken"), Some("sts-token"));
    assert_eq!(seen.param("Format"), Some("JSON"));
    assert_eq!(
        seen.param("OperationId"),
        Some("6da106ca-1784-4a6f-a7e1-e723863dffff")
    );
}

#[tokio::test]
async fn v3_signs_the_sts_token_header() {
    let mock = emulator(vec![]).await;
    let ros = RosClient::new(
        AlibabaCredentials::new("testid", "testsecret").with_security_token("sts-token"),
    )
    .with_endpoint(&mock.url())
    .expect("endpoint");
    ros.signal_resource(&signal()).await.expect("success");
    let seen = single(&mock);
    assert_eq!(seen.header("x-acs-security-token"), Some("sts-token"));
    let auth = seen.header("authorization").expect("auth");
    assert!(auth.contains("x-acs-security-token"), "{auth}");
}

#[tokio::test]
async fn stack_group_operation_not_found_is_typed_and_not_retried() {
    let mock = emulator(vec![Reply::stack_group_operation_not_found()]).await;
    let error = client(&mock.url())
        .stop_stack_group_operation(&StopStackGroupOperationRequest::new("cn-hangzhou", "op-1"))
        .await
        .expect_err("not found");
    let error = api(error);
    assert!(error.is_stack_group_operation_not_found());
    assert_eq!(error.kind(), ApiErrorKind::StackGroupOperationNotFound);
    assert_eq!(
        (
            error.http_status,
            error.request_id.as_deref(),
            error.attempts
        ),
        (404, mock.calls()[0].request_id.as_deref(), 1)
    );
    assert!(error.message.contains("(op-1)"), "{}", error.message);
    assert!(!error.retryable);
    assert_eq!(mock.calls().len(), 1);
}

#[tokio::test]
async fn documented_client_errors_are_not_retried() {
    for (status, code) in [
        (400, "InvalidParameter"),
        (404, "ResourceNotAvailable"),
        (404, "StackNotFound"),
        (400, "InvalidAccessKeyId.NotFound"),
        (400, "MissingParameter"),
        (400, "RequestLimitExceeded"),
    ] {
        let mock = emulator(vec![Reply::alibaba_error(status, code, "nope")]).await;
        let error = api(client(&mock.url())
            .signal_resource(&signal())
            .await
            .expect_err(code));
        assert_eq!((error.code.as_str(), error.http_status), (code, status));
        assert_eq!(error.message, "nope");
        assert_eq!(mock.calls().len(), 1, "{code} was retried");
    }
}

#[tokio::test]
async fn transient_errors_are_retried_with_fresh_signatures() {
    let mock = emulator(vec![
        Reply::alibaba_error(400, "Throttling.User", "slow down").with_header(
            "x-ratelimit-user-api",
            "Limit:1,Remain:0,TimeLeft:20,Reset:1",
        ),
        Reply::alibaba_error(503, "ServiceUnavailable", "busy"),
        Reply::alibaba_error(500, "InternalError", "oops"),
    ])
    .await;
    let answer = client(&mock.url())
        .signal_resource(&signal())
        .await
        .expect("fourth attempt succeeds");
    let seen = mock.calls();
    assert_eq!(Some(answer.request_id), seen[3].request_id);
    assert_eq!(seen.len(), 4);
    // The mock refuses a reused nonce, so all four verified means four nonces.
    assert!(
        seen.iter()
            .all(|s| s.signature.scheme() == Some(SignatureScheme::V3)),
        "{seen:#?}"
    );
    let token = seen[0].param("ClientToken");
    assert!(seen.iter().all(|s| s.param("ClientToken") == token));
}

#[tokio::test]
async fn last_token_processing_and_bare_5xx_are_retried() {
    let mock = emulator(vec![
        Reply::alibaba_error(
            400,
            "LastTokenProcessing",
            "the last token request is processing",
        ),
        Reply::raw(502, "<html>bad gateway</html>"),
    ])
    .await;
    client(&mock.url())
        .signal_resource(&signal())
        .await
        .expect("third attempt succeeds");
    assert_eq!(mock.calls().len(), 3);
}

#[tokio::test]
async fn throttling_until_the_end_reports_exhaustion() {
    let mock = emulator(vec![]).await;
    mock.answer_always(Reply::alibaba_error(
        400,
        "Throttling",
        "Request was denied due to request throttling.",
    ));
    let error = api(client(&mock.url())
        .signal_resource(&signal())
        .await
        .expect_err("throttled"));
    assert_eq!(error.kind(), ApiErrorKind::Throttling);
    assert!(error.retryable);
    assert_eq!(error.attempts, 4);
    assert!(error.to_string().contains("after 4 attempts"), "{error}");
    assert_eq!(mock.calls().len(), 4);
}

#[tokio::test]
async fn dropped_connections_are_retried_then_reported() {
    let mock = emulator(vec![Reply::drop_connection()]).await;
    client(&mock.url())
        .signal_resource(&signal())
        .await
        .expect("second attempt succeeds");
    assert_eq!(mock.calls().len(), 2);

    let dead = emulator(vec![]).await;
    dead.answer_always(Reply::drop_connection());
    let error = client(&dead.url())
        .signal_resource(&signal())
        .await
        .expect_err("never answers");
    assert!(
        matches!(error, Error::Transport { service: "ROS", .. }),
        "{error}"
    );
    assert!(error.to_string().contains("after 4 attempts"), "{error}");
}

#[tokio::test]
async fn malformed_answers_are_reported_without_retry() {
    for body in ["not json", "{}", "[1,2]"] {
        let mock = emulator(vec![Reply::json(200, body)]).await;
        let error = client(&mock.url())
            .signal_resource(&signal())
            .await
            .expect_err(body);
        assert!(
            matches!(&error, Error::Transport { message, .. } if message.contains("malformed")),
            "{error}"
        );
        assert_eq!(mock.calls().len(), 1);
    }
}

#[tokio::test]
async fn xml_error_bodies_are_read() {
    let mock = emulator(vec![Reply::raw(400, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><RequestId>X-1</RequestId><HostId>ros.aliyuncs.com</HostId><Code>InvalidParameter</Code><Message>The specified parameter Status is invalid.</Message></Error>")
        .with_header("content-type", "text/xml;charset=utf-8")])
    .await;
    let error = api(client(&mock.url())
        .signal_resource(&signal())
        .await
        .expect_err("xml"));
    assert_eq!(error.code, "InvalidParameter");
    assert_eq!(error.request_id.as_deref(), Some("X-1"));
}

#[tokio::test]
async fn a_wrong_secret_fails_verification() {
    let mock = emulator(vec![]).await;
    let ros = RosClient::new(AlibabaCredentials::new("testid", "wrong"))
        .with_endpoint(&mock.url())
        .expect("endpoint")
        .with_retry(fast());
    let error = api(ros.signal_resource(&signal()).await.expect_err("mismatch"));
    assert_eq!(error.code, "SignatureDoesNotMatch");
    assert_eq!(mock.calls().len(), 1);
}

#[tokio::test]
async fn invalid_requests_are_not_sent() {
    let mock = emulator(vec![]).await;
    let mut request = signal();
    request.unique_id = "u".repeat(65);
    let error = client(&mock.url())
        .signal_resource(&request)
        .await
        .expect_err("invalid");
    assert!(matches!(&error, Error::Validation { field, .. } if field == "UniqueId"));
    let error = client(&mock.url())
        .stop_stack_group_operation(&StopStackGroupOperationRequest::new("cn-hangzhou", ""))
        .await
        .expect_err("invalid");
    assert!(matches!(&error, Error::Validation { field, .. } if field == "OperationId"));
    assert!(mock.calls().is_empty());
}

#[tokio::test]
async fn wait_condition_signal_posts_json_with_the_handle_headers() {
    // A WaitConditionHandle URL is not an API the emulator serves: it
    // records the call unchecked and answers as scripted.
    let mock = emulator(vec![Reply::service_unavailable(), Reply::json(200, "{}")]).await;
    let url = format!("{}/handle?Expires=1&Signature=abc", mock.url());
    let headers = vec![("x-ros-wait-condition".to_string(), "token".to_string())];
    let body = WaitConditionSignal::new(SignalStatus::Failure)
        .with_id("node-1")
        .with_reason("disk full");
    signal_wait_condition(&url, &headers, &body, &fast())
        .await
        .expect("second attempt succeeds");
    let seen = mock.calls();
    assert_eq!(seen.len(), 2);
    let last = &seen[1];
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("POST", "/handle")
    );
    assert_eq!(last.param("Signature"), Some("abc"));
    assert_eq!(last.header("x-ros-wait-condition"), Some("token"));
    assert_eq!(last.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&last.body).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"status": "FAILURE", "id": "node-1", "reason": "disk full"})
    );
}

#[tokio::test]
async fn transport_errors_never_show_the_signed_url() {
    let dead = emulator(vec![]).await;
    dead.answer_always(Reply::drop_connection());
    let ros = RosClient::new(
        AlibabaCredentials::new("testid", "testsecret").with_security_token("sts-secret-token"),
    )
    .with_endpoint(&dead.url())
    .expect("endpoint")
    .with_signature_version(SignatureVersion::V2)
    .with_retry(RetryPolicy::never());
    let error = ros
        .signal_resource(&signal())
        .await
        .expect_err("unreachable");
    let text = stackhook::error::error_chain(&error);
    assert!(
        !text.contains("sts-secret-token") && !text.contains("Signature="),
        "{text}"
    );
}

#[tokio::test]
async fn tokens_echoed_by_the_gateway_are_redacted() {
    let mock = emulator(vec![Reply::alibaba_error(
        400,
        "IncompleteSignature",
        "The request signature does not conform to Aliyun standards. server string to sign is:POST&%2F&SecurityToken%3Dsts-secret-token",
    )])
    .await;
    let ros = RosClient::new(
        AlibabaCredentials::new("testid", "testsecret").with_security_token("sts-secret-token"),
    )
    .with_endpoint(&mock.url())
    .expect("endpoint");
    let error = api(ros.signal_resource(&signal()).await.expect_err("refused"));
    assert!(
        !error.message.contains("sts-secret-token"),
        "{}",
        error.message
    );
    assert!(error.message.contains("<redacted>"), "{}", error.message);
}
