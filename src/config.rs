//! Runtime configuration: one struct, sane defaults, `#[must_use]` setters.
//!
//! The `stackhook` binary fills it from flags and `STACKHOOK_*` environment
//! variables; a program that embeds the runtime builds it directly.

mod security;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Default limit on a request body. ROS requests are a few KiB; 1 MiB leaves
/// room for large property maps and still bounds memory per request.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Default time a request may take, handler and delivery together: ROS's
/// default `Timeout` for a custom resource.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// ROS waits this long for the reply to a `web[sync]:` request, whatever the
/// resource's `Timeout` says (spec §4.3).
pub const ROS_SYNC_WAIT: Duration = Duration::from_secs(10);

/// How long `auto` delivery waits to connect to the intranet URL before it
/// falls back to the public one. Inside Alibaba Cloud the connect is a few
/// milliseconds; outside it never completes.
pub const DEFAULT_INTRANET_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Upper bound for a single delivery attempt; each retry gets a fresh one.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight work may continue after SIGTERM. Below Kubernetes'
/// default 30 s termination grace period and FC's pre-stop budget.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long the disk journal remembers finished requests for deduplication:
/// a week covers ROS's retries and any stack operation's lifetime.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long the memory journal remembers finished requests. ROS waits for an
/// answer at most a resource's `Timeout` (12 hours), so a redelivery later
/// than a day could not be answered anyway; what the memory journal keeps
/// is RAM (about 0.5 KB per request), so it keeps a day, not a week.
pub const DEFAULT_MEMORY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Handlers that may run at once, across all types. Handlers mostly wait on
/// other services, so this is about memory and downstream load, not cores.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;

/// Requests that may wait for a concurrency slot before new ones are
/// answered FAILED "overloaded".
pub const DEFAULT_MAX_QUEUE: usize = 10_000;

/// How often a replica of a shared journal renews its leases and scans for
/// work of dead replicas. A third of the default 10 s lease: two
/// heartbeats may fail (a slow database, a long pause) before a live
/// replica's lease runs out, and a dead one's work is taken over within
/// one lease plus one scan.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);

/// How often a replica of a shared journal looks for work to claim: polls
/// that came due (parked work may be polled by any live replica, so
/// long-running work is shared out) and the work of replicas whose leases
/// ran out. A due poll waits at most this long for a replica, beyond its
/// own delay; each scan is one short statement.
pub const DEFAULT_CLAIM_SCAN: Duration = Duration::from_secs(1);

/// What to do with a request that was running when the provider died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Run the operation again.
    Rerun,
    /// Answer FAILED "provider restarted during the operation".
    Fail,
}

impl FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rerun" => Ok(RestartPolicy::Rerun),
            "fail" => Ok(RestartPolicy::Fail),
            other => Err(format!("`{other}` is not one of rerun, fail")),
        }
    }
}

/// Where the journal lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalMode {
    /// The embedded durable store under this directory: the `stackhook`
    /// binary's default (`Config::default()` keeps the memory journal).
    /// Needs the `redb` feature, on by default.
    Disk(std::path::PathBuf),
    /// In memory: dedupe within one process, nothing survives a restart.
    Memory,
    /// A store several replicas share (`stackhook-postgres`): it outlives
    /// every process, and at a graceful stop a replica releases what it
    /// still holds to its peers rather than failing it (whatever
    /// [`JournalLifetime`] says).
    Shared(SharedJournal),
}

/// The store behind [`JournalMode::Shared`]. Two are equal when they are
/// the same store.
#[derive(Debug, Clone)]
pub struct SharedJournal(pub std::sync::Arc<dyn crate::journal::Store>);

impl PartialEq for SharedJournal {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedJournal {}

/// Whether the journal outlives the process. Only the operator knows (a
/// state directory on a mounted volume looks like any other), so it is
/// stated, not guessed. It decides what a graceful stop does with work that
/// the shutdown grace period did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JournalLifetime {
    /// The journal is gone when the process is: the memory journal, or a disk
    /// journal in a container without a mounted state volume, on Function
    /// Compute, or in the Kubernetes example of `docs/deploying.md`. At exit,
    /// work still waiting is answered FAILED, so no stack waits for a
    /// journal that will not come back. The default.
    #[default]
    Process,
    /// The disk journal is on storage the next process opens (a mounted
    /// volume, a VM's disk). At exit, work still waiting stays in it and
    /// resumes at the next start.
    Persistent,
}

