//! The ROS, OOS and RFS API emulator (`stackhook_testing::api_emulator`):
//! each API through the real clients, scripted errors, refused signatures
//! and nonces, a built-in handler driven by the mock ROS, and the
//! `stackhook mock-api` command.

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use serde_json::json;
use stackhook::{Router, Status};
use stackhook_cloud::EnvLookup;
use stackhook_cloud::acs::SignatureVersion;
use stackhook_cloud::credentials::{AlibabaCredentials, HuaweiCredentials};
use stackhook_cloud::huawei::rfs::{
    Agency, ContinueRollbackStackRequest, ListExecutionPlansRequest, RfsClient, UpdateStackRequest,
};
use stackhook_cloud::oos::{NotifyExecutionRequest, NotifyType, OosClient};
use stackhook_cloud::retry::RetryPolicy;
use stackhook_cloud::ros::{
    RosClient, SignalResourceRequest, SignalStatus, StopStackGroupOperationRequest,
};
use stackhook_cloud::{ApiError, ApiErrorKind, Error};
use stackhook_handlers::ResourceSignal;
use stackhook_testing::api_emulator::{
    ApiEmulator, RecordedCall, Reply, Service, SignatureCheck, SignatureScheme,
};
use stackhook_testing::{Lifecycle, MockRos};
use tokio::io::{AsyncBufReadExt, BufReader};

mod common;

const STACK_ID: &str = "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff";
const PROJECT: &str = "77b6a44cba5143ab91d13ab9a8ff44fd";

fn fast() -> RetryPolicy {
    RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(5))
}

async fn emulator() -> ApiEmulator {
    ApiEmulator::start().await.expect("emulator")
}

fn keys(secret: &str) -> AlibabaCredentials {
    AlibabaCredentials::new(ApiEmulator::ALIBABA_ACCESS_KEY_ID, secret)
}

fn ros(emulator: &ApiEmulator, credentials: AlibabaCredentials) -> RosClient {
    RosClient::new(credentials)
        .with_endpoint(&emulator.url())
        .expect("endpoint")
        .with_retry(fast())
}

fn oos(emulator: &ApiEmulator, credentials: AlibabaCredentials) -> OosClient {
    OosClient::new(credentials, "cn-hangzhou")
        .expect("region")
        .with_endpoint(&emulator.url())
        .expect("endpoint")
        .with_retry(fast())
}

fn rfs(emulator: &ApiEmulator, sk: &str) -> RfsClient {
    RfsClient::new(
        HuaweiCredentials::new(ApiEmulator::HUAWEI_AK, sk).with_project_id(PROJECT),
        "cn-north-4",
    )
    .expect("client")
    .with_endpoint(&emulator.url())
    .expect("endpoint")
    .with_retry(fast())
}

fn signal() -> SignalResourceRequest {
    SignalResourceRequest::new(
        "cn-hangzhou",
        STACK_ID,
        "ReadyHandle",
        "signal-1",
        SignalStatus::Warning,
    )
}

fn api(error: Error) -> ApiError {
    match error {
        Error::Api(api) => *api,
        other => panic!("not an API error: {other}"),
    }
}

fn single(emulator: &ApiEmulator) -> RecordedCall {
    emulator
        .only_call()
        .unwrap_or_else(|| panic!("{:#?}", emulator.calls()))
}

// ---- ROS ------------------------------------------------------------------

#[tokio::test]
async fn signal_resource_is_verified_recorded_and_answered_with_a_request_id() {
    for version in [SignatureVersion::V3, SignatureVersion::V2] {
        let emulator = emulator().await;
        let answer = ros(&emulator, keys("testsecret").with_security_token("sts-1"))
            .with_signature_version(version)
            .signal_resource(&signal())
            .await
            .expect("success");
        let call = single(&emulator);
        let scheme = match version {
            SignatureVersion::V3 => SignatureScheme::V3,
            _ => SignatureScheme::V2,
        };
        assert_eq!(call.signature, SignatureCheck::Verified(scheme));
        assert_eq!(
            (call.service, call.action.as_str()),
            (Service::Ros, "SignalResource")
        );
        assert_eq!(call.param("StackId"), Some(STACK_ID));
        assert_eq!(call.param("Status"), Some("WARNING"));
        assert_eq!(call.param("UniqueId"), Some("signal-1"));
        assert_eq!(call.access_key_id.as_deref(), Some("testid"));
        assert_eq!(call.security_token.as_deref(), Some("sts-1"));
        assert_eq!((call.http_status, call.scripted), (Some(200), false));
        let request_id = call.request_id.clone().expect("request id");
        assert_eq!(answer.request_id, request_id);
        assert_eq!(request_id.len(), 36, "an upper-case UUID: {request_id}");
        assert_eq!(request_id, request_id.to_ascii_uppercase());
        let line = call.summary();
        assert!(
            line.contains("ROS SignalResource")
                && line.contains("signature ok")
                && line.contains("→ 200"),
            "{line}"
        );
        assert!(!line.contains("sts-1"), "{line}");
    }
}

