//! The requests running or waiting in this process, by key.
//!
//! A redelivery of a request that is still here must join it rather than run
//! the handler a second time, so every request has an entry from its
//! admission until its answer is queued for the journal.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use tokio::sync::{oneshot, watch};

use crate::journal::RequestKey;
use crate::request::Request;
use crate::response::Response;

/// Requests running or waiting in this process.
///
/// A running request's entry keeps the request and is found by comparing a
/// key's three identifiers with the request's in place, so admitting a
/// request copies no key (three allocations). A request that waits for its
/// next poll is [`RunningMap::park`]ed: its entry keeps a copy of its key
/// and lets the request go, so ten thousand waiting resources do not hold
/// their properties and callback URLs. Hashed with foldhash: a key is hashed
/// on every lookup, and SipHash was a visible share of a round trip's CPU
/// time; foldhash's per-process random seed still keeps crafted keys from
/// colliding at will.
#[derive(Debug, Default)]
pub(super) struct RunningMap {
    entries: HashTable<Entry>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Debug)]
struct Entry {
    hash: u64,
    held: Held,
    running: Running,
}

/// What an entry keeps to be found by.
#[derive(Debug)]
enum Held {
    /// A running request.
    Request(Arc<Request>),
    /// The key of a request waiting for its next poll.
    Key(RequestKey),
}

impl Held {
    fn ids(&self) -> Ids<'_> {
        match self {
            Held::Request(request) => ids(request),
            Held::Key(key) => key_ids(key),
        }
    }
}

/// A request in the running map: its answer once there is one, and a
/// channel to it for redeliveries that wait. The channel is made only when
/// a redelivery arrives, which most requests never see.
#[derive(Debug, Default)]
pub(super) struct Running {
    answer: Option<Arc<Response>>,
    watchers: Option<watch::Sender<Option<Arc<Response>>>>,
    /// Told when the answer reaches ROS, for an acknowledgement that may
    /// go out then rather than wait for the record's fsync.
    pub(super) delivered: Option<oneshot::Sender<()>>,
}

impl Running {
    /// A receiver that sees the answer, now or when it comes.
    pub(super) fn subscribe(&mut self) -> watch::Receiver<Option<Arc<Response>>> {
        let answer = &self.answer;
        self.watchers
            .get_or_insert_with(|| watch::channel(answer.clone()).0)
            .subscribe()
    }

    /// Keep the answer and pass it to every waiting redelivery.
    pub(super) fn answer(&mut self, response: &Arc<Response>) {
        self.answer = Some(Arc::clone(response));
        if let Some(watchers) = &self.watchers {
            watchers.send_replace(Some(Arc::clone(response)));
        }
    }
}

/// Where [`RunningMap::entry`] found a request's key.
pub(super) enum Slot<'a> {
    /// Another arrival of the same request is here.
    Taken(&'a mut Running),
    /// Not here; [`Vacant::insert`] adds it.
    Vacant(Vacant<'a>),
}

/// A key not in the map, ready to be added.
pub(super) struct Vacant<'a> {
    entry: hashbrown::hash_table::VacantEntry<'a, Entry>,
    hash: u64,
    request: &'a Arc<Request>,
}

impl Vacant<'_> {
    /// Add the request with `running`.
    pub(super) fn insert(self, running: Running) {
        self.entry.insert(Entry {
            hash: self.hash,
            held: Held::Request(Arc::clone(self.request)),
            running,
        });
    }
}

impl RunningMap {
    fn hash(&self, ids: Ids<'_>) -> u64 {
        self.hasher.hash_one(ids)
    }

    /// The entry of `request`'s key, or the place to add it: one lookup.
    pub(super) fn entry<'a>(&'a mut self, request: &'a Arc<Request>) -> Slot<'a> {
        let hash = self.hash(ids(request));
        let found = self.entries.entry(
            hash,
            |entry| entry.held.ids() == ids(request),
            |entry| entry.hash,
        );
        match found {
            TableEntry::Occupied(entry) => Slot::Taken(&mut entry.into_mut().running),
            TableEntry::Vacant(entry) => Slot::Vacant(Vacant {
                entry,
                hash,
                request,
            }),
        }
    }

    /// Add `request`, replacing any entry of its key.
    pub(super) fn insert(&mut self, request: &Arc<Request>, running: Running) {
        self.replace(Held::Request(Arc::clone(request)), running);
    }

    /// Add a request waiting for its next poll, by its key.
    pub(super) fn insert_waiting(&mut self, key: RequestKey) {
        self.replace(Held::Key(key), Running::default());
    }

    fn replace(&mut self, held: Held, running: Running) {
        let hash = self.hash(held.ids());
        let found = self.entries.entry(
            hash,
            |entry| entry.held.ids() == held.ids(),
            |entry| entry.hash,
        );
        let entry = Entry {
            hash,
            held,
            running,
        };
        match found {
            TableEntry::Occupied(mut occupied) => *occupied.get_mut() = entry,
            TableEntry::Vacant(vacant) => {
                vacant.insert(entry);
            }
        }
    }

    /// Let go of the request of `key`, which now waits for its next poll:
    /// its entry keeps a copy of the key instead.
    pub(super) fn park(&mut self, key: &RequestKey) {
        let hash = self.hash(key_ids(key));
        if let Some(entry) = self
            .entries
            .find_mut(hash, |entry| entry.held.ids() == key_ids(key))
            && matches!(entry.held, Held::Request(_))
        {
            entry.held = Held::Key(key.clone());
        }
    }

