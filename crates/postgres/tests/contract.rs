//! The core's store contract (`stackhook::journal::contract`, private to
//! the core crate), case for case, against PostgreSQL through the `Store`
//! trait.

mod common;

use std::sync::Arc;
use std::time::Duration;

use stackhook::journal::{Acceptance, Channel, Record, RequestKey, Stage, Store};
use stackhook::response::{Data, Response, Status};

use common::record;

/// A FAILED answer to `record`'s request, delivered or not.
fn answered(record: &Record, delivered: bool) -> Stage {
    Stage::Answered {
        response: Arc::new(Response::failed(&record.request, "pid", "x")),
        delivered,
    }
}

async fn is_open(store: &dyn Store, key: &RequestKey) -> bool {
    store
        .open_records()
        .await
        .expect("open")
        .iter()
        .any(|(k, _)| k == key)
}

#[tokio::test]
async fn accept_inserts_once() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("accept_once");
    let store = common::store(&url, &schema, "a").await;
    let (key, rec) = record("r1", Channel::Async);
    assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
    let again = store.accept(&key, &rec).await.expect("accept");
    assert_eq!(again.map(|r| r.stage), Some(Stage::Running));
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn accept_early_decides_once() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("accept_early");
    let store = common::store(&url, &schema, "a").await;
    let (key, rec) = record("early", Channel::Async);
    let Acceptance::Inserted(durable) = store.accept_early(&key, &rec).await.expect("accept")
    else {
        panic!("a new key is inserted");
    };
    let Acceptance::Existing(existing) = store.accept_early(&key, &rec).await.expect("again")
    else {
        panic!("the decision holds");
    };
    assert_eq!(existing, rec);
    durable.await.expect("durable");
    assert_eq!(store.get(&key).await.expect("get"), Some(rec.clone()));
    common::drop_schema(&url, &schema).await;
}

/// Of many accepts of one key at once, from two replicas, exactly one
/// inserts; the others see its record.
#[tokio::test]
async fn concurrent_accepts_across_replicas_insert_once() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("accept_race");
    let a = Arc::new(common::store(&url, &schema, "a").await);
    let b = Arc::new(common::store(&url, &schema, "b").await);
    for round in 0..5 {
        let (key, rec) = record(&format!("race-{round}"), Channel::Async);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            let (key, rec) = (key.clone(), rec.clone());
            tasks.push(tokio::spawn(async move {
                store.accept(&key, &rec).await.expect("accept")
            }));
        }
        let mut inserted = 0;
        for task in tasks {
            match task.await.expect("task") {
                None => inserted += 1,
                Some(existing) => assert_eq!(existing, rec),
            }
        }
        assert_eq!(inserted, 1, "round {round}");
    }
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn open_records_track_the_outbox() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("outbox");
    let store = common::store(&url, &schema, "a").await;
    let (key, mut rec) = record("r2", Channel::Async);
    store.accept(&key, &rec).await.expect("accept");
    assert!(is_open(&store, &key).await);
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
    assert!(!is_open(&store, &key).await);
    let stored = store.get(&key).await.expect("get").expect("present");
    assert!(
        matches!(stored.stage, Stage::Answered { ref response, delivered: true } if response.status == Status::Failed)
    );
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn eventual_writes_are_read_back() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("eventual");
    let store = common::store(&url, &schema, "a").await;
    let (key, mut rec) = record("eventual", Channel::Async);
    store.accept(&key, &rec).await.expect("accept");
    rec.stage = answered(&rec, true);
    store.put_eventually(&key, &rec).await.expect("queued");
    // A later accept, as a redelivered request makes, sees it at once.
    let seen = store.accept(&key, &rec).await.expect("accept");
    assert_eq!(seen.map(|r| r.stage), Some(rec.stage.clone()));
    store.flush().await.expect("flush");
    let read = store.get(&key).await.expect("get").expect("present");
    assert_eq!(read.stage, rec.stage);
    assert!(!is_open(&store, &key).await);
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn purge_removes_only_old_closed_records() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("purge");
    let store = common::store(&url, &schema, "a").await;
    let (old_key, mut old) = record("old", Channel::Async);
    old.accepted_at_ms = 1_000;
    old.stage = answered(&old, true);
    store.put(&old_key, &old).await.expect("put");
    let (open_key, mut open) = record("old-open", Channel::Async);
    open.accepted_at_ms = 1_000;
    store.put(&open_key, &open).await.expect("put");
    let (new_key, new) = record("new", Channel::Async);
    store.put(&new_key, &new).await.expect("put");
    assert_eq!(store.purge(2_000).await.expect("purge"), 1);
    assert!(store.get(&old_key).await.expect("get").is_none());
    assert!(store.get(&open_key).await.expect("get").is_some());
    assert!(store.get(&new_key).await.expect("get").is_some());
    open.stage = answered(&open, true);
    store.put(&open_key, &open).await.expect("put");
    assert_eq!(store.purge(2_000).await.expect("purge"), 1);
    common::drop_schema(&url, &schema).await;
}

