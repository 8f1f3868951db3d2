//! The queue consumer: ROS requests taken off an SMQ queue and handed to an
//! [`Intake`], deleted only once recorded. See [`Consumer`].

mod backoff;
mod receiver;
mod stats;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::arn::{Arn, ResourceKind};
use crate::client::{Client, MAX_BATCH, MAX_WAIT, Queue, QueueAttributes, VISIBILITY_RANGE_SECS};
use crate::credentials::Credentials;
use crate::error::{Error, ErrorCode, Result};
use crate::intake::Intake;

pub use stats::ConsumerStats;

/// Receivers by default: a second long poll is open while the first one's
/// batch is being recorded, so the queue never waits on the journal.
pub const DEFAULT_RECEIVERS: usize = 2;
/// The most receivers: each holds an HTTP connection and a long poll, and
/// SMQ answers "no message" at once when a queue has too many polls open.
pub const MAX_RECEIVERS: usize = 64;
/// Messages per receive by default: SMQ's maximum, the fewest billed calls.
pub const DEFAULT_BATCH_SIZE: usize = MAX_BATCH;
/// Long-poll wait by default: SMQ's maximum, the fewest empty answers.
pub const DEFAULT_WAIT: Duration = MAX_WAIT;
/// A record still running after this long gets its message's visibility
/// extended (and again every this long). A healthy journal records in
/// milliseconds; ten seconds is far from that, yet well inside SMQ's
/// default 30 s visibility timeout.
pub const DEFAULT_EXTEND_AFTER: Duration = Duration::from_secs(10);
/// How long each extension hides the message: SMQ's default visibility
/// timeout.
pub const DEFAULT_VISIBILITY_EXTENSION: Duration = Duration::from_secs(30);
/// Deliveries a poison message gets before it is deleted. More than one, so
/// a consumer that refuses a message by mistake (an old version during a
/// rolling upgrade) leaves it to another; few, so poison does not linger.
pub const DEFAULT_POISON_DEQUEUE_LIMIT: u32 = 3;
/// First backoff ceiling: long enough that a throttled consumer visibly
/// slows down, short enough that a blip costs little latency.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Largest backoff ceiling: a consumer reconnects within about this long of
/// SMQ coming back.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Time in-flight records get to finish on shutdown: the same as the HTTP
/// receiver's drain, inside Kubernetes' default 30 s termination grace.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How to consume one queue. Build with [`ConsumerConfig::new`] and the
/// `#[must_use]` setters; [`Consumer::new`] checks the values.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    arn: Arn,
    endpoint: Option<String>,
    credentials: Credentials,
    receivers: usize,
    batch_size: usize,
    wait: Duration,
    extend_after: Duration,
    visibility_extension: Duration,
    poison_dequeue_limit: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    shutdown_grace: Duration,
}

