//! The core's store contract (`stackhook::journal::contract`, the
//! `contract-tests` feature) against PostgreSQL through the `Store` trait,
//! for one replica and for two on one schema; and what only a shared store
//! must do besides.

mod common;

use std::sync::Arc;
use std::time::Duration;

use stackhook::journal::{Channel, Record, Stage, Store, contract};
use stackhook::response::Response;

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
/// that released the record (`stackhook::Error::Fenced`), a sync answer
/// reaches a waiter on the other replica, and a parked poll goes to the
/// peer once due.
#[tokio::test]
async fn the_two_replica_contract_holds() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("contract2");
    let a = common::store(&url, &schema, "a").await;
    let b = common::store(&url, &schema, "b").await;
    contract::peers_fence_each_other(&a, &b).await;
    contract::a_sync_answer_reaches_a_peer(&a, &b).await;
    contract::a_peer_claims_a_parked_poll_when_due(&a, &b).await;
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

/// Accepts of new and of known keys sent at once share statements, and
/// each gets its own outcome: a new key is inserted, a known one returns
/// the record already there (not another accept's, not the new record).
#[tokio::test]
async fn accepts_in_one_group_each_get_their_own_outcome() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("accept_mix");
    let store = common::store(&url, &schema, "a").await;
    let mut known = Vec::new();
    for i in 0..16 {
        let (key, mut rec) = record(&format!("known-{i}"), Channel::Async);
        rec.stage = contract::answered(&rec, true);
        assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
        known.push((key, rec));
    }
    let fresh: Vec<_> = (0..16)
        .map(|i| record(&format!("fresh-{i}"), Channel::Async))
        .collect();
    let before = store.round_trips();
    let again: Vec<_> = known
        .iter()
        .map(|(key, rec)| {
            (
                key.clone(),
                Record::accepted(Arc::clone(&rec.request), Channel::Async),
            )
        })
        .collect();
    let outcomes = futures_util::future::join_all(
        again
            .iter()
            .chain(fresh.iter())
            .map(|(key, rec)| store.accept(key, rec)),
    )
    .await;
    let statements = store.round_trips() - before;
    assert!(
        statements < 8,
        "32 accepts sent at once took {statements} statements"
    );
    for (outcome, (_, first)) in outcomes[..16].iter().zip(&known) {
        assert_eq!(outcome.as_ref().expect("accept"), &Some(first.clone()));
    }
    for outcome in &outcomes[16..] {
        assert_eq!(outcome.as_ref().expect("accept"), &None);
    }
    for (key, rec) in &fresh {
        assert_eq!(store.get(key).await.expect("get"), Some(rec.clone()));
    }
    common::drop_schema(&url, &schema).await;
}

/// Unawaited writes land in the order they were made, and a flush waits
/// for all of them: two unawaited writes per key over many keys, then one
/// flush, and another replica reads every key's second write.
#[tokio::test]
async fn unawaited_writes_land_in_order_and_a_flush_waits_for_them() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("flush_order");
    let store = common::store(&url, &schema, "a").await;
    let mut last = Vec::new();
    for i in 0..64 {
        let (key, rec) = record(&format!("order-{i}"), Channel::Async);
        assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
        let answered = Record {
            stage: contract::answered(&rec, false),
            ..rec.clone()
        };
        store.put_eventually(&key, &answered).await.expect("queue");
        let delivered = Record {
            stage: contract::answered(&rec, true),
            ..rec
        };
        store.put_eventually(&key, &delivered).await.expect("queue");
        last.push((key, delivered));
    }
    store.flush().await.expect("flush");
    let reader = common::store(&url, &schema, "b").await;
    for (key, rec) in &last {
        assert_eq!(
            reader.get(key).await.expect("get").as_ref(),
            Some(rec),
            "{key}"
        );
    }
    common::drop_schema(&url, &schema).await;
}

/// Every kind of write whose loss would change an answer, made as the
/// runtime makes them, ending with writes nobody waits for and no flush
/// (`contract::write_every_kind`): another replica (a second store) reads
/// all of them soon after, so they were committed without a durable write
/// to carry them.
#[tokio::test]
async fn unawaited_writes_reach_the_database_without_a_flush() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("every_kind");
    let store = common::store(&url, &schema, "a").await;
    contract::write_every_kind(&store).await;
    let reader = common::store(&url, &schema, "b").await;
    // Far above LINGER plus a commit; the loop ends as soon as they are in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !contract::every_kind_has_arrived(&reader).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "unawaited writes were never committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    contract::holds_every_kind(&reader).await;
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
