//! OOS client against the API emulator: signatures checked independently.

use std::time::Duration;

use stackhook_cloud::Error;
use stackhook_cloud::acs::SignatureVersion;
use stackhook_cloud::credentials::AlibabaCredentials;
use stackhook_cloud::oos::{NotifyExecutionRequest, NotifyType, OosClient};
use stackhook_cloud::retry::RetryPolicy;
use stackhook_testing::api_emulator::{ApiEmulator, RecordedCall, Reply};

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

fn client(url: &str) -> OosClient {
    OosClient::new(
        AlibabaCredentials::new("testid", "testsecret"),
        "cn-hangzhou",
    )
    .expect("region")
    .with_endpoint(url)
    .expect("endpoint")
    .with_retry(RetryPolicy::new(
        3,
        Duration::from_millis(1),
        Duration::from_millis(5),
    ))
}

#[tokio::test]
async fn every_notify_type_is_sent_and_verified() {
    for version in [SignatureVersion::V3, SignatureVersion::V2] {
        for kind in NotifyType::ALL {
            let mock = emulator(vec![]).await;
            let mut request = NotifyExecutionRequest::new("exec-79c321c11003a97c", kind)
                .with_notify_note("approved by stackhook");
            match kind {
                NotifyType::ExecuteTask => {
                    request = request
                        .with_task_name("describeInstance")
                        .with_parameters(r#"{"InstanceId":"i-1"}"#);
                }
                NotifyType::CompleteExecution => {
                    request = request.with_execution_status("Success");
                }
                NotifyType::Approve => {
                    request =
                        request.with_task_execution_ids(["t-1".to_string(), "t-2".to_string()]);
                }
                _ => {
                    request = request
                        .with_task_execution_id("task-exec-1")
                        .with_loop_item("i-xxx");
                }
            }
            let answer = client(&mock.url())
                .with_signature_version(version)
                .notify_execution(&request)
                .await
                .expect("success");
            let seen = single(&mock);
            assert_eq!(Some(answer.request_id), seen.request_id);
            assert_eq!(seen.action, "NotifyExecution");
            let action = match version {
                SignatureVersion::V3 => seen.header("x-acs-action"),
                _ => seen.param("Action"),
            };
            assert_eq!(action, Some("NotifyExecution"));
            assert_eq!(seen.param("NotifyType"), Some(kind.as_str()));
            assert_eq!(seen.param("ExecutionId"), Some("exec-79c321c11003a97c"));
            assert_eq!(seen.param("RegionId"), Some("cn-hangzhou"));
            assert_eq!(seen.param("NotifyNote"), Some("approved by stackhook"));
            match kind {
                NotifyType::ExecuteTask => {
                    assert_eq!(seen.param("Parameters"), Some(r#"{"InstanceId":"i-1"}"#));
                    assert_eq!(seen.param("TaskName"), Some("describeInstance"));
                }
                NotifyType::CompleteExecution => {
                    assert_eq!(seen.param("ExecutionStatus"), Some("Success"));
                }
                NotifyType::Approve => {
                    assert_eq!(seen.param("TaskExecutionIds"), Some(r#"["t-1","t-2"]"#));
                }
                _ => {
                    assert_eq!(seen.param("TaskExecutionId"), Some("task-exec-1"));
                    assert_eq!(seen.param("LoopItem"), Some("i-xxx"));
                }
            }
        }
    }
}

#[tokio::test]
async fn invalid_combinations_are_refused_before_sending() {
    let mock = emulator(vec![]).await;
    let oos = client(&mock.url());
    let cases = [
        (
            NotifyExecutionRequest::new("exec-1", NotifyType::Approve)
                .with_execution_status("Success"),
            "ExecutionStatus",
        ),
        (
            NotifyExecutionRequest::new("exec-1", NotifyType::CompleteExecution),
            "ExecutionStatus",
        ),
        (
            NotifyExecutionRequest::new("exec-1", NotifyType::ExecuteTask),
            "Parameters",
        ),
        (
            NotifyExecutionRequest::new("exec-1", NotifyType::Reject).with_parameters("{}"),
            "Parameters",
        ),
        (
            NotifyExecutionRequest::new("", NotifyType::Approve),
            "ExecutionId",
        ),
    ];
    for (request, field) in cases {
        let error = oos.notify_execution(&request).await.expect_err(field);
        assert!(
            matches!(&error, Error::Validation { field: f, .. } if f == field),
            "{error}"
        );
    }
    assert!(mock.calls().is_empty());
}

#[tokio::test]
async fn throttling_is_retried_and_errors_are_typed() {
    let mock = emulator(vec![
        Reply::alibaba_error(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )
        .with_header("x-ratelimit-user", "Limit:1,Remain:0,TimeLeft:10,Reset:1"),
        Reply::alibaba_error(
            404,
            "EntityNotExists.Execution",
            "The execution does not exist.",
        ),
    ])
    .await;
    let error = client(&mock.url())
        .notify_execution(&NotifyExecutionRequest::new("exec-1", NotifyType::Approve))
        .await
        .expect_err("missing");
    let Error::Api(api) = error else {
        panic!("not an API error")
    };
    assert_eq!(api.service, "OOS");
    assert_eq!(api.code, "EntityNotExists.Execution");
    assert_eq!(api.attempts, 2);
    assert!(!api.retryable);
    assert_eq!(mock.calls().len(), 2);
}

#[tokio::test]
async fn a_note_with_spaces_goes_as_percent_20() {
    let mock = emulator(vec![]).await;
    client(&mock.url())
        .notify_execution(
            &NotifyExecutionRequest::new("exec-1", NotifyType::Approve)
                .with_notify_note("ok note*"),
        )
        .await
        .expect("success");
    let seen = single(&mock);
    assert!(
        seen.raw_query.contains("NotifyNote=ok%20note%2A"),
        "{}",
        seen.raw_query
    );
}
