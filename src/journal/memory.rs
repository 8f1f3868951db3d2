//! A journal in memory: fast, and gone with the process.

use std::collections::hash_map::Entry;
use std::sync::{Mutex, MutexGuard};

use super::{Record, RequestKey, Store, StoreFuture};

/// Keeps records in a map. Dedupe works within one process; nothing
/// survives a restart, so outbox and polling recovery do not apply.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // foldhash rather than SipHash: see `RunningMap` in the runtime.
    records: Mutex<foldhash::HashMap<RequestKey, Record>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, foldhash::HashMap<RequestKey, Record>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn accept<'a>(
        &'a self,
        key: &'a RequestKey,
        record: &'a Record,
    ) -> StoreFuture<'a, Option<Record>> {
        let existing = match self.lock().entry(key.clone()) {
            Entry::Occupied(existing) => Some(existing.get().clone()),
            Entry::Vacant(slot) => {
                slot.insert(record.clone());
                None
            }
        };
        Box::pin(std::future::ready(Ok(existing)))
    }

    fn put<'a>(&'a self, key: &'a RequestKey, record: &'a Record) -> StoreFuture<'a, ()> {
        let mut records = self.lock();
        // In place when the key is there (it is, after `accept`): no key copy.
        match records.get_mut(key) {
            Some(stored) => stored.clone_from(record),
            None => {
                records.insert(key.clone(), record.clone());
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn get<'a>(&'a self, key: &'a RequestKey) -> StoreFuture<'a, Option<Record>> {
        let record = self.lock().get(key).cloned();
        Box::pin(std::future::ready(Ok(record)))
    }

    fn open_records(&self) -> StoreFuture<'_, Vec<(RequestKey, Record)>> {
        let open = self
            .lock()
            .iter()
            .filter(|(_, r)| r.is_open())
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        Box::pin(std::future::ready(Ok(open)))
    }

    fn purge(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        let mut records = self.lock();
        let before = records.len();
        records.retain(|_, r| r.is_open() || r.accepted_at_ms >= before_ms);
        let removed = before - records.len();
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
}