impl FromStr for JournalLifetime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "process" => Ok(JournalLifetime::Process),
            "persistent" => Ok(JournalLifetime::Persistent),
            other => Err(format!("`{other}` is not one of process, persistent")),
        }
    }
}

impl fmt::Display for JournalLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JournalLifetime::Process => "process",
            JournalLifetime::Persistent => "persistent",
        })
    }
}

/// Which callback URL answers go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallbackEndpoint {
    /// `ResponseURL`, over the internet.
    Public,
    /// `IntranetResponseURL`, over Alibaba Cloud's internal network.
    Intranet,
    /// The intranet URL first, with a short connect timeout, then the public one.
    #[default]
    Auto,
}

impl FromStr for CallbackEndpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "public" => Ok(CallbackEndpoint::Public),
            "intranet" => Ok(CallbackEndpoint::Intranet),
            "auto" => Ok(CallbackEndpoint::Auto),
            other => Err(format!("`{other}` is not one of public, intranet, auto")),
        }
    }
}

impl fmt::Display for CallbackEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallbackEndpoint::Public => "public",
            CallbackEndpoint::Intranet => "intranet",
            CallbackEndpoint::Auto => "auto",
        })
    }
}

/// The HTTP method answers are sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallbackMethod {
    /// POST, as every Alibaba sample does.
    #[default]
    Post,
    /// PUT, as AWS's presigned URLs expect.
    Put,
}

impl FromStr for CallbackMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Ok(CallbackMethod::Post),
            "PUT" => Ok(CallbackMethod::Put),
            other => Err(format!("`{other}` is not one of POST, PUT")),
        }
    }
}

impl fmt::Display for CallbackMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallbackMethod::Post => "POST",
            CallbackMethod::Put => "PUT",
        })
    }
}

/// Everything the runtime can be told.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) body_limit: usize,
    pub(crate) timeout: Duration,
    pub(crate) type_timeouts: HashMap<String, Duration>,
    pub(crate) callback_endpoint: CallbackEndpoint,
    pub(crate) callback_method: CallbackMethod,
    pub(crate) intranet_connect_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) journal: JournalMode,
    pub(crate) journal_lifetime: JournalLifetime,
    /// Set by [`Config::retention`]; otherwise the journal's default.
    pub(crate) retention: Option<Duration>,
    pub(crate) max_concurrency: usize,
    pub(crate) type_concurrency: HashMap<String, usize>,
    pub(crate) max_queue: usize,
    pub(crate) restart_policies: HashMap<String, RestartPolicy>,
    /// Lease renewal period, for a shared journal.
    pub(crate) heartbeat: Duration,
    /// Claim scan period (due polls, expired leases), for a shared journal.
    pub(crate) claim_scan: Duration,
    /// Authentication, callback guard and limits (setters in `security`).
    pub(crate) security: crate::security::SecurityConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            body_limit: DEFAULT_BODY_LIMIT,
            timeout: DEFAULT_TIMEOUT,
            type_timeouts: HashMap::new(),
            callback_endpoint: CallbackEndpoint::default(),
            callback_method: CallbackMethod::default(),
            intranet_connect_timeout: DEFAULT_INTRANET_CONNECT_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            journal: JournalMode::Memory,
            journal_lifetime: JournalLifetime::default(),
            retention: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            type_concurrency: HashMap::new(),
            max_queue: DEFAULT_MAX_QUEUE,
            restart_policies: HashMap::new(),
            heartbeat: DEFAULT_HEARTBEAT,
            claim_scan: DEFAULT_CLAIM_SCAN,
            security: crate::security::SecurityConfig::default(),
        }
    }
}

impl Config {
    /// The largest request body accepted; larger ones get 413.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The time a request may take from arrival to delivered answer. Set it
    /// to the resource's `Timeout` in the template (ROS does not send it).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A different timeout for one resource type.
    #[must_use]
    pub fn type_timeout(mut self, resource_type: impl Into<String>, timeout: Duration) -> Self {
        self.type_timeouts.insert(resource_type.into(), timeout);
        self
    }

    /// Which callback URL to answer at.
    #[must_use]
    pub fn callback_endpoint(mut self, endpoint: CallbackEndpoint) -> Self {
        self.callback_endpoint = endpoint;
        self
    }

    /// The HTTP method for answers.
    #[must_use]
    pub fn callback_method(mut self, method: CallbackMethod) -> Self {
        self.callback_method = method;
        self
    }

