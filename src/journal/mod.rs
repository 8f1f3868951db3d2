//! The journal: every accepted request, its progress and its answer, so that
//! no answer is lost to a crash, a restart or a redelivery.
//!
//! - A request is recorded ([`Stage::Running`]) before it is acknowledged
//!   (the runtime may acknowledge sooner once the answer reached ROS).
//!   [`Store::accept_early`] reports whether it is new before the record is
//!   durable, so work that may safely run twice can start during the fsync.
//! - A long-running request records its handler state ([`Stage::Polling`]).
//! - The final answer is recorded before delivery ([`Stage::Answered`] with
//!   `delivered: false`, the outbox) and marked delivered after a 2xx.
//! - Writes whose loss a restart repairs (the delivered mark, a sync reply,
//!   and an answer that a rerun of an idempotent handler reproduces) go
//!   through [`Store::put_eventually`]: they do not wait for their own
//!   fsync, but a durable store makes them durable within
//!   [`DURABILITY_BOUND`]. A crash later than that never loses them, so it
//!   never reruns an answered request nor sends a second answer.
//! - Records are keyed by StackId, LogicalResourceId and RequestId, which is
//!   how redelivered requests are recognised.
//!
//! Two stores ship: `RedbStore`, embedded and durable (the `redb` feature), and
//! [`MemoryStore`], for tests and for deployments that trade durability for
//! speed (nothing in it survives the process). A shared backend implements
//! the same [`Store`] trait; [`Store`] says what each method guarantees.
//!
//! # Ownership
//! A shared journal (`stackhook-postgres`) is written by several replicas.
//! Every record there has an owner (a replica id, [`Store::replica_id`]), a
//! lease that the owner renews ([`Store::renew`]) and a fencing epoch. A
//! replica takes over records whose lease ran out or that were released
//! ([`Store::claim`], which raises their epoch); from then on a write from
//! the replica that held them before fails with
//! [`Error::Fenced`](crate::Error::Fenced), and that replica stops working
//! on the record. The embedded stores have one owner, the process: they
//! hold what they write, and what they release or find left open by the
//! process before is theirs to claim. The behaviour every store shares is
//! in the `contract` module (the `contract-tests` feature), which each
//! store's tests run.

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
mod memory;
mod owner;
#[cfg(feature = "redb")]
mod redb_store;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use memory::MemoryStore;
#[cfg(feature = "redb")]
pub use redb_store::{JOURNAL_FILE, RedbStore};

use crate::error::Result;
use crate::request::Request;
use crate::response::{Data, Response};

/// How soon after a write returns a durable store ([`Store::is_durable`])
/// has it on disk, for the writes that do not wait for their fsync
/// ([`Store::put_eventually`], [`Store::put_delivered`]). A crash later than
/// this never loses them.
///
/// [`RedbStore`] lets such a write wait up to 20 ms for a durable write to
/// share its commit (under load one always comes, and they cost no fsync of
/// their own), then commits it with its own fsync. The commit under way when
/// it was queued comes first, so it is on disk within 20 ms and two commits;
/// 100 ms leaves those commits 40 ms each, which a disk that keeps up with a
/// journal meets many times over (a small commit's fsync took about 0.2 ms
/// on the disks we measured). A disk that stalls for longer stretches the
/// window by as much.
pub const DURABILITY_BOUND: Duration = Duration::from_millis(100);

/// A boxed future, so stores can be used as `Arc<dyn Store>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What identifies one request across redeliveries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestKey {
    /// The stack's id.
    pub stack_id: String,
    /// The resource's logical id.
    pub logical_resource_id: String,
    /// ROS's request id.
    pub request_id: String,
}

impl RequestKey {
    /// The key of `request`.
    pub fn of(request: &Request) -> Self {
        RequestKey {
            stack_id: request.stack_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
            request_id: request.request_id.clone(),
        }
    }

    /// An unambiguous text form, for stores keyed by strings.
    pub fn encode(&self) -> String {
        serde_json::to_string(&[&self.stack_id, &self.logical_resource_id, &self.request_id])
            .unwrap_or_default()
    }
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.stack_id, self.logical_resource_id, self.request_id
        )
    }
}

