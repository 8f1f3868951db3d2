//! Huawei RFS client against the API emulator: SDK-HMAC-SHA256 checked
//! independently.

use std::time::Duration;

use stackhook_cloud::Error;
use stackhook_cloud::credentials::HuaweiCredentials;
use stackhook_cloud::huawei::rfs::{
    Agency, ContinueRollbackStackRequest, ListExecutionPlansRequest, RfsClient, UpdateStackRequest,
};
use stackhook_cloud::retry::RetryPolicy;
use stackhook_testing::api_emulator::{ApiEmulator, RecordedCall, Reply, SignatureScheme};

const HUAWEI_AK: &str = ApiEmulator::HUAWEI_AK;
const HUAWEI_SK: &str = ApiEmulator::HUAWEI_SK;
const PROJECT: &str = "77b6a44cba5143ab91d13ab9a8ff44fd";

/// An emulator answering `script` first, then `default` for ever.
async fn huawei(default: Reply, script: Vec<Reply>) -> ApiEmulator {
    let emulator = ApiEmulator::start().await.expect("emulator");
    for reply in script {
        emulator.answer_next(1, reply);
    }
    emulator.answer_always(default);
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

const STACK_ID: &str = "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff";

fn credentials() -> HuaweiCredentials {
    HuaweiCredentials::new(HUAWEI_AK, HUAWEI_SK).with_project_id(PROJECT)
}

fn client(url: &str) -> RfsClient {
    RfsClient::new(credentials(), "cn-north-4")
        .expect("client")
        .with_endpoint(url)
        .expect("endpoint")
        .with_retry(RetryPolicy::new(
            3,
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
}

fn plans(names: &[&str], next: Option<&str>) -> Reply {
    let plans: Vec<_> = names
        .iter()
        .map(|n| serde_json::json!({"stack_name": "my-stack", "execution_plan_name": n, "status": "AVAILABLE", "create_time": "2024-01-01T00:00:00Z"}))
        .collect();
    let mut body = serde_json::json!({"execution_plans": plans});
    if let Some(next) = next {
        body["page_info"] = serde_json::json!({"next_marker": next, "current_count": names.len()});
    }
    Reply::json(200, body.to_string()).with_header("x-request-id", "hw-req-1")
}

#[tokio::test]
async fn list_execution_plans_is_signed_and_parsed() {
    let mock = huawei(plans(&["plan-b", "plan-a"], None), vec![]).await;
    let answer = client(&mock.url())
        .list_execution_plans(
            &ListExecutionPlansRequest::new("my-stack")
                .with_stack_id(STACK_ID)
                .with_limit(10),
        )
        .await
        .expect("success");
    assert_eq!(answer.execution_plans.len(), 2);
    assert_eq!(
        answer.execution_plans[0].execution_plan_name.as_deref(),
        Some("plan-b")
    );
    assert_eq!(answer.request_id.as_deref(), Some("hw-req-1"));
    let seen = single(&mock);
    assert_eq!(seen.signature.scheme(), Some(SignatureScheme::Huawei));
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.path,
        format!("/v1/{PROJECT}/stacks/my-stack/execution-plans")
    );
    assert_eq!(seen.param("stack_id"), Some(STACK_ID));
    assert_eq!(seen.param("limit"), Some("10"));
    assert_eq!(seen.header("x-project-id"), Some(PROJECT));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let auth = seen.header("authorization").expect("auth");
    assert!(auth.contains("client-request-id"), "{auth}");
}

#[tokio::test]
async fn list_all_follows_next_marker() {
    let mock = huawei(
        plans(&["c"], None),
        vec![plans(&["a"], Some("m1")), plans(&["b"], Some("m2"))],
    )
    .await;
    let all = client(&mock.url())
        .list_all_execution_plans("my-stack", None)
        .await
        .expect("success");
    let names: Vec<_> = all
        .iter()
        .filter_map(|p| p.execution_plan_name.as_deref())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let seen = mock.calls();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].param("marker"), Some("m1"));
    assert_eq!(seen[2].param("marker"), Some("m2"));
    let ids: std::collections::HashSet<_> = seen
        .iter()
        .filter_map(|s| s.header("client-request-id").map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 3, "one Client-Request-Id per call");
}

#[tokio::test]
async fn continue_rollback_returns_the_deployment_id() {
    let mock = huawei(
        Reply::json(202, r#"{"deployment_id":"d-1"}"#).with_header("x-request-id", "r-2"),
        vec![],
    )
    .await;
    let answer = client(&mock.url())
        .continue_rollback_stack(
            &ContinueRollbackStackRequest::new("my-stack").with_stack_id(STACK_ID),
        )
        .await
        .expect("success");
    assert_eq!(answer.deployment_id, "d-1");
    assert_eq!(answer.request_id.as_deref(), Some("r-2"));
    let seen = single(&mock);
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path,
        format!("/v1/{PROJECT}/stacks/my-stack/rollbacks")
    );
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json");
    assert_eq!(body, serde_json::json!({"stack_id": STACK_ID}));
}

#[tokio::test]
async fn update_stack_sends_only_the_settings_given() {
    let mock = huawei(Reply::json(200, ""), vec![]).await;
    let answer = client(&mock.url())
        .update_stack(
            &UpdateStackRequest::new("my-stack")
                .with_auto_rollback(true)
                .with_deletion_protection(false)
                .with_agencies(vec![Agency::by_urn(
                    "huaweicloud",
                    "iam::123:agency:rf_admin_trust",
                )]),
        )
        .await
        .expect("success");
    assert_eq!(answer.http_status, 200);
    let seen = single(&mock);
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.path, format!("/v1/{PROJECT}/stacks/my-stack"));
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json");
    assert_eq!(
        body,
        serde_json::json!({
            "enable_deletion_protection": false,
            "enable_auto_rollback": true,
            "agencies": [{"provider_name": "huaweicloud", "agency_urn": "iam::123:agency:rf_admin_trust"}]
        })
    );
}

