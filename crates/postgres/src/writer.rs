//! The writer task: every accept and put of one replica, grouped.
//!
//! Writes queue on a channel in the order they are made. The task takes
//! everything queued when it is free (up to [`MAX_GROUP`]) and commits it in
//! **one statement**: three data-modifying CTEs over `unnest`ed arrays,
//! one for accepts (`INSERT … ON CONFLICT DO NOTHING`), one for fenced
//! writes of records this replica holds (`UPDATE … WHERE owner AND epoch`)
//! and one for writes of records it does not hold (an upsert that takes a
//! record only if it is free). One statement is one round trip and one
//! commit (one WAL flush) however many requests share it. While it is in
//! flight the next group gathers, so under load a round trip serves many
//! requests, and an idle writer sends a lone write at once.
//!
//! A statement may not touch one row twice, so a group holds each key at
//! most once: an operation on a key already in the group waits for the next
//! group, and everything queued behind it waits too, to keep the order.
//!
//! Writes nobody waits for ([`crate::PostgresStore`]'s `put_eventually`)
//! ride with the next awaited write: a group made only of them waits up to
//! [`LINGER`] for one, then commits anyway. So such a write is committed at
//! most [`LINGER`] plus one commit after it is queued (the core's
//! `DURABILITY_BOUND` is 100 ms). If the connection fails, they are kept and
//! retried, with backoff, until the database is back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object, Pool};
use stackhook::journal::RequestKey;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result, scrub};

/// Most operations in one statement. Bounded so that one statement's
/// arrays (a few hundred kilobytes of JSON) stay small and a failure fails
/// few requests.
pub const MAX_GROUP: usize = 512;

/// How long a group of writes nobody waits for waits for one somebody waits
/// for, to share its commit. Under load one always comes at once.
pub const LINGER: Duration = Duration::from_millis(20);

/// How often a group that deadlocked with another replica's is retried
/// before its writers hear of it. Groups lock their rows in key order, so
/// this needs another replica's accept of the same key in a different
/// statement kind: rare.
const DEADLOCK_RETRIES: u32 = 3;

/// The first and longest wait before retrying the database after the
/// connection failed: a restart of a managed database takes seconds, and
/// retrying faster only fills the log.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Settings of the writer's own session, sent once per connection before
/// its first group. The group statement is prepared once and run with a
/// generic plan (no planning per group). The planner would choose that plan
/// by the table's statistics when the statement is first prepared, often
/// while the table is nearly empty: sequential scans and hash joins that
/// then grow with every record written. Without those, every part of it
/// uses the primary key, which costs the same at any size.
pub(crate) const WRITER_SESSION: &str = "SET plan_cache_mode = force_generic_plan;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off";

/// The records this replica holds, by encoded key. Its writes to them are
/// fenced on the epoch it holds each at.
pub(crate) type Held = Arc<Mutex<HashMap<String, Holding>>>;

/// How this replica holds one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holding {
    /// The fencing epoch its writes are conditioned on.
    pub(crate) epoch: i64,
    /// When the statement that last set its lease was sent, by this
    /// process's clock. The database set the lease to its own `now()`,
    /// which it read after this, plus the lease's length, and a peer claims
    /// the record only once the database's clock has passed that: so it is
    /// certainly this replica's until this instant plus the lease's length.
    pub(crate) leased_at: Instant,
    /// An answer for it is being given before it is journaled
    /// ([`crate::PostgresStore::hold_to_answer`]): release keeps the
    /// record until the next write to it.
    pub(crate) pinned: bool,
}

impl Holding {
    pub(crate) fn new(epoch: i64, leased_at: Instant) -> Self {
        Holding {
            epoch,
            leased_at,
            pinned: false,
        }
    }
}

/// Lock `mutex`, ignoring poisoning: the maps it guards stay consistent
/// at every step.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A record's columns, encoded by the caller.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) record: String,
    pub(crate) channel: &'static str,
    pub(crate) accepted_at_ms: i64,
    pub(crate) open: bool,
    pub(crate) answered: bool,
    /// Set when the record is parked: released until its next poll is due
    /// then (Unix ms), for any replica to claim.
    pub(crate) due_at_ms: Option<i64>,
}

impl Row {
    /// Whether this replica holds the record once the write lands: it is
    /// open and not parked.
    fn holds(&self) -> bool {
        self.open && self.due_at_ms.is_none()
    }
}

