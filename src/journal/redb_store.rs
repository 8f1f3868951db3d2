//! The embedded, durable journal, on [redb](https://www.redb.org).
//!
//! Why redb rather than SQLite: it is pure Rust (no C toolchain in the build,
//! static and musl builds just work), it opens in microseconds (Function
//! Compute cold starts), and its copy-on-write B-trees are crash-safe with
//! checksummed commits. The journal needs only point lookups and two small
//! indexes, not SQL.
//!
//! # Fsync policy
//! Writes go through one writer thread that groups every operation waiting
//! at the moment into a single transaction, committed with
//! `Durability::Immediate` (one fsync per group). A caller's write returns
//! only after its group is on disk, so "recorded before acknowledged" holds,
//! while concurrent requests share fsyncs instead of queuing for one each.
//!
//! Every queued write is also kept in memory, newest per key, until its
//! group has committed ([`Queued`]). An accept is decided by the caller from
//! that and a read transaction, without waiting for the writer thread, so
//! the decision never waits behind an fsync under way: a request whose rerun
//! is harmless ([`Store::accept_early`]) starts, and its callback goes out,
//! while its record is being made durable. Reads see queued writes too.
//!
//! A writer that finds operations already waiting when it finishes a group
//! is the bottleneck: it then sleeps [`GATHER`] (half a millisecond) before
//! taking the next group, so that one commit serves more of them. An idle
//! writer commits a lone operation at once.
//!
//! [`Store::put_eventually`] and [`Store::put_delivered`] writes are queued
//! in the same order but not waited for. A group made only of them waits up
//! to [`LINGER`] for a durable operation to ride with, so that under load
//! they cost no commit of their own; if none comes, it commits with its own
//! fsync. Every commit is durable: redb keeps a commit made without an fsync
//! (`Durability::None`) only until a later durable one, so such a commit
//! would leave the delivered mark, a sync reply or a rerun's answer exposed
//! to a crash for as long as the journal stays quiet. A write nobody waits
//! for is therefore on disk within [`LINGER`] and two commits (the one under
//! way when it was queued, then its own), inside
//! [`DURABILITY_BOUND`](super::DURABILITY_BOUND); at most one commit every
//! [`LINGER`] is spent on such writes. When the store is dropped, the writer
//! commits what is still queued before it exits; a crash loses only writes
//! younger than the bound.
//!
//! # Tables
//! - `records.v2`: key → the [`Record`] as JSON.
//! - `open.v2`: keys of records that are running, polling or undelivered, so
//!   recovery reads only those.
//! - `by_time.v2`: (accepted at, key), so purging old records is a range scan.
//!
//! Keys ([`RequestKey::encode`]) are stored as bytes. The first journals
//! stored them as `&str`, whose comparison in redb checks both sides are
//! UTF-8 at every step of every B-tree search: a hundred checks and 11,000
//! instructions per round trip. UTF-8 orders by bytes as it orders by code
//! points, so the order is the same. A journal with the old tables
//! (`records`, `open`, `by_time`) is migrated when it is opened.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, TableDefinition, TableHandle};
use tokio::sync::oneshot;

use super::owner::SingleOwner;
use super::{Acceptance, Claimed, Durable, Record, RequestKey, Stage, Store, StoreFuture};
use crate::error::{Error, Result};
use crate::request::Request;
use crate::sync::lock;

const RECORDS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("records.v2");
const OPEN: TableDefinition<'_, &[u8], u64> = TableDefinition::new("open.v2");
const BY_TIME: TableDefinition<'_, (u64, &[u8]), ()> = TableDefinition::new("by_time.v2");

/// The first journals' tables, keyed by `&str`; migrated on opening.
mod v1 {
    use redb::TableDefinition;

    pub(super) const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
    pub(super) const OPEN: TableDefinition<'_, &str, u64> = TableDefinition::new("open");
    pub(super) const BY_TIME: TableDefinition<'_, (u64, &str), ()> =
        TableDefinition::new("by_time");
}

/// The journal file's name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.redb";

/// Most operations committed in one group.
const MAX_GROUP: usize = 512;

/// How long a durable group waits for more operations when the writer is
/// behind (see [`next_group`]). Under load, each commit's fixed costs (the
/// fsync, redb's commit record, waking the writer and each waiter) are then
/// shared by more operations: about a tenth less CPU per round trip at
/// full load in the round-trip bench, for half a millisecond more latency,
/// and only while there is a backlog.
const GATHER: Duration = Duration::from_micros(500);

/// How long a group of eventual writes waits for a durable operation to
/// share its commit with, before it commits with an fsync of its own. Under
/// load a durable write comes long before (each request makes one), so the
/// eventual writes add no fsync; an idle journal spends at most one fsync per
/// 20 ms on them. It is most of [`DURABILITY_BOUND`](super::DURABILITY_BOUND),
/// the window a crash may lose such a write in.
const LINGER: Duration = Duration::from_millis(20);

const _: () = assert!(
    LINGER.as_millis() * 2 <= super::DURABILITY_BOUND.as_millis(),
    "LINGER leaves the commits most of the durability bound"
);