#[tokio::test]
async fn error_bodies_become_typed_errors() {
    for (status, code) in [
        (400, "RF.10011001"),
        (403, "RF.10031001"),
        (404, "RF.10041001"),
        (409, "RF.10091001"),
    ] {
        let mock = huawei(
            Reply::json(
                status,
                serde_json::json!({
                    "error_code": code,
                    "error_msg": "Missing required parameter(s).",
                    "encoded_authorization_message": "x",
                    "details": [{"error_code": "D.1", "error_msg": "detail"}]
                })
                .to_string(),
            )
            .with_header("x-request-id", "hw-err"),
            vec![],
        )
        .await;
        let error = client(&mock.url())
            .continue_rollback_stack(&ContinueRollbackStackRequest::new("my-stack"))
            .await
            .expect_err(code);
        let Error::Api(api) = error else {
            panic!("not an API error")
        };
        assert_eq!((api.service, api.http_status), ("RFS", status));
        assert_eq!(api.code, code);
        assert_eq!(api.request_id.as_deref(), Some("hw-err"));
        assert_eq!(api.details, vec![("D.1".to_string(), "detail".to_string())]);
        assert_eq!(mock.calls().len(), 1, "{code} must not be retried");
    }
}

#[tokio::test]
async fn too_many_requests_and_server_errors_are_retried() {
    let mock = huawei(
        plans(&["a"], None),
        vec![
            Reply::json(
                429,
                r#"{"error_code":"RF.10291001","error_msg":"Too many requests"}"#,
            ),
            Reply::json(
                500,
                r#"{"error_code":"RF.10501001","error_msg":"Internal"}"#,
            ),
        ],
    )
    .await;
    client(&mock.url())
        .list_execution_plans(&ListExecutionPlansRequest::new("my-stack"))
        .await
        .expect("third attempt succeeds");
    let seen = mock.calls();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.signature.scheme() == Some(SignatureScheme::Huawei))
    );
    let ids: std::collections::HashSet<_> = seen
        .iter()
        .filter_map(|s| s.header("client-request-id"))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "retries of one call keep its Client-Request-Id"
    );
}

#[tokio::test]
async fn security_token_is_sent_and_signed() {
    let mock = huawei(plans(&[], None), vec![]).await;
    RfsClient::new(credentials().with_security_token("hw-token"), "cn-north-4")
        .expect("client")
        .with_endpoint(&mock.url())
        .expect("endpoint")
        .list_execution_plans(&ListExecutionPlansRequest::new("my-stack"))
        .await
        .expect("success");
    let seen = single(&mock);
    assert_eq!(seen.header("x-security-token"), Some("hw-token"));
    assert!(
        seen.header("authorization")
            .is_some_and(|a| a.contains("x-security-token"))
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_gateway() {
    let mock = huawei(plans(&[], None), vec![]).await;
    let error = RfsClient::new(
        HuaweiCredentials::new(HUAWEI_AK, "wrong").with_project_id(PROJECT),
        "cn-north-4",
    )
    .expect("client")
    .with_endpoint(&mock.url())
    .expect("endpoint")
    .list_execution_plans(&ListExecutionPlansRequest::new("my-stack"))
    .await
    .expect_err("refused");
    let Error::Api(api) = error else {
        panic!("not an API error")
    };
    assert_eq!((api.code.as_str(), api.http_status), ("APIGW.0301", 401));
}

#[tokio::test]
async fn malformed_answers_are_reported() {
    let mock = huawei(Reply::json(200, "[]"), vec![]).await;
    let error = client(&mock.url())
        .list_execution_plans(&ListExecutionPlansRequest::new("my-stack"))
        .await
        .expect_err("malformed");
    assert!(
        matches!(&error, Error::Transport { message, .. } if message.contains("malformed")),
        "{error}"
    );
    let mock = huawei(Reply::json(202, r#"{"deployment":"x"}"#), vec![]).await;
    let error = client(&mock.url())
        .continue_rollback_stack(&ContinueRollbackStackRequest::new("my-stack"))
        .await
        .expect_err("malformed");
    assert!(matches!(error, Error::Transport { .. }), "{error}");
}

#[tokio::test]
async fn invalid_requests_are_not_sent() {
    let mock = huawei(plans(&[], None), vec![]).await;
    let rfs = client(&mock.url());
    let error = rfs
        .update_stack(
            &UpdateStackRequest::new("my-stack")
                .with_agencies(vec![Agency::by_name("huaweicloud", "a")]),
        )
        .await;
    assert!(error.is_ok());
    let both = serde_json::from_str::<Agency>(
        r#"{"provider_name":"huaweicloud","agency_name":"a","agency_urn":"u"}"#,
    )
    .expect("agency");
    let error = rfs
        .update_stack(&UpdateStackRequest::new("my-stack").with_agencies(vec![both]))
        .await
        .expect_err("both");
    assert!(
        matches!(&error, Error::Validation { field, .. } if field == "agencies[0]"),
        "{error}"
    );
    let error = rfs
        .list_execution_plans(&ListExecutionPlansRequest::new("1-stack"))
        .await
        .expect_err("bad name");
    assert!(matches!(&error, Error::Validation { field, .. } if field == "stack_name"));
    assert_eq!(mock.calls().len(), 1);
}
