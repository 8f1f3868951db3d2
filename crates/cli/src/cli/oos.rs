//! `stackhook oos …`: Alibaba Cloud OOS calls.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use stackhook_cloud::Error;
use stackhook_cloud::credentials::AlibabaCredentials;
use stackhook_cloud::oos::{NotifyExecutionRequest, NotifyType, OosClient};

use super::outcome;
use super::ros::AlibabaArgs;

#[derive(Subcommand)]
pub(crate) enum OosCommand {
    /// NotifyExecution: approve, reject, retry, skip or drive a waiting execution
    #[command(after_help = NOTIFY_HELP)]
    NotifyExecution(NotifyArgs),
}

const NOTIFY_HELP: &str = concat!(
    "Which flags go with which --notify-type:\n  \
--execution-status   CompleteExecution only (required there)\n  \
--parameters         ExecuteTask only (required there; a JSON object)\n  \
--task-name          ExecuteTask only\n  \
--task-execution-id, --task-execution-ids, --loop-item\n                       \
Approve, Reject, RetryTask, SkipTask, CancelTask\n\
--task-execution-id and --task-execution-ids exclude each other; --loop-item needs --task-execution-id.\n\n\
Credentials: ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET, optional ALIBABA_CLOUD_SECURITY_TOKEN.\n\n",
    outcome::exit_codes_help!()
);

#[derive(Args)]
pub(crate) struct NotifyArgs {
    /// The execution, e.g. exec-79c321c11003a97c
    #[arg(long)]
    execution_id: String,
    /// ExecuteTask, CancelTask, CompleteExecution, Approve, Reject, RetryTask or SkipTask
    #[arg(long, value_parser = parse_notify_type)]
    notify_type: NotifyType,
    /// The execution's region; also picks the endpoint oos.<region>.aliyuncs.com
    #[arg(long)]
    region_id: String,
    /// A free-text note
    #[arg(long)]
    notify_note: Option<String>,
    /// The task to run (ExecuteTask)
    #[arg(long)]
    task_name: Option<String>,
    /// The task execution the notification is about
    #[arg(long)]
    task_execution_id: Option<String>,
    /// Several task executions (repeatable or comma-separated)
    #[arg(long, value_delimiter = ',')]
    task_execution_ids: Vec<String>,
    /// The final status (CompleteExecution), e.g. Success
    #[arg(long)]
    execution_status: Option<String>,
    /// Task parameters as a JSON object (ExecuteTask), e.g. '{}'
    #[arg(long)]
    parameters: Option<String>,
    /// The item of a loop task, e.g. i-xxx
    #[arg(long)]
    loop_item: Option<String>,
    /// Use the VPC endpoint oos-vpc.<region>.aliyuncs.com
    #[arg(long)]
    vpc: bool,
    #[command(flatten)]
    common: AlibabaArgs,
}

fn parse_notify_type(text: &str) -> Result<NotifyType, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

pub(crate) async fn run(command: OosCommand) -> ExitCode {
    let OosCommand::NotifyExecution(args) = command;
    let mut request = NotifyExecutionRequest::new(args.execution_id, args.notify_type)
        .with_region_id(args.region_id.clone());
    request.notify_note = args.notify_note;
    request.task_name = args.task_name;
    request.task_execution_id = args.task_execution_id;
    request.task_execution_ids = args.task_execution_ids;
    request.execution_status = args.execution_status;
    request.parameters = args.parameters;
    request.loop_item = args.loop_item;
    let common = args.common;
    let result = async {
        request.validate()?;
        let credentials = AlibabaCredentials::from_env()?;
        let mut client = if args.vpc {
            OosClient::vpc(credentials, &args.region_id)?
        } else {
            OosClient::new(credentials, &args.region_id)?
        }
        .with_signature_version(common.signature_version)
        .with_retry(common.retry.policy())
        .with_timeout(outcome::attempt_timeout(common.timeout));
        if let Some(url) = &common.endpoint {
            client = client.with_endpoint(url)?;
        }
        client.notify_execution(&request).await
    }
    .await;
    outcome::finish(result, |a| {
        format!(
            "notified {} of {} (RequestId {})",
            request.execution_id, request.notify_type, a.request_id
        )
    })
}
