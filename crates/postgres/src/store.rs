//! [`PostgresStore`]: the journal in PostgreSQL, shared by replicas.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use stackhook::journal::{Channel, Claimed, Record, RequestKey, Stage, Store, StoreFuture};
use stackhook::response::Response;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::PostgresConfig;
use crate::error::{Error, Result, scrub};
use crate::writer::{self, Accepted, Held, Holding, Op, Row, Writer, lock};
use crate::{listen, migrate, tls};

/// How long a read waits for a free pooled connection before it fails.
/// Reads are short; a pool that stays exhausted this long means the
/// database is down or swamped, and the caller should hear so.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// How often [`PostgresStore::wait_for_answer`] re-reads the record while
/// LISTEN is in force: only a safety net, for a notification lost while
/// the listener reconnected.
const SAFETY_POLL: Duration = Duration::from_secs(1);

/// How often it re-reads while the listener is down: the answer is still
/// seen well within ROS's 10 s for a sync reply.
const FALLBACK_POLL: Duration = Duration::from_millis(100);

/// A record this replica claimed: [`PostgresStore::claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The record's key.
    pub key: RequestKey,
    /// The record as it was stored.
    pub record: Record,
    /// The fencing epoch this replica now holds it at.
    pub epoch: i64,
}

/// Who owns a record, as the database has it: [`PostgresStore::ownership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The replica that owns it; `None` once released.
    pub owner: Option<String>,
    /// Its fencing epoch: 1 when accepted, raised by every claim.
    pub epoch: i64,
    /// Whether its lease runs (by the database's clock).
    pub lease_live: bool,
}

/// The statements, with the schema filled in.
#[derive(Debug)]
struct Sql {
    group: String,
    get: String,
    open: String,
    claim: String,
    renew: String,
    release: String,
    purge: String,
    owner: String,
}

impl Sql {
    fn new(schema: &str) -> Self {
        let table = format!("{schema}.records");
        Sql {
            group: writer::group_sql(&table),
            get: format!("SELECT record::text FROM {table} WHERE key = $1"),
            open: format!("SELECT record::text FROM {table} WHERE open ORDER BY accepted_at_ms"),
            claim: format!(
                "WITH free AS (
                    SELECT key FROM {table}
                        WHERE open AND (lease_expires_at IS NULL OR lease_expires_at < now())
                        AND (due_at_ms IS NULL OR due_at_ms <= $4)
                    ORDER BY accepted_at_ms
                    LIMIT $3
                    FOR UPDATE SKIP LOCKED)
                UPDATE {table} r
                SET owner = $1, epoch = r.epoch + 1, due_at_ms = NULL,
                    lease_expires_at = now() + $2::bigint * interval '1 millisecond'
                FROM free WHERE r.key = free.key
                RETURNING r.record::text, r.epoch"
            ),
            renew: format!(
                "UPDATE {table} SET lease_expires_at = now() + $2::bigint * interval '1 millisecond'
                 WHERE owner = $1 AND open"
            ),
            release: format!(
                "UPDATE {table} SET owner = NULL, lease_expires_at = NULL
                 WHERE owner = $1 AND open AND key <> ALL($2::text[])"
            ),
            purge: format!("DELETE FROM {table} WHERE NOT open AND accepted_at_ms < $1"),
            owner: format!(
                "SELECT owner, epoch, lease_expires_at > now() FROM {table} WHERE key = $1"
            ),
        }
    }
}