impl ConsumerConfig {
    /// Consume the queue `arn` names, at the endpoint it implies, signing
    /// with `credentials`; every other setting at its default.
    pub fn new(arn: Arn, credentials: Credentials) -> Self {
        ConsumerConfig {
            arn,
            endpoint: None,
            credentials,
            receivers: DEFAULT_RECEIVERS,
            batch_size: DEFAULT_BATCH_SIZE,
            wait: DEFAULT_WAIT,
            extend_after: DEFAULT_EXTEND_AFTER,
            visibility_extension: DEFAULT_VISIBILITY_EXTENSION,
            poison_dequeue_limit: DEFAULT_POISON_DEQUEUE_LIMIT,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// Use this endpoint instead of the ARN's (an internal endpoint, a local
    /// emulator).
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Concurrent long polls, 1 to [`MAX_RECEIVERS`] (default
    /// [`DEFAULT_RECEIVERS`]).
    #[must_use]
    pub fn receivers(mut self, receivers: usize) -> Self {
        self.receivers = receivers;
        self
    }

    /// Messages per receive, 1 to 16 (default 16).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Long-poll wait, 1 to 30 s in whole seconds (default 30 s).
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Extend a message's visibility when its record has run this long, and
    /// every this long after (default [`DEFAULT_EXTEND_AFTER`]). Shortened
    /// to half the queue's visibility timeout once [`Consumer::check`] has
    /// read it, and to half of [`ConsumerConfig::visibility_extension`].
    #[must_use]
    pub fn extend_after(mut self, after: Duration) -> Self {
        self.extend_after = after;
        self
    }

    /// How long each extension hides the message, 1 s to 12 h in whole
    /// seconds (default 30 s).
    #[must_use]
    pub fn visibility_extension(mut self, period: Duration) -> Self {
        self.visibility_extension = period;
        self
    }

    /// Delete a poison message (undecodable, or refused by the intake) at
    /// this delivery: when its DequeueCount reaches the limit (default
    /// [`DEFAULT_POISON_DEQUEUE_LIMIT`]; 1 deletes at once).
    #[must_use]
    pub fn poison_dequeue_limit(mut self, limit: u32) -> Self {
        self.poison_dequeue_limit = limit;
        self
    }

    /// Backoff ceilings: the first wait is at most `base`, doubling per
    /// consecutive failure up to `max` (defaults 200 ms and 10 s).
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// How long in-flight records may take to finish on shutdown (default
    /// 20 s).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The queue's ARN.
    pub fn arn(&self) -> &Arn {
        &self.arn
    }

    fn validate(&self) -> Result<()> {
        let invalid = |what: String| Err(Error::InvalidArgument(what));
        if self.arn.kind() != ResourceKind::Queue {
            return invalid(format!(
                "`{}` is a topic: subscribe a queue to it and consume the queue, or receive its HTTP pushes",
                self.arn
            ));
        }
        if !(1..=MAX_RECEIVERS).contains(&self.receivers) {
            return invalid(format!(
                "SMQ receivers must be 1 to {MAX_RECEIVERS}, not {}",
                self.receivers
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return invalid(format!(
                "an SMQ batch is 1 to {MAX_BATCH} messages, not {}",
                self.batch_size
            ));
        }
        // A zero wait would poll an empty queue in a loop.
        if !(1..=MAX_WAIT.as_secs()).contains(&self.wait.as_secs()) || self.wait.subsec_nanos() != 0
        {
            return invalid(format!(
                "the SMQ long-poll wait is 1 to 30 whole seconds, not {:?}",
                self.wait
            ));
        }
        if !VISIBILITY_RANGE_SECS.contains(&self.visibility_extension.as_secs())
            || self.visibility_extension.subsec_nanos() != 0
        {
            return invalid(format!(
                "an SMQ visibility extension is 1 s to 12 h in whole seconds, not {:?}",
                self.visibility_extension
            ));
        }
        if self.extend_after.is_zero() {
            return invalid("the visibility extension threshold must be above zero".into());
        }
        if self.poison_dequeue_limit == 0 {
            return invalid("the poison DequeueCount limit must be at least 1".into());
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            return invalid(format!(
                "the SMQ backoff needs 0 < base <= max, not {:?} and {:?}",
                self.backoff_base, self.backoff_max
            ));
        }
        Ok(())
    }
}

/// The settings the receivers read, fixed when `run` starts.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) batch_size: usize,
    pub(crate) wait: Duration,
    pub(crate) first_extension: Duration,
    pub(crate) extend_every: Duration,
    pub(crate) visibility_extension: Duration,
    pub(crate) poison_dequeue_limit: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
}

/// Consumes one SMQ queue: ROS requests are taken off it and handed to an
/// [`Intake`], with nothing lost and nothing deleted before it is recorded.
///
/// ```no_run
/// # async fn demo(
/// #     journal: impl stackhook_smq::Intake,
/// #     sigterm: impl std::future::Future,
/// # ) -> stackhook_smq::Result<()> {
/// use stackhook_smq::{Consumer, ConsumerConfig, Credentials};
///
/// let arn = "acs:mns:cn-hangzhou:1234567890:queues/ros-requests".parse()?;
/// let consumer = Consumer::new(
///     ConsumerConfig::new(arn, Credentials::new("LTAI...", "secret")).receivers(4),
/// )?;
/// consumer.check().await?; // one clear error for a wrong queue, key or policy
/// consumer.run(journal, sigterm).await; // until SIGTERM, then drains
/// # Ok(())
/// # }
/// ```
///
/// # Guarantees
/// - A message is deleted only after the intake answered
///   [`IntakeOutcome::Recorded`](crate::IntakeOutcome::Recorded) for it, or
///   when it is poison at its last allowed delivery.
/// - While a record takes longer than [`ConsumerConfig::extend_after`], the
///   message is kept hidden with ChangeMessageVisibility, and deleted with
///   its latest receipt handle.
/// - Anything else (a crash, an unavailable journal, a failed delete) leaves
///   the message on the queue: SMQ delivers it again after its visibility
///   timeout, and the journal's dedupe turns that into one run.
/// - Throttling, 5xx, network loss and SMQ's immediate empty answer when
///   too many long polls are open all make the receiver wait (exponential
///   backoff with full jitter) before it polls again: never a busy loop.
/// - On shutdown, long polls and backoffs end at once; batches being
///   recorded finish (and are deleted) within
///   [`ConsumerConfig::shutdown_grace`].
///
/// In flight at once: at most `receivers × batch_size` messages.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    client: Client,
    queue: Queue,
    stats: Arc<ConsumerStats>,
    /// The queue's visibility timeout in ms as [`Consumer::check`] read it;
    /// 0 until then.
    queue_visibility_ms: AtomicU64,
}

impl Consumer {
    /// A consumer for `config`'s queue. No request is made yet.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a setting out of range, a topic ARN or
    /// a malformed endpoint.
    pub fn new(config: ConsumerConfig) -> Result<Self> {
        config.validate()?;
        let client = Client::for_arn(
            &config.arn,
            config.endpoint.as_deref(),
            config.credentials.clone(),
        )?;
        let queue = client.queue(config.arn.name());
        Ok(Consumer {
            config,
            client,
            queue,
            stats: Arc::new(ConsumerStats::default()),
            queue_visibility_ms: AtomicU64::new(0),
        })
    }

    /// The client: [`Client::set_credentials`] when an STS token is
    /// refreshed reaches the running receivers.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The queue handle.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The counters, to export as metrics. They keep counting across runs.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    /// The start-up check: GetQueueAttributes, so a wrong queue, key,
    /// policy or clock fails now, as one clear error, instead of in a
    /// receive loop. Also adapts the visibility extension to the queue's
    /// visibility timeout.
    ///
    /// # Errors
    /// [`Error::QueueCheck`], whose message names the queue, the endpoint,
    /// what to fix and SMQ's answer; [`Error::is_retryable`] tells an
    /// unreachable SMQ from a misconfiguration.
    pub async fn check(&self) -> Result<QueueAttributes> {
        let attributes = self
            .queue
            .attributes()
            .await
            .map_err(|e| Error::QueueCheck {
                queue: self.config.arn.to_string(),
                endpoint: self
                    .client
                    .endpoint()
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned(),
                hint: check_hint(&e),
                source: Box::new(e),
            })?;
        let visibility = Duration::from_secs(u64::from(attributes.visibility_timeout));
        self.queue_visibility_ms
            .store(visibility.as_millis() as u64, Ordering::Relaxed);
        tracing::info!(
            queue = self.queue.name(),
            arn = %self.config.arn,
            endpoint = %self.client.endpoint(),
            visibility_timeout_s = attributes.visibility_timeout,
            "SMQ queue reachable"
        );
        Ok(attributes)
    }

    /// Consume until `shutdown` completes (its output is ignored), handing
    /// each request to `intake`. Then stop receiving at once, let batches
    /// in progress finish within the shutdown grace, and return.
    ///
    /// Never fails: errors while running are logged, counted in
    /// [`Consumer::stats`], and retried with backoff. Call
    /// [`Consumer::check`] first to fail fast on a misconfiguration.
    pub async fn run<I: Intake>(&self, intake: I, shutdown: impl Future) {
        let shared = Arc::new(receiver::Shared {
            queue: self.queue.clone(),
            intake: Arc::new(intake),
            settings: self.settings(),
            stats: self.stats.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let mut receivers = JoinSet::new();
        for index in 0..self.config.receivers {
            receivers.spawn(receiver::receive_loop(
                shared.clone(),
                stopped.clone(),
                index,
            ));
        }
        let queue = self.queue.name();
        tracing::info!(
            queue,
            arn = %self.config.arn,
            endpoint = %self.client.endpoint(),
            receivers = self.config.receivers,
            batch_size = self.config.batch_size,
            "consuming SMQ queue"
        );
        let mut respawn = backoff::Backoff::new(self.config.backoff_base, self.config.backoff_max);
        let mut spawned = self.config.receivers;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(ended) = receivers.join_next() => {
                    // A receiver only ends on shutdown; this is a bug (a
                    // panic outside the intake), so log it and replace it.
                    tracing::error!(
                        queue,
                        panicked = ended.is_err(),
                        "an SMQ receiver stopped unexpectedly; starting another"
                    );
                    let pause = respawn.next_delay();
                    tokio::select! {
                        biased;
                        _ = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                    spawned += 1;
                    receivers.spawn(receiver::receive_loop(shared.clone(), stopped.clone(), spawned));
                }
            }
        }
        stop.send_replace(true);
        tracing::info!(
            queue,
            in_flight = self.stats.in_flight(),
            "stopped receiving from SMQ; finishing in-flight records"
        );
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while receivers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                queue,
                abandoned = self.stats.in_flight(),
                "shutdown grace elapsed; abandoning in-flight SMQ messages (SMQ delivers them again)"
            );
            receivers.shutdown().await;
            self.stats.in_flight_sub(self.stats.in_flight());
        }
        tracing::info!(queue, "SMQ consumer stopped");
    }

    fn settings(&self) -> Settings {
        let c = &self.config;
        let queue_visibility = match self.queue_visibility_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        // Extend before the queue's own timeout hides the message no more,
        // and before each extension runs out.
        let first_extension = match queue_visibility {
            Some(v) => c.extend_after.min(v / 2),
            None => c.extend_after,
        };
        Settings {
            batch_size: c.batch_size,
            wait: c.wait,
            first_extension,
            extend_every: c.extend_after.min(c.visibility_extension / 2),
            visibility_extension: c.visibility_extension,
            poison_dequeue_limit: c.poison_dequeue_limit,
            backoff_base: c.backoff_base,
            backoff_max: c.backoff_max,
        }
    }
}

/// What to fix, for the start-up check's error.
fn check_hint(e: &Error) -> &'static str {
    match e.code() {
        Some(ErrorCode::QueueNotExist) => {
            "the queue does not exist: check the ARN's region, account and name, and the endpoint"
        }
        Some(ErrorCode::AccessDenied) => {
            "the credentials may not use this queue: allow mns:GetQueueAttributes, mns:ReceiveMessage, mns:BatchReceiveMessage, mns:DeleteMessage, mns:BatchDeleteMessage and mns:ChangeMessageVisibility on it"
        }
        Some(ErrorCode::InvalidAccessKeyId) => "the access key id does not exist",
        Some(ErrorCode::SignatureDoesNotMatch) => {
            "the signature does not match: check the access key secret"
        }
        Some(ErrorCode::TimeExpired) => "this machine's clock is more than 15 minutes off",
        _ if e.is_retryable() => "SMQ cannot be reached or is failing; try again",
        _ => "SMQ refused the check",
    }
}

/// An error with its sources, for a log line (reqwest keeps the cause of a
/// network error in its source).
pub(crate) fn error_chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServiceError;

