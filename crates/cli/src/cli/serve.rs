//! `stackhook serve`: the built-in handlers behind the hyper receiver.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use stackhook::config::{
    CallbackEndpoint, CallbackMethod, Config, JournalLifetime, JournalMode, RestartPolicy,
    SharedJournal, parse_type_pair, parse_type_timeout,
};
use stackhook::router::GENERIC_RESOURCE_TYPE;
use stackhook::security::callback_guard::HostPattern;
use stackhook::security::signature::Reading;
use stackhook_handlers as handlers;

use crate::secret_key;

use super::{LogFormat, init_tracing};

/// Function Compute's default port; also the default here.
const DEFAULT_PORT: u16 = 9000;

/// `--journal`: a kind, or a shared journal's URL.
#[derive(Clone)]
enum JournalKind {
    Disk,
    Memory,
    /// `postgres://…` or `postgresql://…`, checked (and never shown
    /// with its password) when the journal is opened.
    Url(String),
}

/// Parse `--journal`. The error never repeats a URL, which may carry a
/// password.
fn parse_journal(text: &str) -> Result<JournalKind, String> {
    match text {
        "disk" => Ok(JournalKind::Disk),
        "memory" => Ok(JournalKind::Memory),
        // Checked when opened: clap would repeat a rejected value whole.
        url if url.contains("://") => Ok(JournalKind::Url(url.to_owned())),
        other => Err(format!(
            "`{other}` is not one of disk, memory, or a postgres:// URL"
        )),
    }
}

/// No doc comments on the values: clap would list them as separate lines,
/// and `--journal-lifetime`'s help says what each does.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LifetimeKind {
    Process,
    Persistent,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0:9000, or 0.0.0.0:$FC_SERVER_PORT under Function Compute]
    #[arg(long, env = "STACKHOOK_LISTEN")]
    listen: Option<SocketAddr>,
    /// Which callback URL answers go to: public (ResponseURL), intranet (IntranetResponseURL), or auto (intranet first, then public); public and intranet use the other URL when a request lacks theirs
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
    /// Seconds after SIGTERM or SIGINT in which in-flight requests finish and polls due within them run and answer; then handlers still running are answered FAILED, answers get a final 5 s to be delivered, and --journal-lifetime decides what becomes of work still waiting
    #[arg(long, env = "STACKHOOK_SHUTDOWN_GRACE", default_value_t = 20)]
    shutdown_grace: u64,
    /// Registered type that answers requests of the generic ALIYUN::ROS::CustomResource type
    #[arg(long, env = "STACKHOOK_GENERIC_TYPE")]
    generic_type: Option<String>,
    /// Journal: disk (embedded, durable, under --state-dir), memory (faster; dedupe within one process, nothing survives a restart), or postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full (postgresql:// too): a PostgreSQL journal that several replicas share (schema created and migrated at start; sslmode disable, prefer, require, verify-ca or verify-full). With PostgreSQL a stop (SIGTERM) finishes what it can within the shutdown grace, then releases the replica's remaining work to its peers at once instead of failing it, so the journal lifetime setting does not apply; the password never appears in logs
    #[arg(long, env = "STACKHOOK_JOURNAL", default_value = "disk", value_parser = parse_journal, hide_env_values = true, hide_default_value = true)]
    journal: JournalKind,
    /// Schema of a PostgreSQL journal's tables (created at start); providers that share a database but not their work use one each
    #[arg(long, env = "STACKHOOK_JOURNAL_SCHEMA", default_value = stackhook_postgres::DEFAULT_SCHEMA)]
    journal_schema: String,
    /// Seconds a replica's lease on its PostgreSQL journal records lasts: a dead replica's work is taken over this long after its last heartbeat
    #[arg(long, env = "STACKHOOK_LEASE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3_600))]
    lease: u64,
    /// Seconds between heartbeats that renew the replica's leases on a PostgreSQL journal (at most a third of --lease)
    #[arg(long, env = "STACKHOOK_HEARTBEAT", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1_200))]
    heartbeat: u64,
    /// Milliseconds between a replica's scans of a PostgreSQL journal for work to claim: polls that came due (any live replica may run one, so long-running work is shared out) and the work of replicas whose leases ran out. A due poll waits at most this long beyond its own delay
    #[arg(long, env = "STACKHOOK_CLAIM_SCAN_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    claim_scan_ms: u64,
    /// Whether the journal outlives the process, which decides what a stop (SIGTERM, SIGINT) does with work still waiting for a poll after --shutdown-grace. process (the default, under Function Compute too): the journal is gone with the process (a container without a mounted state volume, FC, --journal memory), so that work is answered FAILED before exit, naming this setting. persistent: --state-dir is on storage the next start opens (a mounted volume, a VM's disk), so that work stays in the journal and resumes at the next start; needs --journal disk
    #[arg(
        long,
        env = "STACKHOOK_JOURNAL_LIFETIME",
        value_enum,
        default_value = "process"
    )]
    journal_lifetime: LifetimeKind,
    /// Days finished requests are remembered, to recognise redeliveries [default: 7 with the disk journal, 1 with the memory journal]
    #[arg(long, env = "STACKHOOK_RETENTION_DAYS")]
    retention_days: Option<u64>,
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
    #[command(flatten)]
    security: Box<SecurityArgs>,
    #[command(flatten)]
    smq: Box<super::smq::SmqArgs>,
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let mut config = Config::default()
        .body_limit(args.body_limit)
        .timeout(Duration::from_secs(args.timeout))
        .callback_endpoint(args.callback_endpoint)
        .callback_method(args.callback_method)
        .shutdown_grace(Duration::from_secs(args.shutdown_grace));
    for (resource_type, timeout) in args.type_timeouts {
        config = config.type_timeout(resource_type, timeout);
    }
    anyhow::ensure!(
        args.heartbeat.saturating_mul(3) <= args.lease,
        "--heartbeat {} is longer than a third of --lease {}: a live replica's leases could run out between heartbeats",
        args.heartbeat,
        args.lease
    );
    config = config
        .journal(match &args.journal {
            JournalKind::Disk => JournalMode::Disk(args.state_dir.clone()),
            JournalKind::Memory => JournalMode::Memory,
            JournalKind::Url(url) => JournalMode::Shared(SharedJournal(Arc::new(
                open_postgres(url, &args.journal_schema, Duration::from_secs(args.lease)).await?,
            ))),
        })
        .heartbeat(Duration::from_secs(args.heartbeat))
        .claim_scan(Duration::from_millis(args.claim_scan_ms))
        .journal_lifetime(match args.journal_lifetime {
            LifetimeKind::Process => JournalLifetime::Process,
            LifetimeKind::Persistent => JournalLifetime::Persistent,
        })
        .max_concurrency(args.max_concurrency)
        .max_queue(args.max_queue);
    if let Some(days) = args.retention_days {
        config = config.retention(Duration::from_secs(days.saturating_mul(24 * 3600)));
    }
    for (resource_type, limit) in args.type_concurrency {
        config = config.type_concurrency(resource_type, limit);
    }
    for (resource_type, policy) in args.restart_policies {
        config = config.restart_policy(resource_type, policy);
    }
    let config = args.security.apply(config);
    // Before anything is created or bound: a setting that cannot work is
    // one error line.
    config.validate()?;

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
    // The queue is checked before the port is bound: a queue that cannot
    // be consumed is one error line and a non-zero exit.
    let extras = args
        .smq
        .extras(Duration::from_secs(args.shutdown_grace))
        .await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    stackhook::server::serve_with(listener, router, config, extras, shutdown_signal())
        .await
        .context("serving")
}