/// How the request reached the provider, which decides how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    /// `POST /`: answered at the callback URL.
    Async,
    /// `POST /sync`: answered in the HTTP reply.
    Sync,
    /// `POST /invoke`: answered at the callback URL.
    FunctionCompute,
}

impl Channel {
    /// Whether answers go to the callback URL.
    pub fn uses_callback(self) -> bool {
        !matches!(self, Channel::Sync)
    }
}

/// Where a request is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage")]
pub enum Stage {
    /// Accepted; the handler has not finished.
    Running,
    /// The handler asked to be polled again.
    Polling {
        /// The handler's state, handed back at the next poll.
        state: Value,
        /// When to poll, in Unix milliseconds.
        next_poll_at_ms: u64,
        /// Polls made so far.
        attempt: u32,
        /// Data the handler returned so far.
        #[serde(default)]
        data: Data,
        /// The id chosen so far, on Create.
        #[serde(default)]
        physical_resource_id: Option<String>,
    },
    /// The final answer; `delivered` once a callback took it.
    Answered {
        /// The answer, shared: the runtime, waiting duplicates and the
        /// store hold it at the same time.
        response: Arc<Response>,
        /// Whether the outbox is done with it: it reached ROS, or a start
        /// found that the callback guard refuses every callback URL of its
        /// request, and closed it undelivered (logged at ERROR).
        delivered: bool,
    },
}

/// One journaled request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The request as ROS sent it, callback URLs included. Shared, because
    /// the runtime and the store hold it at the same time.
    pub request: Arc<Request>,
    /// How it arrived.
    pub channel: Channel,
    /// When it was accepted, in Unix milliseconds: its deadline counts from
    /// here. (A sync request run again after a restart counts from the
    /// rerun: ROS's wait for the first reply ended with the process.)
    pub accepted_at_ms: u64,
    /// Where it is now.
    pub stage: Stage,
}

impl Record {
    /// A freshly accepted request.
    pub fn accepted(request: Arc<Request>, channel: Channel) -> Self {
        Record {
            request,
            channel,
            accepted_at_ms: now_ms(),
            stage: Stage::Running,
        }
    }

    /// Whether the record still needs work: running, polling or undelivered.
    pub fn is_open(&self) -> bool {
        !matches!(
            self.stage,
            Stage::Answered {
                delivered: true,
                ..
            }
        )
    }
}

/// A store future already complete with `Ok(())`, for writes that are
/// done when the call returns. The future is zero-sized, so boxing it
/// allocates nothing (a `std::future::ready` of the result would).
pub(crate) fn done<'a>() -> StoreFuture<'a, ()> {
    Box::pin(Done)
}

struct Done;

