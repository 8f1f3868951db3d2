//! The `stackhook` binary: `serve` the built-in handlers, `invoke` a provider
//! as ROS would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use stackhook::config::{CallbackEndpoint, CallbackMethod, Config, parse_type_timeout};
use stackhook::router::GENERIC_RESOURCE_TYPE;
use stackhook::{Status, handlers, secret_key};

/// Function Compute's default port; also the default here.
const DEFAULT_PORT: u16 = 9000;

#[derive(Parser)]
#[command(
    name = "stackhook",
    version,
    about = "Runtime for Alibaba Cloud ROS custom-resource providers."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the built-in handlers (Custom::Echo, Custom::RandomString).
    Serve(ServeArgs),
    /// Act as ROS once: send a request file to a provider and print its answer.
    ///
    /// A local callback receiver takes the place of ROS's presigned URLs.
    /// Exits 0 on SUCCESS, 1 on FAILED and 2 when no answer arrives.
    Invoke(InvokeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct ServeArgs {
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
    /// Directory for the provider's state (the secret key file)
    #[arg(long, env = "STACKHOOK_STATE_DIR", default_value = ".stackhook")]
    state_dir: PathBuf,
    /// Secret key for derived values such as Custom::RandomString (at least 16 bytes); default: <state-dir>/secret.key, created on first start
    #[arg(long, env = "STACKHOOK_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Log format on stderr; the level comes from RUST_LOG (default info)
    #[arg(long, env = "STACKHOOK_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Args)]
struct InvokeArgs {
    /// A request file in ROS's format (see fixtures/)
    fixture: PathBuf,
    /// The provider's URL: http://HOST:PORT/ (async), /sync or /invoke
    #[arg(long, default_value = "http://127.0.0.1:9000/")]
    url: String,
    /// Seconds to wait for the answer
    #[arg(long, default_value_t = 70)]
    wait: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)).map(|()| ExitCode::SUCCESS),
        Command::Invoke(args) => runtime.block_on(invoke(args)),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(2)
    })
}

fn init_tracing(format: LogFormat) {
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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

async fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
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