#[tokio::test]
async fn stop_stack_group_operation_scripted_not_found_then_success() {
    let emulator = emulator().await;
    emulator.answer_next(1, Reply::stack_group_operation_not_found());
    let client = ros(&emulator, keys("testsecret"));
    let request = StopStackGroupOperationRequest::new("cn-hangzhou", "op-42");
    let error = api(client
        .stop_stack_group_operation(&request)
        .await
        .expect_err("not found"));
    assert_eq!(error.kind(), ApiErrorKind::StackGroupOperationNotFound);
    assert_eq!(error.http_status, 404);
    assert!(error.message.contains("(op-42)"), "{}", error.message);
    // The script is used up: the next call succeeds.
    client
        .stop_stack_group_operation(&request)
        .await
        .expect("success");
    let calls = emulator.calls_to("StopStackGroupOperation");
    assert_eq!(calls.len(), 2);
    assert!(calls[0].scripted && !calls[1].scripted);
    assert_eq!(error.request_id, calls[0].request_id);
    assert_eq!(
        calls[0].error_code.as_deref(),
        Some("StackGroupOperationNotFound")
    );
    assert!(calls.iter().all(|c| c.signature.is_verified()));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_recorded_as_failed() {
    let emulator = emulator().await;
    for version in [SignatureVersion::V3, SignatureVersion::V2] {
        let error = api(ros(&emulator, keys("wrong"))
            .with_signature_version(version)
            .signal_resource(&signal())
            .await
            .expect_err("refused"));
        assert_eq!(
            (error.code.as_str(), error.http_status),
            ("SignatureDoesNotMatch", 403)
        );
    }
    let unknown = api(ros(&emulator, AlibabaCredentials::new("nobody", "x"))
        .signal_resource(&signal())
        .await
        .expect_err("unknown key"));
    assert_eq!(unknown.code, "InvalidAccessKeyId.NotFound");
    let calls = emulator.calls();
    assert_eq!(calls.len(), 3, "refusals are not retried");
    for call in &calls {
        assert!(
            matches!(&call.signature, SignatureCheck::Failed(_)),
            "{:?}",
            call.signature
        );
        assert!(
            call.summary().contains("signature FAILED"),
            "{}",
            call.summary()
        );
    }
    assert_eq!(calls[2].access_key_id.as_deref(), Some("nobody"));
}

/// Send one signed request twice, as a replaying client would.
async fn replay(
    client: &stackhook_cloud::acs::RpcClient,
    action: &str,
    params: &[(String, String)],
) -> (u16, u16) {
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let signed = client
            .sign(
                action,
                params,
                SystemTime::now(),
                "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            )
            .expect("sign");
        let response = http
            .post(signed.url)
            .headers(signed.headers)
            .send()
            .await
            .expect("send");
        statuses.push(response.status().as_u16());
    }
    (statuses[0], statuses[1])
}

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    let params = vec![
        ("RegionId".to_string(), "cn-hangzhou".to_string()),
        ("OperationId".to_string(), "op-1".to_string()),
    ];
    for version in [SignatureVersion::V3, SignatureVersion::V2] {
        let emulator = emulator().await;
        let client = ros(&emulator, keys("testsecret")).with_signature_version(version);
        assert_eq!(
            replay(client.rpc(), "StopStackGroupOperation", &params).await,
            (200, 400)
        );
        let calls = emulator.calls();
        assert!(calls[0].signature.is_verified());
        assert!(
            matches!(&calls[1].signature, SignatureCheck::Failed(why) if why.contains("used before")),
            "{:?}",
            calls[1].signature
        );
        assert_eq!(calls[1].error_code.as_deref(), Some("SignatureNonceUsed"));
    }
}

