//! The command line: one file per subcommand.

pub(crate) mod bench;
pub(crate) mod invoke;
pub(crate) mod mock_api;
pub(crate) mod mock_ros;
pub(crate) mod new;
pub(crate) mod oos;
pub(crate) mod outcome;
pub(crate) mod rfs;
pub(crate) mod ros;
pub(crate) mod serve;
pub(crate) mod smq;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "stackhook",
    version,
    about = "Runtime for Alibaba Cloud ROS custom-resource providers.",
    long_about = "Runtime for Alibaba Cloud ROS custom-resource providers.\n\n\
Every flag can also be set with the environment variable shown beside it."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve the built-in handlers (Custom::Echo, Custom::RandomString, Custom::Wait, Custom::ResourceSignal, Custom::OosExecutionNotify, Custom::RfsStackSettings).
    Serve(serve::ServeArgs),
    /// Act as ROS once: send a request file to a provider and print its answer.
    ///
    /// A local callback receiver takes the place of ROS's presigned URLs.
    /// Exits 0 on SUCCESS, 1 on FAILED and 2 when no answer arrives.
    Invoke(invoke::InvokeArgs),
    /// Play ROS at scale against a provider on this machine (loopback only):
    /// throughput, latency percentiles, errors and the provider's peak RSS.
    ///
    /// Exits 0 when every request succeeded, 1 otherwise.
    Bench(bench::BenchArgs),
    /// Alibaba Cloud ROS calls: signal-resource, stop-stack-group-operation, signal-wait-condition.
    #[command(subcommand, after_help = outcome::EXIT_CODES)]
    Ros(ros::RosCommand),
    /// Alibaba Cloud OOS calls: notify-execution.
    #[command(subcommand, after_help = outcome::EXIT_CODES)]
    Oos(oos::OosCommand),
    /// Huawei Cloud RFS calls: list-execution-plans, continue-rollback, update-stack.
    #[command(subcommand, after_help = outcome::EXIT_CODES)]
    Rfs(rfs::RfsCommand),
    /// Play ROS through whole lifecycles against a running provider and check ROS's rules.
    MockRos(mock_ros::MockRosArgs),
    /// Emulate the ROS, OOS and Huawei RFS APIs on this machine: check
    /// signatures and parameters, answer as the services do, and print a
    /// line per call.
    ///
    /// Point a provider's endpoint override at it (e.g. the built-in
    /// handlers' endpoint, or `stackhook ros … --endpoint URL`). Runs until
    /// SIGINT or SIGTERM.
    MockApi(mock_api::MockApiArgs),
    /// Scaffold a provider crate: handler, tests against the mock ROS,
    /// Dockerfile, Function Compute s.yaml and a ROS template.
    New(new::NewArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Install the tracing subscriber: stderr, level from RUST_LOG (default info).
/// Colours only when stderr is a terminal, so collected logs (Function
/// Compute, Docker, files) carry no escape codes.
pub(crate) fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