/// What an accept found.
#[derive(Debug)]
pub(crate) enum Accepted {
    /// Inserted, and committed.
    Inserted,
    /// The key was there: its record as JSON.
    Existing(String),
    /// Another replica inserted it during the statement, too late for the
    /// statement to read: read it again.
    Raced,
}

pub(crate) enum Op {
    Accept {
        encoded: String,
        row: Row,
        reply: oneshot::Sender<Result<Accepted>>,
    },
    Put {
        key: RequestKey,
        encoded: String,
        row: Row,
        /// `None` for writes nobody waits for.
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Op {
    fn key(&self) -> Option<&str> {
        match self {
            Op::Accept { encoded, .. } | Op::Put { encoded, .. } => Some(encoded),
            Op::Flush { .. } => None,
        }
    }

    /// Whether someone waits for this operation.
    fn is_awaited(&self) -> bool {
        !matches!(self, Op::Put { reply: None, .. })
    }

    /// Answer the operation with `error`; a write nobody waits for logs it.
    fn fail(self, error: Error) {
        match self {
            Op::Accept { reply, .. } => drop(reply.send(Err(error))),
            Op::Put {
                reply: Some(reply), ..
            }
            | Op::Flush { reply } => drop(reply.send(Err(error))),
            Op::Put {
                key, reply: None, ..
            } => {
                tracing::warn!(%error, %key, "a journal write that nobody waited for failed");
            }
        }
    }
}

/// The writer's fixed parts.
pub(crate) struct Writer {
    pub(crate) pool: Pool,
    pub(crate) sql: String,
    pub(crate) replica: String,
    pub(crate) lease_ms: i64,
    pub(crate) held: Held,
    pub(crate) round_trips: Arc<AtomicU64>,
    pub(crate) secret: Option<String>,
}

/// Why a group did not commit.
enum Failure {
    /// The database refused the statement: the group failed as a whole.
    Statement(Error),
    /// A deadlock with another replica's statement: retry it.
    Deadlock(Error),
    /// The connection failed: the statement may or may not have committed.
    Connection(Error),
}

impl Writer {
    /// Run until every sender is gone and everything queued is written.
    pub(crate) async fn run(self, mut ops: mpsc::UnboundedReceiver<Op>) {
        let mut carry: VecDeque<Op> = VecDeque::new();
        let mut conn: Option<ClientWrapper> = None;
        let mut backoff = BACKOFF_FIRST;
        let mut closed = false;
        loop {
            let first = match carry.pop_front() {
                Some(op) => op,
                None if closed => return,
                None => match ops.recv().await {
                    Some(op) => op,
                    None => return,
                },
            };
            let mut group = Group::default();
            group.push(first);
            closed |= fill(&mut group, &mut carry, &mut ops);
            if !closed && !group.awaited() {
                closed |= linger(&mut group, &mut carry, &mut ops).await;
            }
            match self.commit(&mut conn, group).await {
                Ok(()) => backoff = BACKOFF_FIRST,
                Err(kept) => {
                    // Kept writes go first, in their order, then what queued.
                    for op in kept.into_iter().rev() {
                        carry.push_front(op);
                    }
                    if closed {
                        // The store is gone; nobody is left to retry for.
                        for op in carry.drain(..) {
                            op.fail(Error::WriterStopped);
                        }
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Commit `group`, answer its operations. On a connection failure,
    /// return the writes nobody waits for, to retry.
    async fn commit(
        &self,
        conn: &mut Option<ClientWrapper>,
        group: Group,
    ) -> std::result::Result<(), Vec<Op>> {
        if group.writes() == 0 {
            group.answer(&Outcome::new(Instant::now()), &self.held);
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.execute(conn, &group).await {
                Ok(outcome) => {
                    group.answer(&outcome, &self.held);
                    return Ok(());
                }
                Err(Failure::Deadlock(error)) if attempt <= DEADLOCK_RETRIES => {
                    tracing::debug!(%error, attempt, "journal group deadlocked; retrying");
                }
                Err(Failure::Deadlock(error) | Failure::Statement(error)) => {
                    group.fail_all(|| Error::Database(error.to_string()));
                    return Ok(());
                }
                Err(Failure::Connection(error)) => {
                    *conn = None;
                    tracing::warn!(%error, "the journal database connection failed");
                    return Err(group.fail_awaited(|| Error::Database(error.to_string())));
                }
            }
        }
    }

    /// Send `group` as one statement and read what it did.
    async fn execute(
        &self,
        conn: &mut Option<ClientWrapper>,
        group: &Group,
    ) -> std::result::Result<Outcome, Failure> {
        let classify = |e: tokio_postgres::Error| {
            let text = Error::Database(scrub(&e, self.secret.as_deref()));
            match e.code() {
                Some(code)
                    if *code == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                        || *code == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE =>
                {
                    Failure::Deadlock(text)
                }
                Some(_) => Failure::Statement(text),
                None if is_connection_error(&e) => Failure::Connection(text),
                None => Failure::Statement(text),
            }
        };
        if conn.is_none() {
            let object = self.pool.get().await.map_err(|e| {
                Failure::Connection(Error::Database(scrub(&e, self.secret.as_deref())))
            })?;
            // Out of the pool: the session's settings are the writer's own,
            // and its connection closes with it.
            let client = Object::take(object);
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            client
                .batch_execute(WRITER_SESSION)
                .await
                .map_err(classify)?;
            *conn = Some(client);
        }
        let Some(client) = conn.as_ref() else {
            return Err(Failure::Connection(Error::WriterStopped));
        };
        let statement = client.prepare_cached(&self.sql).await.map_err(classify)?;
        let held = lock(&self.held).clone_for(group);
        let arrays = Arrays::of(group, &held);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let rows = client
            .query(
                &statement,
                &[
                    &self.replica,
                    &self.lease_ms,
                    &arrays.acc_keys,
                    &arrays.acc_records,
                    &arrays.acc_channels,
                    &arrays.acc_at,
                    &arrays.acc_open,
                    &arrays.acc_answered,
                    &arrays.held_keys,
                    &arrays.held_records,
                    &arrays.held_open,
                    &arrays.held_answered,
                    &arrays.held_epochs,
                    &arrays.free_keys,
                    &arrays.free_records,
                    &arrays.free_channels,
                    &arrays.free_at,
                    &arrays.free_open,
                    &arrays.free_answered,
                    &arrays.held_due,
                    &arrays.free_due,
                ],
            )
            .await
            .map_err(classify)?;
        let mut outcome = Outcome {
            held_epochs: held,
            ..Outcome::new(sent)
        };
        for row in rows {
            let kind: i32 = row.get(0);
            let key: String = row.get(1);
            match kind {
                0 => {
                    let done: bool = row.get(2);
                    let existing: Option<String> = row.get(3);
                    outcome.accepts.insert(key, (done, existing));
                }
                _ => {
                    let epoch: i64 = row.get(4);
                    outcome.written.insert(key, epoch);
                }
            }
        }
        Ok(outcome)
    }
}

/// Whether `e` is the connection failing (closed, or an I/O error), after
/// which the statement may or may not have committed.
fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    e.is_closed()
        || e.source()
            .is_some_and(|source| source.is::<std::io::Error>())
}

/// A map's entries for a group's keys only, so the lock is held briefly.
trait CloneFor {
    fn clone_for(&self, group: &Group) -> HashMap<String, i64>;
}

impl CloneFor for HashMap<String, Holding> {
    fn clone_for(&self, group: &Group) -> HashMap<String, i64> {
        group
            .ops
            .iter()
            .filter_map(Op::key)
            .filter_map(|key| self.get(key).map(|held| (key.to_owned(), held.epoch)))
            .collect()
    }
}

/// Operations committed together: each key at most once.
#[derive(Default)]
struct Group {
    ops: Vec<Op>,
    keys: HashSet<String>,
}

impl Group {
    /// Whether `op` may join: its key is not in the group yet, and there
    /// is room.
    fn admits(&self, op: &Op) -> bool {
        self.ops.len() < MAX_GROUP && op.key().is_none_or(|key| !self.keys.contains(key))
    }

    fn push(&mut self, op: Op) {
        if let Some(key) = op.key() {
            self.keys.insert(key.to_owned());
        }
        self.ops.push(op);
    }

    fn awaited(&self) -> bool {
        self.ops.iter().any(Op::is_awaited)
    }

    fn writes(&self) -> usize {
        self.keys.len()
    }

    /// Answer every operation from what the statement did, and update the
    /// records held: their epochs, and their leases as of the statement.
    fn answer(self, outcome: &Outcome, held: &Held) {
        let mut held = lock(held);
        for op in self.ops {
            match op {
                Op::Accept {
                    encoded,
                    row,
                    reply,
                    ..
                } => {
                    let answer = match outcome.accepts.get(&encoded) {
                        Some((true, _)) => {
                            if row.holds() {
                                held.insert(encoded, Holding::new(1, outcome.sent));
                            }
                            Accepted::Inserted
                        }
                        Some((false, Some(existing))) => Accepted::Existing(existing.clone()),
                        Some((false, None)) | None => Accepted::Raced,
                    };
                    drop(reply.send(Ok(answer)));
                }
                Op::Put {
                    key,
                    encoded,
                    row,
                    reply,
                } => {
                    let result = match outcome.written.get(&encoded) {
                        Some(epoch) => {
                            if row.holds() {
                                held.insert(encoded, Holding::new(*epoch, outcome.sent));
                            } else {
                                held.remove(&encoded);
                            }
                            Ok(())
                        }
                        None => {
                            held.remove(&encoded);
                            Err(Error::Fenced {
                                key: key.to_string(),
                                epoch: outcome.held_epochs.get(&encoded).copied().unwrap_or(0),
                            })
                        }
                    };
                    match (reply, result) {
                        (Some(reply), result) => drop(reply.send(result)),
                        (None, Ok(())) => {}
                        (None, Err(error)) => {
                            tracing::warn!(%error, "a journal write that nobody waited for was fenced");
                        }
                    }
                }
                Op::Flush { reply } => drop(reply.send(Ok(()))),
            }
        }
    }

    fn fail_all(self, error: impl Fn() -> Error) {
        for op in self.ops {
            op.fail(error());
        }
    }

    /// Fail the awaited operations; return the others, to retry.
    fn fail_awaited(self, error: impl Fn() -> Error) -> Vec<Op> {
        let mut kept = Vec::new();
        for op in self.ops {
            if op.is_awaited() {
                op.fail(error());
            } else {
                kept.push(op);
            }
        }
        kept
    }
}

/// What one statement did.
struct Outcome {
    /// When it was sent.
    sent: Instant,
    /// Accepts by key: inserted, else the existing record if it was read.
    accepts: HashMap<String, (bool, Option<String>)>,
    /// Writes that landed, by key, with the record's epoch after.
    written: HashMap<String, i64>,
    /// The epochs the group's fenced writes were conditioned on.
    held_epochs: HashMap<String, i64>,
}

impl Outcome {
    fn new(sent: Instant) -> Self {
        Outcome {
            sent,
            accepts: HashMap::new(),
            written: HashMap::new(),
            held_epochs: HashMap::new(),
        }
    }
}

/// The statement's parameters: one array per column per kind, in key order
/// (so that groups of different replicas lock shared rows in one order).
#[derive(Default)]
struct Arrays<'a> {
    acc_keys: Vec<&'a str>,
    acc_records: Vec<&'a str>,
    acc_channels: Vec<&'a str>,
    acc_at: Vec<i64>,
    acc_open: Vec<bool>,
    acc_answered: Vec<bool>,
    held_keys: Vec<&'a str>,
    held_records: Vec<&'a str>,
    held_open: Vec<bool>,
    held_answered: Vec<bool>,
    held_epochs: Vec<i64>,
    held_due: Vec<Option<i64>>,
    free_keys: Vec<&'a str>,
    free_records: Vec<&'a str>,
    free_channels: Vec<&'a str>,
    free_at: Vec<i64>,
    free_open: Vec<bool>,
    free_answered: Vec<bool>,
    free_due: Vec<Option<i64>>,
}

impl<'a> Arrays<'a> {
    fn of(group: &'a Group, held: &HashMap<String, i64>) -> Self {
        let mut ops: Vec<&Op> = group.ops.iter().filter(|op| op.key().is_some()).collect();
        ops.sort_by(|a, b| a.key().cmp(&b.key()));
        let mut arrays = Arrays::default();
        for op in ops {
            match op {
                Op::Accept { encoded, row, .. } => {
                    arrays.acc_keys.push(encoded);
                    arrays.acc_records.push(&row.record);
                    arrays.acc_channels.push(row.channel);
                    arrays.acc_at.push(row.accepted_at_ms);
                    arrays.acc_open.push(row.open);
                    arrays.acc_answered.push(row.answered);
                }
                Op::Put { encoded, row, .. } => match held.get(encoded.as_str()) {
                    Some(epoch) => {
                        arrays.held_keys.push(encoded);
                        arrays.held_records.push(&row.record);
                        arrays.held_open.push(row.open);
                        arrays.held_answered.push(row.answered);
                        arrays.held_epochs.push(*epoch);
                        arrays.held_due.push(row.due_at_ms);
                    }
                    None => {
                        arrays.free_keys.push(encoded);
                        arrays.free_records.push(&row.record);
                        arrays.free_channels.push(row.channel);
                        arrays.free_at.push(row.accepted_at_ms);
                        arrays.free_open.push(row.open);
                        arrays.free_answered.push(row.answered);
                        arrays.free_due.push(row.due_at_ms);
                    }
                },
                Op::Flush { .. } => {}
            }
        }
        arrays
    }
}

/// Move queued operations into `group` while they fit: first those carried
/// over, then the channel's. Returns whether the channel is closed.
fn fill(
    group: &mut Group,
    carry: &mut VecDeque<Op>,
    ops: &mut mpsc::UnboundedReceiver<Op>,
) -> bool {
    loop {
        let op = match carry.pop_front() {
            Some(op) => op,
            None => match ops.try_recv() {
                Ok(op) => op,
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            },
        };
        if !group.admits(&op) {
            carry.push_front(op);
            return false;
        }
        group.push(op);
    }
}

/// Wait up to [`LINGER`] for an awaited operation to join a group of
/// unawaited writes. Stops early when one joins, or one cannot join (its
/// key is taken, or the group is full). Returns whether the channel closed.
async fn linger(
    group: &mut Group,
    carry: &mut VecDeque<Op>,
    ops: &mut mpsc::UnboundedReceiver<Op>,
) -> bool {
    if !carry.is_empty() {
        return false;
    }
    let until = Instant::now() + LINGER;
    loop {
        match tokio::time::timeout_at(until, ops.recv()).await {
            Err(_) => return false,
            Ok(None) => return true,
            Ok(Some(op)) => {
                if !group.admits(&op) {
                    carry.push_back(op);
                    return false;
                }
                let awaited = op.is_awaited();
                group.push(op);
                if awaited {
                    return fill(group, carry, ops);
                }
            }
        }
    }
}

/// The group statement for the records table `table` (schema-qualified).
/// Parameters: $1 this replica, $2 the lease in milliseconds, then the
/// accepts' columns ($3–$8), the fenced writes' ($9–$13) and the free
/// writes' ($14–$19), then the fenced and the free writes' due times ($20,
/// $21: set for a record parked until its next poll, which the write
/// releases).
///
/// It returns a row per accept that inserted (kind 0, inserted), per
/// accepted key that was already there (kind 0, not inserted, its record:
/// every part of one statement reads the table as it was before the
/// statement, so this never sees the accepts' own rows), and per fenced
/// (kind 1) and free (kind 2) write that landed, with the record's epoch.
/// An accept in neither lost a race with another replica's insert.
///
/// Every part reaches the table through its primary key only; the writer's
/// session keeps the planner to that (see [`WRITER_SESSION`]), so the
/// statement costs the same on a journal of a million records as on an
/// empty one.
pub(crate) fn group_sql(table: &str) -> String {
    format!(
        "WITH
acc_in AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::boolean[], $8::boolean[])
        AS t(key, record, channel, accepted_at_ms, open, answered)),
acc AS (
    INSERT INTO {table} (key, record, channel, accepted_at_ms, open, answered, owner, epoch, lease_expires_at)
    SELECT key, record::json, channel, accepted_at_ms, open, answered, $1::text, 1,
           CASE WHEN open THEN now() + $2::bigint * interval '1 millisecond' END
    FROM acc_in
    ON CONFLICT (key) DO NOTHING
    RETURNING key),
held_in AS (
    SELECT * FROM unnest($9::text[], $10::text[], $11::boolean[], $12::boolean[], $13::bigint[], $20::bigint[])
        AS t(key, record, open, answered, epoch, due_at_ms)),
held AS (
    UPDATE {table} r
    SET record = h.record::json, open = h.open, answered = h.answered,
        owner = CASE WHEN h.due_at_ms IS NULL THEN r.owner END,
        lease_expires_at = CASE WHEN h.open AND h.due_at_ms IS NULL
            THEN now() + $2::bigint * interval '1 millisecond' END,
        due_at_ms = h.due_at_ms
    FROM held_in h
    WHERE r.key = h.key AND r.owner = $1::text AND r.epoch = h.epoch
    RETURNING r.key, r.epoch),
free_in AS (
    SELECT * FROM unnest($14::text[], $15::text[], $16::text[], $17::bigint[], $18::boolean[], $19::boolean[], $21::bigint[])
        AS t(key, record, channel, accepted_at_ms, open, answered, due_at_ms)),
free AS (
    INSERT INTO {table} AS r (key, record, channel, accepted_at_ms, open, answered, owner, epoch, lease_expires_at, due_at_ms)
    SELECT key, record::json, channel, accepted_at_ms, open, answered,
           CASE WHEN due_at_ms IS NULL THEN $1::text END, 1,
           CASE WHEN open AND due_at_ms IS NULL THEN now() + $2::bigint * interval '1 millisecond' END,
           due_at_ms
    FROM free_in
    ON CONFLICT (key) DO UPDATE
    SET record = EXCLUDED.record, open = EXCLUDED.open, answered = EXCLUDED.answered,
        accepted_at_ms = EXCLUDED.accepted_at_ms, owner = EXCLUDED.owner,
        epoch = r.epoch + 1, lease_expires_at = EXCLUDED.lease_expires_at,
        due_at_ms = EXCLUDED.due_at_ms
    WHERE r.owner IS NULL OR r.owner = EXCLUDED.owner
       OR r.lease_expires_at IS NULL OR r.lease_expires_at < now()
    RETURNING r.key, r.epoch)
SELECT 0, key, true, NULL::text, 1::bigint FROM acc
UNION ALL SELECT 0, ex.key, false, ex.record::text, 1 FROM {table} ex WHERE ex.key = ANY($3::text[])
UNION ALL SELECT 1, key, true, NULL, epoch FROM held
UNION ALL SELECT 2, key, true, NULL, epoch FROM free"
    )
}

#[cfg(test)]
mod tests {
    use super::{WRITER_SESSION, group_sql};

    use crate::test_common as common;

    /// One value per parameter of the group statement, for `EXPLAIN
    /// EXECUTE`: one element in each array.
    const ARGUMENTS: &str = "'r', 10000,
        ARRAY['a'], ARRAY['{}'], ARRAY['async'], ARRAY[1::bigint], ARRAY[true], ARRAY[false],
        ARRAY['b'], ARRAY['{}'], ARRAY[true], ARRAY[false], ARRAY[1::bigint],
        ARRAY['c'], ARRAY['{}'], ARRAY['async'], ARRAY[1::bigint], ARRAY[true], ARRAY[false],
        ARRAY[NULL::bigint], ARRAY[NULL::bigint]";

    /// The plan the writer's session gets for its group statement, on a
    /// table with no rows and no statistics yet, as a replica's first
    /// group finds it (the plan is kept for the session's life).
    async fn first_plan(client: &mut tokio_postgres::Client, session: &str) -> String {
        let schema = format!(
            "w_plan_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let quoted = format!("\"{schema}\"");
        crate::migrate::migrate(client, &schema, &quoted)
            .await
            .expect("migrate");
        client
            .batch_execute(&format!(
                "{session}; SET search_path TO {quoted};
                 PREPARE g AS {}",
                group_sql(&format!("{quoted}.records"))
            ))
            .await
            .expect("prepare");
        let rows = client
            .query(&format!("EXPLAIN EXECUTE g({ARGUMENTS})"), &[])
            .await
            .expect("explain");
        client
            .batch_execute(&format!(
                "DEALLOCATE g; RESET ALL; DROP SCHEMA {quoted} CASCADE"
            ))
            .await
            .expect("clean up");
        rows.iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The group statement reaches the records only by primary key: no
    /// scan or hash of the whole table, whose cost would grow with every
    /// record the journal keeps.
    #[tokio::test]
    async fn the_group_statement_reaches_records_by_primary_key_only() {
        let Some(url) = common::url() else { return };
        let mut client = common::raw(&url).await;
        let plan = first_plan(&mut client, WRITER_SESSION).await;
        for whole_table in [
            "Seq Scan on records",
            "Hash",
            "Merge Join",
            "Bitmap Heap Scan",
        ] {
            assert!(!plan.contains(whole_table), "{whole_table} in\n{plan}");
        }
        assert!(plan.contains("records_pkey"), "{plan}");
        // Without the session's settings, the same first plan scans the
        // whole table: the settings are what the assertion above checks.
        let unguided = first_plan(&mut client, "SET plan_cache_mode = force_generic_plan").await;
        assert!(
            unguided.contains("Seq Scan on records") || unguided.contains("Hash"),
            "{unguided}"
        );
    }
}
