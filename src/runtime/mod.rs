//! The runtime: what happens to a request once it has been read, whatever
//! transport brought it (async HTTP, sync HTTP, Function Compute).
//!
//! For every request it: acknowledges it once it is journaled, or once its
//! answer reached ROS if that comes first; recognises a redelivery (same
//! StackId, LogicalResourceId and RequestId) and never runs the handler
//! twice; waits for a concurrency slot; runs the handler with a deadline;
//! persists long-running work between polls; records the answer before
//! delivering it (the outbox), unless a rerun after a crash would reproduce
//! it; and marks it delivered after a 2xx.
//! On start it finishes what a previous process left open.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{
    Config, JournalLifetime, JournalMode, ROS_SYNC_WAIT, RestartPolicy, delivery_margin,
};
use crate::delivery::{self, Delivered};
use crate::dispatch::{self, Extras, Step, Waiting};
use crate::error::{Error, Result};
use crate::journal::{
    Acceptance, Channel, Durable, MemoryStore, Record, RequestKey, Stage, Store, now_ms,
};
use crate::metrics::{Metrics, Outcome};
use crate::request::{CallbackUrl, Request, Salvage};
use crate::response::Response;
use crate::router::Router;
use crate::sync::lock;

mod running;

use self::running::{Running, RunningMap, Slot};

/// Time kept back from ROS's 10 s sync wait for writing the reply.
const SYNC_REPLY_MARGIN: Duration = Duration::from_secs(1);

/// The least time a delivery gets, even when the handler used all of its own.
const MIN_DELIVERY_WINDOW: Duration = Duration::from_secs(5);

/// How often old journal records are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// How many records of a shared journal one claim takes; a scan claims
/// batches until one comes back short.
const CLAIM_BATCH: usize = 256;

/// Heartbeats a replica lets pass without claiming after the shared
/// journal was unreachable, so that every live replica renews first.
const CLAIM_QUIET_HEARTBEATS: u32 = 2;

/// Retrying an answer's write to a shared journal that cannot be reached:
/// the first and the longest wait.
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(2);

/// What an answer given before it is journaled keeps in hand of the time
/// the store is certain to hold its record ([`Store::hold_to_answer`]):
/// a delivery attempt may overrun its deadline by a second for each of
/// the two callback URLs, and the database's clock may run a little ahead
/// of this process's. With less than this left, the answer is journaled
/// (a fenced write) before it is given.
const HOLD_MARGIN: Duration = Duration::from_secs(3);

/// How long deliveries may still run after the grace period, before exit:
/// long enough for a few attempts at a slow callback, short enough that the
/// default 20 s grace plus this stays under Kubernetes' default 30 s
/// termination grace period.
const FINAL_DELIVERY_WINDOW: Duration = Duration::from_secs(5);

/// How long exit waits, after the final delivery window, for the journal
/// writes that record the last deliveries.
const FINAL_WRITE_WINDOW: Duration = Duration::from_secs(1);

/// Why work still waiting at exit is answered FAILED when the journal does
/// not outlive the process.
const LEFT_OVER: &str = "the provider shut down before the operation finished, and its journal does \
     not outlive the process (--journal-lifetime process), so the operation cannot resume after a restart";

/// Whether an answer reached ROS, and if not, why.
pub(crate) type Delivery = std::result::Result<(), String>;

/// Why an invocation has no delivered answer of its own.
const NOT_ANSWERED: &str = "the same request is still being handled elsewhere; no answer yet";

/// A body read from the wire, sorted by what can be done with it.
#[derive(Debug)]
pub(crate) enum Intake {
    /// A valid request.
    Request(Arc<Request>),
    /// Not a valid request, but a FAILED answer can reach ROS.
    Answerable { problem: String, salvage: Salvage },
    /// Not a valid request and nothing to answer.
    Unanswerable { problem: String },
}

impl Intake {
    pub(crate) fn parse(body: &[u8]) -> Intake {
        match Request::from_slice(body) {
            Ok(request) => Intake::Request(Arc::new(request)),
            Err(error) => {
                let problem = error.to_string();
                match Salvage::from_slice(body) {
                    Some(salvage) if salvage.answerable() => {
                        Intake::Answerable { problem, salvage }
                    }
                    _ => Intake::Unanswerable { problem },
                }
            }
        }
    }
}

/// What to do with an arriving request.
#[derive(Debug)]
pub(crate) enum Admission {
    /// New: this arrival runs it, from the record now in the journal.
    /// [`Durable`] completes when the request may be acknowledged: when its
    /// record is on disk, or when its answer reached ROS, whichever comes
    /// first. At once, unless the request may start before its record is
    /// durable (see [`Runtime::admit`]).
    Owner(RequestKey, Record, Durable),
    /// The same request is running or waiting here: its answer will come.
    Joined(watch::Receiver<Option<Arc<Response>>>),
    /// The same request was answered before: here is that answer.
    Answered(Arc<Response>),
    /// The journal has it open, but this process is not working on it.
    Elsewhere,
    /// Too many requests are queued: it was answered FAILED "overloaded" at
    /// once, and the answer is journaled (the outbox, for a callback), so a
    /// redelivery gets the same one. The caller delivers or replies it.
    Overloaded(RequestKey, Record, Arc<Response>),
}

/// Completes when `durable` does, or sooner, once `delivered` says the
/// answer reached ROS (see [`Runtime::admit`]).
async fn durable_or_delivered(durable: Durable, delivered: oneshot::Receiver<()>) -> Result<()> {
    tokio::select! {
        result = durable => result,
        Ok(()) = delivered => Ok(()),
    }
}

/// Concurrency slots, global and per type.
#[derive(Debug)]
struct Limiter {
    global: Semaphore,
    per_type: HashMap<String, Semaphore>,
    max_queue: usize,
}

/// Permits borrowed from the runtime's semaphores for one step: no
/// reference count to move on every request.
struct Slots<'a> {
    _global: SemaphorePermit<'a>,
    _typed: Option<SemaphorePermit<'a>>,
}

/// The state shared by every request.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) router: Router,
    pub(crate) config: Config,
    pub(crate) delivery: delivery::Delivery,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Metrics,
    /// Background work (handlers, polls, deliveries) to wait for on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when shutdown begins: the purger stops. Polls due within
    /// the grace period still run.
    pub(crate) stopping: CancellationToken,
    /// Cancelled when the shutdown grace period is over: running handlers
    /// stop, and no poll starts.
    pub(crate) cancel: CancellationToken,
    /// Requests running or waiting in this process, with a channel for their answer.
    running: Mutex<RunningMap>,
    limiter: Limiter,
    schedule: mpsc::UnboundedSender<(Instant, RequestKey)>,
    /// Shutdown's questions to the scheduler.
    scheduler: mpsc::UnboundedSender<SchedulerControl>,
    /// Authentication and limits for incoming requests.
    pub(crate) security: crate::security::Gate,
}

impl Runtime {
    pub(crate) fn new(router: Router, config: Config) -> Result<Arc<Self>> {
        config.validate()?;
        let store: Arc<dyn Store> = match &config.journal {
            #[cfg(feature = "redb")]
            JournalMode::Disk(dir) => Arc::new(crate::journal::RedbStore::open(dir)?),
            #[cfg(not(feature = "redb"))]
            JournalMode::Disk(_) => {
                return Err(Error::Config(
                    "the disk journal needs stackhook's `redb` feature".into(),
                ));
            }
            JournalMode::Memory => Arc::new(MemoryStore::new()),
            JournalMode::Shared(shared) => Arc::clone(&shared.0),
        };
        Self::with_store(router, config, store)
    }

    pub(crate) fn with_store(
        router: Router,
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Self>> {
        if config.journal_lifetime == JournalLifetime::Persistent && !store.is_durable() {
            return Err(Error::Config(
                "the journal lifetime is persistent, but the journal does not survive the process"
                    .into(),
            ));
        }
        let delivery = delivery::Delivery::new(&config)?;
        let security = crate::security::Gate::new(&config.security)?;
        let limiter = Limiter {
            global: Semaphore::new(config.max_concurrency),
            per_type: config
                .type_concurrency
                .iter()
                .map(|(t, n)| (t.clone(), Semaphore::new(*n)))
                .collect(),
            max_queue: config.max_queue,
        };
        let (schedule, due) = mpsc::unbounded_channel();
        let (scheduler_control, control) = mpsc::unbounded_channel();
        let metrics = Metrics::new(&router);
        let runtime = Arc::new(Runtime {
            router,
            config,
            delivery,
            store,
            metrics,
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            cancel: CancellationToken::new(),
            running: Mutex::new(RunningMap::default()),
            limiter,
            schedule,
            scheduler: scheduler_control,
            security,
        });
        let weak = Arc::downgrade(&runtime);
        tokio::spawn(scheduler(due, control, move |key| {
            let Some(runtime) = weak.upgrade() else {
                return false;
            };
            let poller = Arc::clone(&runtime);
            runtime.tasks.spawn(poller.poll_due(key));
            true
        }));
        tokio::spawn(purger(Arc::downgrade(&runtime), runtime.stopping.clone()));
        if runtime.store.is_shared() {
            tokio::spawn(heartbeat(
                Arc::downgrade(&runtime),
                runtime.stopping.clone(),
            ));
        }
        Ok(runtime)
    }

    /// The span every log line about `request` is written in.
    pub(crate) fn span(request: &Request) -> tracing::Span {
        // A root span: a request's background task must not nest inside the
        // span of the HTTP exchange that started it.
        tracing::info_span!(
            parent: None,
            "request",
            request_id = %request.request_id,
            request_type = %request.request_type,
            resource_type = %request.resource_type,
            logical_resource_id = %request.logical_resource_id,
            stack_id = %request.stack_id,
        )
    }

    fn running(&self) -> MutexGuard<'_, RunningMap> {
        lock(&self.running)
    }

    /// The whole-request time for `request`.
    fn total(&self, request: &Request) -> Duration {
        self.config.timeout_for(&request.resource_type)
    }