    /// The connect timeout for the intranet URL in `auto` mode.
    #[must_use]
    pub fn intranet_connect_timeout(mut self, timeout: Duration) -> Self {
        self.intranet_connect_timeout = timeout;
        self
    }

    /// The time limit of one delivery attempt.
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// How long in-flight requests may finish after a shutdown signal.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Keep the journal in the embedded store under `dir` (what `stackhook
    /// serve` does by default), or in memory. A bare `Config::default()`
    /// journals in memory, so tests and embedders write no files unasked.
    #[must_use]
    pub fn journal(mut self, mode: JournalMode) -> Self {
        self.journal = mode;
        self
    }

    /// Whether the journal outlives the process (see [`JournalLifetime`]):
    /// what a graceful stop does with work still waiting. `Persistent`
    /// needs the disk journal; [`Config::validate`] says so.
    #[must_use]
    pub fn journal_lifetime(mut self, lifetime: JournalLifetime) -> Self {
        self.journal_lifetime = lifetime;
        self
    }

    /// Check that the settings fit together. The runtime calls it when it
    /// starts; a program may call it earlier to fail before binding a port.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when the journal lifetime is
    /// `persistent` but the journal is in memory.
    pub fn validate(&self) -> crate::Result<()> {
        if self.journal_lifetime == JournalLifetime::Persistent
            && self.journal == JournalMode::Memory
        {
            return Err(crate::Error::Config(
                "--journal-lifetime persistent needs --journal disk: the memory journal ends with the process, \
                 so waiting work could not resume at the next start"
                    .into(),
            ));
        }
        Ok(())
    }

    /// How long finished requests are remembered for deduplication.
    /// Without it, the journal's default: [`DEFAULT_RETENTION`] on disk,
    /// [`DEFAULT_MEMORY_RETENTION`] in memory.
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// The retention in effect: the one set, or the journal's default.
    pub(crate) fn retention_period(&self) -> Duration {
        self.retention.unwrap_or(match self.journal {
            JournalMode::Disk(_) | JournalMode::Shared(_) => DEFAULT_RETENTION,
            JournalMode::Memory => DEFAULT_MEMORY_RETENTION,
        })
    }

    /// How often a replica of a shared journal ([`JournalMode::Shared`])
    /// renews its leases (default [`DEFAULT_HEARTBEAT`]); keep it under a
    /// third of the lease.
    #[must_use]
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// How often a replica of a shared journal claims due polls and the
    /// work of replicas whose leases ran out (default
    /// [`DEFAULT_CLAIM_SCAN`]); never less often than it renews.
    #[must_use]
    pub fn claim_scan(mut self, every: Duration) -> Self {
        self.claim_scan = every.max(Duration::from_millis(10));
        self
    }

    /// The most handlers running at once.
    #[must_use]
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = limit.max(1);
        self
    }

    /// The most handlers of one type running at once.
    #[must_use]
    pub fn type_concurrency(mut self, resource_type: impl Into<String>, limit: usize) -> Self {
        self.type_concurrency
            .insert(resource_type.into(), limit.max(1));
        self
    }

    /// The most requests waiting for a slot; beyond it, requests are
    /// answered FAILED "overloaded" at once.
    #[must_use]
    pub fn max_queue(mut self, limit: usize) -> Self {
        self.max_queue = limit;
        self
    }

    /// What to do after a restart with requests of `resource_type` that
    /// were running. By default, idempotent handlers rerun and others fail.
    #[must_use]
    pub fn restart_policy(
        mut self,
        resource_type: impl Into<String>,
        policy: RestartPolicy,
    ) -> Self {
        self.restart_policies.insert(resource_type.into(), policy);
        self
    }

    /// The whole-request timeout for `resource_type`.
    pub fn timeout_for(&self, resource_type: &str) -> Duration {
        self.type_timeouts
            .get(resource_type)
            .copied()
            .unwrap_or(self.timeout)
    }

    /// The largest body accepted.
    pub fn get_body_limit(&self) -> usize {
        self.body_limit
    }
}