#[tokio::test]
async fn parameters_and_enum_values_are_checked() {
    let emulator = emulator().await;
    let client = ros(&emulator, keys("testsecret"));
    let rpc = client.rpc();
    let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let good = [
        ("RegionId", "cn-hangzhou"),
        ("StackId", STACK_ID),
        ("LogicalResourceId", "H"),
        ("UniqueId", "u"),
    ];
    let mut bad_status = good.to_vec();
    bad_status.push(("Status", "DONE"));
    let cases = [
        (
            "SignalResource",
            p(&bad_status),
            "InvalidParameter",
            "Status",
        ),
        ("SignalResource", p(&good), "MissingParameter", "Status"),
        (
            "StopStackGroupOperation",
            p(&[("RegionId", "cn-hangzhou")]),
            "MissingParameter",
            "OperationId",
        ),
        (
            "DeleteStack",
            p(&good),
            "InvalidAction.NotFound",
            "DeleteStack",
        ),
    ];
    for (action, params, code, names) in cases {
        let error = api(rpc.call(action, &params).await.expect_err(code));
        assert_eq!(error.code, code, "{action}");
        assert!(error.message.contains(names), "{}", error.message);
        assert_eq!(
            error.http_status,
            if code.starts_with("InvalidAction") {
                404
            } else {
                400
            }
        );
    }
    let oos = oos(&emulator, keys("testsecret"));
    let error = api(oos
        .rpc()
        .call(
            "NotifyExecution",
            &p(&[("ExecutionId", "exec-1"), ("NotifyType", "Approved")]),
        )
        .await
        .expect_err("enum"));
    assert_eq!(error.code, "InvalidParameter");
    assert!(error.message.contains("NotifyType"), "{}", error.message);
    assert!(emulator.calls().iter().all(|c| c.signature.is_verified()));
}

// ---- OOS ------------------------------------------------------------------

#[tokio::test]
async fn notify_execution_succeeds_after_scripted_throttling() {
    let emulator = emulator().await;
    emulator.answer_next(2, Reply::throttling_user(Duration::from_millis(5)));
    let answer = oos(&emulator, keys("testsecret"))
        .notify_execution(
            &NotifyExecutionRequest::new("exec-79c321c11003a97c", NotifyType::Approve)
                .with_notify_note("approved by stackhook"),
        )
        .await
        .expect("third attempt succeeds");
    let calls = emulator.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.service == Service::Oos
        && c.action == "NotifyExecution"
        && c.signature == SignatureCheck::Verified(SignatureScheme::V3)));
    assert_eq!(calls[0].error_code.as_deref(), Some("Throttling.User"));
    assert_eq!(calls[0].http_status, Some(400));
    assert_eq!(
        calls[2].request_id.as_deref(),
        Some(answer.request_id.as_str())
    );
    assert_eq!(calls[2].param("NotifyNote"), Some("approved by stackhook"));
}

#[tokio::test]
async fn notify_execution_with_a_wrong_secret_and_a_replayed_nonce() {
    let emulator = emulator().await;
    let error = api(oos(&emulator, keys("wrong"))
        .notify_execution(&NotifyExecutionRequest::new("exec-1", NotifyType::Reject))
        .await
        .expect_err("refused"));
    assert_eq!(error.code, "SignatureDoesNotMatch");
    assert!(!single(&emulator).signature.is_verified());

    let client = oos(&emulator, keys("testsecret"));
    let params = vec![
        ("ExecutionId".to_string(), "exec-1".to_string()),
        ("NotifyType".to_string(), "Approve".to_string()),
    ];
    assert_eq!(
        replay(client.rpc(), "NotifyExecution", &params).await,
        (200, 400)
    );
}

// ---- RFS ------------------------------------------------------------------