    /// Journal an arriving request, or recognise it as a redelivery.
    ///
    /// # Errors
    /// [`Error::Journal`] when the journal cannot record it; the request must
    /// then not be acknowledged.
    pub(crate) async fn admit(
        &self,
        request: &Arc<Request>,
        channel: Channel,
    ) -> Result<Admission> {
        let key = RequestKey::of(request);
        // An async request whose rerun after a crash is harmless starts while
        // its record is being fsynced, so its callback does not wait for the
        // disk. It is acknowledged once the record is durable or once its
        // answer reached ROS, whichever comes first: with the answer
        // delivered, a record lost to a crash costs nothing. Anything else
        // starts only after the fsync.
        let early =
            channel == Channel::Async && self.restart_policy(request) == RestartPolicy::Rerun;
        // `None`: the queue is full.
        let on_delivery = {
            let mut running = self.running();
            let vacant = match running.entry(request) {
                Slot::Taken(answer) => {
                    self.metrics
                        .of(&request.resource_type)
                        .request(request.request_type, Outcome::Duplicate);
                    return Ok(Admission::Joined(answer.subscribe()));
                }
                Slot::Vacant(vacant) => vacant,
            };
            if self.metrics.queue_depth.get() >= self.limiter.max_queue as i64 {
                None
            } else {
                let mut entry = Running::default();
                let on_delivery = (early && self.store.is_durable()).then(|| {
                    let (delivered, on_delivery) = oneshot::channel();
                    entry.delivered = Some(delivered);
                    on_delivery
                });
                vacant.insert(entry);
                Some(on_delivery)
            }
        };
        let Some(on_delivery) = on_delivery else {
            // Boxed: a rare path, whose state would enlarge every admission.
            return Box::pin(self.record_overloaded(request, channel)).await;
        };
        let record = Record::accepted(Arc::clone(request), channel);
        let accepted = match self.store.accept_early(&key, &record).await {
            Ok(Acceptance::Inserted(durable)) if let Some(delivered) = on_delivery => Ok(
                Acceptance::Inserted(Durable::when(durable_or_delivered(durable, delivered))),
            ),
            Ok(Acceptance::Inserted(durable)) => durable
                .await
                .map(|()| Acceptance::Inserted(Durable::done())),
            other => other,
        };
        match accepted {
            Ok(Acceptance::Inserted(durable)) => Ok(Admission::Owner(key, record, durable)),
            Ok(Acceptance::Existing(existing)) => {
                self.running().remove(&key);
                self.metrics
                    .of(&request.resource_type)
                    .request(request.request_type, Outcome::Duplicate);
                Ok(match existing.stage {
                    Stage::Answered { response, .. } => Admission::Answered(response),
                    Stage::Running | Stage::Polling { .. } => Admission::Elsewhere,
                })
            }
            Err(error) => {
                self.running().remove(&key);
                Err(error)
            }
        }
    }

