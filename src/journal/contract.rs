//! The behaviour every [`Store`] must have, as async functions a store's
//! tests call against it (behind the `contract-tests` feature, for stores
//! in other crates): the core runs them against the memory and redb
//! stores, `stackhook-postgres` against a real PostgreSQL.
//!
//! Each case uses keys of its own, so they may share one store; [`all`]
//! runs every case for one store in turn. [`peers_fence_each_other`] and
//! [`a_sync_answer_reaches_a_peer`] need two replicas of one shared store.
//! The cases panic on a broken contract, as tests do.

use std::sync::Arc;
use std::time::Duration;

use super::{Acceptance, Channel, Record, RequestKey, Stage, Store};
use crate::request::{Request, RequestType};
use crate::response::{Data, Response, Status};

/// A freshly accepted async Create with request id `id`, and its key.
pub fn record(id: &str) -> (RequestKey, Record) {
    let request = Request::new(RequestType::Create, "Custom::T", "Res", "stack", id);
    (
        RequestKey::of(&request),
        Record::accepted(Arc::new(request), Channel::Async),
    )
}

/// A FAILED answer to `record`'s request, delivered or not.
pub fn answered(record: &Record, delivered: bool) -> Stage {
    Stage::Answered {
        response: Arc::new(Response::failed(&record.request, "pid", "x")),
        delivered,
    }
}

/// Whether `key` is among the store's open records.
pub async fn is_open(store: &dyn Store, key: &RequestKey) -> bool {
    store
        .open_records()
        .await
        .expect("open")
        .iter()
        .any(|(k, _)| k == key)
}

/// An accept inserts a new key once; a second finds the record.
pub async fn accept_inserts_once(store: &dyn Store) {
    let (key, rec) = record("r1");
    assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
    let again = store.accept(&key, &rec).await.expect("accept");
    assert_eq!(again.map(|r| r.stage), Some(Stage::Running));
}