/// Aborts the task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The journal in PostgreSQL. Cheap to share behind an `Arc`.
///
/// Every record carries an owner (the replica id), a lease expiry and a
/// fencing epoch. A record accepted here is owned here at epoch 1; the
/// store remembers the epoch of every open record it holds, and each write
/// to one is conditioned on this replica still owning it at that epoch.
/// A write that loses fails with [`Error::Fenced`] (through the [`Store`]
/// trait, `stackhook::Error::Fenced`): another replica claimed the record,
/// and this one must stop working on it.
pub struct PostgresStore {
    config: PostgresConfig,
    sql: Sql,
    pool: Pool,
    writer: mpsc::UnboundedSender<Op>,
    held: Held,
    answers: broadcast::Sender<Arc<str>>,
    listening: Arc<AtomicBool>,
    round_trips: Arc<AtomicU64>,
    migrated: usize,
    _listener: AbortOnDrop,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.config)
            .field("held", &lock(&self.held).len())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect, create or migrate the schema, and start the writer and the
    /// answer listener. Safe when several replicas start at once.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad schema name or TLS setting,
    /// [`Error::Connect`] when the database refuses the connection or the
    /// login (one line, no password), [`Error::Migration`] when the schema
    /// cannot be created or migrated.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        let quoted = config.quoted_schema()?;
        let tls = tls::connector(&config)?;
        let connect_error = |e: tokio_postgres::Error| Error::Connect {
            url: config.redacted_url().to_owned(),
            message: scrub(&e, config.secret()),
        };
        let (mut client, connection) = config
            .pg
            .connect(tls.clone())
            .await
            .map_err(connect_error)?;
        let driver = tokio::spawn(connection);
        let migrated = migrate::migrate(&mut client, &config.schema, &quoted).await;
        drop(client);
        drop(driver.await);
        let migrated = migrated?;

        let manager = Manager::from_config(
            config.pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let connect_timeout = config.pg.get_connect_timeout().copied();
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(connect_timeout)
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| Error::Config {
                url: config.redacted_url().to_owned(),
                message: e.to_string(),
            })?;

        let sql = Sql::new(&quoted);
        let held = Held::default();
        let round_trips = Arc::new(AtomicU64::new(0));
        let (writer, ops) = mpsc::unbounded_channel();
        let task = Writer {
            pool: pool.clone(),
            sql: sql.group.clone(),
            replica: config.replica_id.clone(),
            lease_ms: lease_ms(config.lease),
            held: Arc::clone(&held),
            round_trips: Arc::clone(&round_trips),
            secret: config.secret().map(str::to_owned),
        };
        tokio::spawn(task.run(ops));

        let (answers, _) = broadcast::channel(listen::CAPACITY);
        let listening = Arc::new(AtomicBool::new(false));
        let listener = tokio::spawn(listen::run(
            config.pg.clone(),
            tls,
            format!("\"{}.answered\"", config.schema),
            answers.clone(),
            Arc::clone(&listening),
            config.secret().map(str::to_owned),
        ));
        tracing::info!(
            url = %config.redacted_url(),
            schema = %config.schema,
            replica = %config.replica_id,
            migrated,
            "journal on PostgreSQL"
        );
        Ok(PostgresStore {
            config,
            sql,
            pool,
            writer,
            held,
            answers,
            listening,
            round_trips,
            migrated,
            _listener: AbortOnDrop(listener),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// This replica's id, the owner of the records it holds.
    pub fn replica_id(&self) -> &str {
        &self.config.replica_id
    }

    /// How many migrations [`PostgresStore::connect`] applied (0 when the
    /// schema was current, or another replica migrated it first).
    pub fn migrations_applied(&self) -> usize {
        self.migrated
    }

    /// Statements sent to the database so far, each one round trip: a
    /// group of writes counts once, however many requests share it; a
    /// transaction counts each statement, `BEGIN` and `COMMIT` included.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// The epoch this replica holds `key` at, if it holds it.
    pub fn epoch(&self, key: &RequestKey) -> Option<i64> {
        lock(&self.held).get(&key.encode()).map(|held| held.epoch)
    }

    /// How long `key` is certainly this replica's, by this process's clock:
    /// the lease that this replica's last write or claim of it set, counted
    /// from when that statement was sent (the database started the lease
    /// later, so it ends later). No peer can claim the record before then.
    /// Pins the record too: [`PostgresStore::release`] keeps it until the
    /// next write to it. `None` if this replica does not hold it, or the
    /// lease it knows of has run out. A renewal does not extend what this
    /// counts: a record is pinned only for the moment its answer is given.
    pub fn hold_to_answer(&self, key: &RequestKey) -> Option<Duration> {
        let mut held = lock(&self.held);
        let holding = held.get_mut(&key.encode())?;
        let left = (holding.leased_at + self.config.lease)
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())?;
        holding.pinned = true;
        Some(left)
    }

    /// Whether the answer listener is in force (otherwise
    /// [`PostgresStore::wait_for_answer`] polls).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn send(&self, op: Op) -> Result<()> {
        self.writer.send(op).map_err(|_| Error::WriterStopped)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| Error::Database(scrub(&e, self.config.secret())))
    }

    fn db_error(&self, e: tokio_postgres::Error) -> Error {
        Error::Database(scrub(&e, self.config.secret()))
    }

    fn count(&self, statements: u64) {
        self.round_trips.fetch_add(statements, Ordering::Relaxed);
    }

    /// Insert `record` under `key` unless the key exists, owned here at
    /// epoch 1 with a fresh lease; the existing record otherwise. Atomic
    /// across replicas: of concurrent accepts of one key anywhere, one
    /// inserts. Returns once committed.
    ///
    /// # Errors
    /// [`Error::Database`] when the database cannot be reached or refuses.
    pub async fn accept_record(&self, key: &RequestKey, record: &Record) -> Result<Option<Record>> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Accept {
            encoded: key.encode(),
            row: row(record)?,
            reply,
        })?;
        match answer.await.map_err(|_| Error::WriterStopped)?? {
            Accepted::Inserted => Ok(None),
            Accepted::Existing(json) => decode(&json).map(Some),
            Accepted::Raced => self.get_record(key).await?.map(Some).ok_or_else(|| {
                Error::Database(format!("{key} was accepted elsewhere and is gone already"))
            }),
        }
    }

    /// Write `record` under `key` and wait for the commit. If this replica
    /// holds the record, the write is fenced on its epoch; if not, it takes
    /// the record (raising the epoch) only when no other replica holds a
    /// live lease on it.
    ///
    /// # Errors
    /// [`Error::Fenced`] when another replica owns the record: stop working
    /// on it. [`Error::Database`] when the database cannot be reached.
    pub async fn put_fenced(&self, key: &RequestKey, record: &Record) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.send(Op::Put {
            key: key.clone(),
            encoded: key.encode(),
            row: row(record)?,
            reply: Some(reply),
        })?;
        done.await.map_err(|_| Error::WriterStopped)?
    }

    /// Write `record`, which waits for its next poll, and release it until
    /// that poll is due (its `next_poll_at_ms`, by this replica's clock):
    /// from then on any replica's [`PostgresStore::claim`] may take it, so
    /// polls are shared out among the live replicas. Fenced like
    /// [`PostgresStore::put_fenced`]; returns once committed, after which
    /// this replica no longer holds the record.
    ///
    /// # Errors
    /// [`Error::Fenced`] when another replica owns the record.
    /// [`Error::Database`] when the database cannot be reached (the record
    /// then stays as it was, held by this replica).
    pub async fn park_until_due(&self, key: &RequestKey, record: &Record) -> Result<()> {
        let mut row = row(record)?;
        row.due_at_ms = match &record.stage {
            Stage::Polling {
                next_poll_at_ms, ..
            } => Some(i64::try_from(*next_poll_at_ms).unwrap_or(i64::MAX)),
            // Nothing to wait for: due at once.
            _ => Some(0),
        };
        let (reply, done) = oneshot::channel();
        self.send(Op::Put {
            key: key.clone(),
            encoded: key.encode(),
            row,
            reply: Some(reply),
        })?;
        done.await.map_err(|_| Error::WriterStopped)?
    }

    /// [`PostgresStore::put_fenced`] without waiting: committed with the
    /// next group, within [`LINGER`](crate::LINGER) plus one commit. A
    /// fenced or failed write is logged.
    ///
    /// # Errors
    /// Only when the record cannot be encoded or the writer has stopped.
    pub fn put_unawaited(&self, key: &RequestKey, record: &Record) -> Result<()> {
        self.send(Op::Put {
            key: key.clone(),
            encoded: key.encode(),
            row: row(record)?,
            reply: None,
        })
    }

    /// Wait until every write queued before the call is committed.
    ///
    /// # Errors
    /// [`Error::Database`] when writes still wait for the database.
    pub async fn flush_writes(&self) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.send(Op::Flush { reply })?;
        done.await.map_err(|_| Error::WriterStopped)?
    }

    /// The record for `key`, as committed.
    ///
    /// # Errors
    /// [`Error::Database`], or [`Error::Corrupt`] for an unreadable record.
    pub async fn get_record(&self, key: &RequestKey) -> Result<Option<Record>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql.get)
            .await
            .map_err(|e| self.db_error(e))?;
        self.count(1);
        let row = client
            .query_opt(&statement, &[&key.encode()])
            .await
            .map_err(|e| self.db_error(e))?;
        row.map(|row| decode(row.get(0))).transpose()
    }

    /// Every open record (running, polling or undelivered), whoever owns it.
    ///
    /// # Errors
    /// [`Error::Database`] or [`Error::Corrupt`].
    pub async fn open(&self) -> Result<Vec<(RequestKey, Record)>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql.open)
            .await
            .map_err(|e| self.db_error(e))?;
        self.count(1);
        let rows = client
            .query(&statement, &[])
            .await
            .map_err(|e| self.db_error(e))?;
        rows.iter()
            .map(|row| {
                let record = decode(row.get(0))?;
                Ok((RequestKey::of(&record.request), record))
            })
            .collect()
    }

    /// Take up to `limit` open records whose lease expired or was released
    /// (a parked one once its poll is due, by this replica's clock)
    /// (`FOR UPDATE SKIP LOCKED`, so replicas claiming at once split the
    /// work instead of waiting for each other), oldest first: each gets
    /// this replica as owner, a fresh lease and its epoch raised, so the
    /// previous owner's writes are refused from now on.
    ///
    /// # Errors
    /// [`Error::Database`] or [`Error::Corrupt`].
    pub async fn claim(&self, limit: usize) -> Result<Vec<Claim>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql.claim)
            .await
            .map_err(|e| self.db_error(e))?;
        self.count(1);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sent = Instant::now();
        let rows = client
            .query(
                &statement,
                &[
                    &self.config.replica_id,
                    &lease_ms(self.config.lease),
                    &limit,
                    &i64::try_from(stackhook::journal::now_ms()).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(|e| self.db_error(e))?;
        let mut claims = Vec::with_capacity(rows.len());
        let mut held = lock(&self.held);
        for row in rows {
            let record = decode(row.get(0))?;
            let epoch: i64 = row.get(1);
            let key = RequestKey::of(&record.request);
            held.insert(key.encode(), Holding::new(epoch, sent));
            claims.push(Claim { key, record, epoch });
        }
        if !claims.is_empty() {
            tracing::info!(count = claims.len(), "claimed journal records");
        }
        Ok(claims)
    }

    /// Extend the lease of every open record this replica owns, in one
    /// statement; returns how many. Call it every third of the lease or so.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn renew(&self) -> Result<u64> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql.renew)
            .await
            .map_err(|e| self.db_error(e))?;
        self.count(1);
        client
            .execute(
                &statement,
                &[&self.config.replica_id, &lease_ms(self.config.lease)],
            )
            .await
            .map_err(|e| self.db_error(e))
    }

    /// Give up every open record this replica owns, at shutdown, so that a
    /// peer claims them at once instead of after their leases expire.
    /// Writes queued before are committed first. Returns how many were
    /// released. Writes to them afterwards are fenced. A record pinned by
    /// [`PostgresStore::hold_to_answer`] and not written since stays this
    /// replica's: its answer may be on its way to ROS unjournaled, and a
    /// peer must not rerun it before its lease runs out.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn release(&self) -> Result<u64> {
        self.flush_writes().await?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql.release)
            .await
            .map_err(|e| self.db_error(e))?;
        self.count(1);
        let pinned: Vec<String> = lock(&self.held)
            .iter()
            .filter(|(_, held)| held.pinned)
            .map(|(key, _)| key.clone())
            .collect();
        let released = client
            .execute(&statement, &[&self.config.replica_id, &pinned])
            .await
            .map_err(|e| self.db_error(e))?;
        lock(&self.held).retain(|_, held| held.pinned);
        tracing::info!(released, "released journal records");
        Ok(released)
    }

    /// Who owns `key`, as the database has it now; `None` if there is no
    /// such record. For diagnostics and tests.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn ownership(&self, key: &RequestKey) -> Result<Option<Ownership>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&self.sql.owner)
            .await
            .map_err(|e| self.db_error(e))?;
        self.count(1);
        let row = client
            .query_opt(&statement, &[&key.encode()])
            .await
            .map_err(|e| self.db_error(e))?;
        Ok(row.map(|row| Ownership {
            owner: row.get(0),
            epoch: row.get(1),
            lease_live: row.get::<_, Option<bool>>(2).unwrap_or(false),
        }))
    }

    /// Wait until `key`'s record is answered, for at most `timeout`, and
    /// return the answer; `None` if it is not answered by then (or has no
    /// record). For a sync duplicate that reached this replica while another
    /// runs the request: the other's commit of a sync answer notifies every
    /// replica (LISTEN/NOTIFY); while the listener is down this polls every
    /// 100 ms instead.
    ///
    /// # Errors
    /// [`Error::Database`] or [`Error::Corrupt`].
    pub async fn wait_for_answer(
        &self,
        key: &RequestKey,
        timeout: Duration,
    ) -> Result<Option<Arc<Response>>> {
        let deadline = Instant::now() + timeout;
        let encoded = key.encode();
        // Subscribed before the first read: an answer committed after the
        // read is notified after it, and so is seen.
        let mut wake = self.answers.subscribe();
        loop {
            if let Some(Record {
                stage: Stage::Answered { response, .. },
                ..
            }) = self.get_record(key).await?
            {
                return Ok(Some(response));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let poll = if self.is_listening() {
                SAFETY_POLL
            } else {
                FALLBACK_POLL
            };
            let until = deadline.min(now + poll);
            loop {
                tokio::select! {
                    message = wake.recv() => match message {
                        Ok(answered) if *answered == *encoded => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep_until(until).await;
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(until) => break,
                }
            }
        }
    }

    /// Remove closed records accepted before `before_ms`, unless another
    /// replica is purging right now (a transaction-scoped advisory
    /// try-lock, so replicas never purge at once): `None` then.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn try_purge(&self, before_ms: u64) -> Result<Option<usize>> {
        let mut client = self.client().await?;
        let txn = client.transaction().await.map_err(|e| self.db_error(e))?;
        self.count(1);
        let locked: bool = txn
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                &[&format!("stackhook:purge:{}", self.config.schema)],
            )
            .await
            .map_err(|e| self.db_error(e))?
            .get(0);
        self.count(1);
        if !locked {
            txn.rollback().await.map_err(|e| self.db_error(e))?;
            self.count(1);
            return Ok(None);
        }
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        let removed = txn
            .execute(&self.sql.purge, &[&before])
            .await
            .map_err(|e| self.db_error(e))?;
        self.count(1);
        txn.commit().await.map_err(|e| self.db_error(e))?;
        self.count(1);
        Ok(Some(usize::try_from(removed).unwrap_or(usize::MAX)))
    }

    /// Whether the database answers and the writer runs.
    ///
    /// # Errors
    /// [`Error::Database`] or [`Error::WriterStopped`].
    pub async fn ping(&self) -> Result<()> {
        if self.writer.is_closed() {
            return Err(Error::WriterStopped);
        }
        let client = self.client().await?;
        self.count(1);
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| self.db_error(e))?;
        Ok(())
    }
}