    /// Wait for a concurrency slot (or for the hard stop).
    async fn slots(&self, resource_type: &str) -> Option<Slots<'_>> {
        let per_type = self.limiter.per_type.get(resource_type);
        // Free slots are taken at once: the request never queued.
        if let Ok(global) = self.limiter.global.try_acquire() {
            match per_type.map(Semaphore::try_acquire).transpose() {
                Ok(typed) => {
                    return Some(Slots {
                        _global: global,
                        _typed: typed,
                    });
                }
                // Queue for both, in order, as any other request does.
                Err(_) => drop(global),
            }
        }
        self.metrics.queue_depth.inc();
        let acquire = async {
            let global = self.limiter.global.acquire().await.ok()?;
            let typed = match per_type {
                Some(semaphore) => Some(semaphore.acquire().await.ok()?),
                None => None,
            };
            Some(Slots {
                _global: global,
                _typed: typed,
            })
        };
        // The token is watched only while the request queues: registering
        // with it takes a lock both workers contend for.
        let slots = tokio::select! {
            biased;
            slots = acquire => slots,
            () = self.cancel.cancelled() => None,
        };
        self.metrics.queue_depth.dec();
        slots
    }

    /// Run one step (first run or poll) with a slot, counting it.
    async fn step(
        &self,
        request: &Arc<Request>,
        waiting: Option<&Waiting>,
        deadline: Instant,
        budget: &dispatch::Budget,
        extras: &Extras,
    ) -> Step {
        let shut_down = || Step::Answer(self.cut_off(request));
        let Some(_slots) = self.slots(&request.resource_type).await else {
            return shut_down();
        };
        let started = Instant::now();
        self.metrics.inflight.inc();
        let run = async {
            match waiting {
                None => dispatch::first_step(&self.router, request, deadline, budget, extras).await,
                Some(waiting) => {
                    dispatch::poll_step(&self.router, request, waiting, deadline, budget, extras)
                        .await
                }
            }
        };
        // Biased, the handler first: one that finishes on its first poll
        // never registers with the cancellation token (see `slots`).
        let step = tokio::select! {
            biased;
            step = run => step,
            () = self.cancel.cancelled() => shut_down(),
        };
        self.metrics.inflight.dec();
        self.metrics
            .of(&request.resource_type)
            .handler_run(request.request_type, started.elapsed());
        step
    }

    /// Drive an owned request: run it, and either answer it or, in the
    /// background mode, leave it persisted and scheduled for its next poll.
    ///
    /// With `inline` the polls happen in this task (sync mode, Function
    /// Compute); otherwise the task ends while the work waits.
    pub(crate) async fn drive(
        &self,
        key: RequestKey,
        mut record: Record,
        mut waiting: Option<Waiting>,
        total: Duration,
        inline: bool,
        extras: Extras,
    ) -> Option<(Arc<Response>, Delivery)> {
        let request = Arc::clone(&record.request);
        let end = wall_to_instant(record.accepted_at_ms + total.as_millis() as u64);
        let kept = delivery_margin(total).min(total / 2);
        let handler_deadline = end - kept;
        let budget = &dispatch::Budget::new(
            handler_deadline,
            total.saturating_sub(kept),
            self.limit(&record, total),
        );
        // Concluded in one place, after the loop: the task's state machine
        // then holds one inlined `conclude`, not one per way out.
        let response = loop {
            let step = self
                .step(
                    &request,
                    waiting.as_ref(),
                    handler_deadline,
                    budget,
                    &extras,
                )
                .await;
            let next = match step {
                Step::Answer(response) => break response,
                Step::Wait(next) => next,
            };
            let due = Instant::now() + next.after;
            if due >= handler_deadline {
                break dispatch::give_up(&self.router, &request, &next, budget).await;
            }
            // Past the grace period the next poll cannot run in this process.
            // An inline request's answer is due now; waiting work stays in
            // the journal only if the journal outlives the process.
            if self.cancel.is_cancelled() {
                if inline {
                    break self.cut_off(&request);
                }
                if self.answers_left_over() {
                    break self.left_over(&request);
                }
            }
            record.stage = Stage::Polling {
                state: next.state.clone(),
                next_poll_at_ms: now_ms() + next.after.as_millis() as u64,
                attempt: next.attempt,
                data: next.data.clone(),
                physical_resource_id: next.physical_resource_id.clone(),
            };
            // Background work is parked: a shared journal then lets any
            // live replica claim its next poll once due. A poll that a
            // caller waits on here (inline) stays in this process.
            let written = if inline {
                self.store.put(&key, &record).await.map(|()| false)
            } else {
                self.store.park(&key, &record).await
            };
            match written {
                Ok(true) => {
                    tracing::debug!(
                        after_ms = next.after.as_millis() as u64,
                        "work parked in the shared journal; the replica that claims it when due runs the next poll"
                    );
                    self.running().remove(&key);
                    return None;
                }
                Ok(false) => {}
                Err(error) if error.is_fenced() => {
                    tracing::warn!(%error, "another replica took the request over; this one stops working on it");
                    self.running().remove(&key);
                    return None;
                }
                // Kept here and polled here, as the store still has it.
                Err(error) => tracing::error!(%error, "could not journal the handler's progress"),
            }
            if !inline {
                self.metrics.waiting.inc();
                self.running().park(&key);
                let _ = self.schedule.send((due, key));
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = self.cancel.cancelled() => break self.cut_off(&request),
            }
            waiting = Some(next);
        };
        Some(self.conclude(&key, &mut record, response, total).await)
    }

    /// Record the answer, wake anyone waiting for it, and deliver it when
    /// the channel uses a callback. Returns the answer and whether it
    /// reached ROS (always true for sync replies).
    ///
    /// How the answer is journaled depends on what a crash would cost:
    /// - a request whose restart policy is to rerun gets its answer again
    ///   from the rerun: a sync reply is recorded with an eventual write;
    ///   a callback answer is delivered first, then the answer and its
    ///   delivery are recorded in one eventual write. On a shared journal
    ///   only while the record is certainly this replica's
    ///   ([`Store::hold_to_answer`]), so that no peer reruns it meanwhile:
    ///   a delivery that has not succeeded by then journals the answer (a
    ///   fenced write) and goes on as any other; with too little of the
    ///   hold left, the answer is journaled first;
    /// - any other sync reply is recorded durably before it is given: lost,
    ///   the restart would answer the redelivery FAILED, reversing it;
    /// - any other callback answer goes to the outbox durably before
    ///   delivery, and is marked delivered after.
    ///
    /// An eventual write is durable within the journal's
    /// [`DURABILITY_BOUND`](crate::journal::DURABILITY_BOUND): a crash later
    /// than that reruns nothing and answers nothing again.
    ///
    /// The request stays in the running map until its answer is queued for
    /// the journal, so a redelivery always finds one or the other. Leaving
    /// it with the answer delivered releases an acknowledgement that waits
    /// for the delivery (see [`Runtime::admit`]).
    async fn conclude(
        &self,
        key: &RequestKey,
        record: &mut Record,
        response: Response,
        total: Duration,
    ) -> (Arc<Response>, Delivery) {
        let response = Arc::new(response);
        let uses_callback = record.channel.uses_callback();
        let outcome = match response.status {
            crate::response::Status::Success => Outcome::Success,
            crate::response::Status::Failed => Outcome::Failed,
        };
        self.metrics
            .of(&record.request.resource_type)
            .request(record.request.request_type, outcome);
        if let Some(running) = self.running().get_mut(key) {
            running.answer(&response);
        }
        record.stage = Stage::Answered {
            response: Arc::clone(&response),
            delivered: !uses_callback,
        };
        let mut delivered = Ok(());
        // How long the answer may be given before it is journaled; `None`:
        // journal it first. A replica whose record another one took over
        // (its write is fenced) must never give an answer for it, so on a
        // shared journal only while no peer can have taken it.
        let unjournaled = if self.restart_policy(&record.request) == RestartPolicy::Rerun {
            self.store
                .hold_to_answer(key)
                .and_then(|hold| hold.checked_sub(HOLD_MARGIN))
                .filter(|window| !window.is_zero())
        } else {
            None
        };
        if !uses_callback {
            let journaled = if unjournaled.is_some() {
                self.store.put_eventually(key, record).await
            } else {
                self.write_answer(key, record).await
            };
            if let Err(error) = journaled {
                if error.is_fenced() {
                    return self.fenced(key, record, error).await;
                }
                tracing::error!(%error, "could not journal the answer");
            }
        } else {
            self.metrics.outbox_pending.inc();
            // Overflows for a store with one owner: no bound then.
            let held_until = unjournaled.and_then(|window| Instant::now().checked_add(window));
            let given_first = match unjournaled {
                Some(_) => Some(
                    self.deliver_recorded(key, record, total, false, held_until)
                        .await,
                ),
                None => None,
            };
            let outcome = match given_first {
                Some(outcome) if outcome.is_ok() || held_until.is_none() => outcome,
                given_first => {
                    if given_first.is_some() {
                        // Not delivered while the record was certainly this
                        // replica's: from here on, as any answer in the outbox.
                        tracing::warn!(
                            "the answer was not delivered while the record was certainly held; journaling it before trying again"
                        );
                    }
                    if let Err(error) = self.write_answer(key, record).await {
                        if error.is_fenced() {
                            self.metrics.outbox_pending.dec();
                            return self.fenced(key, record, error).await;
                        }
                        tracing::error!(%error, "could not journal the answer; delivering it anyway");
                    }
                    self.deliver_recorded(key, record, total, true, None).await
                }
            };
            delivered = outcome.map(|_| ()).map_err(|e| e.to_string());
        }
        let running = self.running().remove(key);
        if delivered.is_ok()
            && let Some(acknowledgement) = running.and_then(|r| r.delivered)
        {
            let _ = acknowledgement.send(());
        }
        (response, delivered)
    }

    /// Journal an answer durably. On a shared journal that cannot be
    /// reached, the answer is kept and the write retried with backoff
    /// until the database is back (or fenced, or the hard stop): it is
    /// given only once written.
    async fn write_answer(&self, key: &RequestKey, record: &Record) -> Result<()> {
        let mut wait = WRITE_RETRY_FIRST;
        loop {
            match self.store.put(key, record).await {
                Err(error)
                    if self.store.is_shared()
                        && !error.is_fenced()
                        && !self.cancel.is_cancelled() =>
                {
                    tracing::warn!(%error, retry_in = ?wait, "could not journal the answer; keeping it until the journal is back");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.cancel.cancelled() => {}
                    }
                    wait = (wait * 2).min(WRITE_RETRY_MAX);
                }
                other => return other,
            }
        }
    }

    /// The end of a request whose answer write was fenced: another replica
    /// took it over, and this one gives no answer of its own. A callback
    /// answer is not delivered; a sync reply is the new owner's answer if
    /// it comes within the sync wait.
    async fn fenced(
        &self,
        key: &RequestKey,
        record: &Record,
        error: Error,
    ) -> (Arc<Response>, Delivery) {
        tracing::warn!(%error, "another replica took the request over; this one gives no answer for it");
        self.running().remove(key);
        let response = if record.channel.uses_callback() {
            None
        } else {
            self.store
                .wait_for_answer(key, self.sync_total(&record.request))
                .await
                .ok()
                .flatten()
        };
        let response = response.unwrap_or_else(|| Arc::new(still_running(&record.request)));
        (response, Err(error.to_string()))
    }

    /// Deliver an answer and journal the outcome. On success the record is
    /// marked delivered with an eventual write: if a crash loses the mark,
    /// the answer is delivered again, and ROS keeps the first. On failure
    /// the answer stays in the outbox; `in_outbox` says whether it is
    /// journaled already.
    ///
    /// `held_until` ends the attempts sooner, for an answer given before it
    /// is journaled on a shared journal: the record is certainly this
    /// replica's only until then. A failure then is the caller's to handle
    /// (nothing is written).
    async fn deliver_recorded(
        &self,
        key: &RequestKey,
        record: &mut Record,
        total: Duration,
        in_outbox: bool,
        held_until: Option<Instant>,
    ) -> Result<Delivered> {
        let Stage::Answered { response, .. } = &record.stage else {
            return Err(Error::Delivery("no answer recorded".into()));
        };
        let end = wall_to_instant(record.accepted_at_ms + total.as_millis() as u64);
        let mut until = end.max(Instant::now() + MIN_DELIVERY_WINDOW);
        if let Some(held_until) = held_until {
            until = until.min(held_until);
        }
        // Encoded here rather than by the delivery, so that the journal can
        // keep the bytes that were sent.
        let body = bytes::Bytes::from(response.to_body());
        let delivered = tokio::select! {
            delivered = self.delivery.deliver_body(&record.request, body.clone(), until) => delivered,
            () = hard_stop(&self.cancel) => Err(Error::Delivery("the provider stopped; the answer stays in the outbox".into())),
        };
        self.metrics.delivery(delivered.is_ok());
        match &delivered {
            Ok(_) => {
                self.metrics.outbox_pending.dec();
                if let Stage::Answered { delivered, .. } = &mut record.stage {
                    *delivered = true;
                }
                if let Err(error) = self.store.put_delivered(key, record, &body).await {
                    tracing::warn!(%error, "delivered, but could not mark it in the journal");
                }
            }
            Err(_) if held_until.is_some() => {}
            Err(error) => {
                tracing::error!(%error, status = response.status.as_str(), "answer not delivered; it stays in the outbox");
                if !in_outbox && let Err(error) = self.store.put_eventually(key, record).await {
                    tracing::error!(%error, "could not journal the undelivered answer");
                }
            }
        }
        delivered
    }

    /// Accept a request in async mode: run and deliver in the background.
    pub(crate) fn spawn_owned(self: &Arc<Self>, key: RequestKey, record: Record) {
        let runtime = Arc::clone(self);
        let total = self.total(&record.request);
        let span = Self::span(&record.request);
        // Boxed once here: the task's wrappers (span, tracker, tokio's task
        // cell) would otherwise each move the 2 KB future.
        let drive = Box::pin(async move {
            runtime
                .drive(key, record, None, total, false, Extras::default())
                .await;
        });
        self.tasks.spawn(drive.instrument(span));
    }

    /// Deliver an earlier answer again to a redelivered request's callback.
    pub(crate) fn spawn_redelivery(
        self: &Arc<Self>,
        request: Arc<Request>,
        response: Arc<Response>,
    ) {
        let runtime = Arc::clone(self);
        let span = Self::span(&request);
        self.tasks.spawn(
            async move {
                let until = Instant::now() + runtime.total(&request).max(MIN_DELIVERY_WINDOW);
                let delivered = runtime.delivery.deliver(&request, &response, until).await;
                runtime.metrics.delivery(delivered.is_ok());
                if let Err(error) = delivered {
                    tracing::error!(%error, "the earlier answer could not be delivered again");
                }
            }
            .instrument(span),
        );
    }

    /// Answer FAILED "overloaded" a request that arrived with the queue
    /// full, by journaling the answer: in the outbox when it goes to a
    /// callback, closed when it is the sync reply. A redelivery then gets
    /// this same answer rather than a run, whose answer would differ.
    ///
    /// # Errors
    /// [`Error::Journal`] when the journal cannot record it.
    async fn record_overloaded(
        &self,
        request: &Arc<Request>,
        channel: Channel,
    ) -> Result<Admission> {
        let key = RequestKey::of(request);
        let response = Arc::new(Response::failed(
            request,
            dispatch::answer_id(request),
            format!(
                "the provider is overloaded: {} requests are already waiting for a handler \
                 (--max-queue); try the stack operation again later",
                self.limiter.max_queue
            ),
        ));
        let mut record = Record::accepted(Arc::clone(request), channel);
        record.stage = Stage::Answered {
            response: Arc::clone(&response),
            delivered: !channel.uses_callback(),
        };
        if let Some(existing) = self.store.accept(&key, &record).await? {
            self.metrics
                .of(&request.resource_type)
                .request(request.request_type, Outcome::Duplicate);
            return Ok(match existing.stage {
                Stage::Answered { response, .. } => Admission::Answered(response),
                Stage::Running | Stage::Polling { .. } => Admission::Elsewhere,
            });
        }
        self.metrics
            .of(&request.resource_type)
            .request(request.request_type, Outcome::Overloaded);
        if !channel.uses_callback()
            && let Err(error) = self.store.put_eventually(&key, &record).await
        {
            // Only the store's bookkeeping: the answer is recorded already.
            tracing::warn!(%error, "could not mark the overloaded answer as replied");
        }
        Ok(Admission::Overloaded(key, record, response))
    }

    /// Deliver a journaled answer from the outbox in the background, as
    /// any answer is: retried until the request's time runs out.
    pub(crate) fn spawn_outbox_delivery(self: &Arc<Self>, key: RequestKey, mut record: Record) {
        self.metrics.outbox_pending.inc();
        let runtime = Arc::clone(self);
        let span = Self::span(&record.request);
        self.tasks.spawn(
            async move {
                let total = runtime.total(&record.request);
                let _ = runtime
                    .deliver_recorded(&key, &mut record, total, true, None)
                    .await;
            }
            .instrument(span),
        );
    }

    /// Run an event invocation to its delivered answer (Function Compute
    /// may freeze the instance once it replies, so nothing is left for later).
    /// Returns the answer and whether it reached ROS.
    pub(crate) async fn answer_invocation(
        &self,
        request: &Arc<Request>,
        total: Duration,
        extras: Extras,
    ) -> Result<(Response, Delivery)> {
        match self.admit(request, Channel::FunctionCompute).await? {
            Admission::Owner(key, record, _) => Ok(self
                .drive(key, record, None, total, true, extras)
                .await
                .map(|(response, delivered)| (Arc::unwrap_or_clone(response), delivered))
                .unwrap_or_else(|| (still_running(request), Err(NOT_ANSWERED.into())))),
            Admission::Joined(mut answer) => {
                // The first arrival delivers; this one reports what it sent.
                match tokio::time::timeout(total, answer.wait_for(Option::is_some)).await {
                    Ok(Ok(answer)) => Ok((
                        answer
                            .as_deref()
                            .cloned()
                            .unwrap_or_else(|| still_running(request)),
                        Ok(()),
                    )),
                    _ => Ok((still_running(request), Err(NOT_ANSWERED.into()))),
                }
            }
            Admission::Answered(response) => {
                let until = Instant::now() + total.max(MIN_DELIVERY_WINDOW);
                let delivered = self.delivery.deliver(request, &response, until).await;
                self.metrics.delivery(delivered.is_ok());
                Ok((
                    Arc::unwrap_or_clone(response),
                    delivered.map(|_| ()).map_err(|e| e.to_string()),
                ))
            }
            Admission::Elsewhere => Ok((still_running(request), Err(NOT_ANSWERED.into()))),
            Admission::Overloaded(key, mut record, response) => {
                // Delivered before the reply, as every FC answer is.
                self.metrics.outbox_pending.inc();
                let delivered = self
                    .deliver_recorded(&key, &mut record, total, true, None)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                Ok((Arc::unwrap_or_clone(response), delivered))
            }
        }
    }

    /// What set `total`, the time `record`'s request has, for the reasons
    /// that say it ran out: a sync request has at most ROS's wait (see
    /// [`Runtime::answer_sync`]), and an invocation at most its function's
    /// timeout.
    fn limit(&self, record: &Record, total: Duration) -> dispatch::Limit {
        let timeout = self.total(&record.request);
        match record.channel {
            Channel::Sync if timeout >= ROS_SYNC_WAIT => dispatch::Limit::SyncWait,
            Channel::Sync => dispatch::Limit::SyncTimeout(timeout),
            Channel::FunctionCompute if total < timeout => dispatch::Limit::FunctionTimeout(total),
            Channel::Async | Channel::FunctionCompute => dispatch::Limit::Timeout(total),
        }
    }

    /// Answer in sync mode, within ROS's fixed 10 s wait. A reason that
    /// says time ran out names the limit that did (see [`Runtime::limit`]).
    #[cfg(test)]
    pub(crate) async fn answer_sync(&self, request: &Arc<Request>) -> Response {
        match self.try_answer_sync(request).await {
            Ok(response) => response,
            Err(error) => Response::failed(
                request,
                dispatch::answer_id(request),
                format!("the provider could not record the request: {error}"),
            ),
        }
    }

    /// [`Runtime::answer_sync`], but a request a shared journal could not
    /// record (the database is unreachable) is an error, which the
    /// receiver answers with 503 for ROS to retry, rather than FAILED.
    pub(crate) async fn try_answer_sync(&self, request: &Arc<Request>) -> Result<Response> {
        let total = self
            .total(request)
            .min(ROS_SYNC_WAIT)
            .saturating_sub(SYNC_REPLY_MARGIN);
        Ok(match self.admit(request, Channel::Sync).await {
            Ok(Admission::Owner(key, record, _)) => {
                match self
                    .drive(key, record, None, total, true, Extras::default())
                    .await
                {
                    Some((response, _)) => Arc::unwrap_or_clone(response),
                    None => Response::failed(request, dispatch::answer_id(request), "no answer"),
                }
            }
            Ok(Admission::Answered(response)) => Arc::unwrap_or_clone(response),
            Ok(Admission::Joined(mut answer)) => {
                let wait = tokio::time::timeout(total, answer.wait_for(Option::is_some)).await;
                match wait {
                    Ok(Ok(answer)) => answer
                        .as_deref()
                        .cloned()
                        .unwrap_or_else(|| still_running(request)),
                    _ => still_running(request),
                }
            }
            // On a shared journal another replica runs it: its answer,
            // committed there, is this reply too.
            Ok(Admission::Elsewhere) if self.store.is_shared() => self
                .store
                .wait_for_answer(&RequestKey::of(request), total)
                .await
                .ok()
                .flatten()
                .map_or_else(|| still_running(request), Arc::unwrap_or_clone),
            Ok(Admission::Elsewhere) => still_running(request),
            Ok(Admission::Overloaded(_, _, response)) => Arc::unwrap_or_clone(response),
            Err(error) if self.store.is_shared() => return Err(error),
            Err(error) => Response::failed(
                request,
                dispatch::answer_id(request),
                format!("the provider could not record the request: {error}"),
            ),
        })
    }

    /// Send FAILED for a body that was not a valid request but names its
    /// callback and identifiers, so the stack does not hang.
    pub(crate) async fn answer_broken(
        &self,
        salvage: &Salvage,
        problem: &str,
    ) -> Result<Delivered> {
        let response = broken_response(salvage, problem);
        let mut request = Request::new(
            crate::request::RequestType::Create,
            salvage.resource_type.clone().unwrap_or_default(),
            response.logical_resource_id.clone(),
            response.stack_id.clone(),
            response.request_id.clone(),
        );
        request.response_url = salvage.response_url.clone().map(CallbackUrl::new);
        request.intranet_response_url = salvage.intranet_response_url.clone().map(CallbackUrl::new);
        let until = Instant::now() + self.config.timeout.max(MIN_DELIVERY_WINDOW);
        let delivered = self.delivery.deliver(&request, &response, until).await;
        self.metrics.delivery(delivered.is_ok());
        delivered
    }

    /// Finish what a previous process left open: deliver the outbox, resume
    /// polls, and rerun or fail requests that were running.
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<()> {
        let open = if self.store.is_shared() {
            self.claim_free().await?
        } else {
            self.store.open_records().await?
        };
        if !open.is_empty() {
            tracing::info!(
                count = open.len(),
                "recovering open requests from the journal"
            );
        }
        self.take_over(open).await;
        Ok(())
    }

    /// Claim every record of a shared journal whose owner's lease ran out
    /// or that was released, in batches.
    async fn claim_free(&self) -> Result<Vec<(RequestKey, Record)>> {
        let mut claimed = Vec::new();
        loop {
            let batch = self.store.claim(CLAIM_BATCH).await?;
            let more = batch.len() == CLAIM_BATCH;
            claimed.extend(batch.into_iter().map(|c| (c.key, c.record)));
            if !more {
                return Ok(claimed);
            }
        }
    }

    /// Continue work found open (at a start) or claimed from a dead
    /// replica, by the restart policy of each.
    async fn take_over(self: &Arc<Self>, open: Vec<(RequestKey, Record)>) {
        let restarted = if self.store.is_shared() {
            "the replica running it stopped during the operation"
        } else {
            "the provider restarted during the operation"
        };
        for (key, mut record) in open {
            let span = Self::span(&record.request);
            let runtime = Arc::clone(self);
            match &record.stage {
                Stage::Answered { .. } if !record.channel.uses_callback() => {}
                Stage::Answered { .. } => {
                    // Retried, it would be refused again at every start.
                    let refused = span.in_scope(|| self.delivery.refused(&record.request));
                    if let Some(refused) = refused {
                        self.close_undeliverable(&key, &mut record, &refused)
                            .instrument(span)
                            .await;
                        continue;
                    }
                    self.metrics.outbox_pending.inc();
                    self.tasks.spawn(
                        async move {
                            tracing::info!("delivering an answer left in the outbox");
                            let total = runtime.total(&record.request);
                            let _ = runtime
                                .deliver_recorded(&key, &mut record, total, true, None)
                                .await;
                        }
                        .instrument(span),
                    );
                }
                Stage::Polling {
                    next_poll_at_ms, ..
                } => {
                    self.running().insert_waiting(key.clone());
                    self.metrics.waiting.inc();
                    let _ = self.schedule.send((wall_to_instant(*next_poll_at_ms), key));
                }
                // Run again, or answered FAILED with the true cause. A
                // redelivery meanwhile joins it (it is in the running map),
                // and later ones get the recorded answer.
                Stage::Running => {
                    let not_rerun = self.not_rerun_because(&record.request);
                    self.running().insert(&record.request, Running::default());
                    let sync = record.channel == Channel::Sync;
                    let total = if sync {
                        self.sync_total(&record.request)
                    } else {
                        self.total(&record.request)
                    };
                    if sync && not_rerun.is_none() {
                        // ROS's wait for the reply ended with the process,
                        // and a reply may have been given: the rerun answers
                        // the redelivery with what a first run would, in a
                        // fresh sync window counted from now.
                        record.accepted_at_ms = now_ms();
                    }
                    self.tasks.spawn(
                        async move {
                            match not_rerun {
                                None => {
                                    tracing::info!("{restarted}; running it again");
                                    runtime
                                        .drive(key, record, None, total, sync, Extras::default())
                                        .await;
                                }
                                Some(cause) => {
                                    tracing::warn!(%cause, "{restarted}; answering FAILED");
                                    let response = Response::failed(
                                        &record.request,
                                        dispatch::answer_id(&record.request),
                                        format!(
                                            "{restarted}; it was not run again because {cause}"
                                        ),
                                    );
                                    let _ =
                                        runtime.conclude(&key, &mut record, response, total).await;
                                }
                            }
                        }
                        .instrument(span),
                    );
                }
            }
        }
    }

    /// Close an answer found in the outbox that no callback URL may receive
    /// any more: the callback guard refuses each (`--callback-allow`
    /// changed since the request was accepted). Logged at ERROR with the
    /// refused hosts and the flag, never a URL's query; the record is
    /// closed durably, so the next start does not try again.
    async fn close_undeliverable(&self, key: &RequestKey, record: &mut Record, refused: &str) {
        let Stage::Answered {
            response,
            delivered,
        } = &mut record.stage
        else {
            return;
        };
        tracing::error!(
            status = response.status.as_str(),
            %refused,
            "an answer left in the outbox can never be delivered: the callback guard \
             (--callback-allow, STACKHOOK_CALLBACK_ALLOW) refuses every callback URL of its \
             request; closed undelivered, so it is not retried, and ROS waits for the \
             resource's Timeout"
        );
        *delivered = true;
        if let Err(error) = self.store.put(key, record).await {
            tracing::error!(%error, "could not close the undeliverable answer in the journal; the next start tries it again");
        }
    }

    /// Why `request`, found running when the process started, is not run
    /// again: the configured policy or the handler's declaration. `None`
    /// when it is run again.
    fn not_rerun_because(&self, request: &Request) -> Option<String> {
        let resource_type = &request.resource_type;
        if let Some(policy) = self.config.restart_policies.get(resource_type) {
            return (*policy == RestartPolicy::Fail).then(|| {
                format!(
                    "the restart policy for {resource_type} is `fail` (--restart-policy {resource_type}=fail)"
                )
            });
        }
        match self.router.handler_for(resource_type) {
            Some(handler) if handler.idempotent() => None,
            Some(_) => Some(format!(
                "the handler for {resource_type} is not declared idempotent (if running it twice is \
                 safe, declare it so, or set --restart-policy {resource_type}=rerun)"
            )),
            None => Some(format!("no handler is registered for {resource_type}")),
        }
    }

    /// The time a sync request of `request`'s type has, within ROS's wait.
    fn sync_total(&self, request: &Request) -> Duration {
        self.total(request).min(ROS_SYNC_WAIT) - SYNC_REPLY_MARGIN
    }

    fn restart_policy(&self, request: &Request) -> RestartPolicy {
        if let Some(policy) = self.config.restart_policies.get(&request.resource_type) {
            return *policy;
        }
        match self.router.handler_for(&request.resource_type) {
            Some(handler) if handler.idempotent() => RestartPolicy::Rerun,
            _ => RestartPolicy::Fail,
        }
    }

    /// A due poll: load the work and take its next step.
    async fn poll_due(self: Arc<Self>, key: RequestKey) {
        self.metrics.waiting.dec();
        let record = match self.store.get(&key).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, %key, "could not load long-running work for its poll");
                return;
            }
        };
        let Stage::Polling {
            state,
            attempt,
            data,
            physical_resource_id,
            ..
        } = record.stage.clone()
        else {
            return;
        };
        let waiting = Waiting {
            after: Duration::ZERO,
            state,
            data,
            physical_resource_id,
            attempt,
        };
        let total = self.total(&record.request);
        let span = Self::span(&record.request);
        self.drive(key, record, Some(waiting), total, false, Extras::default())
            .instrument(span)
            .await;
    }

    /// Shut down, once the server has stopped accepting.
    ///
    /// Until `grace_end` work carries on: running handlers finish, answers
    /// are delivered, and polls due before then still run (and answer). It
    /// ends sooner once nothing is running and no poll is due before then.
    /// Then handlers still running are cancelled and answered FAILED, and
    /// what still waits for a later poll is settled by the journal's
    /// lifetime (see [`JournalLifetime`]): answered FAILED when the journal
    /// ends with the process, left in it to resume at the next start when
    /// it outlives it. Answers get one final window to be delivered, and the
    /// journal is flushed.
    pub(crate) async fn shutdown(self: &Arc<Self>, grace_end: Instant) {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout_at(grace_end, self.settle(grace_end))
            .await
            .is_err()
        {
            tracing::warn!("grace period over: answering FAILED for the requests still running");
        }
        let final_end = Instant::now() + FINAL_DELIVERY_WINDOW;
        let unfired = self.stop_polls().await;
        // Running handlers stop and answer FAILED; deliveries get the final
        // window (see `hard_stop`).
        self.cancel.cancel();
        let mut late = None;
        if let Some(Unfired { queued, late: rest }) = unfired {
            late = Some(rest);
            if !queued.is_empty() {
                if self.answers_left_over() {
                    tracing::warn!(
                        count = queued.len(),
                        "answering FAILED for the work still waiting: the journal does not outlive the process (--journal-lifetime process)"
                    );
                    self.fail_waiting(queued);
                } else if self.store.is_shared() {
                    tracing::info!(
                        count = queued.len(),
                        "work still waiting stays in the shared journal; its leases are released to the other replicas"
                    );
                } else {
                    tracing::info!(
                        count = queued.len(),
                        "work still waiting stays in the journal and resumes at the next start (--journal-lifetime persistent)"
                    );
                }
            }
        }
        let written = final_end + FINAL_WRITE_WINDOW;
        if tokio::time::timeout_at(written, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some deliveries did not finish; their answers stay in the outbox");
        }
        // A handler that was between its journal write and its scheduling
        // when the polls stopped scheduled its next poll after that.
        if let Some(mut late) = late
            && self.answers_left_over()
        {
            let mut keys = Vec::new();
            while let Ok((_, key)) = late.try_recv() {
                keys.push(key);
            }
            if !keys.is_empty() {
                self.fail_waiting(keys);
                let until = written.max(Instant::now() + FINAL_WRITE_WINDOW);
                let _ = tokio::time::timeout_at(until, self.tasks.wait()).await;
            }
        }
        if let Err(error) = self.store.flush().await {
            tracing::warn!(%error, "could not flush the journal; the last delivered marks may be lost, and those answers delivered again");
        }
        // A peer continues at once, without waiting for the leases to run out.
        if self.store.is_shared() {
            match self.store.release().await {
                Ok(released) => tracing::info!(
                    released,
                    "released this replica's journal records to its peers"
                ),
                Err(error) => {
                    tracing::warn!(%error, "could not release the journal records; peers take them over when their leases run out")
                }
            }
        }
    }

    /// Wait until nothing runs and no poll is due before `grace_end`.
    async fn settle(&self, grace_end: Instant) {
        loop {
            self.tasks.wait().await;
            let (reply, fired) = oneshot::channel();
            let settle = SchedulerControl::Settle {
                until: grace_end,
                reply,
            };
            if self.scheduler.send(settle).is_err() {
                return;
            }
            // `true`: polls were started meanwhile; wait for them too.
            if !fired.await.unwrap_or(false) {
                return;
            }
        }
    }

    /// Stop firing polls; the ones still queued, and the channel for any
    /// scheduled after, are handed over. `None` if the scheduler is gone.
    async fn stop_polls(&self) -> Option<Unfired> {
        let (reply, unfired) = oneshot::channel();
        self.scheduler.send(SchedulerControl::Stop { reply }).ok()?;
        unfired.await.ok()
    }

    /// Whether work that cannot finish in this process is answered FAILED
    /// before exit, rather than left in the journal for a later process.
    fn answers_left_over(&self) -> bool {
        self.config.journal_lifetime == JournalLifetime::Process && !self.store.is_shared()
    }

    /// The FAILED answer for a request cut off by the end of the grace period.
    fn cut_off(&self, request: &Request) -> Response {
        Response::failed(
            request,
            dispatch::answer_id(request),
            format!(
                "the provider shut down before the handler finished: the {} s shutdown grace period (--shutdown-grace) ended first",
                self.config.shutdown_grace.as_secs_f64()
            ),
        )
    }

    /// The FAILED answer for waiting work the journal cannot keep.
    fn left_over(&self, request: &Request) -> Response {
        Response::failed(request, dispatch::answer_id(request), LEFT_OVER)
    }

    /// Answer FAILED, and deliver in the final window, the waiting work
    /// under `keys`, whose polls will not run in this process: the journal
    /// does not outlive it, so no later process would run them either.
    fn fail_waiting(self: &Arc<Self>, keys: Vec<RequestKey>) {
        for key in keys {
            let runtime = Arc::clone(self);
            self.tasks.spawn(async move {
                let mut record = match runtime.store.get(&key).await {
                    Ok(Some(record)) => record,
                    Ok(None) => return,
                    Err(error) => {
                        tracing::error!(%error, %key, "could not load waiting work to answer it");
                        return;
                    }
                };
                if !matches!(record.stage, Stage::Polling { .. }) {
                    return;
                }
                runtime.metrics.waiting.dec();
                let span = Self::span(&record.request);
                let response = runtime.left_over(&record.request);
                let total = runtime.total(&record.request);
                let _ = runtime
                    .conclude(&key, &mut record, response, total)
                    .instrument(span)
                    .await;
            });
        }
    }
}

