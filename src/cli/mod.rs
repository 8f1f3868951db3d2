//! The command line: one file per subcommand.

pub(crate) mod invoke;
#[cfg(feature = "test-util")]
pub(crate) mod mock_ros;
pub(crate) mod new;
pub(crate) mod serve;

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
    /// Serve the built-in handlers (Custom::Echo, Custom::RandomString).
    Serve(serve::ServeArgs),
    /// Act as ROS once: send a request file to a provider and print its answer.
    ///
    /// A local callback receiver takes the place of ROS's presigned URLs.
    /// Exits 0 on SUCCESS, 1 on FAILED and 2 when no answer arrives.
    Invoke(invoke::InvokeArgs),
    /// Play ROS through whole lifecycles against a running provider and check ROS's rules.
    #[cfg(feature = "test-util")]
    MockRos(mock_ros::MockRosArgs),
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
pub(crate) fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