/// The part of a request's time kept back for delivering the answer: a tenth,
/// at least one second and at most thirty.
pub fn delivery_margin(total: Duration) -> Duration {
    (total / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Parse `TYPE=VALUE` pairs, as the per-type flags take them.
///
/// # Errors
/// A message naming the pair that does not parse.
pub fn parse_type_pair<T: FromStr>(text: &str) -> Result<(String, T), String> {
    let (resource_type, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not TYPE=VALUE"))?;
    let value = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` in `{text}` is not a valid value"))?;
    if resource_type.trim().is_empty() {
        return Err(format!("`{text}` names no resource type"));
    }
    Ok((resource_type.trim().to_string(), value))
}

/// Parse `TYPE=SECONDS` pairs, as `--type-timeout` takes them.
///
/// # Errors
/// A message naming the pair that does not parse.
pub fn parse_type_timeout(text: &str) -> Result<(String, Duration), String> {
    let (resource_type, seconds) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not TYPE=SECONDS"))?;
    let seconds: u64 = seconds
        .trim()
        .parse()
        .map_err(|_| format!("`{seconds}` in `{text}` is not a whole number of seconds"))?;
    if resource_type.trim().is_empty() || seconds == 0 {
        return Err(format!(
            "`{text}` needs a resource type and a positive number of seconds"
        ));
    }
    Ok((
        resource_type.trim().to_string(),
        Duration::from_secs(seconds),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_bounded() {
        assert_eq!(
            delivery_margin(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(
            delivery_margin(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            delivery_margin(Duration::from_secs(43_200)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn retention_defaults_to_the_journals_and_a_set_one_wins() {
        let memory = Config::default();
        assert_eq!(memory.retention_period(), DEFAULT_MEMORY_RETENTION);
        let disk = Config::default().journal(JournalMode::Disk("state".into()));
        assert_eq!(disk.retention_period(), DEFAULT_RETENTION);
        let hour = Duration::from_secs(3600);
        assert_eq!(disk.clone().retention(hour).retention_period(), hour);
        // Set before the journal is chosen, it still holds.
        let set_first = Config::default()
            .retention(hour)
            .journal(JournalMode::Disk("state".into()));
        assert_eq!(set_first.retention_period(), hour);
    }

    #[test]
    fn journal_lifetime_parses_its_two_values_in_any_case() {
        assert_eq!("process".parse(), Ok(JournalLifetime::Process));
        assert_eq!("Persistent".parse(), Ok(JournalLifetime::Persistent));
        let error = "shared".parse::<JournalLifetime>().unwrap_err();
        assert_eq!(error, "`shared` is not one of process, persistent");
        for lifetime in [JournalLifetime::Process, JournalLifetime::Persistent] {
            assert_eq!(lifetime.to_string().parse(), Ok(lifetime));
        }
    }

    #[test]
    fn journal_lifetime_defaults_to_process_whatever_the_journal() {
        assert_eq!(Config::default().journal_lifetime, JournalLifetime::Process);
        let disk = Config::default().journal(JournalMode::Disk("state".into()));
        assert_eq!(disk.journal_lifetime, JournalLifetime::Process);
    }

    #[test]
    fn a_persistent_lifetime_needs_the_disk_journal() {
        let disk = Config::default()
            .journal(JournalMode::Disk("state".into()))
            .journal_lifetime(JournalLifetime::Persistent);
        assert!(disk.validate().is_ok());
        let memory = Config::default().journal_lifetime(JournalLifetime::Persistent);
        let error = memory.validate().expect_err("memory cannot be persistent");
        assert!(matches!(error, crate::Error::Config(_)), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("--journal-lifetime persistent") && message.contains("--journal disk"),
            "{message}"
        );
        assert!(
            Config::default().validate().is_ok(),
            "memory and process fit"
        );
    }

    #[test]
    fn type_timeouts_override_the_default() {
        let c = Config::default().type_timeout("Custom::Slow", Duration::from_secs(600));
        assert_eq!(c.timeout_for("Custom::Slow"), Duration::from_secs(600));
        assert_eq!(c.timeout_for("Custom::Echo"), DEFAULT_TIMEOUT);
    }

    #[test]
    fn parses_type_timeouts_and_enums() {
        assert_eq!(
            parse_type_timeout("Custom::X=90"),
            Ok(("Custom::X".to_string(), Duration::from_secs(90)))
        );
        assert!(parse_type_timeout("Custom::X").is_err());
        assert!(parse_type_timeout("Custom::X=soon").is_err());
        assert_eq!("AUTO".parse(), Ok(CallbackEndpoint::Auto));
        assert!("sideways".parse::<CallbackEndpoint>().is_err());
        assert_eq!("put".parse(), Ok(CallbackMethod::Put));
    }
}