fn still_running(request: &Request) -> Response {
    Response::failed(
        request,
        dispatch::answer_id(request),
        "the same request is still being handled; its answer could not be given within ROS's 10 s sync wait",
    )
}

/// Completes a short while after `cancel`: deliveries get a last window.
async fn hard_stop(cancel: &CancellationToken) {
    cancel.cancelled().await;
    tokio::time::sleep(FINAL_DELIVERY_WINDOW).await;
}

/// A wall-clock time (Unix ms) as a tokio instant.
fn wall_to_instant(at_ms: u64) -> Instant {
    let now = now_ms();
    if at_ms >= now {
        Instant::now() + Duration::from_millis(at_ms - now)
    } else {
        Instant::now()
            .checked_sub(Duration::from_millis(now - at_ms))
            .unwrap_or_else(Instant::now)
    }
}

/// What shutdown asks of the scheduler.
#[derive(Debug)]
enum SchedulerControl {
    /// Reply `false` if no queued poll is due before `until`; otherwise
    /// `true` once the next due ones have started (they may schedule more).
    Settle {
        until: Instant,
        reply: oneshot::Sender<bool>,
    },
    /// Fire nothing more, and hand over what is queued.
    Stop { reply: oneshot::Sender<Unfired> },
}

/// Polls the scheduler will not fire.
#[derive(Debug)]
struct Unfired {
    /// Queued when the scheduler stopped.
    queued: Vec<RequestKey>,
    /// The schedule, for polls scheduled after it stopped.
    late: mpsc::UnboundedReceiver<(Instant, RequestKey)>,
}