/// An early accept decides like `accept`, and its insert is readable
/// once durable; a second one, early or not, finds it.
pub async fn accept_early_decides_once(store: &dyn Store) {
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

/// An undelivered answer is open (the outbox); a delivered one is not.
pub async fn open_records_track_the_outbox(store: &dyn Store) {
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

/// A write nobody waits for is seen by a later accept, and by a read
/// after a flush.
pub async fn eventual_writes_are_read_back(store: &dyn Store) {
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
pub async fn write_every_kind(store: &dyn Store) {
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

/// Whether every record [`write_every_kind`] wrote has reached `store` at
/// its last stage yet: for a reader that is another process or replica,
/// which sees the writes only once they are committed. Polled until true,
/// then [`holds_every_kind`] checks the rest.
pub async fn every_kind_has_arrived(store: &dyn Store) -> bool {
    for name in KINDS {
        let (key, _) = kind(name);
        match store.get(&key).await.expect("get") {
            Some(held) if held.stage == final_stage(name) => {}
            _ => return false,
        }
    }
    true
}

/// Whether `store` holds every write [`write_every_kind`] made: each
/// record at its last stage, on its channel, and only the running and
/// polling ones open.
pub async fn holds_every_kind(store: &dyn Store) {
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

/// Purge removes closed records older than the cut-off, and nothing open.
pub async fn purge_removes_only_old_closed_records(store: &dyn Store) {
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

/// Whether `claims` include `key`.
fn claimed(claims: &[super::Claimed], key: &RequestKey) -> Option<u64> {
    claims.iter().find(|c| &c.key == key).map(|c| c.epoch)
}

/// A replica holds what it accepts: its own records are not free to
/// claim, and a renewal counts them.
pub async fn accepted_records_are_held(store: &dyn Store) {
    assert!(!store.replica_id().is_empty(), "a replica has an id");
    let (key, rec) = record("held");
    assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
    let claims = store.claim(10_000).await.expect("claim");
    assert_eq!(claimed(&claims, &key), None, "a held record is not claimed");
    assert!(store.renew().await.expect("renew") >= 1, "renew counts it");
}

/// Released records are free: a claim takes them at a higher epoch, once;
/// closed ones are never claimed.
pub async fn released_records_are_claimed_once_at_a_higher_epoch(store: &dyn Store) {
    let (key, rec) = record("released");
    store.accept(&key, &rec).await.expect("accept");
    let (closed_key, mut closed) = record("released-closed");
    store.accept(&closed_key, &closed).await.expect("accept");
    closed.stage = answered(&closed, true);
    store.put(&closed_key, &closed).await.expect("put");
    assert!(store.release().await.expect("release") >= 1);
    let claims = store.claim(10_000).await.expect("claim");
    let epoch = claimed(&claims, &key).expect("a released record is claimed");
    assert!(epoch >= 2, "a claim raises the epoch (got {epoch})");
    assert_eq!(claimed(&claims, &closed_key), None, "closed: never claimed");
    let claim = claims.iter().find(|c| c.key == key).expect("claimed");
    assert_eq!(claim.record.stage, Stage::Running);
    let again = store.claim(10_000).await.expect("claim again");
    assert_eq!(claimed(&again, &key), None, "claimed once");
    // The claimer holds it now: it writes it, and renews it.
    let mut rec = claim.record.clone();
    rec.stage = answered(&rec, false);
    store.put(&key, &rec).await.expect("the claimer writes");
    assert!(store.renew().await.expect("renew") >= 1);
}

/// A write to a released record takes it back, so a claim does not.
pub async fn a_write_takes_a_released_record(store: &dyn Store) {
    let (key, mut rec) = record("retaken");
    store.accept(&key, &rec).await.expect("accept");
    store.release().await.expect("release");
    rec.stage = Stage::Polling {
        state: serde_json::json!({"step": 2}),
        next_poll_at_ms: 1,
        attempt: 1,
        data: Data::new(),
        physical_resource_id: None,
    };
    store
        .put(&key, &rec)
        .await
        .expect("a free record is writable");
    let claims = store.claim(10_000).await.expect("claim");
    assert_eq!(claimed(&claims, &key), None, "the write took it");
    assert_eq!(store.get(&key).await.expect("get"), Some(rec));
}

/// `record` waiting for a poll due at `next_poll_at_ms`.
fn polling(record: &Record, next_poll_at_ms: u64) -> Record {
    let mut record = record.clone();
    record.stage = Stage::Polling {
        state: serde_json::json!({"step": 1}),
        next_poll_at_ms,
        attempt: 1,
        data: Data::new(),
        physical_resource_id: None,
    };
    record
}

/// A parked record is written either way. A store that gives it up
/// (`park` returns `true`) lets a claim take it only once its poll is due,
/// at a higher epoch; one that keeps it holds it like any other record.
pub async fn parked_work_is_claimed_when_due(store: &dyn Store) {
    let (key, rec) = record("parked");
    store.accept(&key, &rec).await.expect("accept");
    let later = polling(&rec, super::now_ms() + 3_600_000);
    let released = store.park(&key, &later).await.expect("park");
    assert_eq!(store.get(&key).await.expect("get"), Some(later.clone()));
    assert!(is_open(store, &key).await, "parked work is open");
    let claims = store.claim(10_000).await.expect("claim");
    assert_eq!(claimed(&claims, &key), None, "not due: nobody claims it");
    if !released {
        assert!(store.renew().await.expect("renew") >= 1, "kept: held");
        return;
    }
    // Parked again, due now (a write takes a free record): claimed once.
    let due = polling(&rec, super::now_ms().saturating_sub(1));
    assert!(store.park(&key, &due).await.expect("park again"));
    let claims = store.claim(10_000).await.expect("claim");
    let epoch = claimed(&claims, &key).expect("a due parked record is claimed");
    assert!(epoch >= 2, "a claim raises the epoch (got {epoch})");
    let claim = claims.iter().find(|c| c.key == key).expect("claimed");
    assert_eq!(claim.record, due);
    let again = store.claim(10_000).await.expect("claim again");
    assert_eq!(claimed(&again, &key), None, "claimed once");
    let mut done = due.clone();
    done.stage = answered(&done, true);
    store.put(&key, &done).await.expect("the claimer answers");
}

/// Waiting for an answer returns it once it is written, and `None` when
/// none comes in time or there is no such record.
pub async fn wait_for_answer_returns_the_answer_or_none(store: &dyn Store) {
    let (key, mut rec) = record("waited");
    rec.channel = Channel::Sync;
    store.accept(&key, &rec).await.expect("accept");
    let none = store
        .wait_for_answer(&key, Duration::from_millis(50))
        .await
        .expect("wait");
    assert_eq!(none, None, "not answered yet");
    let (missing, _) = record("waited-missing");
    let none = store
        .wait_for_answer(&missing, Duration::from_millis(10))
        .await
        .expect("wait");
    assert_eq!(none, None, "no record");
    let response = Arc::new(Response::success(&rec.request, "pid", Data::new()));
    rec.stage = Stage::Answered {
        response: Arc::clone(&response),
        delivered: true,
    };
    let answer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.put_eventually(&key, &rec).await.expect("answer");
    };
    let (waited, ()) = tokio::join!(store.wait_for_answer(&key, Duration::from_secs(5)), answer);
    assert_eq!(waited.expect("wait"), Some(response));
}

/// `try_purge` purges when nobody else is purging.
pub async fn try_purge_purges_old_closed_records(store: &dyn Store) {
    let (key, mut old) = record("try-purge-old");
    old.accepted_at_ms = 1_000;
    old.stage = answered(&old, true);
    store.put(&key, &old).await.expect("put");
    let removed = store.try_purge(2_000).await.expect("purge");
    assert!(matches!(removed, Some(n) if n >= 1), "{removed:?}");
    assert!(store.get(&key).await.expect("get").is_none());
}

/// A record just accepted is this replica's for a while yet
/// ([`Store::hold_to_answer`]), so its answer can be given before it is
/// journaled, and written after a release.
pub async fn a_fresh_accept_is_held_for_its_answer(store: &dyn Store) {
    let (key, mut rec) = record("held-to-answer");
    store.accept(&key, &rec).await.expect("accept");
    let hold = store
        .hold_to_answer(&key)
        .expect("a fresh accept is certainly held");
    assert!(hold >= Duration::from_secs(1), "held for {hold:?}");
    // A shared store keeps it from its peers (its own tests check that).
    store.release().await.expect("release");
    rec.stage = answered(&rec, true);
    store
        .put(&key, &rec)
        .await
        .expect("its answer is written after the release");
    assert_eq!(store.get(&key).await.expect("get"), Some(rec));
}

/// Every case for one store, in turn, sharing it.
pub async fn all(store: &dyn Store) {
    accept_inserts_once(store).await;
    accept_early_decides_once(store).await;
    open_records_track_the_outbox(store).await;
    eventual_writes_are_read_back(store).await;
    purge_removes_only_old_closed_records(store).await;
    accepted_records_are_held(store).await;
    released_records_are_claimed_once_at_a_higher_epoch(store).await;
    a_write_takes_a_released_record(store).await;
    parked_work_is_claimed_when_due(store).await;
    wait_for_answer_returns_the_answer_or_none(store).await;
    try_purge_purges_old_closed_records(store).await;
    a_fresh_accept_is_held_for_its_answer(store).await;
}

/// Two replicas `a` and `b` of one shared store: once `b` has claimed what
/// `a` released, `a`'s writes to it fail with
/// [`Error::Fenced`](crate::Error::Fenced) and `b`'s succeed.
pub async fn peers_fence_each_other(a: &dyn Store, b: &dyn Store) {
    assert_ne!(a.replica_id(), b.replica_id(), "two replicas");
    let (key, rec) = record("fenced");
    a.accept(&key, &rec).await.expect("accept");
    assert_eq!(
        claimed(&b.claim(10_000).await.expect("claim"), &key),
        None,
        "a live lease is not claimed"
    );
    a.release().await.expect("release");
    let claims = b.claim(10_000).await.expect("claim");
    assert!(claimed(&claims, &key).expect("claimed by b") >= 2);
    let mut late = rec.clone();
    late.stage = answered(&late, false);
    let error = a.put(&key, &late).await.expect_err("a is fenced");
    assert!(error.is_fenced(), "a typed fence, not {error}");
    let mut fresh = rec.clone();
    fresh.stage = Stage::Answered {
        response: Arc::new(Response::success(&rec.request, "pid", Data::new())),
        delivered: false,
    };
    b.put(&key, &fresh).await.expect("b owns it");
    assert_eq!(b.get(&key).await.expect("get"), Some(fresh));
}

/// A poll `a` parked is claimed by `b` once due, and `a` is fenced from it
/// from then on. For stores that give parked work up.
pub async fn a_peer_claims_a_parked_poll_when_due(a: &dyn Store, b: &dyn Store) {
    let (key, rec) = record("parked-peer");
    a.accept(&key, &rec).await.expect("accept");
    let soon = polling(&rec, super::now_ms() + 300);
    assert!(a.park(&key, &soon).await.expect("park"), "a gives it up");
    assert_eq!(
        claimed(&b.claim(10_000).await.expect("claim"), &key),
        None,
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claims = b.claim(10_000).await.expect("claim");
    assert!(claimed(&claims, &key).expect("claimed by b once due") >= 2);
    let mut late = soon.clone();
    late.stage = answered(&late, false);
    let error = a.put(&key, &late).await.expect_err("a is fenced");
    assert!(error.is_fenced(), "a typed fence, not {error}");
    let mut done = soon.clone();
    done.stage = answered(&done, false);
    b.put(&key, &done).await.expect("b owns it");
}

/// A sync answer `a` writes reaches a waiter on `b`.
pub async fn a_sync_answer_reaches_a_peer(a: &dyn Store, b: &dyn Store) {
    let (key, mut rec) = record("peer-answer");
    rec.channel = Channel::Sync;
    a.accept(&key, &rec).await.expect("accept");
    let response = Arc::new(Response::success(&rec.request, "pid", Data::new()));
    rec.stage = Stage::Answered {
        response: Arc::clone(&response),
        delivered: true,
    };
    let answer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.put_eventually(&key, &rec).await.expect("answer");
    };
    let (waited, ()) = tokio::join!(b.wait_for_answer(&key, Duration::from_secs(5)), answer);
    assert_eq!(waited.expect("wait"), Some(response));
}