#[tokio::test]
async fn rfs_answers_in_the_documented_formats() {
    let emulator = emulator().await;
    let client = rfs(&emulator, ApiEmulator::HUAWEI_SK);
    let page = client
        .list_execution_plans(&ListExecutionPlansRequest::new("my-stack"))
        .await
        .expect("plans");
    assert_eq!(page.execution_plans.len(), 1);
    assert_eq!(page.execution_plans[0].status.as_deref(), Some("AVAILABLE"));
    assert_eq!(
        page.execution_plans[0].stack_name.as_deref(),
        Some("my-stack")
    );

    let plans: Vec<_> = (0..25)
        .map(|i| json!({"stack_name": "big", "execution_plan_name": format!("p{i}"), "status": "APPLIED"}))
        .collect();
    emulator.set_execution_plans("big", plans);
    let all = client
        .list_all_execution_plans("big", None)
        .await
        .expect("all plans");
    assert_eq!(all.len(), 25);
    assert_eq!(all[24].execution_plan_name.as_deref(), Some("p24"));
    let first = client
        .list_execution_plans(&ListExecutionPlansRequest::new("big").with_limit(10))
        .await
        .expect("page 1");
    assert_eq!(first.execution_plans.len(), 10);
    let next = first
        .page_info
        .and_then(|p| p.next_marker)
        .expect("next_marker");
    let last = client
        .list_execution_plans(
            &ListExecutionPlansRequest::new("big")
                .with_limit(20)
                .with_marker(next),
        )
        .await
        .expect("page 2");
    assert_eq!(last.execution_plans.len(), 15);
    assert_eq!(last.page_info.and_then(|p| p.next_marker), None);

    let rollback = client
        .continue_rollback_stack(
            &ContinueRollbackStackRequest::new("my-stack").with_stack_id(STACK_ID),
        )
        .await
        .expect("rollback");
    assert_eq!(rollback.deployment_id.len(), 36);
    let updated = client
        .update_stack(
            &UpdateStackRequest::new("my-stack")
                .with_auto_rollback(true)
                .with_agencies(vec![Agency::by_name("huaweicloud", "rf_admin_trust")]),
        )
        .await
        .expect("update");
    assert_eq!(updated.http_status, 200);

    let calls = emulator.calls();
    let actions: Vec<&str> = calls.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions[0], "ListExecutionPlans");
    assert_eq!(
        &actions[actions.len() - 2..],
        ["ContinueRollbackStack", "UpdateStack"]
    );
    assert!(calls.iter().all(|c| c.service == Service::Rfs
        && c.signature == SignatureCheck::Verified(SignatureScheme::Huawei)
        && c.access_key_id.as_deref() == Some(ApiEmulator::HUAWEI_AK)
        && c.param("project_id") == Some(PROJECT)));
    let rollback_call = &calls[calls.len() - 2];
    assert_eq!(rollback_call.http_status, Some(202));
    assert_eq!(rollback.request_id, rollback_call.request_id);
    assert_eq!(
        rollback_call.json_body(),
        Some(json!({"stack_id": STACK_ID}))
    );
    assert_eq!(calls[1].param("marker"), None);
    assert!(calls.len() >= 4);
}

#[tokio::test]
async fn rfs_scripted_errors_and_refused_signatures() {
    let emulator = emulator().await;
    emulator.answer_next(
        1,
        Reply::rfs_error(409, "RF.10091001", "A conflicting operation is running."),
    );
    let error = api(rfs(&emulator, ApiEmulator::HUAWEI_SK)
        .continue_rollback_stack(&ContinueRollbackStackRequest::new("my-stack"))
        .await
        .expect_err("conflict"));
    assert_eq!(
        (error.code.as_str(), error.http_status),
        ("RF.10091001", 409)
    );
    assert_eq!(error.request_id, emulator.calls()[0].request_id);

    let error = api(rfs(&emulator, "wrong")
        .list_execution_plans(&ListExecutionPlansRequest::new("my-stack"))
        .await
        .expect_err("refused"));
    assert_eq!(
        (error.code.as_str(), error.http_status),
        ("APIGW.0301", 401)
    );
    let calls = emulator.calls();
    assert_eq!(calls.len(), 2);
    assert!(
        matches!(&calls[1].signature, SignatureCheck::Failed(why) if why.contains("canonical request")),
        "{:?}",
        calls[1].signature
    );
}

// ---- a built-in handler, end to end ---------------------------------------