/// Fires due polls. Waiting work costs one entry here and one journal
/// record: no task or thread.
///
/// `fire` starts a poll, or returns `false` once the runtime is gone. The
/// scheduler keeps firing while shutdown lets the grace period run, so a
/// poll due within it runs and answers; shutdown then stops it (see
/// [`SchedulerControl`]).
async fn scheduler(
    mut incoming: mpsc::UnboundedReceiver<(Instant, RequestKey)>,
    mut control: mpsc::UnboundedReceiver<SchedulerControl>,
    mut fire: impl FnMut(RequestKey) -> bool,
) {
    let mut queue: BTreeSet<(Instant, RequestKey)> = BTreeSet::new();
    let mut settling: Option<oneshot::Sender<bool>> = None;
    loop {
        let next = queue.first().map(|(at, _)| *at);
        tokio::select! {
            entry = incoming.recv() => match entry {
                Some(entry) => { queue.insert(entry); }
                None => return,
            },
            command = control.recv() => {
                // A poll scheduled before the command was sent is in
                // `incoming` already: the answer must count it.
                while let Ok(entry) = incoming.try_recv() {
                    queue.insert(entry);
                }
                match command {
                    Some(SchedulerControl::Settle { until, reply }) => {
                        if queue.first().is_some_and(|(at, _)| *at < until) {
                            settling = Some(reply);
                        } else {
                            let _ = reply.send(false);
                        }
                    }
                    Some(SchedulerControl::Stop { reply }) => {
                        let queued = queue.into_iter().map(|(_, key)| key).collect();
                        let _ = reply.send(Unfired { queued, late: incoming });
                        return;
                    }
                    None => return,
                }
            }
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                let mut fired = false;
                while let Some(entry) = queue.first().cloned() {
                    if entry.0 > now {
                        break;
                    }
                    queue.remove(&entry);
                    if !fire(entry.1) {
                        return;
                    }
                    fired = true;
                }
                if fired && let Some(reply) = settling.take() {
                    let _ = reply.send(true);
                }
            }
        }
    }
}

