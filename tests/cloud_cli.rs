//! The real `stackhook ros | oos | rfs` binary against the API emulator.
//! Credentials go through `Command::env`, never the test's own environment.

use std::process::Output;

use serde_json::Value;
use stackhook_testing::api_emulator::{Reply, SignatureScheme};

mod common;

use common::emulator::{HUAWEI_AK, HUAWEI_SK, PROJECT, alibaba, huawei, single};

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(common::stackhook_bin());
    command.args(args).env_clear();
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("the binary finishes")
        .expect("the binary runs")
}

const ALIBABA: &[(&str, &str)] = &[
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid"),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "testsecret"),
];

const HUAWEI: &[(&str, &str)] = &[
    ("HUAWEICLOUD_SDK_AK", HUAWEI_AK),
    ("HUAWEICLOUD_SDK_SK", HUAWEI_SK),
    ("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT),
];

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn signal_args(url: &str) -> Vec<&str> {
    vec![
        "ros",
        "signal-resource",
        "--stack-id",
        "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff",
        "--logical-resource-id",
        "WebServer",
        "--unique-id",
        "u-1",
        "--status",
        "SUCCESS",
        "--region-id",
        "cn-hangzhou",
        "--endpoint",
        url,
    ]
}

#[tokio::test]
async fn signal_resource_prints_json_and_a_summary() {
    let mock = alibaba(vec![]).await;
    let url = mock.url();
    let mut args = signal_args(&url);
    args.extend(["--client-token", "tok-1"]);
    let output = run(&args, ALIBABA).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let seen = single(&mock);
    let request_id = seen.request_id.clone().unwrap_or_default();
    assert_eq!(stdout_json(&output)["RequestId"], request_id.as_str());
    let summary = stderr(&output);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.contains("SUCCESS") && summary.contains(&request_id),
        "{summary}"
    );
    assert_eq!(seen.signature.scheme(), Some(SignatureScheme::V3));
    assert_eq!(seen.param("ClientToken"), Some("tok-1"));
    assert_eq!(seen.param("UniqueId"), Some("u-1"));
}

#[tokio::test]
async fn v2_signature_on_request() {
    let mock = alibaba(vec![]).await;
    let url = mock.url();
    let output = run(
        &[
            "ros",
            "stop-stack-group-operation",
            "--operation-id",
            "6da106ca-1784-4a6f-a7e1-e723863dffff",
            "--region-id",
            "cn-hangzhou",
            "--signature-version",
            "v2",
            "--endpoint",
            &url,
        ],
        ALIBABA,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(single(&mock).signature.scheme(), Some(SignatureScheme::V2));
}

#[tokio::test]
async fn api_errors_exit_4_with_the_error_as_json() {
    let mock = alibaba(vec![Reply::stack_group_operation_not_found()]).await;
    let url = mock.url();
    let output = run(
        &[
            "ros",
            "stop-stack-group-operation",
            "--operation-id",
            "op-1",
            "--region-id",
            "cn-hangzhou",
            "--endpoint",
            &url,
        ],
        ALIBABA,
    )
    .await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let json = stdout_json(&output);
    assert_eq!(json["Error"]["Code"], "StackGroupOperationNotFound");
    assert_eq!(json["Error"]["HttpStatus"], 404);
    assert_eq!(
        json["Error"]["RequestId"],
        mock.calls()[0].request_id.clone().unwrap_or_default()
    );
}

#[tokio::test]
async fn validation_errors_exit_2_and_send_nothing() {
    let mock = alibaba(vec![]).await;
    let url = mock.url();
    let long = "u".repeat(65);
    let mut args = signal_args(&url);
    args[7] = &long;
    let output = run(&args, ALIBABA).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout_json(&output)["Error"]["Field"], "UniqueId");
    // clap's own usage errors are 2 as well.
    let output = run(&["ros", "signal-resource", "--status", "DONE"], ALIBABA).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(mock.calls().is_empty());
}

#[tokio::test]
async fn missing_credentials_exit_3_naming_the_variable() {
    let mock = alibaba(vec![]).await;
    let url = mock.url();
    let output = run(
        &signal_args(&url),
        &[("ALIBABA_CLOUD_ACCESS_KEY_ID", "testid")],
    )
    .await;
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"));
    assert!(mock.calls().is_empty());
}

