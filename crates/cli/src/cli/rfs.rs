//! `stackhook rfs …`: Huawei Cloud RFS calls.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use stackhook_cloud::Error;
use stackhook_cloud::credentials::HuaweiCredentials;
use stackhook_cloud::huawei::rfs::{
    Agency, ContinueRollbackStackRequest, ListExecutionPlansRequest, RfsClient, UpdateStackRequest,
};

use super::outcome::{self, RetryArgs};

const RFS_HELP: &str = concat!(
    "Credentials: HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK, optional HUAWEICLOUD_SDK_SECURITY_TOKEN; project: --project-id or HUAWEICLOUD_SDK_PROJECT_ID.\n\n",
    outcome::exit_codes_help!()
);

#[derive(Subcommand)]
pub(crate) enum RfsCommand {
    /// ListExecutionPlans: a stack's execution plans, newest first
    #[command(after_help = RFS_HELP)]
    ListExecutionPlans(ListArgs),
    /// ContinueRollbackStack: retry a failed auto-rollback (stack in ROLLBACK_FAILED)
    #[command(after_help = RFS_HELP)]
    ContinueRollback(RollbackArgs),
    /// UpdateStack: change description, deletion protection, auto rollback or agencies
    #[command(after_help = RFS_HELP)]
    UpdateStack(UpdateArgs),
}

/// Flags every RFS call takes.
#[derive(Args)]
pub(crate) struct HuaweiArgs {
    /// The project id (3-64 characters)
    #[arg(long, env = "HUAWEICLOUD_SDK_PROJECT_ID")]
    project_id: Option<String>,
    /// The region; picks the endpoint rfs.<region>.myhuaweicloud.com
    #[arg(long, required_unless_present = "endpoint")]
    region: Option<String>,
    /// The stack's name
    #[arg(long)]
    stack_name: String,
    /// Guard: fail unless the stack with that name has this id
    #[arg(long)]
    stack_id: Option<String>,
    /// Send to this endpoint instead (http:// allowed, for local testing)
    #[arg(long)]
    endpoint: Option<String>,
    /// Seconds each attempt may take
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    retry: RetryArgs,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    common: HuaweiArgs,
    /// The previous page's next_marker
    #[arg(long, conflicts_with = "all")]
    marker: Option<String>,
    /// Page size, 10-1000
    #[arg(long)]
    limit: Option<u32>,
    /// Follow next_marker and print every plan
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
pub(crate) struct RollbackArgs {
    #[command(flatten)]
    common: HuaweiArgs,
}

#[derive(Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    common: HuaweiArgs,
    /// The new description (0-1024 characters)
    #[arg(long)]
    description: Option<String>,
    /// Deletion protection: true or false
    #[arg(long)]
    enable_deletion_protection: Option<bool>,
    /// Automatic rollback: true or false
    #[arg(long)]
    enable_auto_rollback: Option<bool>,
    /// An agency, as PROVIDER:name=AGENCY_NAME or PROVIDER:urn=AGENCY_URN (repeatable; replaces the whole list)
    #[arg(long = "agency", value_parser = parse_agency)]
    agencies: Vec<Agency>,
}

fn parse_agency(text: &str) -> Result<Agency, String> {
    let usage = || format!("expected PROVIDER:name=AGENCY or PROVIDER:urn=URN, not {text:?}");
    let (provider, reference) = text.split_once(':').ok_or_else(usage)?;
    match reference.split_once('=') {
        Some(("name", name)) => Ok(Agency::by_name(provider, name)),
        Some(("urn", urn)) => Ok(Agency::by_urn(provider, urn)),
        _ => Err(usage()),
    }
}

fn client(common: &HuaweiArgs) -> Result<RfsClient, Error> {
    let mut credentials = HuaweiCredentials::from_env()?;
    if let Some(project) = &common.project_id {
        credentials = credentials.with_project_id(project.clone());
    }
    // With --endpoint the region only fills the default endpoint.
    let region = common.region.as_deref().unwrap_or("cn-north-4");
    let mut client = RfsClient::new(credentials, region)?
        .with_retry(common.retry.policy())
        .with_timeout(outcome::attempt_timeout(common.timeout));
    if let Some(url) = &common.endpoint {
        client = client.with_endpoint(url)?;
    }
    Ok(client)
}

pub(crate) async fn run(command: RfsCommand) -> ExitCode {
    match command {
        RfsCommand::ListExecutionPlans(args) => {
            let common = &args.common;
            let mut request = ListExecutionPlansRequest::new(common.stack_name.clone());
            request.stack_id = common.stack_id.clone();
            request.marker = args.marker.clone();
            request.limit = args.limit;
            let result = async {
                request.validate()?;
                let client = client(common)?;
                if args.all {
                    let plans = client
                        .list_all_execution_plans(&request.stack_name, request.stack_id.as_deref())
                        .await?;
                    Ok(serde_json::json!({ "execution_plans": plans }))
                } else {
                    let page = client.list_execution_plans(&request).await?;
                    serde_json::to_value(page).map_err(|e| Error::Config(e.to_string()))
                }
            }
            .await;
            outcome::finish(result, |answer| {
                let plans = answer["execution_plans"]
                    .as_array()
                    .map_or(&[][..], Vec::as_slice);
                let latest = plans
                    .first()
                    .and_then(|p| p["status"].as_str())
                    .unwrap_or("none");
                format!(
                    "{} execution plan(s) for {}; latest status {latest}",
                    plans.len(),
                    request.stack_name
                )
            })
        }
        RfsCommand::ContinueRollback(args) => {
            let mut request = ContinueRollbackStackRequest::new(args.common.stack_name.clone());
            request.stack_id = args.common.stack_id.clone();
            let result = async {
                request.validate()?;
                client(&args.common)?
                    .continue_rollback_stack(&request)
                    .await
            }
            .await;
            outcome::finish(result, |a| {
                format!(
                    "rollback of {} continues as deployment {}",
                    request.stack_name, a.deployment_id
                )
            })
        }
        RfsCommand::UpdateStack(args) => {
            let mut request = UpdateStackRequest::new(args.common.stack_name.clone());
            request.stack_id = args.common.stack_id.clone();
            request.description = args.description;
            request.enable_deletion_protection = args.enable_deletion_protection;
            request.enable_auto_rollback = args.enable_auto_rollback;
            if !args.agencies.is_empty() {
                request.agencies = Some(args.agencies);
            }
            let result = async {
                request.validate()?;
                client(&args.common)?.update_stack(&request).await
            }
            .await;
            outcome::finish(result, |a| {
                format!(
                    "updated stack {} (HTTP {})",
                    request.stack_name, a.http_status
                )
            })
        }
    }
}
