//! The core's store contract (`stackhook::journal::contract`, the
//! `contract-tests` feature) against PostgreSQL through the `Store` trait,
//! for one replica and for two on one schema; and what only a shared store
//! must do besides.

mod common;

use std::sync::Arc;
use std::time::Duration;

use stackhook::journal::{Acceptance, Channel, Record, RequestKey, Stage, Store, contract};
use stackhook::response::{Data, Response};

use common::record;

/// Every case of the core's contract, on one replica.
#[tokio::test]
async fn the_store_contract_holds() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("contract");
    let store = common::store(&url, &schema, "a").await;
    contract::all(&store).await;
    common::drop_schema(&url, &schema).await;
}

/// The contract's two-replica cases: a peer's claim fences the replica
/// that released the record (`stackhook::Error::Fenced`), and a sync
/// answer reaches a waiter on the other replica.
#[tokio::test]
async fn the_two_replica_contract_holds() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("contract2");
    let a = common::store(&url, &schema, "a").await;
    let b = common::store(&url, &schema, "b").await;
    contract::peers_fence_each_other(&a, &b).await;
    contract::a_sync_answer_reaches_a_peer(&a, &b).await;
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
