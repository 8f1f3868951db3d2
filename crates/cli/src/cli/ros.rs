//! `stackhook ros …`: Alibaba Cloud ROS calls.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use stackhook_cloud::Error;
use stackhook_cloud::acs::SignatureVersion;
use stackhook_cloud::credentials::AlibabaCredentials;
use stackhook_cloud::ros::{
    RosClient, RosEndpoint, SignalResourceRequest, SignalStatus, StopStackGroupOperationRequest,
    WaitConditionSignal, signal_wait_condition,
};

use super::outcome::{self, RetryArgs};

#[derive(Subcommand)]
pub(crate) enum RosCommand {
    /// SignalResource: send SUCCESS, FAILURE or WARNING to a resource in a stack
    #[command(after_help = outcome::ALIBABA_HELP)]
    SignalResource(SignalResourceArgs),
    /// StopStackGroupOperation: stop an ongoing stack-group operation
    #[command(after_help = outcome::ALIBABA_HELP)]
    StopStackGroupOperation(StopArgs),
    /// Signal a WaitConditionHandle through its signed URL (JSON status, id, reason)
    #[command(after_help = outcome::EXIT_CODES)]
    SignalWaitCondition(WaitConditionArgs),
}

/// Flags every signed Alibaba call takes.
#[derive(Args)]
pub(crate) struct AlibabaArgs {
    /// Send to this endpoint instead: a host or a URL (http:// allowed, for local testing)
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
    /// Signature: v3 (ACS3-HMAC-SHA256) or v2 (HMAC-SHA1)
    #[arg(long, default_value = "v3", value_parser = parse_signature_version)]
    pub(crate) signature_version: SignatureVersion,
    /// Seconds each attempt may take
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout: u64,
    #[command(flatten)]
    pub(crate) retry: RetryArgs,
}

fn parse_signature_version(text: &str) -> Result<SignatureVersion, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

fn parse_status(text: &str) -> Result<SignalStatus, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

/// Where ROS is: the site decides the host, not the region.
#[derive(Args)]
pub(crate) struct RosSiteArgs {
    /// Use ros-intl.aliyuncs.com (international-site accounts) instead of ros.aliyuncs.com
    #[arg(long)]
    intl: bool,
    /// Use the VPC endpoint (ros[-intl].vpc-proxy.aliyuncs.com)
    #[arg(long)]
    vpc: bool,
}

#[derive(Args)]
pub(crate) struct SignalResourceArgs {
    /// The stack's id
    #[arg(long)]
    stack_id: String,
    /// The resource's name in the template
    #[arg(long)]
    logical_resource_id: String,
    /// 1-64 characters, distinct per signal to the same resource
    #[arg(long)]
    unique_id: String,
    /// SUCCESS, FAILURE or WARNING
    #[arg(long, value_parser = parse_status)]
    status: SignalStatus,
    /// The stack's region, e.g. cn-hangzhou
    #[arg(long)]
    region_id: String,
    /// Idempotency token (up to 64 letters, digits, - and _); default: derived from the other flags
    #[arg(long)]
    client_token: Option<String>,
    #[command(flatten)]
    site: RosSiteArgs,
    #[command(flatten)]
    common: AlibabaArgs,
}

#[derive(Args)]
pub(crate) struct StopArgs {
    /// The operation, from ListStackGroupOperations
    #[arg(long)]
    operation_id: String,
    /// The stack group's region, e.g. cn-hangzhou
    #[arg(long)]
    region_id: String,
    #[command(flatten)]
    site: RosSiteArgs,
    #[command(flatten)]
    common: AlibabaArgs,
}

#[derive(Args)]
pub(crate) struct WaitConditionArgs {
    /// The handle's signed URL (its URL output); it is never printed
    #[arg(long)]
    url: String,
    /// A header from the handle's Headers output, as NAME=VALUE (repeatable)
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// SUCCESS, FAILURE or WARNING
    #[arg(long, value_parser = parse_status)]
    status: SignalStatus,
    /// The signal's id; the same id overwrites an earlier signal
    #[arg(long)]
    id: Option<String>,
    /// Shown in the stack's events
    #[arg(long)]
    reason: Option<String>,
    /// Data for the WaitCondition (field not confirmed by the docs)
    #[arg(long)]
    data: Option<String>,
    #[command(flatten)]
    retry: RetryArgs,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, not {text:?}"))
}

fn client(site: &RosSiteArgs, common: &AlibabaArgs) -> Result<RosClient, Error> {
    let endpoint = match (site.intl, site.vpc) {
        (false, false) => RosEndpoint::China,
        (true, false) => RosEndpoint::International,
        (false, true) => RosEndpoint::ChinaVpc,
        (true, true) => RosEndpoint::InternationalVpc,
    };
    let credentials = AlibabaCredentials::from_env()?;
    let mut client = RosClient::for_endpoint(endpoint, credentials)
        .with_signature_version(common.signature_version)
        .with_retry(common.retry.policy())
        .with_timeout(outcome::attempt_timeout(common.timeout));
    if let Some(url) = &common.endpoint {
        client = client.with_endpoint(url)?;
    }
    Ok(client)
}

pub(crate) async fn run(command: RosCommand) -> ExitCode {
    match command {
        RosCommand::SignalResource(args) => {
            let mut request = SignalResourceRequest::new(
                args.region_id,
                args.stack_id,
                args.logical_resource_id,
                args.unique_id,
                args.status,
            );
            if let Some(token) = args.client_token {
                request = request.with_client_token(token);
            }
            let result = async {
                request.validate()?;
                client(&args.site, &args.common)?
                    .signal_resource(&request)
                    .await
            }
            .await;
            outcome::finish(result, |a| {
                format!(
                    "signalled {} {} on stack {} (RequestId {})",
                    request.status, request.logical_resource_id, request.stack_id, a.request_id
                )
            })
        }
        RosCommand::StopStackGroupOperation(args) => {
            let request = StopStackGroupOperationRequest::new(args.region_id, args.operation_id);
            let result = async {
                request.validate()?;
                client(&args.site, &args.common)?
                    .stop_stack_group_operation(&request)
                    .await
            }
            .await;
            outcome::finish(result, |a| {
                format!(
                    "stopping stack-group operation {} (RequestId {})",
                    request.operation_id, a.request_id
                )
            })
        }
        RosCommand::SignalWaitCondition(args) => {
            let mut signal = WaitConditionSignal::new(args.status);
            signal.id = args.id;
            signal.reason = args.reason;
            signal.data = args.data;
            let result =
                signal_wait_condition(&args.url, &args.headers, &signal, &args.retry.policy())
                    .await
                    .map(|()| serde_json::json!({"Signalled": true, "Status": signal.status}));
            outcome::finish(result, |_| {
                format!("signalled {} to the wait condition handle", signal.status)
            })
        }
    }
}
