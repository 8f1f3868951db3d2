//! OOS client against the loopback mock: signatures checked independently.

mod cloud_mock;

use std::time::Duration;

use cloud_mock::{Reply, alibaba};
use stackhook::Error;
use stackhook::cloud::acs::SignatureVersion;
use stackhook::cloud::credentials::AlibabaCredentials;
use stackhook::cloud::oos::{NotifyExecutionRequest, NotifyType, OosClient};
use stackhook::cloud::retry::RetryPolicy;

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
            let mock = alibaba(vec![]).await;
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
            assert_eq!(answer.request_id, "mock-request-id");
            let seen = mock.single();
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
    let mock = alibaba(vec![]).await;
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
    assert!(mock.seen().is_empty());
}

#[tokio::test]
async fn throttling_is_retried_and_errors_are_typed() {
    let mock = alibaba(vec![
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
    assert_eq!(mock.seen().len(), 2);
}

#[tokio::test]
async fn a_note_with_spaces_goes_as_percent_20() {
    let mock = alibaba(vec![]).await;
    client(&mock.url())
        .notify_execution(
            &NotifyExecutionRequest::new("exec-1", NotifyType::Approve)
                .with_notify_note("ok note*"),
        )
        .await
        .expect("success");
    let seen = mock.single();
    assert!(
        seen.raw_query.contains("NotifyNote=ok%20note%2A"),
        "{}",
        seen.raw_query
    );
}