    fn config() -> ConsumerConfig {
        ConsumerConfig::new(
            "acs:mns:cn-hangzhou:42:queues/q".parse().expect("arn"),
            Credentials::new("id", "secret"),
        )
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let bad = [
            config().receivers(0),
            config().receivers(MAX_RECEIVERS + 1),
            config().batch_size(0),
            config().batch_size(17),
            config().wait(Duration::ZERO),
            config().wait(Duration::from_secs(31)),
            config().wait(Duration::from_millis(1500)),
            config().visibility_extension(Duration::ZERO),
            config().visibility_extension(Duration::from_secs(43_201)),
            config().extend_after(Duration::ZERO),
            config().poison_dequeue_limit(0),
            config().backoff(Duration::ZERO, Duration::from_secs(1)),
            config().backoff(Duration::from_secs(2), Duration::from_secs(1)),
        ];
        for c in bad {
            let err = c.validate().expect_err("invalid");
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        }
    }

    #[test]
    fn a_topic_cannot_be_consumed() {
        let c = ConsumerConfig::new(
            "acs:mns:cn-hangzhou:42:topics/t".parse().expect("arn"),
            Credentials::new("id", "secret"),
        );
        let err = Consumer::new(c).expect_err("topic");
        assert!(err.to_string().contains("is a topic"), "{err}");
    }