    pub(super) fn get_mut(&mut self, key: &RequestKey) -> Option<&mut Running> {
        let hash = self.hash(key_ids(key));
        self.entries
            .find_mut(hash, |entry| entry.held.ids() == key_ids(key))
            .map(|entry| &mut entry.running)
    }

    pub(super) fn remove(&mut self, key: &RequestKey) -> Option<Running> {
        let hash = self.hash(key_ids(key));
        self.entries
            .find_entry(hash, |entry| entry.held.ids() == key_ids(key))
            .ok()
            .map(|entry| entry.remove().0.running)
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A key's identifiers: stack, logical resource and request id.
type Ids<'a> = (&'a str, &'a str, &'a str);

fn ids(request: &Request) -> Ids<'_> {
    (
        &request.stack_id,
        &request.logical_resource_id,
        &request.request_id,
    )
}

fn key_ids(key: &RequestKey) -> Ids<'_> {
    (&key.stack_id, &key.logical_resource_id, &key.request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestType;

    fn request(stack: &str, logical: &str, id: &str) -> Arc<Request> {
        Arc::new(Request::new(
            RequestType::Create,
            "Custom::Echo",
            logical,
            stack,
            id,
        ))
    }

    #[test]
    fn a_request_is_found_by_its_key_until_removed() {
        let mut map = RunningMap::default();
        let first = request("s", "l", "r1");
        let Slot::Vacant(vacant) = map.entry(&first) else {
            panic!("an empty map has no entry");
        };
        vacant.insert(Running::default());
        let key = RequestKey::of(&first);
        assert!(map.get_mut(&key).is_some());
        // A redelivery is another `Request` with the same identifiers.
        assert!(matches!(
            map.entry(&request("s", "l", "r1")),
            Slot::Taken(_)
        ));
        assert!(map.remove(&key).is_some());
        assert!(map.get_mut(&key).is_none());
        assert!(map.remove(&key).is_none());
        assert!(map.is_empty());
    }

    #[test]
    fn keys_differing_in_any_identifier_or_their_split_are_apart() {
        let mut map = RunningMap::default();
        let requests = [
            request("s", "l", "r"),
            request("s", "l", "r2"),
            request("s", "l2", "r"),
            request("s2", "l", "r"),
            // The same bytes, split between the identifiers differently.
            request("sl", "", "r"),
            request("s", "lr", ""),
        ];
        for request in &requests {
            map.insert(request, Running::default());
        }
        for request in &requests {
            let key = RequestKey::of(request);
            assert!(map.remove(&key).is_some(), "{key} was not kept apart");
        }
        assert!(map.is_empty());
    }

    #[test]
    fn a_parked_request_is_let_go_and_still_found_by_its_key() {
        let mut map = RunningMap::default();
        let parked = request("s", "l", "r");
        map.insert(&parked, Running::default());
        let key = RequestKey::of(&parked);
        map.park(&key);
        assert_eq!(Arc::strong_count(&parked), 1, "the map let the request go");
        assert!(matches!(map.entry(&request("s", "l", "r")), Slot::Taken(_)));
        // Parking twice, or a key that is not there, changes nothing.
        map.park(&key);
        map.park(&RequestKey::of(&request("s", "l", "other")));
        assert!(map.remove(&key).is_some());
        assert!(map.is_empty());
    }

    #[test]
    fn a_waiting_request_from_the_journal_is_found_by_its_key() {
        let mut map = RunningMap::default();
        let waiting = request("s", "l", "r");
        map.insert_waiting(RequestKey::of(&waiting));
        map.insert_waiting(RequestKey::of(&waiting));
        assert!(matches!(map.entry(&waiting), Slot::Taken(_)));
        assert!(map.remove(&RequestKey::of(&waiting)).is_some());
        assert!(map.is_empty());
    }

    #[test]
    fn an_insert_of_a_present_key_replaces_its_entry() {
        let mut map = RunningMap::default();
        let first = request("s", "l", "r");
        map.insert(&first, Running::default());
        let (delivered, _on_delivery) = oneshot::channel();
        map.insert(
            &request("s", "l", "r"),
            Running {
                delivered: Some(delivered),
                ..Running::default()
            },
        );
        let running = map.remove(&RequestKey::of(&first));
        assert!(running.is_some_and(|r| r.delivered.is_some()));
        assert!(map.is_empty());
    }

    #[test]
    fn redeliveries_see_the_answer_whenever_they_arrive() {
        let request = request("stack", "Res", "r1");
        let response = Arc::new(Response::failed(request.as_ref(), "id", "the answer"));
        let mut running = Running::default();
        let early = running.subscribe();
        assert!(early.borrow().is_none(), "no answer yet");
        running.answer(&response);
        let late = running.subscribe();
        for receiver in [early, late] {
            let seen = receiver.borrow().clone().expect("the answer");
            assert!(Arc::ptr_eq(&seen, &response));
        }
    }

    #[test]
    fn a_request_nobody_redelivers_gets_no_channel() {
        let request = request("stack", "Res", "r1");
        let mut running = Running::default();
        running.answer(&Arc::new(Response::failed(
            request.as_ref(),
            "id",
            "the answer",
        )));
        assert!(running.watchers.is_none());
    }
}