/// On a shared journal: renews this replica's leases every
/// `Config::heartbeat`, and every `Config::claim_scan` claims the work no
/// live replica holds: polls parked until due (so any live replica may run
/// one), work released by a replica that stopped, and the work of replicas
/// whose leases ran out. Renewing goes on through a graceful stop (work
/// finishing in the grace period stays this replica's); claiming stops
/// with it.
async fn heartbeat(runtime: Weak<Runtime>, stopping: CancellationToken) {
    let mut next_renewal = Instant::now();
    // After the journal was unreachable, no claims until every live replica
    // has had time to renew what it holds (its leases may have run out
    // meanwhile): a heartbeat or two.
    let mut claims_from = Instant::now();
    loop {
        let (every, scan) = match runtime.upgrade() {
            Some(runtime) => (runtime.config.heartbeat, runtime.config.claim_scan),
            None => return,
        };
        // Jittered (±50%), so replicas' scans do not line up: a poll that
        // comes due goes to whichever scans first, which is then any of them.
        let scan = scan.min(every).mul_f64(rand::random_range(0.5..1.5));
        let wake = (Instant::now() + scan).min(next_renewal.max(Instant::now()));
        tokio::time::sleep_until(wake).await;
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        let now = Instant::now();
        if now >= next_renewal {
            next_renewal = now + every;
            match runtime.store.renew().await {
                Ok(_) => {
                    if runtime.metrics.journal_up.get() == 0 {
                        tracing::info!("the journal answers again");
                    }
                    runtime.metrics.journal_up.set(1);
                }
                Err(error) => {
                    if runtime.metrics.journal_up.get() == 1 {
                        tracing::error!(%error, "the journal cannot be reached: new requests get 503, answers wait to be written");
                    }
                    runtime.metrics.journal_up.set(0);
                    claims_from = Instant::now() + every * CLAIM_QUIET_HEARTBEATS;
                    continue;
                }
            }
        }
        if stopping.is_cancelled() || Instant::now() < claims_from {
            continue;
        }
        match runtime.claim_free().await {
            Ok(claimed) if !claimed.is_empty() => {
                let polls = claimed
                    .iter()
                    .filter(|(_, record)| matches!(record.stage, Stage::Polling { .. }))
                    .count();
                if polls > 0 {
                    tracing::debug!(count = polls, "claimed due polls");
                }
                if claimed.len() > polls {
                    tracing::info!(
                        count = claimed.len() - polls,
                        "taking over requests of a replica that stopped"
                    );
                }
                runtime.take_over(claimed).await;
            }
            Ok(_) => {}
            Err(error) => {
                // Said once per outage; the renewal reports the outage.
                if runtime.metrics.journal_up.get() == 1 {
                    tracing::warn!(%error, "could not look for work to claim");
                }
                claims_from = Instant::now() + every;
            }
        }
    }
}

