//! `stackhook invoke`: act as ROS once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use stackhook::Status;

#[derive(Args)]
pub(crate) struct InvokeArgs {
    /// A request file in ROS's format (see fixtures/)
    fixture: PathBuf,
    /// The provider's URL: http://HOST:PORT/ (async), /sync or /invoke
    #[arg(long, default_value = "http://127.0.0.1:9000/")]
    url: String,
    /// Seconds to wait for the answer
    #[arg(long, default_value_t = 70)]
    wait: u64,
}

pub(crate) async fn run(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(&args.fixture)
        .with_context(|| format!("reading {}", args.fixture.display()))?;
    let outcome = stackhook::invoke::invoke(&body, &args.url, Duration::from_secs(args.wait))
        .await
        .context("invoking the provider")?;
    eprintln!(
        "provider replied HTTP {}: {}",
        outcome.reply_status,
        String::from_utf8_lossy(&outcome.reply_body)
    );
    let Some(answer) = outcome.answer else {
        eprintln!(
            "no answer arrived within {} s ({} callback(s) received)",
            args.wait,
            outcome.callbacks.len()
        );
        return Ok(ExitCode::from(2));
    };
    let channel = if outcome.sync {
        "in the reply".to_string()
    } else {
        outcome
            .callbacks
            .first()
            .map(|c| {
                format!(
                    "by {} to {}",
                    c.method,
                    c.uri.split('?').next().unwrap_or("/")
                )
            })
            .unwrap_or_default()
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    eprintln!("{} {channel}", answer.status.as_str());
    Ok(match answer.status {
        Status::Success => ExitCode::SUCCESS,
        Status::Failed => ExitCode::from(1),
    })
}