#[tokio::test]
async fn resource_signal_through_a_lifecycle() {
    let emulator = emulator().await;
    let keys = EnvLookup::from_pairs([
        (
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            ApiEmulator::ALIBABA_ACCESS_KEY_ID,
        ),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            ApiEmulator::ALIBABA_ACCESS_KEY_SECRET,
        ),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "sts-handler"),
    ]);
    let handler = ResourceSignal::new()
        .with_env(keys)
        .with_endpoint(emulator.url())
        .with_retry(fast());
    let ros = MockRos::new(Router::new().route(ResourceSignal::RESOURCE_TYPE, handler))
        .resource_type(ResourceSignal::RESOURCE_TYPE)
        .stack(STACK_ID, "signal-stack");
    Lifecycle::standard(
        json!({"LogicalResourceId": "ReadyHandle"}),
        json!({"LogicalResourceId": "ReadyHandle", "Status": "FAILURE"}),
    )
    .run(&ros)
    .await
    .assert_ok();

    // Create, the unchanged Update and the changed Update signal; Delete does not.
    let calls = emulator.calls_to("SignalResource");
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let statuses: Vec<_> = calls.iter().map(|c| c.param("Status")).collect();
    assert_eq!(
        statuses,
        [Some("SUCCESS"), Some("SUCCESS"), Some("FAILURE")]
    );
    let mut unique: Vec<_> = calls.iter().filter_map(|c| c.param("UniqueId")).collect();
    unique.dedup();
    assert_eq!(unique.len(), 3, "one UniqueId per request");
    for call in &calls {
        assert_eq!(
            call.signature,
            SignatureCheck::Verified(SignatureScheme::V3)
        );
        assert_eq!(call.param("StackId"), Some(STACK_ID));
        assert_eq!(call.param("RegionId"), Some("cn-hangzhou"));
        assert_eq!(call.security_token.as_deref(), Some("sts-handler"));
    }

    // ROS refuses a signal: the handler answers FAILED, naming the code.
    emulator.answer_next(
        1,
        Reply::alibaba_error(
            404,
            "ResourceNotAvailable",
            "The Resource (ReadyHandle) is not available.",
        ),
    );
    let failed = ros
        .create(json!({"LogicalResourceId": "ReadyHandle"}))
        .await
        .expect("an answer");
    assert_eq!(failed.status(), Status::Failed);
    assert!(
        failed
            .reason()
            .unwrap_or_default()
            .contains("ResourceNotAvailable"),
        "{:?}",
        failed.reason()
    );
}

// ---- stackhook mock-api ----------------------------------------------------

/// The child process, killed when the test ends however it ends.
struct MockApi {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl MockApi {
    async fn start(args: &[&str]) -> (MockApi, String) {
        let mut child = tokio::process::Command::new(common::stackhook_bin())
            .arg("mock-api")
            .args(["--listen", "127.0.0.1:0"])
            // Its SMQ emulator too on a free port, never the fixed default.
            .args(["--smq-listen", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn stackhook mock-api");
        let stdout = child.stdout.take().expect("stdout");
        let mut mock = MockApi {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        let banner = mock.line().await;
        let url = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no URL in {banner:?}"))
            .to_string();
        (mock, url)
    }

    /// The next line about an API call or the API emulator: the SMQ
    /// emulator's start-up lines (one per queue) are not what these tests
    /// read.
    async fn line(&mut self) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await
                .expect("a line within 30 s")
                .expect("read stdout")
                .expect("stdout open");
            if !line.starts_with("SMQ emulator on ") {
                return line;
            }
        }
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn mock_api_command_prints_a_line_per_call() {
    let (mut mock, url) = MockApi::start(&[
        "--access-key-id",
        "devid",
        "--access-key-secret",
        "devsecret",
    ])
    .await;
    let client = RosClient::new(AlibabaCredentials::new("devid", "devsecret"))
        .with_endpoint(&url)
        .expect("endpoint")
        .with_retry(fast());
    let answer = client.signal_resource(&signal()).await.expect("success");
    let line = mock.line().await;
    assert!(
        line.contains("ROS SignalResource")
            && line.contains("StackId=4a6c9851")
            && line.contains("signature ok")
            && line.contains("key devid")
            && line.contains("→ 200"),
        "{line}"
    );
    assert!(!answer.request_id.is_empty());

    let error = api(RosClient::new(AlibabaCredentials::new("devid", "wrong"))
        .with_endpoint(&url)
        .expect("endpoint")
        .signal_resource(&signal())
        .await
        .expect_err("refused"));
    assert_eq!(error.code, "SignatureDoesNotMatch");
    let line = mock.line().await;
    assert!(
        line.contains("signature FAILED") && line.contains("SignatureDoesNotMatch"),
        "{line}"
    );
    assert!(
        !line.contains("wrong") && !line.contains("devsecret"),
        "{line}"
    );
}