    #[test]
    fn extensions_come_before_the_queue_timeout_and_each_extension_runs_out() {
        let consumer = Consumer::new(
            config()
                .endpoint("http://127.0.0.1:9")
                .extend_after(Duration::from_secs(10))
                .visibility_extension(Duration::from_secs(8)),
        )
        .expect("consumer");
        let before = consumer.settings();
        assert_eq!(before.first_extension, Duration::from_secs(10));
        assert_eq!(before.extend_every, Duration::from_secs(4));
        consumer.queue_visibility_ms.store(6_000, Ordering::Relaxed);
        assert_eq!(consumer.settings().first_extension, Duration::from_secs(3));
    }

    #[test]
    fn the_check_hint_names_what_to_fix() {
        let hint = |code| check_hint(&Error::from(ServiceError::new(403, code, "no")));
        assert!(hint(ErrorCode::QueueNotExist).contains("does not exist"));
        assert!(hint(ErrorCode::AccessDenied).contains("mns:ReceiveMessage"));
        assert!(hint(ErrorCode::SignatureDoesNotMatch).contains("secret"));
        assert!(
            check_hint(&Error::from(ServiceError::new(
                503,
                ErrorCode::Other("Busy".into()),
                "busy"
            )))
            .contains("try again")
        );
    }
}