/// Connect to the PostgreSQL journal at `url` (creating or migrating its
/// schema) as a replica with a fresh id. An error is one line naming the
/// URL without its password.
async fn open_postgres(
    url: &str,
    schema: &str,
    lease: Duration,
) -> anyhow::Result<stackhook_postgres::PostgresStore> {
    let scheme = url.split("://").next().unwrap_or_default();
    anyhow::ensure!(
        scheme == "postgres" || scheme == "postgresql",
        "--journal: a journal URL's scheme is postgres or postgresql, not `{scheme}`"
    );
    let config = stackhook_postgres::PostgresConfig::from_url(url)?
        .schema(schema)
        .lease(lease);
    Ok(stackhook_postgres::PostgresStore::connect(config).await?)
}

/// Completes on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
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

/// Authentication, callback guard, limits and TLS (docs/security.md).
#[derive(Args)]
#[command(next_help_heading = "Security")]
struct SecurityArgs {
    /// Shared token required on web: routes, as the X-Stackhook-Token header or the token query parameter (prefer the env var: flags show in `ps`)
    #[arg(long, env = "STACKHOOK_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// ROS HttpConfig.SignKey: verify the Signature ROS adds to each request (needs --sign-url)
    #[arg(
        long,
        env = "STACKHOOK_SIGN_KEY",
        hide_env_values = true,
        requires = "sign_url"
    )]
    sign_key: Option<String>,
    /// The URL of the ServiceToken exactly as in the template (web:URL), which ROS signs
    #[arg(long, env = "STACKHOOK_SIGN_URL")]
    sign_url: Option<String>,
    /// A header from HttpConfig.Headers, as KEY:VALUE (repeatable, or comma-separated in the env var); they are signed
    #[arg(long = "sign-header", env = "STACKHOOK_SIGN_HEADERS", hide_env_values = true, value_delimiter = ',', value_parser = parse_header)]
    sign_headers: Vec<(String, String)>,
    /// HttpConfig.ContentType, as signed
    #[arg(long, env = "STACKHOOK_SIGN_CONTENT_TYPE", default_value = stackhook::security::signature::DEFAULT_SIGN_CONTENT_TYPE)]
    sign_content_type: String,
    /// Reading of ROS's loosely documented signature, DIGEST/MD5/JSON/HEADERS: hmac-sha1|sha1 / hex|base64 / python|compact / block|lines
    #[arg(
        long,
        env = "STACKHOOK_SIGN_READING",
        default_value = "hmac-sha1/hex/python/block"
    )]
    sign_reading: Reading,
    /// Seconds a Signature's Date may differ from the local clock
    #[arg(long, env = "STACKHOOK_SIGN_SKEW", default_value_t = stackhook::security::signature::DEFAULT_SIGN_SKEW.as_secs())]
    sign_skew: u64,
    /// Signature values remembered to refuse replays
    #[arg(long, env = "STACKHOOK_REPLAY_CAPACITY", default_value_t = stackhook::security::signature::DEFAULT_REPLAY_CAPACITY)]
    replay_capacity: usize,
    /// Also require the token and signature on Function Compute's /invoke (FC's invoke API already authenticates callers)
    #[arg(long, env = "STACKHOOK_AUTH_FC_ROUTES")]
    auth_fc_routes: bool,
    /// Hosts answers may be sent to: names, *.suffix patterns, IP addresses (needed for any IP literal) or *, comma-separated
    #[arg(
        long,
        env = "STACKHOOK_CALLBACK_ALLOW",
        value_delimiter = ',',
        default_value = "*.aliyuncs.com,*.alibabacloud.com"
    )]
    callback_allow: Vec<HostPattern>,
    /// Deepest JSON nesting accepted in a request body
    #[arg(long, env = "STACKHOOK_JSON_DEPTH", default_value_t = stackhook::security::limits::DEFAULT_JSON_DEPTH)]
    json_depth: usize,
    /// Seconds a client gets to send its request headers (and finish a TLS handshake)
    #[arg(long, env = "STACKHOOK_HEADER_TIMEOUT", default_value_t = stackhook::security::limits::DEFAULT_HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a client gets to send the whole request body
    #[arg(long, env = "STACKHOOK_BODY_TIMEOUT", default_value_t = stackhook::security::limits::DEFAULT_BODY_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Largest request line plus headers, in bytes (at least 8192)
    #[arg(long, env = "STACKHOOK_MAX_HEADER_BYTES", default_value_t = stackhook::security::limits::DEFAULT_MAX_HEADER_BYTES)]
    max_header_bytes: usize,
    /// Most connections open at once; more are closed on accept
    #[arg(long, env = "STACKHOOK_MAX_CONNECTIONS", default_value_t = stackhook::security::limits::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most requests from one client address whose body is being read at once; another waits up to 5 s for a slot, then gets 503 with Retry-After (behind a proxy: see docs/security.md)
    #[arg(long, env = "STACKHOOK_MAX_REQUESTS_PER_IP", default_value_t = stackhook::security::limits::DEFAULT_MAX_REQUESTS_PER_IP)]
    max_requests_per_ip: usize,
    /// Property name whose value is hidden in TRACE body logs (repeatable, or comma-separated in the env var)
    #[arg(
        long = "sensitive-property",
        env = "STACKHOOK_SENSITIVE_PROPERTIES",
        value_delimiter = ','
    )]
    sensitive_properties: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, env = "STACKHOOK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert
    #[arg(long, env = "STACKHOOK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl SecurityArgs {
    fn apply(self, mut config: Config) -> Config {
        if let Some(token) = self.auth_token {
            config = config.auth_token(token);
        }
        if let (Some(key), Some(url)) = (self.sign_key, self.sign_url) {
            config = config.sign_key(key, url);
        }
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            config = config.tls(cert, key);
        }
        config
            .sign_headers(self.sign_headers)
            .sign_content_type(self.sign_content_type)
            .sign_reading(self.sign_reading)
            .sign_skew(Duration::from_secs(self.sign_skew))
            .replay_capacity(self.replay_capacity)
            .auth_fc_routes(self.auth_fc_routes)
            .callback_allow(self.callback_allow)
            .json_depth_limit(self.json_depth)
            .header_read_timeout(Duration::from_secs(self.header_timeout))
            .body_read_timeout(Duration::from_secs(self.body_timeout))
            .max_header_bytes(self.max_header_bytes)
            .max_connections(self.max_connections)
            .max_requests_per_ip(self.max_requests_per_ip)
            .sensitive_properties(self.sensitive_properties)
    }
}

/// `KEY:VALUE`, as `--sign-header` takes it.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not KEY:VALUE"))?;
    if key.trim().is_empty() {
        return Err(format!("`{text}` has an empty header name"));
    }
    Ok((key.trim().to_string(), value.trim().to_string()))
}
