//! A journal in memory: fast, and gone with the process.

use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Channel, Record, RequestKey, Stage, Store, StoreFuture};
use crate::error::{Error, Result};
use crate::request::{Request, RequestType};
use crate::response::Response;

/// Keeps records in memory. Dedupe works within one process; nothing
/// survives a restart, so outbox and polling recovery do not apply.
///
/// A closed record (answered, and delivered or replied) keeps only what
/// deduplication needs until it is purged: its key, its answer (as JSON), its request
/// and resource types, its channel and when it arrived. The request's
/// properties and callback URLs are dropped, so retained records cost a
/// fraction of the memory and no presigned URL outlives its delivery.
/// [`Store::get`] gives such a record's request with its identifiers only.
///
/// Records are spread over [`SHARDS`] maps, each behind its own lock. A hash
/// map that grows rehashes and moves every entry at once, under its lock:
/// with one map of tens of thousands of records that stalled every request
/// for milliseconds (at 9,000 req/s the slowest round trip took 14 ms, twice
/// the floor's); a shard holds a sixty-fourth of them.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Records>]>,
    /// Picks a key's shard. foldhash rather than SipHash: see `RunningMap`
    /// in the runtime.
    shard_of: foldhash::fast::RandomState,
}

/// How many maps the records are spread over.
const SHARDS: usize = 64;

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_of: foldhash::fast::RandomState::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Records {
    open: foldhash::HashMap<RequestKey, Record>,
    closed: foldhash::HashMap<RequestKey, Closed>,
}

/// A closed record, compact.
#[derive(Debug)]
struct Closed {
    /// The answer as JSON: one allocation where the answer itself is a
    /// dozen (its strings, and a B-tree for its Data). Retained records
    /// accumulate until purged, and the heap they fill makes every request
    /// slower (40 to 52 µs of CPU per round trip over 120,000 of them).
    answer: Box<[u8]>,
    request_type: RequestType,
    resource_type: Box<str>,
    channel: Channel,
    accepted_at_ms: u64,
}

impl Closed {
    /// The compact form of `record`, when it is closed, keeping `answer`
    /// (the answer's JSON) if given, or else encoding it.
    fn of(record: &Record, answer: Option<&[u8]>) -> Option<Closed> {
        let Stage::Answered {
            response,
            delivered: true,
        } = &record.stage
        else {
            return None;
        };
        let answer = match answer {
            Some(answer) => Box::from(answer),
            // Only strings and JSON values inside: encoding cannot fail, and
            // if it did the record would stay whole, in the open map.
            None => serde_json::to_vec(response.as_ref())
                .ok()?
                .into_boxed_slice(),
        };
        Some(Closed {
            answer,
            request_type: record.request.request_type,
            resource_type: record.request.resource_type.as_str().into(),
            channel: record.channel,
            accepted_at_ms: record.accepted_at_ms,
        })
    }

    fn record(&self, key: &RequestKey) -> Result<Record> {
        let response: Response = serde_json::from_slice(&self.answer)
            .map_err(|e| Error::Journal(format!("a kept answer does not decode: {e}")))?;
        let request = Request::new(
            self.request_type,
            &*self.resource_type,
            key.logical_resource_id.as_str(),
            key.stack_id.as_str(),
            key.request_id.as_str(),
        );
        Ok(Record {
            request: Arc::new(request),
            channel: self.channel,
            accepted_at_ms: self.accepted_at_ms,
            stage: Stage::Answered {
                response: Arc::new(response),
                delivered: true,
            },
        })
    }
}

impl Records {
    fn get(&self, key: &RequestKey) -> Result<Option<Record>> {
        match self.open.get(key) {
            Some(record) => Ok(Some(record.clone())),
            None => self
                .closed
                .get(key)
                .map(|closed| closed.record(key))
                .transpose(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// The shard that holds `key`, locked.
    fn lock(&self, key: &RequestKey) -> MutexGuard<'_, Records> {
        let shard = self.shard_of.hash_one(key) as usize % SHARDS;
        lock(&self.shards[shard])
    }

    /// Store `record` under `key`; a closed one compactly, with `answer` as
    /// its answer's JSON when given.
    fn write(&self, key: &RequestKey, record: &Record, answer: Option<&[u8]>) {
        // Made before the lock is taken: encoding is the slow part.
        let closed = Closed::of(record, answer);
        let mut records = self.lock(key);
        match closed {
            Some(closed) => {
                // The open record's key moves over: no key copy, and the
                // request it held is freed.
                let key = match records.open.remove_entry(key) {
                    Some((key, _)) => key,
                    None => key.clone(),
                };
                records.closed.insert(key, closed);
            }
            None => {
                records.closed.remove(key);
                // In place when the key is there (it is, after `accept`).
                match records.open.get_mut(key) {
                    Some(stored) => stored.clone_from(record),
                    None => {
                        records.open.insert(key.clone(), record.clone());
                    }
                }
            }
        }
    }

    /// Every shard, one after the other.
    fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, Records>> {
        self.shards.iter().map(lock)
    }
}

fn lock(shard: &Mutex<Records>) -> MutexGuard<'_, Records> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store for MemoryStore {
    fn accept<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Option<Record>> {
        let mut records = self.lock(key);
        let existing = match records.closed.get(key) {
            Some(closed) => closed.record(key).map(Some),
            None => match records.open.entry(key.clone()) {
                Entry::Occupied(existing) => Ok(Some(existing.get().clone())),
                Entry::Vacant(slot) => {
                    slot.insert(record.clone());
                    Ok(None)
                }
            },
        };
        Box::pin(std::future::ready(existing))
    }

    fn put<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, ()> {
        self.write(key, record, None);
        Box::pin(std::future::ready(Ok(())))
    }

    fn put_delivered<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
        body: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        self.write(key, record, Some(body));
        Box::pin(std::future::ready(Ok(())))
    }

    fn get<'a>(&'a self, key: &'a RequestKey) -> StoreFuture<'a, Option<Record>> {
        let record = self.lock(key).get(key);
        Box::pin(std::future::ready(record))
    }

    fn open_records(&self) -> StoreFuture<'_, Vec<(RequestKey, Record)>> {
        let open = self
            .each_shard()
            .flat_map(|records| {
                records
                    .open
                    .iter()
                    .filter(|(_, r)| r.is_open())
                    .map(|(k, r)| (k.clone(), r.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        Box::pin(std::future::ready(Ok(open)))
    }

    fn purge(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        let mut removed = 0;
        for mut records in self.each_shard() {
            let before = records.closed.len();
            records.closed.retain(|_, r| r.accepted_at_ms >= before_ms);
            removed += before - records.closed.len();
        }
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn is_durable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use super::*;

    #[tokio::test]
    async fn contract() {
        contract::accept_inserts_once(&MemoryStore::new()).await;
        contract::accept_early_decides_once(&MemoryStore::new()).await;
        contract::open_records_track_the_outbox(&MemoryStore::new()).await;
        contract::eventual_writes_are_read_back(&MemoryStore::new()).await;
        contract::purge_removes_only_old_closed_records(&MemoryStore::new()).await;
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
        let records = store.lock(&key);
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
        assert_eq!(store.lock(&key).closed.len(), 1, "kept compact");
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
        assert_eq!(store.lock(&key).closed.len(), 0);
    }
}
