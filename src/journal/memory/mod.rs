//! A journal in memory: fast, and gone with the process.

mod closed_log;

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use self::closed_log::{Closed, ClosedLog};
use super::owner::SingleOwner;
use super::{Acceptance, Claimed, Durable, Record, RequestKey, Stage, Store, StoreFuture, done};
use crate::error::{Error, Result};
use crate::request::Request;
use crate::response::Response;
use crate::sync::lock;

/// Keeps records in memory. Dedupe works within one process; nothing
/// survives a restart, so outbox and polling recovery do not apply. It is
/// not durable ([`Store::is_durable`] is false): every write is complete
/// when its call returns, and none outlives the process, so the durability
/// bounds of [`Store`] do not apply to it.
///
/// A closed record (answered, and delivered or replied) keeps only what
/// deduplication needs until it is purged: its key, its answer (as JSON), its
/// request and resource types, its channel and when it arrived, packed into
/// one entry of a log (see `closed_log.rs`). The request's properties and
/// callback URLs are dropped, so retained records cost a fraction of the
/// memory and no presigned URL outlives its delivery. [`Store::get`] gives
/// such a record's request with its identifiers only.
///
/// Records are spread over `SHARDS` (64) shards, each behind its own lock. A
/// table that grows rehashes and moves every entry at once, under its lock:
/// with one table of tens of thousands of records that stalled every request
/// for milliseconds (at 9,000 req/s the slowest round trip took 14 ms, twice
/// the floor's); a shard holds a sixty-fourth of them. A key is hashed once
/// per operation: the hash picks the shard and finds the key in it.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Records>]>,
    /// Hashes keys. foldhash rather than SipHash: see `RunningMap` in the
    /// runtime.
    hasher: foldhash::fast::RandomState,
    /// What it released (single owner: `journal/owner.rs`).
    owner: SingleOwner,
}

/// How many shards the records are spread over.
const SHARDS: usize = 64;

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            owner: SingleOwner::default(),
        }
    }
}

/// One shard.
#[derive(Debug, Default)]
struct Records {
    /// Records not closed yet, whole.
    open: HashTable<Open>,
    closed: ClosedLog,
}

/// An open record. Its key is its request's identifiers, compared in place
/// rather than copied (three allocations per request).
#[derive(Debug)]
struct Open {
    hash: u64,
    record: Record,
}

impl Open {
    fn is_for(&self, key: &RequestKey) -> bool {
        is_key_of(key, &self.record)
    }
}

/// Whether `key` is the key of `record`'s request.
fn is_key_of(key: &RequestKey, record: &Record) -> bool {
    let request = &record.request;
    request.request_id == key.request_id
        && request.logical_resource_id == key.logical_resource_id
        && request.stack_id == key.stack_id
}

impl Records {
    fn get(&self, hash: u64, key: &RequestKey) -> Result<Option<Record>> {
        if let Some(open) = self.open.find(hash, |open| open.is_for(key)) {
            return Ok(Some(open.record.clone()));
        }
        self.closed
            .get(hash, key)?
            .map(|closed| closed_record(key, &closed))
            .transpose()
    }
}

/// The answer's JSON if `record` is closed: `sent` when given (the bytes the
/// delivery sent), or else encoded.
fn closed_answer<'a>(record: &Record, sent: Option<&'a [u8]>) -> Option<Cow<'a, [u8]>> {
    let Stage::Answered {
        response,
        delivered: true,
    } = &record.stage
    else {
        return None;
    };
    match sent {
        Some(sent) => Some(Cow::Borrowed(sent)),
        // Only strings and JSON values inside: encoding cannot fail, and if
        // it did the record would stay whole, open.
        None => serde_json::to_vec(response.as_ref()).ok().map(Cow::Owned),
    }
}