impl Future for Done {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A record taken over with [`Store::claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The record's key.
    pub key: RequestKey,
    /// The record as the store had it.
    pub record: Record,
    /// The fencing epoch the claimer now holds it at: higher than any
    /// before, so the previous holder's writes are fenced.
    pub epoch: u64,
}

/// How long [`Store::wait_for_answer`]'s default waits between reads.
const ANSWER_POLL: Duration = Duration::from_millis(20);

/// Completes when an accepted record is durable: see [`Store::accept_early`].
#[must_use = "the record may not be durable until this completes"]
pub struct Durable(StoreFuture<'static, ()>);

impl Durable {
    /// Already durable (or never will be more so).
    pub fn done() -> Self {
        Durable(done())
    }

    /// Durable when `future` completes.
    pub fn when(future: impl Future<Output = Result<()>> + Send + 'static) -> Self {
        Durable(Box::pin(future))
    }
}

impl Future for Durable {
    type Output = Result<()>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for Durable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Durable")
    }
}

/// What [`Store::accept_early`] decided.
#[derive(Debug)]
pub enum Acceptance {
    /// The key was there already: its record, as the store has it.
    Existing(Record),
    /// Inserted; [`Durable`] completes when the insert survives a crash.
    Inserted(Durable),
}

/// Where records are kept.
///
/// Implementations must make [`Store::accept`] atomic: of two concurrent
/// accepts for one key, exactly one inserts.
///
/// # Durability
/// Each method says what a crash may lose once it has returned. For a
/// durable store ([`Store::is_durable`]) in short: an accept or a
/// [`Store::put`] survives a crash once its future completes; a
/// [`Store::put_eventually`] or [`Store::put_delivered`] once
/// [`DURABILITY_BOUND`] has passed; [`Store::flush`] makes everything
/// before it durable. A store that is not durable keeps nothing across a
/// restart, and none of this applies to it.
///
/// A record is always written under its request's key
/// (`RequestKey::of(&record.request)`); stores may rely on it, and give that
/// key back from [`Store::open_records`].
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Insert `record` unless `key` exists; return the existing record if so.
    ///
    /// Durability: the insert survives a crash once the future completes.
    fn accept<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Option<Record>>;
    /// [`Store::accept`], reporting the decision as soon as it is made: the
    /// insert may not be durable yet, and [`Acceptance::Inserted`] carries a
    /// future that completes when it is. Lets the runtime start work whose
    /// rerun after a crash is harmless while the fsync is under way.
    ///
    /// Durability: the insert survives a crash once the [`Durable`]
    /// completes; a crash before then may lose it, and the request is then
    /// unknown at the next start (which is why only work whose rerun is
    /// harmless starts early). The decision holds for every later accept of
    /// this process meanwhile.
    ///
    /// The default waits for [`Store::accept`], so the decision comes with
    /// durability.
    fn accept_early<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Acceptance> {
        Box::pin(async move {
            Ok(match self.accept(key, record).await? {
                Some(existing) => Acceptance::Existing(existing),
                None => Acceptance::Inserted(Durable::done()),
            })
        })
    }
    /// Insert or replace the record for `key`, durably.
    ///
    /// Durability: the write survives a crash once the future completes.
    fn put<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, ()>;
    /// Insert or replace the record for `key` without waiting for it to be
    /// durable. Writes and accepts made after it see it (writes apply in
    /// order); [`Store::get`] may see the previous version until the next
    /// group commits, and [`Store::open_records`] until it is durable.
    ///
    /// Durability: the write survives a crash once [`DURABILITY_BOUND`] has
    /// passed since the future completed (at once with the next
    /// [`Store::flush`], or with a durable write made after it); a crash
    /// within the bound may lose it. Only for writes whose loss within the
    /// bound recovery repairs: the runtime uses it for the delivered mark,
    /// a sync reply, and the answer of a request whose restart policy is to
    /// rerun, so a crash after the bound never reruns an answered request
    /// nor sends a second answer.
    ///
    /// The default is [`Store::put`], durable at once.
    fn put_eventually<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, ()> {
        self.put(key, record)
    }
    /// [`Store::put_eventually`] for a record whose answer has just been
    /// delivered, with `body`, the bytes that were sent
    /// ([`Response::to_body`](crate::response::Response::to_body)). A store
    /// that keeps closed records compactly may keep these bytes rather than
    /// encode the answer again; what it gives back is then the answer as ROS
    /// received it (a reason over ROS's limits arrives shortened).
    ///
    /// Durability: as [`Store::put_eventually`], within [`DURABILITY_BOUND`].
    ///
    /// The default is [`Store::put_eventually`].
    fn put_delivered<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
        body: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        let _ = body;
        self.put_eventually(key, record)
    }
    /// Write `record`, whose work waits for its next poll
    /// ([`Stage::Polling`]), and give it up until that poll is due, so that
    /// long-running work is shared out: from then on any replica of a
    /// shared store may [`Store::claim`] it and run the poll, this one
    /// included. Returns whether the store gave it up; `false` means this
    /// replica keeps it and runs the poll itself. Only for work polled in
    /// the background, never for a poll a caller waits on in-process (a
    /// sync reply, a Function Compute invocation).
    ///
    /// Durability: as [`Store::put`].
    ///
    /// The default is [`Store::put`], keeping the record: a store with one
    /// owner has nobody to share the work with.
    fn park<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.put(key, record).await?;
            Ok(false)
        })
    }
    /// Make every earlier write durable. Called at shutdown.
    ///
    /// Durability: every write made before the call survives a crash once
    /// the future completes.
    ///
    /// The default does nothing: for stores whose every write is durable.
    fn flush(&self) -> StoreFuture<'_, ()> {
        done()
    }
    /// The record for `key`.
    fn get<'a>(&'a self, key: &'a RequestKey) -> StoreFuture<'a, Option<Record>>;
    /// Every record that is running, polling or undelivered.
    fn open_records(&self) -> StoreFuture<'_, Vec<(RequestKey, Record)>>;
    /// Remove closed records accepted before `before_ms`; return how many.
    fn purge(&self, before_ms: u64) -> StoreFuture<'_, usize>;
    /// Whether the store works, for health checks.
    fn check(&self) -> StoreFuture<'_, ()>;
    /// Whether records survive a restart, within the bounds above. `false`
    /// (a store in memory) means nothing does.
    fn is_durable(&self) -> bool;

    /// Whether several replicas share this store, so that a record may be
    /// owned by another process. The default: no.
    fn is_shared(&self) -> bool {
        false
    }
    /// The id of the replica this store writes as, the owner of the records
    /// it accepts. The default, for a single-owner store: `local`.
    fn replica_id(&self) -> &str {
        "local"
    }
    /// Take up to `limit` open records that no live owner holds (their
    /// lease ran out, or they were released; a parked record
    /// ([`Store::park`]) once its poll is due), oldest first, each at an
    /// epoch higher than before; a shared store skips rows another
    /// replica is claiming at the same moment, so claimers split the work.
    /// The caller then owns them and follows the restart policy for each.
    ///
    /// The default finds none: a store whose records never outlive their
    /// owner.
    fn claim(&self, limit: usize) -> StoreFuture<'_, Vec<Claimed>> {
        let _ = limit;
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Keep `key` with this replica while its answer is given before it is
    /// journaled, and say for how long that is certain: no other replica
    /// can take the record over within the returned time (by this
    /// process's clock), and [`Store::release`] leaves the record held
    /// until the next write to it. `None`: not certain at all, and the
    /// answer must be journaled (a fenced write) before it is given.
    ///
    /// The runtime asks this for a request whose restart policy is to
    /// rerun: a crash after such an answer was given but before it was
    /// journaled reruns the request, which a rerun request allows, but a
    /// second replica must never rerun it while the first still gives
    /// its answer.
    ///
    /// The default, for a store with one owner: for as long as the
    /// process lives ([`Duration::MAX`]); for a shared store: `None`.
    fn hold_to_answer(&self, key: &RequestKey) -> Option<Duration> {
        let _ = key;
        (!self.is_shared()).then_some(Duration::MAX)
    }
    /// Extend the lease of every open record this replica holds, in one
    /// call; returns how many. A replica heartbeats with it well within the
    /// lease.
    ///
    /// The default renews nothing: a store without leases.
    fn renew(&self) -> StoreFuture<'_, u64> {
        Box::pin(async { Ok(0) })
    }
    /// Give up every open record this replica holds, after committing the
    /// writes queued before, so that a peer claims them at once instead of
    /// after their lease; returns how many. Called at shutdown.
    ///
    /// The default flushes and releases nothing.
    fn release(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.flush().await?;
            Ok(0)
        })
    }
    /// Wait until `key`'s record is answered, for at most `timeout`, and
    /// return the answer; `None` if it is not answered by then or there is
    /// no such record. For a sync duplicate that arrived while another
    /// replica runs the request.
    ///
    /// The default reads the record every 20 ms.
    fn wait_for_answer<'a>(
        &'a self,
        key: &'a RequestKey,
        timeout: Duration,
    ) -> StoreFuture<'a, Option<Arc<Response>>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                if let Some(Record {
                    stage: Stage::Answered { response, .. },
                    ..
                }) = self.get(key).await?
                {
                    return Ok(Some(response));
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep_until(deadline.min(now + ANSWER_POLL)).await;
            }
        })
    }
    /// Requests sent to the database so far, each one round trip, for a
    /// store that counts them (`stackhook_journal_round_trips` on
    /// `/metrics`). The default: `None`, an embedded store.
    fn round_trips(&self) -> Option<u64> {
        None
    }
    /// [`Store::purge`], unless another replica is purging right now:
    /// `None` then. Replicas of a shared store never purge at once.
    ///
    /// The default purges: a store with one owner.
    fn try_purge(&self, before_ms: u64) -> StoreFuture<'_, Option<usize>> {
        Box::pin(async move { Ok(Some(self.purge(before_ms).await?)) })
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
