//! Ownership for the embedded stores, which have a single owner: the
//! process that opened them.
//!
//! Such a store holds every record it accepts or writes, at epoch 1, and
//! its leases never run out while the process lives. What it can give up
//! is what [`Store::release`](super::Store::release) releases (at
//! shutdown), and what a durable store finds open when it is opened: the
//! records of the process before, whose leases ended with it. Those are
//! free, and [`Store::claim`](super::Store::claim) takes them, raising
//! their epoch; so does a write to one (as a shared store lets a write take
//! a free record). Nothing here fences a write: only another owner could
//! hold a record, and there is none.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Claimed, Record, RequestKey};
use crate::sync::lock;

/// Which records a single-owner store has given up, and the epochs of
/// those it took back.
#[derive(Debug, Default)]
pub(crate) struct SingleOwner {
    /// Whether `free` may hold anything: lets a write skip the lock.
    any_free: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: HashSet<RequestKey>,
    /// Epochs above 1, of records claimed at least once.
    epochs: HashMap<RequestKey, u64>,
}

impl SingleOwner {
    /// An owner for whom the records `free` (left open by the process
    /// before) are free to claim. Only a durable store has such records.
    #[cfg(feature = "redb")]
    pub(crate) fn with_free(free: impl IntoIterator<Item = RequestKey>) -> Self {
        let free: HashSet<RequestKey> = free.into_iter().collect();
        SingleOwner {
            any_free: AtomicBool::new(!free.is_empty()),
            state: Mutex::new(State {
                free,
                epochs: HashMap::new(),
            }),
        }
    }

    /// A write to `key` takes it if it was free.
    pub(crate) fn took(&self, key: &RequestKey) {
        if !self.any_free.load(Ordering::Acquire) {
            return;
        }
        let mut state = lock(&self.state);
        if state.free.remove(key) {
            bump(&mut state.epochs, key);
        }
        if state.free.is_empty() {
            self.any_free.store(false, Ordering::Release);
        }
    }

    /// Take up to `limit` of the free records among `open`, oldest first.
    pub(crate) fn claim(&self, mut open: Vec<(RequestKey, Record)>, limit: usize) -> Vec<Claimed> {
        if !self.any_free.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut state = lock(&self.state);
        open.retain(|(key, _)| state.free.contains(key));
        open.sort_by_key(|(_, record)| record.accepted_at_ms);
        open.truncate(limit);
        let claims = open
            .into_iter()
            .map(|(key, record)| {
                state.free.remove(&key);
                let epoch = bump(&mut state.epochs, &key);
                Claimed { key, record, epoch }
            })
            .collect();
        // Free keys that are closed now (answered since) need no claim.
        if state.free.is_empty() {
            self.any_free.store(false, Ordering::Release);
        }
        claims
    }

    /// How many of `open` this owner holds.
    pub(crate) fn held(&self, open: &[(RequestKey, Record)]) -> u64 {
        if !self.any_free.load(Ordering::Acquire) {
            return open.len() as u64;
        }
        let state = lock(&self.state);
        open.iter()
            .filter(|(key, _)| !state.free.contains(key))
            .count() as u64
    }

    /// Give up every record of `open` this owner holds; how many.
    pub(crate) fn release(&self, open: Vec<(RequestKey, Record)>) -> u64 {
        let mut state = lock(&self.state);
        let mut released = 0;
        for (key, _) in open {
            if state.free.insert(key) {
                released += 1;
            }
        }
        self.any_free
            .store(!state.free.is_empty(), Ordering::Release);
        released
    }
}

/// Raise `key`'s epoch (1 when never claimed) and return it.
fn bump(epochs: &mut HashMap<RequestKey, u64>, key: &RequestKey) -> u64 {
    let epoch = epochs.entry(key.clone()).or_insert(1);
    *epoch += 1;
    *epoch
}