/// Removes journal records older than the retention period, hourly.
async fn purger(runtime: Weak<Runtime>, stopping: CancellationToken) {
    loop {
        {
            let Some(runtime) = runtime.upgrade() else {
                return;
            };
            let before =
                now_ms().saturating_sub(runtime.config.retention_period().as_millis() as u64);
            match runtime.store.try_purge(before).await {
                Ok(Some(0) | None) => {}
                Ok(Some(removed)) => tracing::info!(removed, "purged expired journal records"),
                Err(error) => tracing::warn!(%error, "could not purge the journal"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PURGE_INTERVAL) => {}
            () = stopping.cancelled() => return,
        }
    }
}

/// The FAILED answer for a broken body.
pub(crate) fn broken_response(salvage: &Salvage, problem: &str) -> Response {
    let request_id = salvage.request_id.clone().unwrap_or_default();
    let physical_id = match (&salvage.request_type, &salvage.physical_resource_id) {
        (Some(kind), Some(id)) if kind != "Create" && !id.trim().is_empty() => id.clone(),
        _ => crate::physical_id::failed_create(&request_id),
    };
    Response::failed_for(
        &request_id,
        salvage.logical_resource_id.as_deref().unwrap_or_default(),
        salvage.stack_id.as_deref().unwrap_or_default(),
        physical_id,
        format!("the provider could not read the request: {problem}"),
    )
}

/// A short, loggable description of a delivery result.
pub(crate) fn delivery_note(delivered: &Result<Delivered>) -> String {
    match delivered {
        Ok(d) => format!(
            "delivered to the {} URL (HTTP {})",
            d.target.as_str(),
            d.status
        ),
        Err(Error::Delivery(message)) => format!("not delivered: {message}"),
        Err(other) => format!("not delivered: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::{
        CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
    };
    use crate::journal::StoreFuture;
    use crate::request::RequestType;
    use crate::sink::CallbackSink;

    /// A memory store that logs every write: (kind, stage, delivered).
    /// With a gate, its first insert becomes durable only when the test
    /// releases the gate. With `shared`, it plays a shared journal that
    /// holds every record for that long ([`Store::hold_to_answer`]).
    #[derive(Debug, Default)]
    struct LoggedStore {
        inner: MemoryStore,
        log: Mutex<Vec<(&'static str, &'static str, bool)>>,
        gate: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
        shared: Option<Option<Duration>>,
    }

    impl LoggedStore {
        fn gated(gate: tokio::sync::oneshot::Receiver<()>) -> Self {
            LoggedStore {
                gate: Mutex::new(Some(gate)),
                ..LoggedStore::default()
            }
        }

        fn note(&self, kind: &'static str, record: &Record) {
            let (stage, delivered) = match &record.stage {
                Stage::Running => ("running", false),
                Stage::Polling { .. } => ("polling", false),
                Stage::Answered { delivered, .. } => ("answered", *delivered),
            };
            self.log.lock().expect("log").push((kind, stage, delivered));
        }

        fn writes(&self) -> Vec<(&'static str, &'static str, bool)> {
            self.log.lock().expect("log").clone()
        }
    }

    impl Store for LoggedStore {
        fn accept<'a>(
            &'a self,
            key: &'a RequestKey,
            record: &'a Record,
        ) -> StoreFuture<'a, Option<Record>> {
            self.note("accept", record);
            self.inner.accept(key, record)
        }
        fn accept_early<'a>(
            &'a self,
            key: &'a RequestKey,
            record: &'a Record,
        ) -> StoreFuture<'a, Acceptance> {
            Box::pin(async move {
                Ok(match self.accept(key, record).await? {
                    Some(existing) => Acceptance::Existing(existing),
                    None => match self.gate.lock().expect("gate").take() {
                        None => Acceptance::Inserted(Durable::done()),
                        Some(gate) => Acceptance::Inserted(Durable::when(async move {
                            gate.await
                                .map_err(|_| Error::Journal("the test dropped the gate".into()))
                        })),
                    },
                })
            })
        }
        fn put<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, ()> {
            self.note("durable", record);
            self.inner.put(key, record)
        }
        fn put_eventually<'a>(
            &'a self,
            key: &'a RequestKey,
            record: &'a Record,
        ) -> StoreFuture<'a, ()> {
            self.note("eventual", record);
            self.inner.put(key, record)
        }
        fn get<'a>(&'a self, key: &'a RequestKey) -> StoreFuture<'a, Option<Record>> {
            self.inner.get(key)
        }
        fn open_records(&self) -> StoreFuture<'_, Vec<(RequestKey, Record)>> {
            self.inner.open_records()
        }
        fn purge(&self, before_ms: u64) -> StoreFuture<'_, usize> {
            self.inner.purge(before_ms)
        }
        fn check(&self) -> StoreFuture<'_, ()> {
            self.inner.check()
        }
        fn is_durable(&self) -> bool {
            true
        }
        fn is_shared(&self) -> bool {
            self.shared.is_some()
        }
        fn hold_to_answer(&self, _: &RequestKey) -> Option<Duration> {
            match self.shared {
                Some(hold) => hold,
                None => Some(Duration::MAX),
            }
        }
    }

    /// Creates nothing; not declared idempotent.
    struct Done;

    impl Handler for Done {
        type Properties = serde_json::Value;
        type Error = std::io::Error;

        async fn create(&self, _: CreateRequest<Self::Properties>) -> std::io::Result<Created> {
            Ok(Created::with_id("done"))
        }
        async fn update(&self, _: UpdateRequest<Self::Properties>) -> std::io::Result<Updated> {
            Ok(Updated::new())
        }
        async fn delete(&self, _: DeleteRequest<Self::Properties>) -> std::io::Result<Deleted> {
            Ok(Deleted::new())
        }
    }

    /// Runs one async Create of `resource_type` to its delivered answer and
    /// returns the journal writes it made.
    async fn journal_writes_of(
        resource_type: &str,
        callback_status: u16,
    ) -> Vec<(&'static str, &'static str, bool)> {
        journal_writes_on(LoggedStore::default(), resource_type, &[callback_status]).await
    }

    /// [`journal_writes_of`] on `store`, the callback answering `statuses`
    /// in turn, then 200.
    async fn journal_writes_on(
        store: LoggedStore,
        resource_type: &str,
        statuses: &[u16],
    ) -> Vec<(&'static str, &'static str, bool)> {
        let sink = CallbackSink::start().await.expect("sink");
        sink.script(statuses.iter().copied());
        let callback_status = statuses.last().copied().unwrap_or(200);
        let store = Arc::new(store);
        let router = Router::new()
            .route("Custom::Done", Done)
            .route("Custom::Again", Done);
        let config =
            Config::for_local_testing().restart_policy("Custom::Again", RestartPolicy::Rerun);
        let runtime = Runtime::with_store(router, config, Arc::clone(&store) as Arc<dyn Store>)
            .expect("runtime");
        let mut request = Request::new(RequestType::Create, resource_type, "Res", "stack", "r1");
        request.response_url = Some(CallbackUrl::new(sink.url("/cb")));
        let request = Arc::new(request);
        let Ok(Admission::Owner(key, record, _)) = runtime.admit(&request, Channel::Async).await
        else {
            panic!("a new request is owned");
        };
        let (response, delivered) = runtime
            .drive(
                key,
                record,
                None,
                Duration::from_secs(30),
                true,
                Extras::default(),
            )
            .await
            .expect("answered inline");
        assert_eq!(response.physical_resource_id, "done");
        assert_eq!(delivered.is_ok(), callback_status == 200, "{delivered:?}");
        assert_eq!(sink.received().len(), statuses.len().max(1));
        assert!(
            runtime.running().is_empty(),
            "the request left the running map"
        );
        store.writes()
    }

    /// A runtime over a gated [`LoggedStore`], and an async Create of `resource_type`.
    async fn gated(
        resource_type: &str,
    ) -> (
        Arc<Runtime>,
        Arc<Request>,
        CallbackSink,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let sink = CallbackSink::start().await.expect("sink");
        let (release, gate) = tokio::sync::oneshot::channel();
        let router = Router::new()
            .route("Custom::Done", Done)
            .route("Custom::Again", Done);
        let config =
            Config::for_local_testing().restart_policy("Custom::Again", RestartPolicy::Rerun);
        let store: Arc<dyn Store> = Arc::new(LoggedStore::gated(gate));
        let runtime = Runtime::with_store(router, config, store).expect("runtime");
        let mut request = Request::new(RequestType::Create, resource_type, "Res", "stack", "r1");
        request.response_url = Some(CallbackUrl::new(sink.url("/cb")));
        (runtime, Arc::new(request), sink, release)
    }

    /// Admit `request` as its owner and start it; the future says when it
    /// may be acknowledged.
    async fn own_and_start(
        runtime: &Arc<Runtime>,
        request: &Arc<Request>,
    ) -> futures_util::future::BoxFuture<'static, Result<()>> {
        use futures_util::FutureExt;
        let Ok(Admission::Owner(key, record, acknowledgeable)) =
            runtime.admit(request, Channel::Async).await
        else {
            panic!("a new request is owned");
        };
        let mut acknowledgeable = acknowledgeable.boxed();
        assert!(
            (&mut acknowledgeable).now_or_never().is_none(),
            "neither durable nor delivered yet"
        );
        runtime.spawn_owned(key, record);
        acknowledgeable
    }

    /// Wait for `acknowledgeable`, failing with `why` if it takes 10 s.
    async fn acknowledged(
        acknowledgeable: futures_util::future::BoxFuture<'static, Result<()>>,
        why: &str,
    ) {
        tokio::time::timeout(Duration::from_secs(10), acknowledgeable)
            .await
            .expect(why)
            .expect("no journal error");
    }

    #[tokio::test]
    async fn a_rerun_request_is_acknowledged_once_its_answer_is_delivered_before_the_fsync() {
        let (runtime, request, sink, _release) = gated("Custom::Again").await;
        let acknowledgeable = own_and_start(&runtime, &request).await;
        let received = sink.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(received.len(), 1, "answered before the record was durable");
        acknowledged(
            acknowledgeable,
            "acknowledgeable once delivered, the gate still closed",
        )
        .await;
    }

    #[tokio::test]
    async fn a_rerun_request_whose_answer_is_refused_is_acknowledged_once_durable() {
        use futures_util::FutureExt;
        let (runtime, request, sink, release) = gated("Custom::Again").await;
        sink.script([500; 50]);
        let mut acknowledgeable = own_and_start(&runtime, &request).await;
        let received = sink.wait_for(2, Duration::from_secs(10)).await;
        assert!(received.len() >= 2, "the refused answer is retried");
        assert!(
            (&mut acknowledgeable).now_or_never().is_none(),
            "a refused answer does not stand in for the fsync"
        );
        release.send(()).expect("gate");
        acknowledged(acknowledgeable, "acknowledgeable once durable").await;
    }

    #[tokio::test]
    async fn other_requests_start_only_once_their_record_is_durable() {
        use futures_util::FutureExt;
        let (runtime, request, sink, release) = gated("Custom::Done").await;
        let admitting = {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(async move { runtime.admit(&request, Channel::Async).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!admitting.is_finished(), "admission waits for the fsync");
        release.send(()).expect("gate");
        let Ok(Admission::Owner(_, _, durable)) = admitting.await.expect("joined") else {
            panic!("a new request is owned");
        };
        assert!(
            matches!(durable.now_or_never(), Some(Ok(()))),
            "durable when admitted"
        );
        assert!(sink.received().is_empty(), "nothing ran before admission");
    }

    #[tokio::test]
    async fn an_answer_a_rerun_cannot_reproduce_is_fsynced_before_delivery() {
        assert_eq!(
            journal_writes_of("Custom::Done", 200).await,
            vec![
                ("accept", "running", false),
                ("durable", "answered", false),
                ("eventual", "answered", true),
            ]
        );
    }

    #[tokio::test]
    async fn a_rerun_answer_is_delivered_then_journaled_once() {
        assert_eq!(
            journal_writes_of("Custom::Again", 200).await,
            vec![("accept", "running", false), ("eventual", "answered", true)]
        );
    }

    fn shared(hold: Option<Duration>) -> LoggedStore {
        LoggedStore {
            shared: Some(hold),
            ..LoggedStore::default()
        }
    }

    #[tokio::test]
    async fn on_a_shared_journal_a_rerun_answer_is_delivered_first_while_the_record_is_held() {
        assert_eq!(
            journal_writes_on(
                shared(Some(Duration::from_secs(10))),
                "Custom::Again",
                &[200]
            )
            .await,
            vec![("accept", "running", false), ("eventual", "answered", true)]
        );
    }

    #[tokio::test]
    async fn on_a_shared_journal_a_rerun_answer_is_journaled_first_without_a_hold() {
        let journaled_first = vec![
            ("accept", "running", false),
            ("durable", "answered", false),
            ("eventual", "answered", true),
        ];
        // Not held, or held for less than the margin a delivery needs.
        for hold in [None, Some(HOLD_MARGIN), Some(HOLD_MARGIN / 2)] {
            assert_eq!(
                journal_writes_on(shared(hold), "Custom::Again", &[200]).await,
                journaled_first,
                "{hold:?}"
            );
        }
        // A request that must not run again is journaled first anyway.
        assert_eq!(
            journal_writes_on(
                shared(Some(Duration::from_secs(60))),
                "Custom::Done",
                &[200]
            )
            .await,
            journaled_first
        );
    }

    #[tokio::test]
    async fn on_a_shared_journal_an_answer_not_delivered_within_the_hold_is_journaled_before_retrying()
     {
        // A millisecond to deliver in: one attempt (the first always runs),
        // which the callback refuses for now; the retry after any backoff
        // is past the hold.
        let hold = HOLD_MARGIN + Duration::from_millis(1);
        assert_eq!(
            journal_writes_on(shared(Some(hold)), "Custom::Again", &[503, 200]).await,
            vec![
                ("accept", "running", false),
                ("durable", "answered", false),
                ("eventual", "answered", true),
            ]
        );
    }

    /// A scheduler's two inputs, and the request ids of the polls it fired.
    type Recorded = (
        mpsc::UnboundedSender<(Instant, RequestKey)>,
        mpsc::UnboundedSender<SchedulerControl>,
        Arc<Mutex<Vec<String>>>,
    );

    /// A scheduler whose fired polls are recorded, not run.
    fn recording_scheduler() -> Recorded {
        let (schedule, incoming) = mpsc::unbounded_channel();
        let (control, commands) = mpsc::unbounded_channel();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&fired);
        tokio::spawn(scheduler(incoming, commands, move |key| {
            record.lock().expect("fired").push(key.request_id);
            true
        }));
        (schedule, control, fired)
    }

    fn key(request_id: &str) -> RequestKey {
        RequestKey::of(&Request::new(
            RequestType::Create,
            "Custom::Wait",
            "Res",
            "stack",
            request_id,
        ))
    }

    async fn settle(control: &mpsc::UnboundedSender<SchedulerControl>, until: Instant) -> bool {
        let (reply, fired) = oneshot::channel();
        control
            .send(SchedulerControl::Settle { until, reply })
            .expect("scheduler running");
        fired.await.expect("a reply")
    }

    #[tokio::test(start_paused = true)]
    async fn polls_due_within_the_grace_period_fire_and_later_ones_do_not_hold_it() {
        let (schedule, control, fired) = recording_scheduler();
        let start = Instant::now();
        let grace_end = start + Duration::from_secs(3);
        schedule
            .send((start + Duration::from_secs(2), key("due")))
            .expect("send");
        schedule
            .send((start + Duration::from_secs(600), key("later")))
            .expect("send");
        // Sent before the question, so counted by it: the reply waits for
        // the poll due within the grace period, and says it was started.
        assert!(settle(&control, grace_end).await);
        assert_eq!(Instant::now(), start + Duration::from_secs(2));
        assert_eq!(*fired.lock().expect("fired"), ["due"]);
        // Only a poll due after the grace end is left: nothing to wait for.
        assert!(!settle(&control, grace_end).await);
        assert_eq!(Instant::now(), start + Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn stopped_polls_are_handed_over_in_due_order_with_later_ones() {
        let (schedule, control, fired) = recording_scheduler();
        let start = Instant::now();
        schedule
            .send((start + Duration::from_secs(90), key("second")))
            .expect("send");
        schedule
            .send((start + Duration::from_secs(60), key("first")))
            .expect("send");
        let (reply, unfired) = oneshot::channel();
        control
            .send(SchedulerControl::Stop { reply })
            .expect("send");
        let Unfired { queued, mut late } = unfired.await.expect("handed over");
        let ids: Vec<_> = queued.iter().map(|k| k.request_id.as_str()).collect();
        assert_eq!(ids, ["first", "second"]);
        schedule
            .send((start + Duration::from_secs(1), key("late")))
            .expect("send");
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(
            fired.lock().expect("fired").is_empty(),
            "nothing fires once stopped"
        );
        let (_, late_key) = late.try_recv().expect("a poll scheduled after the stop");
        assert_eq!(late_key.request_id, "late");
    }

    /// Declared idempotent: counts its runs, takes a little time (so a
    /// deadline already past would cut it off), and lets the runtime
    /// generate the id.
    struct Counted(Arc<std::sync::atomic::AtomicUsize>);

    impl Handler for Counted {
        type Properties = serde_json::Value;
        type Error = std::io::Error;
        const IDEMPOTENT: bool = true;

        async fn create(&self, _: CreateRequest<Self::Properties>) -> std::io::Result<Created> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Created::new())
        }
        async fn update(&self, _: UpdateRequest<Self::Properties>) -> std::io::Result<Updated> {
            Ok(Updated::new())
        }
        async fn delete(&self, _: DeleteRequest<Self::Properties>) -> std::io::Result<Deleted> {
            Ok(Deleted::new())
        }
    }

    /// A runtime over `store` with `Custom::Done` (not idempotent) and
    /// `Custom::Counted` (idempotent, its runs counted), configured by
    /// `config`, and the run count.
    fn recovering(
        store: Arc<dyn Store>,
        config: Config,
    ) -> (Arc<Runtime>, Arc<std::sync::atomic::AtomicUsize>) {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let router = Router::new()
            .route("Custom::Done", Done)
            .route("Custom::Counted", Counted(Arc::clone(&runs)));
        let runtime = Runtime::with_store(router, config, store).expect("runtime");
        (runtime, runs)
    }

    /// A Create of `resource_type` left running by a process that died a
    /// minute ago, as the journal has it.
    async fn left_running(
        store: &dyn Store,
        resource_type: &str,
        id: &str,
        channel: Channel,
        sink: &CallbackSink,
    ) -> Arc<Request> {
        let mut request = Request::new(RequestType::Create, resource_type, "Res", "stack", id);
        request.response_url = Some(CallbackUrl::new(sink.url("/cb")));
        let request = Arc::new(request);
        let mut record = Record::accepted(Arc::clone(&request), channel);
        record.accepted_at_ms -= 60_000;
        store
            .put(&RequestKey::of(&request), &record)
            .await
            .expect("put");
        request
    }

    #[tokio::test]
    async fn a_sync_request_left_running_is_rerun_and_its_redeliveries_get_that_answer() {
        let sink = CallbackSink::start().await.expect("sink");
        let store = Arc::new(MemoryStore::new());
        let request =
            left_running(&*store, "Custom::Counted", "sync-1", Channel::Sync, &sink).await;
        let (runtime, runs) = recovering(store.clone(), Config::for_local_testing());
        runtime.recover().await.expect("recover");
        // Its sync window ended with the dead process a minute ago; the
        // rerun gets a fresh one, or the handler would be cut off at once.
        let first = runtime.answer_sync(&request).await;
        assert_eq!(first.status, crate::response::Status::Success, "{first:?}");
        assert_eq!(
            first.physical_resource_id,
            crate::physical_id::generate("stack", "Res", "sync-1"),
            "the id a first run would have given"
        );
        let again = runtime.answer_sync(&request).await;
        assert_eq!(again, first, "a redelivery gets the recorded answer");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        let recorded = store
            .get(&RequestKey::of(&request))
            .await
            .expect("get")
            .expect("recorded");
        assert!(
            matches!(recorded.stage, Stage::Answered { ref response, .. } if **response == first)
        );
        assert!(
            sink.received().is_empty(),
            "a sync request gets no callback"
        );
    }

    /// The FAILED answers the requests left running get after a restart,
    /// through their callbacks (async) and to a redelivery (sync).
    async fn restart_reasons(resource_type: &str, config: Config) -> (Vec<String>, usize) {
        let sink = CallbackSink::start().await.expect("sink");
        let store = Arc::new(MemoryStore::new());
        left_running(&*store, resource_type, "async-1", Channel::Async, &sink).await;
        let sync = left_running(&*store, resource_type, "sync-1", Channel::Sync, &sink).await;
        let (runtime, runs) = recovering(store, config);
        runtime.recover().await.expect("recover");
        let mut reasons: Vec<String> = sink
            .wait_for(1, Duration::from_secs(10))
            .await
            .iter()
            .filter_map(|received| received.response())
            .map(|response| {
                assert_eq!(response.status, crate::response::Status::Failed);
                response.reason.unwrap_or_default()
            })
            .collect();
        let redelivered = runtime.answer_sync(&sync).await;
        assert_eq!(redelivered.status, crate::response::Status::Failed);
        reasons.push(redelivered.reason.unwrap_or_default());
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        (reasons, runs.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_request_left_running_under_a_fail_policy_is_failed_naming_the_policy() {
        let config =
            Config::for_local_testing().restart_policy("Custom::Counted", RestartPolicy::Fail);
        let (reasons, runs) = restart_reasons("Custom::Counted", config).await;
        assert_eq!(runs, 0, "not run again");
        for reason in reasons {
            assert!(
                reason.contains("restarted during the operation"),
                "{reason}"
            );
            assert!(
                reason.contains("--restart-policy Custom::Counted=fail"),
                "{reason}"
            );
            assert!(!reason.contains("idempotent"), "a false cause: {reason}");
        }
    }

    #[tokio::test]
    async fn a_request_left_running_whose_handler_is_not_idempotent_is_failed_saying_so() {
        let (reasons, _) = restart_reasons("Custom::Done", Config::for_local_testing()).await;
        for reason in reasons {
            assert!(
                reason.contains("restarted during the operation"),
                "{reason}"
            );
            assert!(
                reason.contains("the handler for Custom::Done is not declared idempotent"),
                "{reason}"
            );
        }
    }

    /// The journal writes of one sync Create of `resource_type`.
    async fn sync_writes_of(resource_type: &str) -> Vec<(&'static str, &'static str, bool)> {
        let store = Arc::new(LoggedStore::default());
        let (runtime, _) = recovering(store.clone(), Config::for_local_testing());
        let request = Arc::new(Request::new(
            RequestType::Create,
            resource_type,
            "Res",
            "stack",
            "r1",
        ));
        let reply = runtime.answer_sync(&request).await;
        assert_eq!(reply.status, crate::response::Status::Success, "{reply:?}");
        store.writes()
    }

    #[tokio::test]
    async fn a_sync_reply_a_rerun_cannot_reproduce_is_fsynced_before_it_is_given() {
        assert_eq!(
            sync_writes_of("Custom::Done").await,
            vec![("accept", "running", false), ("durable", "answered", true)]
        );
    }

    #[tokio::test]
    async fn a_sync_reply_a_rerun_reproduces_is_journaled_without_waiting() {
        assert_eq!(
            sync_writes_of("Custom::Counted").await,
            vec![("accept", "running", false), ("eventual", "answered", true)]
        );
    }

    #[tokio::test]
    async fn an_undelivered_rerun_answer_still_reaches_the_outbox() {
        // 403 is final: no retries, the answer stays undelivered.
        assert_eq!(
            journal_writes_of("Custom::Again", 403).await,
            vec![
                ("accept", "running", false),
                ("eventual", "answered", false)
            ]
        );
    }
}
