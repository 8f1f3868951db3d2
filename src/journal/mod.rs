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

mod memory;
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
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every store must have, run against each one.

    use super::*;
    use crate::request::RequestType;
    use crate::response::Status;

    pub(crate) fn record(id: &str) -> (RequestKey, Record) {
        let request = Request::new(RequestType::Create, "Custom::T", "Res", "stack", id);
        (
            RequestKey::of(&request),
            Record::accepted(Arc::new(request), Channel::Async),
        )
    }

    /// A FAILED answer to `record`'s request, delivered or not.
    pub(crate) fn answered(record: &Record, delivered: bool) -> Stage {
        Stage::Answered {
            response: Arc::new(Response::failed(&record.request, "pid", "x")),
            delivered,
        }
    }

    /// Whether `key` is among the store's open records.
    pub(crate) async fn is_open(store: &dyn Store, key: &RequestKey) -> bool {
        store
            .open_records()
            .await
            .expect("open")
            .iter()
            .any(|(k, _)| k == key)
    }

    pub(crate) async fn accept_inserts_once(store: &dyn Store) {
        let (key, rec) = record("r1");
        assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
        let again = store.accept(&key, &rec).await.expect("accept");
        assert_eq!(again.map(|r| r.stage), Some(Stage::Running));
    }

    /// An early accept decides like `accept`, and its insert is readable
    /// once durable; a second one, early or not, finds it.
    pub(crate) async fn accept_early_decides_once(store: &dyn Store) {
        let (key, rec) = record("early");
        let Acceptance::Inserted(durable) = store.accept_early(&key, &rec).await.expect("accept")
        else {
            panic!("a new key is inserted");
        };
        let Acceptance::Existing(existing) =
            store.accept_early(&key, &rec).await.expect("accept again")
        else {
            panic!("the decision holds before the insert is durable");
        };
        assert_eq!(existing, rec);
        durable.await.expect("durable");
        assert_eq!(store.get(&key).await.expect("get"), Some(rec.clone()));
        assert_eq!(
            store
                .accept(&key, &rec)
                .await
                .expect("accept")
                .map(|r| r.stage),
            Some(Stage::Running)
        );
    }

    pub(crate) async fn open_records_track_the_outbox(store: &dyn Store) {
        let (key, mut rec) = record("r2");
        store.accept(&key, &rec).await.expect("accept");
        assert!(is_open(store, &key).await);
        let response = Arc::new(Response::failed(&rec.request, "pid", "x"));
        rec.stage = Stage::Answered {
            response: Arc::clone(&response),
            delivered: false,
        };
        store.put(&key, &rec).await.expect("put");
        let open = store.open_records().await.expect("open");
        assert!(open.iter().any(|(k, r)| k == &key && r.stage == rec.stage));
        rec.stage = Stage::Answered {
            response,
            delivered: true,
        };
        store.put(&key, &rec).await.expect("put");
        assert!(!is_open(store, &key).await);
        let stored = store.get(&key).await.expect("get").expect("present");
        assert!(
            matches!(stored.stage, Stage::Answered { ref response, delivered: true } if response.status == Status::Failed)
        );
    }

    pub(crate) async fn eventual_writes_are_read_back(store: &dyn Store) {
        let (key, mut rec) = record("eventual");
        store.accept(&key, &rec).await.expect("accept");
        rec.stage = answered(&rec, true);
        store.put_eventually(&key, &rec).await.expect("queued");
        // A later accept, as a redelivered request makes, sees it at once.
        let seen = store.accept(&key, &rec).await.expect("accept");
        assert_eq!(seen.map(|r| r.stage), Some(rec.stage.clone()));
        store.flush().await.expect("flush");
        let read = store.get(&key).await.expect("get").expect("present");
        assert_eq!(read.stage, rec.stage);
        assert!(!is_open(store, &key).await);
    }

    /// The keys [`write_every_kind`] writes, and what each must hold after.
    const KINDS: [&str; 5] = [
        "kind-accepted",
        "kind-polling",
        "kind-delivered-from-the-outbox",
        "kind-rerun-answer",
        "kind-sync-reply",
    ];

    /// A record of the kind `name`, on the channel its kind arrives by.
    fn kind(name: &str) -> (RequestKey, Record) {
        let (key, mut record) = record(name);
        if name == "kind-sync-reply" {
            record.channel = Channel::Sync;
        }
        (key, record)
    }

    /// What the record of the kind `name` holds once [`write_every_kind`]
    /// is done. Built from the request alone, so that another process
    /// expects the same.
    fn final_stage(name: &str) -> Stage {
        let (_, record) = kind(name);
        match name {
            "kind-accepted" => Stage::Running,
            "kind-polling" => Stage::Polling {
                state: serde_json::json!({"step": 1}),
                next_poll_at_ms: 1_000,
                attempt: 1,
                data: Data::new(),
                physical_resource_id: Some("pid".into()),
            },
            _ => Stage::Answered {
                response: Arc::new(Response::success(&record.request, "pid", Data::new())),
                delivered: true,
            },
        }
    }

    /// Make every kind of write whose loss would change an answer, as the
    /// runtime makes them: accepts and durable puts first, then the writes
    /// nobody waits for (the delivered mark after an outbox delivery, the
    /// answer of a request whose restart policy is to rerun, and a sync
    /// reply). Nothing durable follows them, which would carry them to disk
    /// and hide their loss.
    pub(crate) async fn write_every_kind(store: &dyn Store) {
        let mut later = Vec::new();
        for name in KINDS {
            let (key, mut record) = kind(name);
            match store.accept_early(&key, &record).await.expect("accept") {
                Acceptance::Inserted(durable) => durable.await.expect("durable"),
                Acceptance::Existing(_) => panic!("{key} was new"),
            }
            match final_stage(name) {
                Stage::Running => {}
                stage @ Stage::Polling { .. } => {
                    record.stage = stage;
                    store.put(&key, &record).await.expect("put");
                }
                Stage::Answered { response, .. } => {
                    if name == "kind-delivered-from-the-outbox" {
                        record.stage = Stage::Answered {
                            response: Arc::clone(&response),
                            delivered: false,
                        };
                        store.put(&key, &record).await.expect("outbox");
                    }
                    record.stage = Stage::Answered {
                        response,
                        delivered: true,
                    };
                    later.push((key, record));
                }
            }
        }
        for (key, record) in &later {
            if key.request_id == "kind-delivered-from-the-outbox" {
                let Stage::Answered { response, .. } = &record.stage else {
                    unreachable!("answered above");
                };
                let body = response.to_body();
                store
                    .put_delivered(key, record, &body)
                    .await
                    .expect("marked");
            } else {
                store.put_eventually(key, record).await.expect("queued");
            }
        }
    }

    /// Whether `store` holds every write [`write_every_kind`] made: each
    /// record at its last stage, on its channel, and only the running and
    /// polling ones open.
    pub(crate) async fn holds_every_kind(store: &dyn Store) {
        for name in KINDS {
            let (key, expected) = kind(name);
            let held = store
                .get(&key)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("{key} lost"));
            assert_eq!(held.stage, final_stage(name), "{key}");
            assert_eq!(held.channel, expected.channel, "{key}");
        }
        let mut open: Vec<String> = store
            .open_records()
            .await
            .expect("open")
            .into_iter()
            .map(|(key, _)| key.request_id)
            .filter(|id| KINDS.contains(&id.as_str()))
            .collect();
        open.sort();
        assert_eq!(open, ["kind-accepted", "kind-polling"]);
    }

    pub(crate) async fn purge_removes_only_old_closed_records(store: &dyn Store) {
        let (old_key, mut old) = record("old");
        old.accepted_at_ms = 1_000;
        old.stage = answered(&old, true);
        store.put(&old_key, &old).await.expect("put");
        let (open_key, mut open) = record("old-open");
        open.accepted_at_ms = 1_000;
        store.put(&open_key, &open).await.expect("put");
        let (new_key, new) = record("new");
        store.put(&new_key, &new).await.expect("put");
        assert_eq!(store.purge(2_000).await.expect("purge"), 1);
        assert!(store.get(&old_key).await.expect("get").is_none());
        assert!(store.get(&open_key).await.expect("get").is_some());
        assert!(store.get(&new_key).await.expect("get").is_some());
        open.stage = answered(&open, true);
        store.put(&open_key, &open).await.expect("put");
        assert_eq!(store.purge(2_000).await.expect("purge"), 1);
    }
}