impl Store for PostgresStore {
    fn accept<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move { Ok(self.accept_record(key, record).await?) })
    }

    fn put<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, ()> {
        Box::pin(async move { Ok(self.put_fenced(key, record).await?) })
    }

    fn put_eventually<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, ()> {
        let queued = self.put_unawaited(key, record);
        Box::pin(async move { Ok(queued?) })
    }

    fn park<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.park_until_due(key, record).await?;
            Ok(true)
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { Ok(self.flush_writes().await?) })
    }

    fn get<'a>(&'a self, key: &'a RequestKey) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move { Ok(self.get_record(key).await?) })
    }

    fn open_records(&self) -> StoreFuture<'_, Vec<(RequestKey, Record)>> {
        Box::pin(async move { Ok(self.open().await?) })
    }

    fn purge(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        Box::pin(async move { Ok(self.try_purge(before_ms).await?.unwrap_or(0)) })
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { Ok(self.ping().await?) })
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn round_trips(&self) -> Option<u64> {
        Some(PostgresStore::round_trips(self))
    }

    fn replica_id(&self) -> &str {
        &self.config.replica_id
    }

    fn claim(&self, limit: usize) -> StoreFuture<'_, Vec<Claimed>> {
        Box::pin(async move {
            Ok(PostgresStore::claim(self, limit)
                .await?
                .into_iter()
                .map(|claim| Claimed {
                    key: claim.key,
                    record: claim.record,
                    epoch: u64::try_from(claim.epoch).unwrap_or(0),
                })
                .collect())
        })
    }

    fn hold_to_answer(&self, key: &RequestKey) -> Option<Duration> {
        PostgresStore::hold_to_answer(self, key)
    }

    fn renew(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { Ok(PostgresStore::renew(self).await?) })
    }

    fn release(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { Ok(PostgresStore::release(self).await?) })
    }

    fn wait_for_answer<'a>(
        &'a self,
        key: &'a RequestKey,
        timeout: Duration,
    ) -> StoreFuture<'a, Option<Arc<Response>>> {
        Box::pin(async move { Ok(PostgresStore::wait_for_answer(self, key, timeout).await?) })
    }

    fn try_purge(&self, before_ms: u64) -> StoreFuture<'_, Option<usize>> {
        Box::pin(async move { Ok(PostgresStore::try_purge(self, before_ms).await?) })
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Async => "async",
        Channel::Sync => "sync",
        Channel::FunctionCompute => "fc",
    }
}

/// `record`'s columns.
fn row(record: &Record) -> Result<Row> {
    let json = serde_json::to_string(record)
        .map_err(|e| Error::Corrupt(format!("cannot encode a record: {e}")))?;
    Ok(Row {
        record: json,
        channel: channel_name(record.channel),
        accepted_at_ms: i64::try_from(record.accepted_at_ms).unwrap_or(i64::MAX),
        open: record.is_open(),
        answered: matches!(record.stage, Stage::Answered { .. }),
        due_at_ms: None,
    })
}

fn decode(json: &str) -> Result<Record> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(e.to_string()))
}