enum Op {
    Put {
        key: String,
        record: Bytes,
        /// Which queued write this is, in [`Queued`].
        seq: u64,
        accepted_at: u64,
        open: bool,
        /// `None` for [`Store::put_eventually`]: nobody waits, nothing forces an fsync.
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    Purge {
        before_ms: u64,
        reply: oneshot::Sender<Result<usize>>,
    },
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Writes queued for the writer thread and not committed yet: the newest
/// record per key, with the number of the write that queued it.
///
/// Accepts and reads look here first and then in the database. The writer
/// drops an entry once the write that queued it has committed (or failed),
/// unless a newer write of the key was queued since, so every key is always
/// either here or readable from the database at its newest version.
#[derive(Debug, Default)]
struct Queued {
    records: foldhash::HashMap<String, (u64, Bytes)>,
    next_seq: u64,
}

/// The request of each open record, as JSON, with the request it encodes:
/// a later write of the record reuses the encoding if it is of the very same
/// request (the same `Arc`; see [`encode_from_parts`]). Within
/// [`MAX_CACHED_REQUEST_BYTES`]: the round trips in flight fit, and
/// thousands of long-running resources do not hold their requests twice
/// (theirs are encoded again at their next write). Unbounded, or at 2 MiB,
/// the cache raised the RSS of 10,000 waiting resources from 35 to 47–50
/// MiB: its long-lived entries pin the allocator's pages.
#[derive(Debug, Default)]
struct RequestCache {
    entries: foldhash::HashMap<String, (Arc<Request>, Bytes)>,
    bytes: usize,
}

/// The most request JSON [`RequestCache`] holds.
const MAX_CACHED_REQUEST_BYTES: usize = 256 << 10;

impl RequestCache {
    /// The encoding of `request` under `key`, if cached.
    fn get(&self, key: &str, request: &Arc<Request>) -> Option<Bytes> {
        self.entries
            .get(key)
            .filter(|(cached, _)| Arc::ptr_eq(cached, request))
            .map(|(_, json)| json.clone())
    }

    /// Cache `json`, the encoding of `request`, under `key`, if there is room.
    fn insert(&mut self, key: &str, request: &Arc<Request>, json: Bytes) {
        self.remove(key);
        if self.bytes + json.len() > MAX_CACHED_REQUEST_BYTES {
            return;
        }
        self.bytes += json.len();
        self.entries
            .insert(key.to_owned(), (Arc::clone(request), json));
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, json)) = self.entries.remove(key) {
            self.bytes -= json.len();
        }
    }
}

type SharedQueued = Arc<Mutex<Queued>>;

impl Op {
    /// Whether someone waits for this operation to be on disk.
    fn is_durable(&self) -> bool {
        !matches!(self, Op::Put { reply: None, .. })
    }
}

/// The embedded journal. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Op>,
    queued: SharedQueued,
    /// Open records' requests as JSON. See [`RequestCache`].
    requests: Mutex<RequestCache>,
    /// Cleared when the writer thread exits.
    writer_alive: Arc<AtomicBool>,
    path: PathBuf,
    /// What it released, and what the process before left open (single
    /// owner: `journal/owner.rs`).
    owner: SingleOwner,
}

fn journal_error(context: &str, error: impl Into<redb::Error>) -> Error {
    Error::Journal(format!("{context}: {}", error.into()))
}

impl RedbStore {
    /// Open (or create) the journal in `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created, [`Error::Journal`]
    /// when the file cannot be opened (for example another process holds it).
    pub fn open(dir: &Path) -> Result<Self> {
        create_private_dir(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let db = Database::create(&path)
            .map_err(|e| journal_error(&format!("opening {}", path.display()), e))?;
        let txn = db
            .begin_write()
            .map_err(|e| journal_error("creating tables", e))?;
        Tables::open(&txn)?;
        migrate_v1(&txn)?;
        txn.commit()
            .map_err(|e| journal_error("creating tables", e))?;
        let db = Arc::new(db);
        let (writer, ops) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = Arc::clone(&writer_alive);
        let queued = SharedQueued::default();
        let writer_queued = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("stackhook-journal".into())
            .spawn(move || {
                write_loop(&writer_db, &ops, &writer_queued);
                alive.store(false, Ordering::Release);
            })
            .map_err(|e| Error::io("starting the journal writer thread", e))?;
        let mut store = RedbStore {
            db,
            writer,
            queued,
            requests: Mutex::default(),
            writer_alive,
            path,
            owner: SingleOwner::default(),
        };
        // Whatever the process before left open, its leases ended with it.
        let left = store.read_open()?;
        store.owner = SingleOwner::with_free(left.into_iter().map(|(key, _)| key));
        Ok(store)
    }

    /// Every open record, as committed.
    fn read_open(&self) -> Result<Vec<(RequestKey, Record)>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| journal_error("reading", e))?;
        let open = txn
            .open_table(OPEN)
            .map_err(|e| journal_error("reading", e))?;
        let records = txn
            .open_table(RECORDS)
            .map_err(|e| journal_error("reading", e))?;
        let mut out = Vec::new();
        for entry in open.iter().map_err(|e| journal_error("reading", e))? {
            let (key, _) = entry.map_err(|e| journal_error("reading", e))?;
            if let Some(bytes) = records
                .get(key.value())
                .map_err(|e| journal_error("reading", e))?
            {
                let record = decode(bytes.value())?;
                out.push((RequestKey::of(&record.request), record));
            }
        }
        Ok(out)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn enqueue(&self, op: Op) -> Result<()> {
        self.writer
            .send(op)
            .map_err(|_| Error::Journal("the journal writer has stopped".into()))
    }

    async fn send<T>(&self, op: Op, reply: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.enqueue(op)?;
        reply
            .await
            .map_err(|_| Error::Journal("the journal writer dropped a request".into()))?
    }

    /// Queue a write of `record`, encoded as `bytes`, under `key`, with
    /// `queued` locked. (Encoded before the lock is taken: it is the slow
    /// part.)
    fn queue_put(
        &self,
        queued: &mut Queued,
        key: String,
        record: &Record,
        bytes: Bytes,
        reply: Option<oneshot::Sender<Result<()>>>,
    ) -> Result<()> {
        let seq = queued.next_seq;
        queued.next_seq += 1;
        // Queued first, then noted: the writer settles entries only with
        // `queued` locked, so it cannot settle this one before it is noted.
        self.enqueue(Op::Put {
            key: key.clone(),
            record: bytes.clone(),
            seq,
            accepted_at: record.accepted_at_ms,
            open: record.is_open(),
            reply,
        })?;
        queued.records.insert(key, (seq, bytes));
        Ok(())
    }