#[tokio::test]
async fn transport_failures_and_exhausted_retries_exit_5() {
    let dead = alibaba(vec![]).await;
    dead.answer_always(Reply::drop_connection());
    let url = dead.url();
    let mut args = signal_args(&url);
    args.extend(["--max-attempts", "2"]);
    let output = run(&args, ALIBABA).await;
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["Error"]["Kind"], "transport");
    assert_eq!(dead.calls().len(), 2);

    let throttled = alibaba(vec![]).await;
    throttled.answer_always(Reply::alibaba_error(400, "Throttling.User", "slow down"));
    let url = throttled.url();
    let mut args = signal_args(&url);
    args.extend(["--max-attempts", "2"]);
    let output = run(&args, ALIBABA).await;
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["Error"]["Code"], "Throttling.User");
    assert_eq!(throttled.calls().len(), 2);
}

#[tokio::test]
async fn notify_execution_execute_task() {
    let mock = alibaba(vec![]).await;
    let url = mock.url();
    let output = run(
        &[
            "oos",
            "notify-execution",
            "--execution-id",
            "exec-1",
            "--notify-type",
            "ExecuteTask",
            "--region-id",
            "cn-hangzhou",
            "--task-name",
            "describeInstance",
            "--parameters",
            "{\"InstanceId\":\"i-1\"}",
            "--endpoint",
            &url,
        ],
        ALIBABA,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let seen = single(&mock);
    assert_eq!(seen.param("NotifyType"), Some("ExecuteTask"));
    assert_eq!(seen.param("Parameters"), Some("{\"InstanceId\":\"i-1\"}"));
}

#[tokio::test]
async fn notify_execution_refuses_bad_combinations() {
    let output = run(
        &[
            "oos",
            "notify-execution",
            "--execution-id",
            "exec-1",
            "--notify-type",
            "Approve",
            "--region-id",
            "cn-hangzhou",
            "--execution-status",
            "Success",
            "--endpoint",
            "http://127.0.0.1:9",
        ],
        ALIBABA,
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("ExecutionStatus"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn rfs_commands() {
    let plans = Reply::json(
        200,
        r#"{"execution_plans":[{"execution_plan_name":"p1","status":"APPLIED"}]}"#,
    );
    let mock = huawei(plans, vec![]).await;
    let url = mock.url();
    let output = run(
        &[
            "rfs",
            "list-execution-plans",
            "--stack-name",
            "my-stack",
            "--endpoint",
            &url,
        ],
        HUAWEI,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout_json(&output)["execution_plans"][0]["status"],
        "APPLIED"
    );
    assert!(stderr(&output).contains("latest status APPLIED"));
    assert_eq!(
        single(&mock).signature.scheme(),
        Some(SignatureScheme::Huawei)
    );

    let mock = huawei(Reply::json(202, r#"{"deployment_id":"d-9"}"#), vec![]).await;
    let url = mock.url();
    let output = run(
        &[
            "rfs",
            "continue-rollback",
            "--stack-name",
            "my-stack",
            "--project-id",
            "other-project",
            "--endpoint",
            &url,
        ],
        HUAWEI,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["deployment_id"], "d-9");
    assert_eq!(
        single(&mock).path,
        "/v1/other-project/stacks/my-stack/rollbacks"
    );

    let mock = huawei(Reply::json(200, ""), vec![]).await;
    let url = mock.url();
    let output = run(
        &[
            "rfs",
            "update-stack",
            "--stack-name",
            "my-stack",
            "--enable-auto-rollback",
            "true",
            "--agency",
            "huaweicloud:name=rf_admin_trust",
            "--endpoint",
            &url,
        ],
        HUAWEI,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let body: Value = serde_json::from_slice(&single(&mock).body).expect("json");
    assert_eq!(
        body,
        serde_json::json!({"enable_auto_rollback": true, "agencies": [{"provider_name": "huaweicloud", "agency_name": "rf_admin_trust"}]})
    );
}

#[tokio::test]
async fn rfs_errors_exit_4() {
    let mock = huawei(
        Reply::json(
            404,
            r#"{"error_code":"RF.10041001","error_msg":"The stack does not exist."}"#,
        ),
        vec![],
    )
    .await;
    let url = mock.url();
    let output = run(
        &[
            "rfs",
            "list-execution-plans",
            "--stack-name",
            "gone",
            "--endpoint",
            &url,
        ],
        HUAWEI,
    )
    .await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["Error"]["Code"], "RF.10041001");
    let output = run(
        &[
            "rfs",
            "list-execution-plans",
            "--stack-name",
            "s",
            "--endpoint",
            &url,
        ],
        &HUAWEI[..2],
    )
    .await;
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("HUAWEICLOUD_SDK_PROJECT_ID"));
}