/// The record a closed one stands for: its request with identifiers only.
fn closed_record(key: &RequestKey, closed: &Closed<'_>) -> Result<Record> {
    let response: Response = serde_json::from_slice(closed.answer)
        .map_err(|e| Error::Journal(format!("a kept answer does not decode: {e}")))?;
    let request = Request::new(
        closed.request_type,
        closed.resource_type,
        key.logical_resource_id.as_str(),
        key.stack_id.as_str(),
        key.request_id.as_str(),
    );
    Ok(Record {
        request: Arc::new(request),
        channel: closed.channel,
        accepted_at_ms: closed.accepted_at_ms,
        stage: Stage::Answered {
            response: Arc::new(response),
            delivered: true,
        },
    })
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// `key`'s hash, and its shard, locked.
    fn lock(&self, key: &RequestKey) -> (u64, MutexGuard<'_, Records>) {
        let hash = self.hasher.hash_one(key);
        // Picked by bits that the table uses neither for a slot's place (the
        // low ones) nor for its tag (the top seven), so keys of one shard
        // still spread over its table.
        let shard = (hash >> 32) as usize % SHARDS;
        (hash, lock(&self.shards[shard]))
    }

    /// Store `record` under `key`; a closed one compactly, with `sent` as its
    /// answer's JSON when given.
    fn write(&self, key: &RequestKey, record: &Record, sent: Option<&[u8]>) {
        debug_assert!(is_key_of(key, record), "stored under another key");
        // Made before the lock is taken: encoding is the slow part.
        let answer = closed_answer(record, sent);
        let (hash, mut shard) = self.lock(key);
        let records = &mut *shard;
        if let Some(answer) = answer {
            let closed = Closed {
                accepted_at_ms: record.accepted_at_ms,
                request_type: record.request.request_type,
                channel: record.channel,
                resource_type: &record.request.resource_type,
                answer: &answer,
            };
            if records.closed.insert(hash, key, &closed) {
                let open = records
                    .open
                    .find_entry(hash, |open| open.is_for(key))
                    .ok()
                    .map(|open| open.remove().0);
                // The open record (its request, properties and all) is freed
                // after the lock is released.
                drop(shard);
                drop(open);
                return;
            }
        }
        records.closed.remove(hash, key);
        match records.open.find_mut(hash, |open| open.is_for(key)) {
            // In place (the key is there after `accept`).
            Some(open) => open.record.clone_from(record),
            None => {
                let open = Open {
                    hash,
                    record: record.clone(),
                };
                records.open.insert_unique(hash, open, |open| open.hash);
            }
        }
    }

    /// [`Store::accept`], decided now: the record kept under `key`, or
    /// `None` and `record` inserted.
    fn insert_new(&self, key: &RequestKey, record: &Record) -> Result<Option<Record>> {
        debug_assert!(is_key_of(key, record), "stored under another key");
        let (hash, mut shard) = self.lock(key);
        let records = &mut *shard;
        match records.closed.get(hash, key) {
            Ok(Some(closed)) => closed_record(key, &closed).map(Some),
            Err(error) => Err(error),
            Ok(None) => match records
                .open
                .entry(hash, |open| open.is_for(key), |open| open.hash)
            {
                Entry::Occupied(open) => Ok(Some(open.get().record.clone())),
                Entry::Vacant(slot) => {
                    slot.insert(Open {
                        hash,
                        record: record.clone(),
                    });
                    Ok(None)
                }
            },
        }
    }

    /// Every shard, one after the other.
    fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, Records>> {
        self.shards.iter().map(lock)
    }
}

impl Store for MemoryStore {
    fn accept<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Option<Record>> {
        Box::pin(std::future::ready(self.insert_new(key, record)))
    }

    /// Decided and durable (as durable as this store gets) at once: one
    /// ready future, rather than the default's future around `accept`'s.
    fn accept_early<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Acceptance> {
        let acceptance = self.insert_new(key, record).map(|existing| match existing {
            Some(existing) => Acceptance::Existing(existing),
            None => Acceptance::Inserted(Durable::done()),
        });
        Box::pin(std::future::ready(acceptance))
    }

    fn put<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, ()> {
        self.owner.took(key);
        self.write(key, record, None);
        done()
    }

