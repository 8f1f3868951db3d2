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
//! # Tables
//! - `records`: key → the [`Record`] as JSON.
//! - `open`: keys of records that are running, polling or undelivered, so
//!   recovery reads only those.
//! - `by_time`: (accepted at, key), so purging old records is a range scan.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::{Record, RequestKey, Store, StoreFuture};
use crate::error::{Error, Result};

const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
const OPEN: TableDefinition<'_, &str, u64> = TableDefinition::new("open");
const BY_TIME: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("by_time");

/// The journal file's name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.redb";

/// Most operations committed in one group.
const MAX_GROUP: usize = 512;

enum Op {
    Accept {
        key: String,
        record: Vec<u8>,
        accepted_at: u64,
        open: bool,
        reply: oneshot::Sender<Result<Option<Vec<u8>>>>,
    },
    Put {
        key: String,
        record: Vec<u8>,
        accepted_at: u64,
        open: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    Purge {
        before_ms: u64,
        reply: oneshot::Sender<Result<usize>>,
    },
}

/// The embedded journal. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    writer: mpsc::UnboundedSender<Op>,
    path: PathBuf,
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
        {
            txn.open_table(RECORDS)
                .map_err(|e| journal_error("creating tables", e))?;
            txn.open_table(OPEN)
                .map_err(|e| journal_error("creating tables", e))?;
            txn.open_table(BY_TIME)
                .map_err(|e| journal_error("creating tables", e))?;
        }
        txn.commit()
            .map_err(|e| journal_error("creating tables", e))?;
        let db = Arc::new(db);
        let (writer, ops) = mpsc::unbounded_channel();
        let writer_db = Arc::clone(&db);
        std::thread::Builder::new()
            .name("stackhook-journal".into())
            .spawn(move || write_loop(&writer_db, ops))
            .map_err(|e| Error::io("starting the journal writer thread", e))?;
        Ok(RedbStore { db, writer, path })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn send<T>(&self, op: Op, reply: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.writer
            .send(op)
            .map_err(|_| Error::Journal("the journal writer has stopped".into()))?;
        reply
            .await
            .map_err(|_| Error::Journal("the journal writer dropped a request".into()))?
    }

    fn read_record(&self, key: &str) -> Result<Option<Record>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| journal_error("reading", e))?;
        let table = txn
            .open_table(RECORDS)
            .map_err(|e| journal_error("reading", e))?;
        let Some(bytes) = table.get(key).map_err(|e| journal_error("reading", e))? else {
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

fn encode(record: &Record) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| Error::Journal(format!("cannot encode a record: {e}")))
}

/// The writer thread: take every waiting operation, apply them in one
/// transaction, commit once, answer each.
fn write_loop(db: &Database, mut ops: mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = ops.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

/// What one operation will answer once its group commits.
enum Outcome {
    Accepted(
        oneshot::Sender<Result<Option<Vec<u8>>>>,
        Result<Option<Vec<u8>>>,
    ),
    Put(oneshot::Sender<Result<()>>, Result<()>),
    Purged(oneshot::Sender<Result<usize>>, Result<usize>),
}

/// The three tables, opened once per group. Opening a table in a write
/// transaction and closing it again writes its root back to the table of
/// tables, so opening them per operation cost three B-tree updates per
/// operation on the writer thread, which every request waits for.
struct Tables<'t> {
    records: redb::Table<'t, &'static str, &'static [u8]>,
    open: redb::Table<'t, &'static str, u64>,
    by_time: redb::Table<'t, (u64, &'static str), ()>,
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

