//! `stackhook bench`: play ROS at scale against a provider on this machine.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use stackhook_testing::loadgen::{self, LoadPlan};

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// The provider's URL on this machine: http://127.0.0.1:PORT/ (async) or /sync
    #[arg(long, default_value = "http://127.0.0.1:9000/")]
    url: String,
    /// Number of requests
    #[arg(short = 'n', long, default_value_t = 1000)]
    requests: usize,
    /// Requests in flight at once
    #[arg(short = 'c', long, default_value_t = 32)]
    concurrency: usize,
    /// Pace to this many requests per second (default: as fast as answers allow)
    #[arg(long)]
    rate: Option<f64>,
    /// Resource type to create
    #[arg(long = "type", default_value = "Custom::Echo")]
    resource_type: String,
    /// Properties as JSON
    #[arg(long, default_value = r#"{"Greeting":"hello"}"#)]
    properties: String,
    /// Count a request done when acknowledged (for long-running types such as Custom::Wait)
    #[arg(long)]
    ack_only: bool,
    /// The provider's pid, to report its peak RSS
    #[arg(long)]
    pid: Option<u32>,
    /// Stop after this many seconds whatever is left
    #[arg(long, default_value_t = 120)]
    time_limit: u64,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let properties = serde_json::from_str(&args.properties).context("--properties is not JSON")?;
    let plan = LoadPlan {
        rate: args.rate,
        resource_type: args.resource_type,
        properties,
        time_limit: Duration::from_secs(args.time_limit),
        ack_only: args.ack_only,
        provider_pid: args.pid,
        ..LoadPlan::echo(args.url, args.requests, args.concurrency)
    };
    let report = loadgen::run(&plan).await.context("running the load")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "sent {} | ok {} | errors {} | {:.1} s | {:.0} req/s | p50 {:.2} ms | p90 {:.2} ms | p99 {:.2} ms | max {:.2} ms{}",
            report.sent,
            report.completed,
            report.errors,
            report.elapsed_s,
            report.throughput,
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms,
            report
                .peak_rss_kib
                .map(|kib| format!(" | peak RSS {:.1} MiB", kib as f64 / 1024.0))
                .unwrap_or_default()
        );
    }
    Ok(if report.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
