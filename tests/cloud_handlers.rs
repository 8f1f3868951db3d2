//! The cloud handlers, routed like `stackhook serve` routes them, against
//! the API emulator (`stackhook_testing::api_emulator`).

use std::time::Duration;

use serde_json::{Value, json};
use stackhook::request::{Request, RequestType};
use stackhook::{Response, Router, Status};
use stackhook_cloud::EnvLookup;
use stackhook_cloud::retry::RetryPolicy;
use stackhook_handlers::{OosExecutionNotify, ResourceSignal, RfsStackSettings};
use stackhook_testing::api_emulator::{Reply, SignatureScheme};

mod common;

use common::emulator::{HUAWEI_AK, HUAWEI_SK, PROJECT, alibaba, huawei, single};

fn fast() -> RetryPolicy {
    RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(5))
}

fn alibaba_env() -> EnvLookup {
    EnvLookup::from_pairs([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testsecret"),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "sts"),
    ])
}

fn huawei_env() -> EnvLookup {
    EnvLookup::from_pairs([
        ("HUAWEICLOUD_SDK_AK", HUAWEI_AK),
        ("HUAWEICLOUD_SDK_SK", HUAWEI_SK),
        ("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT),
    ])
}

async fn handle(router: &Router, kind: RequestType, resource_type: &str, props: Value) -> Response {
    let mut request = Request::new(kind, resource_type, "Step", "stack-1", "req-0001");
    request.region_id = "cn-hangzhou".into();
    if let Value::Object(map) = props {
        if kind != RequestType::Create {
            request.physical_resource_id = Some("phys-1".into());
        }
        if kind == RequestType::Update {
            request.old_resource_properties = Some(map.clone());
        }
        request.resource_properties = map;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    router.handle(&request, deadline).await
}

fn data(response: &Response) -> Value {
    serde_json::to_value(response.data.clone().unwrap_or_default()).expect("data")
}

#[tokio::test]
async fn resource_signal_signals_on_create_and_update_only() {
    let mock = alibaba(vec![]).await;
    let router = Router::new().route(
        ResourceSignal::RESOURCE_TYPE,
        ResourceSignal::new()
            .with_env(alibaba_env())
            .with_endpoint(mock.url())
            .with_retry(fast()),
    );
    let props = json!({"LogicalResourceId": "ReadyHandle", "Status": "warning"});
    let created = handle(
        &router,
        RequestType::Create,
        ResourceSignal::RESOURCE_TYPE,
        props.clone(),
    )
    .await;
    assert_eq!(created.status, Status::Success, "{:?}", created.reason);
    assert_eq!(data(&created)["UniqueId"], "req-0001");
    let seen = single(&mock);
    assert_eq!(
        data(&created)["RequestId"],
        seen.request_id.clone().unwrap_or_default()
    );
    assert_eq!(seen.signature.scheme(), Some(SignatureScheme::V3));
    assert_eq!(seen.param("StackId"), Some("stack-1"));
    assert_eq!(seen.param("RegionId"), Some("cn-hangzhou"));
    assert_eq!(seen.param("Status"), Some("WARNING"));
    assert_eq!(seen.header("x-acs-security-token"), Some("sts"));

    let updated = handle(
        &router,
        RequestType::Update,
        ResourceSignal::RESOURCE_TYPE,
        props.clone(),
    )
    .await;
    assert_eq!(updated.status, Status::Success, "{:?}", updated.reason);
    let deleted = handle(
        &router,
        RequestType::Delete,
        ResourceSignal::RESOURCE_TYPE,
        props,
    )
    .await;
    assert_eq!(deleted.status, Status::Success, "{:?}", deleted.reason);
    assert_eq!(mock.calls().len(), 2, "Delete sends nothing");
}

#[tokio::test]
async fn resource_signal_reports_api_errors_as_failed() {
    let mock = alibaba(vec![Reply::alibaba_error(
        404,
        "ResourceNotAvailable",
        "The Resource (ReadyHandle) is not available.",
    )])
    .await;
    let router = Router::new().route(
        ResourceSignal::RESOURCE_TYPE,
        ResourceSignal::new()
            .with_env(alibaba_env())
            .with_endpoint(mock.url())
            .with_retry(fast()),
    );
    let response = handle(
        &router,
        RequestType::Create,
        ResourceSignal::RESOURCE_TYPE,
        json!({"LogicalResourceId": "ReadyHandle"}),
    )
    .await;
    assert_eq!(response.status, Status::Failed);
    let reason = response.reason.unwrap_or_default();
    assert!(
        reason.contains("ResourceNotAvailable")
            && reason.contains(&mock.calls()[0].request_id.clone().unwrap_or_default()),
        "{reason}"
    );
}

#[tokio::test]
async fn cloud_handlers_without_credentials_fail_naming_the_variable() {
    let router = Router::new()
        .route(
            ResourceSignal::RESOURCE_TYPE,
            ResourceSignal::new().with_env(EnvLookup::from_pairs::<&str, &str>([])),
        )
        .route(
            OosExecutionNotify::RESOURCE_TYPE,
            OosExecutionNotify::new().with_env(EnvLookup::from_pairs([(
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
                "id",
            )])),
        )
        .route(
            RfsStackSettings::RESOURCE_TYPE,
            RfsStackSettings::new().with_env(EnvLookup::from_pairs::<&str, &str>([])),
        );
    for (kind, props, variable) in [
        (
            ResourceSignal::RESOURCE_TYPE,
            json!({"LogicalResourceId": "H"}),
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
        ),
        (
            OosExecutionNotify::RESOURCE_TYPE,
            json!({"ExecutionId": "exec-1", "NotifyType": "Approve"}),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ),
        (
            RfsStackSettings::RESOURCE_TYPE,
            json!({"Region": "cn-north-4", "StackName": "s"}),
            "HUAWEICLOUD_SDK_AK",
        ),
    ] {
        let response = handle(&router, RequestType::Create, kind, props).await;
        assert_eq!(response.status, Status::Failed);
        let reason = response.reason.unwrap_or_default();
        assert!(reason.contains(variable), "{kind}: {reason}");
    }
}

#[tokio::test]
async fn oos_execution_notify_approves() {
    let mock = alibaba(vec![]).await;
    let router = Router::new().route(
        OosExecutionNotify::RESOURCE_TYPE,
        OosExecutionNotify::new()
            .with_env(alibaba_env())
            .with_endpoint(mock.url())
            .with_retry(fast()),
    );
    let response = handle(
        &router,
        RequestType::Create,
        OosExecutionNotify::RESOURCE_TYPE,
        json!({"ExecutionId": "exec-1", "NotifyType": "Approve", "NotifyNote": "db ready", "TaskExecutionIds": ["t-1"]}),
    )
    .await;
    assert_eq!(response.status, Status::Success, "{:?}", response.reason);
    let seen = single(&mock);
    assert_eq!(
        data(&response)["RequestId"],
        seen.request_id.clone().unwrap_or_default()
    );
    assert_eq!(seen.param("NotifyType"), Some("Approve"));
    assert_eq!(seen.param("RegionId"), Some("cn-hangzhou"));
    assert_eq!(seen.param("TaskExecutionIds"), Some(r#"["t-1"]"#));

    let refused = handle(
        &router,
        RequestType::Create,
        OosExecutionNotify::RESOURCE_TYPE,
        json!({"ExecutionId": "exec-1", "NotifyType": "CompleteExecution"}),
    )
    .await;
    assert_eq!(refused.status, Status::Failed);
    assert!(
        refused
            .reason
            .unwrap_or_default()
            .contains("ExecutionStatus")
    );
    assert_eq!(mock.calls().len(), 1, "invalid requests are not sent");
}

#[tokio::test]
async fn rfs_stack_settings_updates_then_reports_the_latest_plan() {
    let mock = huawei(
        Reply::json(
            200,
            r#"{"execution_plans":[{"execution_plan_name":"p2","execution_plan_id":"id-2","status":"APPLIED"},{"execution_plan_name":"p1","status":"AVAILABLE"}]}"#,
        ),
        vec![Reply::json(200, "")],
    )
    .await;
    let router = Router::new().route(
        RfsStackSettings::RESOURCE_TYPE,
        RfsStackSettings::new()
            .with_env(huawei_env())
            .with_endpoint(mock.url())
            .with_retry(fast()),
    );
    let response = handle(
        &router,
        RequestType::Create,
        RfsStackSettings::RESOURCE_TYPE,
        json!({
            "Region": "cn-north-4",
            "StackName": "network",
            "EnableDeletionProtection": "true",
            "Agencies": [{"ProviderName": "huaweicloud", "AgencyName": "rf_admin_trust"}]
        }),
    )
    .await;
    assert_eq!(response.status, Status::Success, "{:?}", response.reason);
    assert_eq!(
        data(&response),
        json!({
            "StackName": "network",
            "Updated": true,
            "LatestExecutionPlanStatus": "APPLIED",
            "LatestExecutionPlanName": "p2",
            "LatestExecutionPlanId": "id-2"
        })
    );
    let seen = mock.calls();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.signature.scheme() == Some(SignatureScheme::Huawei))
    );
    assert_eq!(seen[0].method, "PATCH");
    let body: Value = serde_json::from_slice(&seen[0].body).expect("json");
    assert_eq!(
        body,
        json!({"enable_deletion_protection": true, "agencies": [{"provider_name": "huaweicloud", "agency_name": "rf_admin_trust"}]})
    );
    assert_eq!(seen[1].method, "GET");

    let deleted = handle(
        &router,
        RequestType::Delete,
        RfsStackSettings::RESOURCE_TYPE,
        json!({"Region": "cn-north-4", "StackName": "network"}),
    )
    .await;
    assert_eq!(deleted.status, Status::Success);
    assert_eq!(mock.calls().len(), 2, "Delete sends nothing");
}

#[tokio::test]
async fn rfs_stack_settings_with_nothing_to_change_only_reads() {
    let mock = huawei(Reply::json(200, r#"{"execution_plans":[]}"#), vec![]).await;
    let router = Router::new().route(
        RfsStackSettings::RESOURCE_TYPE,
        RfsStackSettings::new()
            .with_env(huawei_env())
            .with_endpoint(mock.url())
            .with_retry(fast()),
    );
    let response = handle(
        &router,
        RequestType::Update,
        RfsStackSettings::RESOURCE_TYPE,
        json!({"Region": "cn-north-4", "StackName": "network"}),
    )
    .await;
    assert_eq!(response.status, Status::Success, "{:?}", response.reason);
    assert_eq!(data(&response)["LatestExecutionPlanStatus"], "NONE");
    assert_eq!(data(&response)["Updated"], false);
    assert_eq!(single(&mock).method, "GET");
}

#[test]
fn the_builtin_router_serves_the_cloud_types() {
    let router = stackhook_handlers::builtin_router(b"0123456789abcdef0123456789abcdef");
    let types: Vec<&str> = router.resource_types().collect();
    for t in [
        ResourceSignal::RESOURCE_TYPE,
        OosExecutionNotify::RESOURCE_TYPE,
        RfsStackSettings::RESOURCE_TYPE,
    ] {
        assert!(types.contains(&t), "{t} not routed: {types:?}");
    }
}

#[tokio::test]
async fn function_compute_invocation_credentials_sign_when_the_environment_has_none() {
    let mock = alibaba(vec![]).await;
    let router = Router::new().route(
        ResourceSignal::RESOURCE_TYPE,
        ResourceSignal::new()
            .with_env(EnvLookup::from_pairs::<&str, &str>([]))
            .with_endpoint(mock.url())
            .with_retry(fast()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stackhook::serve(
        listener,
        router,
        stackhook::Config::for_local_testing(),
        async {
            let _ = stopped.await;
        },
    ));
    let sink = stackhook::sink::CallbackSink::start().await.expect("sink");
    let event = json!({
        "RequestType": "Create",
        "RequestId": "fc-creds-1",
        "ResponseURL": sink.url("/cb"),
        "ResourceType": ResourceSignal::RESOURCE_TYPE,
        "LogicalResourceId": "Step",
        "StackId": "stack-1",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": {"LogicalResourceId": "ReadyHandle"},
    });
    let reply = reqwest::Client::new()
        .post(format!("http://{addr}/invoke"))
        .header("content-type", "application/octet-stream")
        .header("x-fc-request-id", "fc-1")
        .header("x-fc-access-key-id", "testid")
        .header("x-fc-access-key-secret", "testsecret")
        .header("x-fc-security-token", "fc-sts-token")
        .body(event.to_string())
        .send()
        .await
        .expect("invoke");
    assert_eq!(reply.status(), 200);
    let answers = sink.wait_for(1, Duration::from_secs(10)).await;
    let answer = answers[0].response().expect("answer");
    assert_eq!(answer.status, Status::Success, "{:?}", answer.reason);
    let seen = single(&mock);
    assert_eq!(seen.signature.scheme(), Some(SignatureScheme::V3));
    assert_eq!(seen.access_key_id.as_deref(), Some("testid"));
    assert_eq!(seen.security_token.as_deref(), Some("fc-sts-token"));
    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}