fn commit_group(db: &Database, group: Vec<Op>) {
    let txn = match db.begin_write() {
        Ok(mut txn) => {
            txn.set_durability(Durability::Immediate);
            txn
        }
        Err(e) => {
            let message = format!("starting a journal transaction: {}", redb::Error::from(e));
            fail_all(group, &message);
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut tables = match Tables::open(&txn) {
            Ok(tables) => tables,
            Err(e) => {
                fail_all(group, &e.to_string());
                return;
            }
        };
        for op in group {
            outcomes.push(match op {
                Op::Accept {
                    key,
                    record,
                    accepted_at,
                    open,
                    reply,
                } => {
                    let result = accept_in(&mut tables, &key, &record, accepted_at, open);
                    Outcome::Accepted(reply, result)
                }
                Op::Put {
                    key,
                    record,
                    accepted_at,
                    open,
                    reply,
                } => Outcome::Put(reply, put_in(&mut tables, &key, &record, accepted_at, open)),
                Op::Purge { before_ms, reply } => {
                    Outcome::Purged(reply, purge_in(&mut tables, before_ms))
                }
            });
        }
    }
    let committed = txn.commit().map_err(|e| journal_error("committing", e));
    for outcome in outcomes {
        match (outcome, &committed) {
            (Outcome::Accepted(reply, result), Ok(())) => drop(reply.send(result)),
            (Outcome::Put(reply, result), Ok(())) => drop(reply.send(result)),
            (Outcome::Purged(reply, result), Ok(())) => drop(reply.send(result)),
            (Outcome::Accepted(reply, _), Err(e)) => {
                drop(reply.send(Err(Error::Journal(e.to_string()))))
            }
            (Outcome::Put(reply, _), Err(e)) => {
                drop(reply.send(Err(Error::Journal(e.to_string()))))
            }
            (Outcome::Purged(reply, _), Err(e)) => {
                drop(reply.send(Err(Error::Journal(e.to_string()))))
            }
        }
    }
}

fn fail_all(group: Vec<Op>, message: &str) {
    for op in group {
        let error = || Error::Journal(message.to_string());
        match op {
            Op::Accept { reply, .. } => drop(reply.send(Err(error()))),
            Op::Put { reply, .. } => drop(reply.send(Err(error()))),
            Op::Purge { reply, .. } => drop(reply.send(Err(error()))),
        }
    }
}

fn accept_in(
    tables: &mut Tables<'_>,
    key: &str,
    record: &[u8],
    accepted_at: u64,
    open: bool,
) -> Result<Option<Vec<u8>>> {
    if let Some(existing) = tables
        .records
        .get(key)
        .map_err(|e| journal_error("accepting", e))?
    {
        return Ok(Some(existing.value().to_vec()));
    }
    put_in(tables, key, record, accepted_at, open).map(|()| None)
}

fn put_in(
    tables: &mut Tables<'_>,
    key: &str,
    record: &[u8],
    accepted_at: u64,
    open: bool,
) -> Result<()> {
    let fail = |e: redb::StorageError| Error::Journal(format!("writing: {e}"));
    tables.records.insert(key, record).map_err(fail)?;
    if open {
        tables.open.insert(key, accepted_at).map_err(fail)?;
    } else {
        tables.open.remove(key).map_err(fail)?;
    }
    tables
        .by_time
        .insert((accepted_at, key), ())
        .map_err(fail)?;
    Ok(())
}

fn purge_in(tables: &mut Tables<'_>, before_ms: u64) -> Result<usize> {
    let fail = |e: redb::StorageError| Error::Journal(format!("purging: {e}"));
    let mut expired = Vec::new();
    for entry in tables
        .by_time
        .range::<(u64, &str)>(..(before_ms, ""))
        .map_err(fail)?
    {
        let (time_key, _) = entry.map_err(fail)?;
        let (at, key) = time_key.value();
        expired.push((at, key.to_string()));
    }
    let mut removed = 0;
    for (at, key) in expired {
        if tables.open.get(key.as_str()).map_err(fail)?.is_some() {
            continue;
        }
        tables.by_time.remove((at, key.as_str())).map_err(fail)?;
        if tables.records.remove(key.as_str()).map_err(fail)?.is_some() {
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
            let (reply, answer) = oneshot::channel();
            let op = Op::Accept {
                key: key.encode(),
                record: encode(record)?,
                accepted_at: record.accepted_at_ms,
                open: record.is_open(),
                reply,
            };
            match self.send(op, answer).await? {
                Some(bytes) => decode(&bytes).map(Some),
                None => Ok(None),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let op = Op::Put {
                key: key.encode(),
                record: encode(record)?,
                accepted_at: record.accepted_at_ms,
                open: record.is_open(),
                reply,
            };
            self.send(op, answer).await
        })
    }

    fn get<'a>(&'a self, key: &'a RequestKey) -> StoreFuture<'a, Option<Record>> {
        Box::pin(std::future::ready(self.read_record(&key.encode())))
    }

    fn open_records(&self) -> StoreFuture<'_, Vec<(RequestKey, Record)>> {
        let read = || -> Result<Vec<(RequestKey, Record)>> {
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
        };
        Box::pin(std::future::ready(read()))
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
            if self.writer.is_closed() {
                return Err(Error::Journal("the journal writer has stopped".into()));
            }
            Ok(())
        })
    }

    fn is_durable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::Stage;
    use super::super::contract;
    use super::*;

    #[tokio::test]
    async fn contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path()).expect("open");
        contract::accept_inserts_once(&store).await;
        contract::open_records_track_the_outbox(&store).await;
        contract::purge_removes_only_old_closed_records(&store).await;
    }

    #[tokio::test]
    async fn records_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, record) = contract::record("persist");
        {
            let store = RedbStore::open(dir.path()).expect("open");
            store.accept(&key, &record).await.expect("accept");
        }
        // The writer thread exits when its sender is dropped; give it a moment to release the file.
        let mut reopened = None;
        for _ in 0..100 {
            match RedbStore::open(dir.path()) {
                Ok(store) => {
                    reopened = Some(store);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        let store = reopened.expect("reopen");
        let open = store.open_records().await.expect("open");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].1.stage, Stage::Running);
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