    fn put_delivered<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
        body: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        self.owner.took(key);
        self.write(key, record, Some(body));
        done()
    }

    fn get<'a>(&'a self, key: &'a RequestKey) -> StoreFuture<'a, Option<Record>> {
        let (hash, records) = self.lock(key);
        let record = records.get(hash, key);
        Box::pin(std::future::ready(record))
    }

    fn open_records(&self) -> StoreFuture<'_, Vec<(RequestKey, Record)>> {
        let open = self
            .each_shard()
            .flat_map(|records| {
                records
                    .open
                    .iter()
                    .filter(|open| open.record.is_open())
                    .map(|open| (RequestKey::of(&open.record.request), open.record.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        Box::pin(std::future::ready(Ok(open)))
    }

    fn purge(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        let mut removed = 0;
        for mut records in self.each_shard() {
            removed += records.closed.purge(before_ms);
        }
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        done()
    }

    fn is_durable(&self) -> bool {
        false
    }

    fn claim(&self, limit: usize) -> StoreFuture<'_, Vec<Claimed>> {
        Box::pin(async move { Ok(self.owner.claim(self.open_records().await?, limit)) })
    }

    fn renew(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { Ok(self.owner.held(&self.open_records().await?)) })
    }

    fn release(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { Ok(self.owner.release(self.open_records().await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;

    #[tokio::test]
    async fn contract() {
        contract::all(&MemoryStore::new()).await;
        let store = MemoryStore::new();
        contract::write_every_kind(&store).await;
        store.flush().await.expect("flush");
        contract::holds_every_kind(&store).await;
    }

    /// The crash contract (writes older than `DURABILITY_BOUND` survive a
    /// crash) is for durable stores; this one keeps nothing across a
    /// restart, and says so.
    #[test]
    fn the_memory_store_says_it_is_not_durable() {
        assert!(!MemoryStore::new().is_durable());
    }

    #[tokio::test]
    async fn a_closed_record_keeps_its_answer_and_identifiers_only() {
        let (key, mut record) = contract::record("compact");
        let mut request = (*record.request).clone();
        request.response_url = Some(crate::request::CallbackUrl::new(
            "https://ros.example/cb?Signature=secret",
        ));
        request
            .resource_properties
            .insert("Big".into(), serde_json::json!("x".repeat(4096)));
        record.request = Arc::new(request);
        let store = MemoryStore::new();
        assert_eq!(store.accept(&key, &record).await.expect("accept"), None);

        let response = Arc::new(Response::failed(&record.request, "pid", "no"));
        record.stage = Stage::Answered {
            response: Arc::clone(&response),
            delivered: false,
        };
        store.put(&key, &record).await.expect("put");
        let undelivered = store.get(&key).await.expect("get").expect("present");
        assert_eq!(undelivered, record, "an open record is kept whole");

        record.stage = Stage::Answered {
            response: Arc::clone(&response),
            delivered: true,
        };
        store.put_eventually(&key, &record).await.expect("put");
        let closed = store.get(&key).await.expect("get").expect("present");
        assert_eq!(closed.stage, record.stage);
        assert_eq!(closed.channel, record.channel);
        assert_eq!(closed.accepted_at_ms, record.accepted_at_ms);
        assert_eq!(closed.request.request_type, record.request.request_type);
        assert_eq!(closed.request.resource_type, record.request.resource_type);
        assert_eq!(RequestKey::of(&closed.request), key);
        assert!(
            closed.request.response_url.is_none(),
            "no presigned URL kept"
        );
        assert!(closed.request.resource_properties.is_empty());

        let again = store.accept(&key, &record).await.expect("accept");
        assert_eq!(again.map(|r| r.stage), Some(record.stage.clone()));
        let (_, records) = store.lock(&key);
        assert!(records.open.is_empty());
        assert_eq!(records.closed.len(), 1);
    }

    #[tokio::test]
    async fn records_spread_over_the_shards_are_all_found() {
        let store = MemoryStore::new();
        let mut keys = Vec::new();
        for i in 0..500 {
            let (key, mut record) = contract::record(&format!("spread-{i}"));
            record.accepted_at_ms = 1_000;
            assert_eq!(store.accept(&key, &record).await.expect("accept"), None);
            if i % 2 == 0 {
                record.stage = contract::answered(&record, true);
                store.put(&key, &record).await.expect("put");
            }
            keys.push(key);
        }
        let used = store.each_shard().filter(|r| !r.open.is_empty()).count();
        assert!(used > SHARDS / 2, "only {used} shards in use");
        for key in &keys {
            assert!(store.get(key).await.expect("get").is_some(), "{key}");
        }
        assert_eq!(store.open_records().await.expect("open").len(), 250);
        assert_eq!(store.purge(2_000).await.expect("purge"), 250);
        assert_eq!(store.open_records().await.expect("open").len(), 250);
    }

    #[tokio::test]
    async fn a_kept_answer_comes_back_exactly() {
        let (key, mut record) = contract::record("exact");
        let serde_json::Value::Object(data) = serde_json::json!({
            "Text": "ünïcødé \"quoted\"\n", "Int": -7, "Big": 18446744073709551615u64,
            "Float": 0.1, "List": [1, null, {"Nested": true}], "Empty": {}
        }) else {
            unreachable!()
        };
        let mut response = Response::success(&record.request, "pid-1", data);
        response.reason = Some("done".into());
        record.stage = Stage::Answered {
            response: Arc::new(response),
            delivered: true,
        };
        let store = MemoryStore::new();
        store.put(&key, &record).await.expect("put");
        assert_eq!(store.lock(&key).1.closed.len(), 1, "kept compact");
        let kept = store.get(&key).await.expect("get").expect("present");
        assert_eq!(kept.stage, record.stage);
    }

    #[tokio::test]
    async fn a_delivered_answer_is_kept_as_the_bytes_sent() {
        let (key, mut record) = contract::record("sent");
        let response = Response::failed(&record.request, "pid", "as the handler said it");
        let mut sent = response.clone();
        sent.reason = Some("as ROS received it".into());
        record.stage = Stage::Answered {
            response: Arc::new(response),
            delivered: true,
        };
        let store = MemoryStore::new();
        store
            .put_delivered(&key, &record, &sent.to_body())
            .await
            .expect("put");
        let kept = store.get(&key).await.expect("get").expect("present");
        let Stage::Answered { response, .. } = kept.stage else {
            panic!("answered");
        };
        assert_eq!(*response, sent);
    }

    #[tokio::test]
    async fn a_reopened_key_is_open_again() {
        let (key, mut record) = contract::record("reopen");
        let store = MemoryStore::new();
        record.stage = contract::answered(&record, true);
        store.put(&key, &record).await.expect("put");
        record.stage = Stage::Running;
        store.put(&key, &record).await.expect("put");
        assert_eq!(store.get(&key).await.expect("get"), Some(record));
        let open = store.open_records().await.expect("open");
        assert_eq!(open.len(), 1);
        assert_eq!(store.lock(&key).1.closed.len(), 0);
    }
}
