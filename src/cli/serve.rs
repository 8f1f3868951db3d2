//! `stackhook serve`: the built-in handlers behind the hyper receiver.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use stackhook::config::{
    CallbackEndpoint, CallbackMethod, Config, JournalMode, RestartPolicy, parse_type_pair,
    parse_type_timeout,
};
use stackhook::router::GENERIC_RESOURCE_TYPE;
use stackhook::{handlers, secret_key};

use super::{LogFormat, init_tracing};

/// Function Compute's default port; also the default here.
const DEFAULT_PORT: u16 = 9000;

#[derive(Clone, Copy, clap::ValueEnum)]
enum JournalKind {
    Disk,
    Memory,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0:9000, or 0.0.0.0:$FC_SERVER_PORT under Function Compute]
    #[arg(long, env = "STACKHOOK_LISTEN")]
    listen: Option<SocketAddr>,
    /// Which callback URL answers go to: public (ResponseURL), intranet (IntranetResponseURL), or auto (intranet first, then public)
    #[arg(long, env = "STACKHOOK_CALLBACK_ENDPOINT", default_value = "auto")]
    callback_endpoint: CallbackEndpoint,
    /// HTTP method for answers (every Alibaba sample uses POST)
    #[arg(long, env = "STACKHOOK_CALLBACK_METHOD", default_value = "POST")]
    callback_method: CallbackMethod,
    /// Largest request body accepted, in bytes; larger ones get 413
    #[arg(long, env = "STACKHOOK_BODY_LIMIT", default_value_t = stackhook::config::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Seconds a request may take, handler and delivery together; match the resource's Timeout in the template (ROS's default is 60)
    #[arg(long, env = "STACKHOOK_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=43_200))]
    timeout: u64,
    /// Timeout for one resource type, as TYPE=SECONDS (repeatable, or comma-separated in the env var)
    #[arg(long = "type-timeout", env = "STACKHOOK_TYPE_TIMEOUTS", value_delimiter = ',', value_parser = parse_type_timeout)]
    type_timeouts: Vec<(String, Duration)>,
    /// Seconds in-flight requests may finish after SIGTERM or SIGINT before they are answered FAILED
    #[arg(long, env = "STACKHOOK_SHUTDOWN_GRACE", default_value_t = 20)]
    shutdown_grace: u64,
    /// Registered type that answers requests of the generic ALIYUN::ROS::CustomResource type
    #[arg(long, env = "STACKHOOK_GENERIC_TYPE")]
    generic_type: Option<String>,
    /// Journal: disk (embedded, durable, under --state-dir) or memory (faster; dedupe within one process, nothing survives a restart)
    #[arg(long, env = "STACKHOOK_JOURNAL", value_enum, default_value = "disk")]
    journal: JournalKind,
    /// Days finished requests are remembered, to recognise redeliveries
    #[arg(long, env = "STACKHOOK_RETENTION_DAYS", default_value_t = 7)]
    retention_days: u64,
    /// Most handlers running at once
    #[arg(long, env = "STACKHOOK_MAX_CONCURRENCY", default_value_t = stackhook::config::DEFAULT_MAX_CONCURRENCY)]
    max_concurrency: usize,
    /// Most handlers of one type running at once, as TYPE=N (repeatable, or comma-separated in the env var)
    #[arg(long = "type-concurrency", env = "STACKHOOK_TYPE_CONCURRENCY", value_delimiter = ',', value_parser = parse_type_pair::<usize>)]
    type_concurrency: Vec<(String, usize)>,
    /// Most requests waiting for a slot; beyond it new requests are answered FAILED "overloaded" at once
    #[arg(long, env = "STACKHOOK_MAX_QUEUE", default_value_t = stackhook::config::DEFAULT_MAX_QUEUE)]
    max_queue: usize,
    /// What to do after a restart with a request of TYPE that was running: rerun or fail, as TYPE=POLICY (default: rerun for idempotent handlers, fail otherwise)
    #[arg(long = "restart-policy", env = "STACKHOOK_RESTART_POLICIES", value_delimiter = ',', value_parser = parse_type_pair::<RestartPolicy>)]
    restart_policies: Vec<(String, RestartPolicy)>,
    /// Directory for the provider's state: the journal and the secret key file
    #[arg(long, env = "STACKHOOK_STATE_DIR", default_value = ".stackhook")]
    state_dir: PathBuf,
    /// Secret key for derived values such as Custom::RandomString (at least 16 bytes); default: <state-dir>/secret.key, created on first start
    #[arg(long, env = "STACKHOOK_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Log format on stderr; the level comes from RUST_LOG (default info)
    #[arg(long, env = "STACKHOOK_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let key = match &args.secret_key {
        Some(text) => secret_key::from_text(text).context("reading STACKHOOK_SECRET_KEY")?,
        None => secret_key::load_or_create(&args.state_dir)
            .with_context(|| format!("loading the secret key from {}", args.state_dir.display()))?,
    };
    let mut router = handlers::builtin_router(&key);
    if let Some(target) = &args.generic_type {
        anyhow::ensure!(
            router.resource_types().any(|t| t == target),
            "--generic-type {target} is not a registered type (registered: {})",
            router.resource_types().collect::<Vec<_>>().join(", ")
        );
        router = router.alias(GENERIC_RESOURCE_TYPE, target);
    }

    let mut config = Config::default()
        .body_limit(args.body_limit)
        .timeout(Duration::from_secs(args.timeout))
        .callback_endpoint(args.callback_endpoint)
        .callback_method(args.callback_method)
        .shutdown_grace(Duration::from_secs(args.shutdown_grace));
    for (resource_type, timeout) in args.type_timeouts {
        config = config.type_timeout(resource_type, timeout);
    }
    config = config
        .journal(match args.journal {
            JournalKind::Disk => JournalMode::Disk(args.state_dir.clone()),
            JournalKind::Memory => JournalMode::Memory,
        })
        .retention(Duration::from_secs(
            args.retention_days.saturating_mul(24 * 3600),
        ))
        .max_concurrency(args.max_concurrency)
        .max_queue(args.max_queue);
    for (resource_type, limit) in args.type_concurrency {
        config = config.type_concurrency(resource_type, limit);
    }
    for (resource_type, policy) in args.restart_policies {
        config = config.restart_policy(resource_type, policy);
    }

    let listen = match args.listen {
        Some(addr) => addr,
        None => {
            let port = std::env::var("FC_SERVER_PORT")
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok())
                .unwrap_or(DEFAULT_PORT);
            SocketAddr::from(([0, 0, 0, 0], port))
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    stackhook::serve(listener, router, config, shutdown_signal())
        .await
        .context("serving")
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown signal received");
}
