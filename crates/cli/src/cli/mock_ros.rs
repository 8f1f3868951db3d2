//! `stackhook mock-ros run`: play ROS through scenario files against a running provider.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use stackhook_testing::{MockRos, Scenario};

#[derive(Args)]
pub(crate) struct MockRosArgs {
    #[command(subcommand)]
    command: MockRosCommand,
}

#[derive(Subcommand)]
enum MockRosCommand {
    /// Run scenario files (YAML or JSON) against a provider and report.
    ///
    /// Prints a line per step and a summary table. Exits 0 when every ROS
    /// rule held and every step got the answer it expected, 1 otherwise, and
    /// 2 when a scenario cannot be read or run.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Scenario files (see fixtures/scenarios/)
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// The provider's URL: http://HOST:PORT/ (async), /sync or /invoke (Function Compute)
    #[arg(
        long,
        env = "STACKHOOK_MOCK_ROS_URL",
        default_value = "http://127.0.0.1:9000/"
    )]
    url: String,
    /// Send each request as a message on this SMQ (MNS) queue instead, as ROS
    /// does for a queue ServiceToken (acs:mns:REGION:ACCOUNT:queues/NAME), to a
    /// provider started with --mns-queue; signed with ALIBABA_CLOUD_ACCESS_KEY_ID
    /// and ALIBABA_CLOUD_ACCESS_KEY_SECRET
    #[arg(long, env = "STACKHOOK_MOCK_ROS_QUEUE", conflicts_with = "url")]
    queue: Option<String>,
    /// The queue's endpoint instead of the one its ARN implies (`stackhook mock-api`'s SMQ emulator)
    #[arg(long, env = "STACKHOOK_MOCK_ROS_QUEUE_ENDPOINT", requires = "queue")]
    queue_endpoint: Option<String>,
    /// Seconds ROS waits for each answer, overriding the scenario's `timeout`
    #[arg(long, env = "STACKHOOK_MOCK_ROS_TIMEOUT")]
    timeout: Option<f64>,
    /// Colour: auto (when stdout is a terminal and NO_COLOR is unset), always or never
    #[arg(long, value_enum, default_value = "auto")]
    color: Color,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    fn enabled(self) -> bool {
        self.decide(
            std::env::var_os("NO_COLOR").as_deref(),
            std::io::stdout().is_terminal(),
        )
    }

    /// Colour for `auto` only on a terminal, and never when `NO_COLOR` is
    /// set to anything non-empty (https://no-color.org).
    fn decide(self, no_color: Option<&std::ffi::OsStr>, terminal: bool) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => no_color.is_none_or(|v| v.is_empty()) && terminal,
        }
    }
}

pub(crate) async fn run(args: MockRosArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MockRosCommand::Run(args) => run_scenarios(args).await,
    }
}

/// The SMQ queue `arn` names, at `endpoint` or the ARN's own, signed with
/// the environment's Alibaba Cloud key.
fn queue(arn: &str, endpoint: Option<&str>) -> anyhow::Result<stackhook_smq::Queue> {
    let parsed: stackhook_smq::Arn = arn.parse().with_context(|| format!("--queue {arn}"))?;
    let key = stackhook_cloud::AlibabaCredentials::from_env().context("--queue needs a key")?;
    let mut credentials =
        stackhook_smq::Credentials::new(key.access_key_id(), key.access_key_secret());
    if let Some(token) = key.security_token() {
        credentials = credentials.with_security_token(token);
    }
    let client = stackhook_smq::Client::for_arn(&parsed, endpoint, credentials)?;
    Ok(client.queue(parsed.name()))
}

async fn run_scenarios(args: RunArgs) -> anyhow::Result<ExitCode> {
    let color = args.color.enabled();
    // Read every file first, so a typo in the third fails before the first runs.
    let mut scenarios = Vec::new();
    for path in &args.scenarios {
        let scenario = Scenario::from_path(path)
            .with_context(|| format!("reading the scenario {}", path.display()))?;
        let lifecycle = scenario
            .lifecycle()
            .with_context(|| format!("in the scenario {}", path.display()))?;
        scenarios.push((scenario, lifecycle));
    }
    let timeout = args
        .timeout
        .map(|s| {
            anyhow::ensure!(
                s.is_finite() && s > 0.0 && s <= 43_200.0,
                "--timeout must be between 0 and 43200 seconds"
            );
            Ok(Duration::from_secs_f64(s))
        })
        .transpose()?;

    let mut all_ok = true;
    for (index, (scenario, lifecycle)) in scenarios.iter().enumerate() {
        let target = match &args.queue {
            Some(arn) => MockRos::queue(queue(arn, args.queue_endpoint.as_deref())?),
            None => MockRos::url(&args.url),
        };
        let mut ros = scenario.configure(target.context("building the mock ROS")?);
        if let Some(timeout) = timeout {
            ros = ros.timeout(timeout);
        }
        if index > 0 {
            emit("");
        }
        emit(&heading(
            color,
            &format!(
                "mock ROS · {} · {} · {}",
                scenario.name.as_deref().unwrap_or("scenario"),
                scenario.resource_type,
                ros.describe_target()
            ),
        ));
        let report = lifecycle
            .run_with_progress(&ros, |step| emit(&step.progress(color)))
            .await;
        emit("");
        emit(report.summary(color).trim_end());
        all_ok &= report.is_ok();
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Print a line; a closed stdout (`| head`) must not stop the run or change
/// its exit status.
fn emit(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn heading(color: bool, text: &str) -> String {
    if color {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_terminals_without_no_color() {
        assert!(Color::Auto.decide(None, true));
        assert!(Color::Auto.decide(Some(OsStr::new("")), true));
        assert!(!Color::Auto.decide(Some(OsStr::new("1")), true));
        assert!(!Color::Auto.decide(None, false));
        assert!(Color::Always.decide(Some(OsStr::new("1")), false));
        assert!(!Color::Never.decide(None, true));
    }
}