    /// `record` encoded for a write under `key`, from its request's cached
    /// encoding when there is one; the cache keeps the encoding while the
    /// record is open.
    fn encode_for_put(&self, key: &str, record: &Record, sent: Option<&[u8]>) -> Result<Vec<u8>> {
        let cached = lock(&self.requests).get(key, &record.request);
        let hit = cached.is_some();
        let request = match cached {
            Some(json) => json,
            None => encode_request(&record.request)?,
        };
        let bytes = encode_from_parts(record, &request, sent)?;
        if !record.is_open() {
            lock(&self.requests).remove(key);
        } else if !hit {
            lock(&self.requests).insert(key, &record.request, request);
        }
        Ok(bytes)
    }

    /// Queue a write nobody waits for: [`Store::put_eventually`], and
    /// [`Store::put_delivered`] with the answer as `sent`.
    fn put_unwaited(&self, key: &RequestKey, record: &Record, sent: Option<&[u8]>) -> Result<()> {
        self.owner.took(key);
        let key = key.encode();
        let bytes = self.encode_for_put(&key, record, sent)?;
        self.queue_put(&mut lock(&self.queued), key, record, bytes.into(), None)
    }

    /// The newest record for `key`, queued or committed, with `queued` locked.
    fn newest(&self, queued: &Queued, key: &str) -> Result<Option<Record>> {
        if let Some((_, bytes)) = queued.records.get(key) {
            return decode(bytes).map(Some);
        }
        let txn = self
            .db
            .begin_read()
            .map_err(|e| journal_error("reading", e))?;
        let table = txn
            .open_table(RECORDS)
            .map_err(|e| journal_error("reading", e))?;
        let Some(bytes) = table
            .get(key.as_bytes())
            .map_err(|e| journal_error("reading", e))?
        else {
            return Ok(None);
        };
        decode(bytes.value()).map(Some)
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::io(format!("creating the state directory {}", dir.display()), e))
}

fn decode(bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Journal(format!("a journal record is corrupt: {e}")))
}

fn encode_request(request: &Request) -> Result<Bytes> {
    serde_json::to_vec(request)
        .map(Bytes::from)
        .map_err(encoding_error)
}

fn encoding_error(e: serde_json::Error) -> Error {
    Error::Journal(format!("cannot encode a record: {e}"))
}

/// `record` as `serde_json::to_vec` writes it, byte for byte, from its request already
/// encoded (`request`) and, for an answered record, the answer as sent
/// (`sent`). A round trip writes its record two or three times; this
/// encodes its request once and its answer once (for the delivery).
fn encode_from_parts(record: &Record, request: &[u8], sent: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(request.len() + sent.map_or(256, <[u8]>::len) + 128);
    out.extend_from_slice(b"{\"request\":");
    out.extend_from_slice(request);
    out.extend_from_slice(b",\"channel\":");
    serde_json::to_writer(&mut out, &record.channel).map_err(encoding_error)?;
    out.extend_from_slice(b",\"accepted_at_ms\":");
    out.extend_from_slice(record.accepted_at_ms.to_string().as_bytes());
    out.extend_from_slice(b",\"stage\":");
    match (&record.stage, sent) {
        (Stage::Answered { delivered, .. }, Some(sent)) => {
            out.extend_from_slice(b"{\"stage\":\"Answered\",\"response\":");
            out.extend_from_slice(sent);
            out.extend_from_slice(b",\"delivered\":");
            out.extend_from_slice(if *delivered { b"true" } else { b"false" });
            out.push(b'}');
        }
        (stage, _) => serde_json::to_writer(&mut out, stage).map_err(encoding_error)?,
    }
    out.push(b'}');
    Ok(out)
}

/// The writer thread: take every waiting operation, apply them in one
/// transaction, commit it with an fsync, answer each. It exits once every
/// sender is dropped and every queued operation committed: a group that was
/// lingering when the last sender went commits at once.
fn write_loop(db: &Database, ops: &mpsc::Receiver<Op>, queued: &Mutex<Queued>) {
    while let Some(group) = next_group(ops, GATHER, LINGER) {
        commit_group(db, group, queued);
    }
}

/// The next group to commit: the first operation (waited for if none is
/// queued) and every one queued behind it, up to [`MAX_GROUP`]. A group of
/// eventual writes [`linger`]s up to `linger` for a durable one. A durable
/// group taken from a backlog, which means the writer is the bottleneck,
/// first waits `gather` for more; a writer that was idle commits at once.
/// `None` once every sender is gone and nothing is queued.
fn next_group(ops: &mpsc::Receiver<Op>, gather: Duration, linger: Duration) -> Option<Vec<Op>> {
    let (first, backlog) = match ops.try_recv() {
        Ok(op) => (op, true),
        Err(mpsc::TryRecvError::Empty) => (ops.recv().ok()?, false),
        Err(mpsc::TryRecvError::Disconnected) => return None,
    };
    let mut group = vec![first];
    take_queued(ops, &mut group);
    if !group.iter().any(Op::is_durable) {
        self::linger(ops, &mut group, linger);
    } else if backlog && group.len() < MAX_GROUP {
        std::thread::sleep(gather);
        take_queued(ops, &mut group);
    }
    Some(group)
}

/// Move the operations queued now into `group`, up to [`MAX_GROUP`].
fn take_queued(ops: &mpsc::Receiver<Op>, group: &mut Vec<Op>) {
    while group.len() < MAX_GROUP {
        match ops.try_recv() {
            Ok(op) => group.push(op),
            Err(_) => return,
        }
    }
}