/// The keys `write_every_kind` writes, as in the core's contract.
const KINDS: [&str; 5] = [
    "kind-accepted",
    "kind-polling",
    "kind-delivered-from-the-outbox",
    "kind-rerun-answer",
    "kind-sync-reply",
];

fn kind(i: usize) -> (RequestKey, Record) {
    let channel = if KINDS[i] == "kind-sync-reply" {
        Channel::Sync
    } else {
        Channel::Async
    };
    record(KINDS[i], channel)
}

fn final_stage(i: usize) -> Stage {
    let (_, record) = kind(i);
    match KINDS[i] {
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

/// Every kind of write whose loss would change an answer, made as the
/// runtime makes them, ending with writes nobody waits for and no flush:
/// another replica (a second store) reads all of them soon after, so they
/// were committed without a durable write to carry them.
#[tokio::test]
async fn unawaited_writes_reach_the_database_without_a_flush() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("every_kind");
    let store = common::store(&url, &schema, "a").await;
    let mut later = Vec::new();
    for (i, name) in KINDS.iter().enumerate() {
        let (key, mut record) = kind(i);
        match store.accept_early(&key, &record).await.expect("accept") {
            Acceptance::Inserted(durable) => durable.await.expect("durable"),
            Acceptance::Existing(_) => panic!("{key} was new"),
        }
        match final_stage(i) {
            Stage::Running => {}
            stage @ Stage::Polling { .. } => {
                record.stage = stage;
                store.put(&key, &record).await.expect("put");
            }
            Stage::Answered { response, .. } => {
                if *name == "kind-delivered-from-the-outbox" {
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
    let reader = common::store(&url, &schema, "b").await;
    // Far above LINGER plus a commit; the loop ends as soon as they are in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = true;
        for i in 0..KINDS.len() {
            let (key, expected) = kind(i);
            let held = reader.get(&key).await.expect("get");
            let held = held.unwrap_or_else(|| panic!("{key} lost"));
            assert_eq!(held.channel, expected.channel, "{key}");
            all &= held.stage == final_stage(i);
        }
        if all {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unawaited writes were never committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut open: Vec<String> = reader
        .open_records()
        .await
        .expect("open")
        .into_iter()
        .map(|(key, _)| key.request_id)
        .collect();
    open.sort();
    assert_eq!(open, ["kind-accepted", "kind-polling"]);
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn check_and_durability() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("check");
    let store = common::store(&url, &schema, "a").await;
    store.check().await.expect("healthy");
    assert!(store.is_durable());
    common::drop_schema(&url, &schema).await;
}

/// A request costs at most three round trips (accept, answer, delivered
/// mark), and under concurrency writes share statements: 200 requests at
/// once take fewer round trips than requests, where one statement per
/// write would take 600.
#[tokio::test]
async fn a_request_costs_at_most_three_round_trips() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("round_trips");
    let store = Arc::new(common::store(&url, &schema, "a").await);
    let before = store.round_trips();
    let requests = 200;
    let mut tasks = Vec::new();
    for i in 0..requests {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let (key, mut rec) = record(&format!("rt-{i}"), Channel::Async);
            assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
            let response = Arc::new(Response::failed(&rec.request, "pid", "x"));
            rec.stage = Stage::Answered {
                response: Arc::clone(&response),
                delivered: false,
            };
            store.put(&key, &rec).await.expect("outbox");
            rec.stage = Stage::Answered {
                response: Arc::clone(&response),
                delivered: true,
            };
            let body = response.to_body();
            store.put_delivered(&key, &rec, &body).await.expect("mark");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    store.flush().await.expect("flush");
    let used = store.round_trips() - before;
    assert!(
        used <= requests,
        "{used} round trips for {requests} requests"
    );
    assert!(store.open_records().await.expect("open").is_empty());
    common::drop_schema(&url, &schema).await;
}