/// Add operations to an eventual-only `group` until a durable one arrives,
/// the group is full, `linger` has passed, or every sender is gone.
fn linger(ops: &mpsc::Receiver<Op>, group: &mut Vec<Op>, linger: Duration) {
    let until = Instant::now() + linger;
    while group.len() < MAX_GROUP {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return;
        };
        match ops.recv_timeout(left) {
            Ok(op) => {
                let durable = op.is_durable();
                group.push(op);
                if durable {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// What one operation will answer once its group commits.
enum Outcome {
    Put(Option<oneshot::Sender<Result<()>>>, Result<()>),
    Purged(oneshot::Sender<Result<usize>>, Result<usize>),
}

/// The three tables, opened once per group. Opening a table in a write
/// transaction and closing it again writes its root back to the table of
/// tables, so opening them per operation cost three B-tree updates per
/// operation on the writer thread, which every request waits for.
struct Tables<'t> {
    records: redb::Table<'t, &'static [u8], &'static [u8]>,
    open: redb::Table<'t, &'static [u8], u64>,
    by_time: redb::Table<'t, (u64, &'static [u8]), ()>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self> {
        let fail = |e: redb::TableError| journal_error("opening the tables", e);
        Ok(Tables {
            records: txn.open_table(RECORDS).map_err(fail)?,
            open: txn.open_table(OPEN).map_err(fail)?,
            by_time: txn.open_table(BY_TIME).map_err(fail)?,
        })
    }
}

/// Move the records of a journal made with `&str` keys (see Tables in the
/// module's documentation) into the current tables, within `txn`, and drop
/// the old tables. Nothing to do for a journal without them.
fn migrate_v1(txn: &redb::WriteTransaction) -> Result<()> {
    fn fail(e: impl Into<redb::Error>) -> Error {
        journal_error("migrating the journal's tables", e)
    }
    let has_v1 = txn
        .list_tables()
        .map_err(fail)?
        .any(|table| table.name() == v1::RECORDS.name());
    if !has_v1 {
        return Ok(());
    }
    {
        let mut tables = Tables::open(txn)?;
        let records = txn.open_table(v1::RECORDS).map_err(fail)?;
        for entry in records.iter().map_err(fail)? {
            let (key, record) = entry.map_err(fail)?;
            tables
                .records
                .insert(key.value().as_bytes(), record.value())
                .map_err(fail)?;
        }
        let open = txn.open_table(v1::OPEN).map_err(fail)?;
        for entry in open.iter().map_err(fail)? {
            let (key, at) = entry.map_err(fail)?;
            tables
                .open
                .insert(key.value().as_bytes(), at.value())
                .map_err(fail)?;
        }
        let by_time = txn.open_table(v1::BY_TIME).map_err(fail)?;
        for entry in by_time.iter().map_err(fail)? {
            let (time_key, _) = entry.map_err(fail)?;
            let (at, key) = time_key.value();
            tables
                .by_time
                .insert((at, key.as_bytes()), ())
                .map_err(fail)?;
        }
    }
    txn.delete_table(v1::RECORDS).map_err(fail)?;
    txn.delete_table(v1::OPEN).map_err(fail)?;
    txn.delete_table(v1::BY_TIME).map_err(fail)?;
    tracing::info!("journal migrated to byte-string keys");
    Ok(())
}

/// Apply `group` in one transaction, commit it durably (one fsync), settle
/// its writes in `queued` and answer each operation.
fn commit_group(db: &Database, group: Vec<Op>, queued: &Mutex<Queued>) {
    let txn = match db.begin_write() {
        Ok(mut txn) => {
            // redb's default, stated: see "Fsync policy" above for why no
            // group commits without an fsync.
            txn.set_durability(Durability::Immediate);
            txn
        }
        Err(e) => {
            let message = format!("starting a journal transaction: {}", redb::Error::from(e));
            fail_all(group, &message, queued);
            return;
        }
    };
    let mut settled = Vec::with_capacity(group.len());
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut tables = match Tables::open(&txn) {
            Ok(tables) => tables,
            Err(e) => {
                fail_all(group, &e.to_string(), queued);
                return;
            }
        };
        for op in group {
            outcomes.push(match op {
                Op::Put {
                    key,
                    record,
                    seq,
                    accepted_at,
                    open,
                    reply,
                } => {
                    let result = put_in(&mut tables, &key, &record, accepted_at, open);
                    settled.push((key, seq));
                    Outcome::Put(reply, result)
                }
                Op::Purge { before_ms, reply } => {
                    Outcome::Purged(reply, purge_in(&mut tables, before_ms))
                }
                Op::Flush { reply } => Outcome::Put(Some(reply), Ok(())),
            });
        }
    }
    let committed = txn.commit().map_err(|e| journal_error("committing", e));
    // Committed, readers see these writes now; failed, they are not there,
    // and their writers hear so below. Either way the database has the
    // truth about them.
    settle(queued, settled);
    for outcome in outcomes {
        match (outcome, &committed) {
            (Outcome::Put(reply, result), Ok(())) => answer_put(reply, result),
            (Outcome::Purged(reply, result), Ok(())) => drop(reply.send(result)),
            (Outcome::Put(reply, _), Err(e)) => {
                answer_put(reply, Err(Error::Journal(e.to_string())))
            }
            (Outcome::Purged(reply, _), Err(e)) => {
                drop(reply.send(Err(Error::Journal(e.to_string()))))
            }
        }
    }
}

/// Answer a put; an eventual put has nobody to answer, so its failure is logged.
fn answer_put(reply: Option<oneshot::Sender<Result<()>>>, result: Result<()>) {
    match (reply, result) {
        (Some(reply), result) => drop(reply.send(result)),
        (None, Ok(())) => {}
        (None, Err(error)) => {
            tracing::warn!(%error, "a journal write that nobody waited for failed")
        }
    }
}

/// Forget the queued copies of `writes` that no newer write has replaced.
fn settle(queued: &Mutex<Queued>, writes: Vec<(String, u64)>) {
    if writes.is_empty() {
        return;
    }
    let mut queued = lock(queued);
    for (key, seq) in writes {
        if queued
            .records
            .get(&key)
            .is_some_and(|(newest, _)| *newest == seq)
        {
            queued.records.remove(&key);
        }
    }
}

fn fail_all(group: Vec<Op>, message: &str, queued: &Mutex<Queued>) {
    let mut settled = Vec::new();
    for op in group {
        let error = || Error::Journal(message.to_string());
        match op {
            Op::Put {
                key, seq, reply, ..
            } => {
                settled.push((key, seq));
                answer_put(reply, Err(error()));
            }
            Op::Purge { reply, .. } => drop(reply.send(Err(error()))),
            Op::Flush { reply } => drop(reply.send(Err(error()))),
        }
    }
    settle(queued, settled);
}

fn put_in(
    tables: &mut Tables<'_>,
    key: &str,
    record: &[u8],
    accepted_at: u64,
    open: bool,
) -> Result<()> {
    let fail = |e: redb::StorageError| Error::Journal(format!("writing: {e}"));
    let key = key.as_bytes();
    let replaced = tables.records.insert(key, record).map_err(fail)?.is_some();
    // Each B-tree write copies a page, so only the index entries that change
    // are written: the time index once per key (`accepted_at` never changes),
    // the open set on entering and leaving. A new record cannot be in the
    // open set (it holds only keys of records): no lookup there.
    if open {
        if !replaced || tables.open.get(key).map_err(fail)?.is_none() {
            tables.open.insert(key, accepted_at).map_err(fail)?;
        }
    } else {
        tables.open.remove(key).map_err(fail)?;
    }
    if !replaced {
        tables
            .by_time
            .insert((accepted_at, key), ())
            .map_err(fail)?;
    }
    Ok(())
}

fn purge_in(tables: &mut Tables<'_>, before_ms: u64) -> Result<usize> {
    let fail = |e: redb::StorageError| Error::Journal(format!("purging: {e}"));
    let mut expired = Vec::new();
    for entry in tables
        .by_time
        .range::<(u64, &[u8])>(..(before_ms, &[][..]))
        .map_err(fail)?
    {
        let (time_key, _) = entry.map_err(fail)?;
        let (at, key) = time_key.value();
        expired.push((at, key.to_vec()));
    }
    let mut removed = 0;
    for (at, key) in expired {
        if tables.open.get(key.as_slice()).map_err(fail)?.is_some() {
            continue;
        }
        tables.by_time.remove((at, key.as_slice())).map_err(fail)?;
        if tables
            .records
            .remove(key.as_slice())
            .map_err(fail)?
            .is_some()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

impl Store for RedbStore {
    fn accept<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            match self.accept_early(key, record).await? {
                Acceptance::Existing(existing) => Ok(Some(existing)),
                Acceptance::Inserted(durable) => durable.await.map(|()| None),
            }
        })
    }

    /// Decided here, from the queued writes and a read transaction, with
    /// `Queued` locked so that of two accepts of one key exactly one
    /// inserts; the writer thread only makes the insert durable.
    fn accept_early<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Acceptance> {
        let decide = || -> Result<Acceptance> {
            let key = key.encode();
            let request = encode_request(&record.request)?;
            let bytes = Bytes::from(encode_from_parts(record, &request, None)?);
            let mut queued = lock(&self.queued);
            if let Some(existing) = self.newest(&queued, &key)? {
                return Ok(Acceptance::Existing(existing));
            }
            if record.is_open() {
                lock(&self.requests).insert(&key, &record.request, request);
            }
            let (durable, on_disk) = oneshot::channel();
            self.queue_put(&mut queued, key, record, bytes, Some(durable))?;
            Ok(Acceptance::Inserted(Durable::when(async move {
                on_disk
                    .await
                    .map_err(|_| Error::Journal("the journal writer dropped a request".into()))?
            })))
        };
        Box::pin(std::future::ready(decide()))
    }

    fn put<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, ()> {
        self.owner.took(key);
        let (reply, answer) = oneshot::channel();
        let key = key.encode();
        let queued = self.encode_for_put(&key, record, None).and_then(|bytes| {
            self.queue_put(
                &mut lock(&self.queued),
                key,
                record,
                bytes.into(),
                Some(reply),
            )
        });
        Box::pin(async move {
            queued?;
            answer
                .await
                .map_err(|_| Error::Journal("the journal writer dropped a request".into()))?
        })
    }

    fn put_eventually<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.put_unwaited(key, record, None)))
    }

    fn put_delivered<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
        body: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.put_unwaited(
            key,
            record,
            Some(body),
        )))
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.send(Op::Flush { reply }, answer).await
        })
    }

    fn get<'a>(&'a self, key: &'a RequestKey) -> StoreFuture<'a, Option<Record>> {
        let key = key.encode();
        Box::pin(std::future::ready(self.newest(&lock(&self.queued), &key)))
    }

    fn open_records(&self) -> StoreFuture<'_, Vec<(RequestKey, Record)>> {
        Box::pin(std::future::ready(self.read_open()))
    }

    fn purge(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.send(Op::Purge { before_ms, reply }, answer).await
        })
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        let read = || -> Result<()> {
            let txn = self
                .db
                .begin_read()
                .map_err(|e| journal_error("health check", e))?;
            txn.open_table(OPEN)
                .map_err(|e| journal_error("health check", e))?;
            Ok(())
        };
        Box::pin(async move {
            read()?;
            if !self.writer_alive.load(Ordering::Acquire) {
                return Err(Error::Journal("the journal writer has stopped".into()));
            }
            Ok(())
        })
    }

    fn is_durable(&self) -> bool {
        true
    }

    /// Records found open when the store was opened, or released since,
    /// are claimable. Reads what is committed: a flush first makes every
    /// queued write part of it.
    fn claim(&self, limit: usize) -> StoreFuture<'_, Vec<Claimed>> {
        Box::pin(async move {
            self.flush().await?;
            Ok(self.owner.claim(self.read_open()?, limit))
        })
    }

    fn renew(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.flush().await?;
            Ok(self.owner.held(&self.read_open()?))
        })
    }

    fn release(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.flush().await?;
            Ok(self.owner.release(self.read_open()?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;
    use crate::response::Response;

    #[tokio::test]
    async fn contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path()).expect("open");
        contract::all(&store).await;
        contract::write_every_kind(&store).await;
        store.flush().await.expect("flush");
        contract::holds_every_kind(&store).await;
    }

    /// Open the store in `dir` again, once the writer thread of the last
    /// one (which exits when its sender is dropped) has released the file.
    async fn reopen(dir: &std::path::Path) -> RedbStore {
        for _ in 0..100 {
            match RedbStore::open(dir) {
                Ok(store) => return store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        panic!("the journal could not be reopened");
    }

    #[tokio::test]
    async fn records_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, record) = contract::record("persist");
        {
            let store = RedbStore::open(dir.path()).expect("open");
            store.accept(&key, &record).await.expect("accept");
        }
        let store = reopen(dir.path()).await;
        let open = store.open_records().await.expect("open");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].1.stage, Stage::Running);
    }

    /// What the process before left open is free: the next one claims it
    /// once, at a higher epoch; what it accepts itself it holds.
    #[tokio::test]
    async fn records_left_by_the_process_before_are_claimed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (left, record) = contract::record("left");
        {
            let store = RedbStore::open(dir.path()).expect("open");
            store.accept(&left, &record).await.expect("accept");
        }
        let store = reopen(dir.path()).await;
        let (mine, record) = contract::record("mine");
        store.accept(&mine, &record).await.expect("accept");
        let claims = store.claim(10).await.expect("claim");
        assert_eq!(claims.len(), 1, "{claims:?}");
        assert_eq!(claims[0].key, left);
        assert_eq!(claims[0].epoch, 2);
        assert!(store.claim(10).await.expect("claim").is_empty());
        assert_eq!(store.renew().await.expect("renew"), 2);
    }

    fn encode(record: &Record) -> Vec<u8> {
        serde_json::to_vec(record).expect("encodes")
    }

    #[test]
    fn a_record_from_parts_is_the_record_encoded_whole() {
        let (_, running) = contract::record("parts");
        let mut request = (*running.request).clone();
        request.response_url = Some(crate::request::CallbackUrl::new(
            "https://ros.example/cb?S=1",
        ));
        request
            .resource_properties
            .insert("Text".into(), serde_json::json!("ünï \"q\"\n"));
        let running = Record {
            request: Arc::new(request),
            ..running
        };
        let polling = Record {
            stage: Stage::Polling {
                state: serde_json::json!({"step": 2}),
                next_poll_at_ms: 77,
                attempt: 3,
                data: serde_json::Map::new(),
                physical_resource_id: Some("pid".into()),
            },
            ..running.clone()
        };
        let answered = |delivered| Record {
            stage: contract::answered(&running, delivered),
            channel: super::super::Channel::FunctionCompute,
            ..running.clone()
        };
        for record in [running.clone(), polling, answered(false), answered(true)] {
            let request = encode_request(&record.request).expect("request");
            let whole = encode(&record);
            let parts = encode_from_parts(&record, &request, None).expect("parts");
            assert_eq!(
                String::from_utf8_lossy(&parts),
                String::from_utf8_lossy(&whole)
            );
            if let Stage::Answered { response, .. } = &record.stage {
                let sent = serde_json::to_vec(response.as_ref()).expect("answer");
                let spliced = encode_from_parts(&record, &request, Some(&sent)).expect("parts");
                assert_eq!(spliced, whole);
            }
        }
    }

    #[tokio::test]
    async fn a_later_write_with_another_request_is_not_given_the_cached_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path()).expect("open");
        let (key, record) = contract::record("cached");
        assert_eq!(store.accept(&key, &record).await.expect("accept"), None);
        assert!(lock(&store.requests).entries.contains_key(&key.encode()));

        let mut redelivered = (*record.request).clone();
        redelivered.response_url =
            Some(crate::request::CallbackUrl::new("https://ros.example/new"));
        let moved = Record {
            request: Arc::new(redelivered),
            ..record.clone()
        };
        store.put(&key, &moved).await.expect("put");
        assert_eq!(store.get(&key).await.expect("get"), Some(moved.clone()));
        store.flush().await.expect("flush");
        assert_eq!(store.get(&key).await.expect("get"), Some(moved.clone()));
    }

    #[tokio::test]
    async fn a_delivered_record_keeps_the_answer_sent_and_leaves_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path()).expect("open");
        let (key, mut record) = contract::record("sent");
        assert_eq!(store.accept(&key, &record).await.expect("accept"), None);
        let response = Response::failed(&record.request, "pid", "as the handler said it");
        let mut sent = response.clone();
        sent.reason = Some("as ROS received it".into());
        record.stage = Stage::Answered {
            response: Arc::new(response),
            delivered: true,
        };
        store
            .put_delivered(&key, &record, &sent.to_body())
            .await
            .expect("put");
        {
            let cache = lock(&store.requests);
            assert!(cache.entries.is_empty(), "closed: no longer cached");
            assert_eq!(cache.bytes, 0);
        }
        store.flush().await.expect("flush");
        let kept = store.get(&key).await.expect("get").expect("present");
        assert_eq!(kept.request, record.request);
        let Stage::Answered {
            response,
            delivered,
        } = kept.stage
        else {
            panic!("answered");
        };
        assert!(delivered);
        assert_eq!(*response, sent);
    }

    #[test]
    fn the_request_cache_stays_within_its_budget() {
        let (_, record) = contract::record("budget");
        let mut cache = RequestCache::default();
        let json = Bytes::from(vec![b'x'; MAX_CACHED_REQUEST_BYTES / 4 + 1]);
        for key in ["a", "b", "c", "d"] {
            cache.insert(key, &record.request, json.clone());
        }
        assert_eq!(cache.entries.len(), 3, "the fourth is over budget");
        assert!(cache.get("d", &record.request).is_none());
        assert_eq!(cache.get("a", &record.request), Some(json.clone()));
        let other = Arc::new((*record.request).clone());
        assert!(
            cache.get("a", &other).is_none(),
            "another request, though equal"
        );
        cache.insert("a", &record.request, json.clone());
        assert_eq!(
            cache.bytes,
            3 * json.len(),
            "a replaced entry is counted once"
        );
        cache.remove("a");
        cache.insert("d", &record.request, json.clone());
        assert_eq!(cache.get("d", &record.request), Some(json.clone()));
        assert_eq!(cache.bytes, 3 * json.len());
    }

    /// A journal as the first builds wrote it: `&str` keys in the v1 tables.
    fn write_v1_journal(dir: &std::path::Path, records: &[(RequestKey, Record)]) {
        let db = Database::create(dir.join(JOURNAL_FILE)).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut table = txn.open_table(v1::RECORDS).expect("records");
            let mut open = txn.open_table(v1::OPEN).expect("open");
            let mut by_time = txn.open_table(v1::BY_TIME).expect("by_time");
            for (key, record) in records {
                let key = key.encode();
                let bytes = encode(record);
                table
                    .insert(key.as_str(), bytes.as_slice())
                    .expect("insert");
                if record.is_open() {
                    open.insert(key.as_str(), record.accepted_at_ms)
                        .expect("insert");
                }
                by_time
                    .insert((record.accepted_at_ms, key.as_str()), ())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    #[tokio::test]
    async fn a_journal_with_str_keys_is_migrated_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (running_key, mut running) = contract::record("v1-running");
        running.accepted_at_ms = 1_000;
        let (closed_key, mut closed) = contract::record("v1-closed");
        closed.accepted_at_ms = 2_000;
        closed.stage = contract::answered(&closed, true);
        let (recent_key, mut recent) = contract::record("v1-recent");
        recent.accepted_at_ms = 9_000;
        recent.stage = contract::answered(&recent, true);
        write_v1_journal(
            dir.path(),
            &[
                (running_key.clone(), running.clone()),
                (closed_key.clone(), closed.clone()),
                (recent_key.clone(), recent.clone()),
            ],
        );

        let store = RedbStore::open(dir.path()).expect("open migrates");
        assert_eq!(
            store.get(&running_key).await.expect("get"),
            Some(running.clone())
        );
        assert_eq!(
            store.get(&closed_key).await.expect("get"),
            Some(closed.clone())
        );
        let open = store.open_records().await.expect("open");
        assert_eq!(open, vec![(running_key.clone(), running.clone())]);
        // A migrated key is recognised as a redelivery.
        let again = store.accept(&closed_key, &closed).await.expect("accept");
        assert_eq!(again.map(|r| r.stage), Some(closed.stage.clone()));
        // The time index came over: only the old closed record is purged.
        assert_eq!(store.purge(5_000).await.expect("purge"), 1);
        assert_eq!(store.get(&closed_key).await.expect("get"), None);
        assert_eq!(store.get(&recent_key).await.expect("get"), Some(recent));
        drop(store);

        let store = reopen(dir.path()).await;
        let txn = store.db.begin_read().expect("read");
        let names: Vec<String> = txn
            .list_tables()
            .expect("list")
            .map(|table| table.name().to_string())
            .collect();
        assert!(
            !names.iter().any(|name| name == "records"),
            "v1 dropped: {names:?}"
        );
        assert_eq!(store.open_records().await.expect("open").len(), 1);
    }

    #[tokio::test]
    async fn a_store_dropped_without_flush_keeps_every_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RedbStore::open(dir.path()).expect("open");
            contract::write_every_kind(&store).await;
        }
        contract::holds_every_kind(&reopen(dir.path()).await).await;
    }

    /// Set in the child process of
    /// `writes_older_than_the_bound_survive_a_kill`: the journal's directory.
    const CRASH_CHILD_DIR: &str = "STACKHOOK_TEST_JOURNAL_CRASH_DIR";

    /// The file the child writes once its writes are older than the bound.
    const WAITED_OUT: &str = "waited-out-the-bound";

    /// A process that is killed, not dropped: the writer thread's exit
    /// commit never runs. This test runs itself again as a child process
    /// (the same test binary, this test only), which makes every kind of
    /// write, waits out [`DURABILITY_BOUND`], says so, and waits to be
    /// killed with SIGKILL. The journal it leaves must hold every write.
    #[test]
    fn writes_older_than_the_bound_survive_a_kill() {
        if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
            write_and_wait_to_be_killed(std::path::Path::new(&dir));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let test = format!(
            "{}::writes_older_than_the_bound_survive_a_kill",
            module_path!()
                .split_once("::")
                .map_or(module_path!(), |(_, path)| path)
        );
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                test.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CRASH_CHILD_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("child");
        let waited_out = dir.path().join(WAITED_OUT);
        let started = Instant::now();
        while !waited_out.exists() && started.elapsed() < Duration::from_secs(60) {
            if let Some(status) = child.try_wait().expect("child") {
                panic!("the child exited ({status}) before waiting out the bound");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("child");
        assert!(waited_out.exists(), "the child never waited out the bound");
        assert!(!status.success(), "killed, not exited: {status}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            contract::holds_every_kind(&reopen(dir.path()).await).await;
        });
    }

    /// The child of `writes_older_than_the_bound_survive_a_kill`.
    fn write_and_wait_to_be_killed(dir: &std::path::Path) -> ! {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = RedbStore::open(dir).expect("open");
        runtime.block_on(contract::write_every_kind(&store));
        std::thread::sleep(crate::journal::DURABILITY_BOUND);
        std::fs::write(dir.join(WAITED_OUT), b"").expect("marker");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    #[tokio::test]
    async fn accepts_are_decided_while_the_writer_is_busy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path()).expect("open");
        // An open write transaction holds the writer thread at its next
        // `begin_write`, as a long fsync would.
        let busy = store.db.begin_write().expect("write transaction");
        let (key, record) = contract::record("busy-writer");
        let Acceptance::Inserted(durable) =
            store.accept_early(&key, &record).await.expect("decided")
        else {
            panic!("a new key must be inserted");
        };
        // The second arrival is told at once that the key exists, and reads
        // see the queued record, though nothing has committed.
        let again = store.accept_early(&key, &record).await.expect("decided");
        assert!(matches!(again, Acceptance::Existing(ref r) if r.stage == Stage::Running));
        assert!(store.get(&key).await.expect("get").is_some());
        let mut durable = std::pin::pin!(durable);
        assert!(poll_once(durable.as_mut()).is_none(), "not durable yet");
        drop(busy);
        durable.await.expect("durable once the writer commits");
        assert!(
            lock(&store.queued).records.is_empty(),
            "a committed write leaves the queue"
        );
        assert!(store.get(&key).await.expect("get").is_some());
    }

    /// Poll `future` once with a waker that does nothing.
    fn poll_once<F: Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut future).poll(&mut cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn a_settled_write_leaves_a_newer_one_queued() {
        let queued = Mutex::new(Queued::default());
        lock(&queued)
            .records
            .insert("k".into(), (2, Bytes::from_static(b"newer")));
        settle(&queued, vec![("k".into(), 1)]);
        assert!(lock(&queued).records.contains_key("k"));
        settle(&queued, vec![("k".into(), 2)]);
        assert!(lock(&queued).records.is_empty());
    }

    fn flush_op() -> Op {
        Op::Flush {
            reply: oneshot::channel().0,
        }
    }

    /// Send a flush to `ops` after `delay`, from another thread.
    fn send_later(ops: &mpsc::Sender<Op>, delay: Duration) -> std::thread::JoinHandle<()> {
        let ops = ops.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = ops.send(flush_op());
        })
    }

    #[test]
    fn a_writer_with_a_backlog_gathers_what_arrives_meanwhile() {
        let (ops, queue) = mpsc::channel();
        ops.send(flush_op()).expect("send");
        let later = send_later(&ops, Duration::from_millis(20));
        let group = next_group(&queue, Duration::from_secs(1), LINGER).expect("a group");
        assert_eq!(group.len(), 2, "the operation sent 20 ms in rides along");
        later.join().expect("sender");
    }

    #[test]
    fn an_idle_writer_commits_at_once() {
        let (ops, queue) = mpsc::channel();
        let first = send_later(&ops, Duration::from_millis(20));
        let second = send_later(&ops, Duration::from_millis(500));
        let started = Instant::now();
        let group = next_group(&queue, Duration::from_secs(5), LINGER).expect("a group");
        assert_eq!(group.len(), 1, "nothing was waiting: no gathering");
        assert!(started.elapsed() < Duration::from_secs(5));
        first.join().expect("sender");
        second.join().expect("sender");
        assert_eq!(
            next_group(&queue, Duration::ZERO, LINGER).map(|g| g.len()),
            Some(1)
        );
        drop(ops);
        assert!(
            next_group(&queue, Duration::ZERO, LINGER).is_none(),
            "all senders gone"
        );
    }

    /// A write nobody waits for, as `put_eventually` queues it.
    fn eventual_op() -> Op {
        Op::Put {
            key: "k".into(),
            record: Bytes::from_static(b"{}"),
            seq: 0,
            accepted_at: 0,
            open: false,
            reply: None,
        }
    }

    #[test]
    fn eventual_writes_ride_with_the_next_durable_one() {
        let (ops, queue) = mpsc::channel();
        ops.send(eventual_op()).expect("send");
        ops.send(eventual_op()).expect("send");
        let later = send_later(&ops, Duration::from_millis(20));
        let started = Instant::now();
        let group = next_group(&queue, Duration::ZERO, Duration::from_secs(30)).expect("a group");
        assert_eq!(group.len(), 3, "one commit for all three");
        assert!(group[2].is_durable());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "taken when the durable one came, not when the linger ran out"
        );
        later.join().expect("sender");
    }

    #[test]
    fn eventual_writes_alone_are_committed_once_they_have_lingered() {
        let (ops, queue) = mpsc::channel();
        ops.send(eventual_op()).expect("send");
        // The sender stays: nothing but the linger's end lets the group go.
        let group = next_group(&queue, Duration::ZERO, Duration::from_millis(20)).expect("a group");
        assert_eq!(group.len(), 1);
        assert!(!group[0].is_durable(), "committed all the same");
        drop(ops);
    }

    #[test]
    fn a_lingering_group_is_committed_when_the_store_goes() {
        let (ops, queue) = mpsc::channel();
        ops.send(eventual_op()).expect("send");
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(ops);
        });
        let group = next_group(&queue, Duration::ZERO, Duration::from_secs(30)).expect("a group");
        assert_eq!(group.len(), 1, "the queued write is committed, not dropped");
        assert!(next_group(&queue, Duration::ZERO, LINGER).is_none());
        dropper.join().expect("dropper");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_accepts_insert_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(RedbStore::open(dir.path()).expect("open"));
        let (key, record) = contract::record("race");
        let mut joins = Vec::new();
        for _ in 0..16 {
            let (store, key, record) = (Arc::clone(&store), key.clone(), record.clone());
            joins.push(tokio::spawn(async move {
                store.accept(&key, &record).await.expect("accept")
            }));
        }
        let mut inserted = 0;
        for join in joins {
            if join.await.expect("join").is_none() {
                inserted += 1;
            }
        }
        assert_eq!(inserted, 1);
    }
}
