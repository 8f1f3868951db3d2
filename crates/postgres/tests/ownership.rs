//! Ownership across replicas: claims, leases, fencing, answers seen from
//! another replica, and purging by one replica at a time.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use stackhook::journal::{Channel, Stage, Store};
use stackhook::response::{Data, Response};
use stackhook_postgres::{Error, Ownership};

use common::record;

#[tokio::test]
async fn live_leases_are_not_claimed_and_expired_ones_are() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("claim_expired");
    let a = common::store(&url, &schema, "a").await;
    let b = common::store(&url, &schema, "b").await;
    let raw = common::raw(&url).await;
    let (key, rec) = record("k", Channel::Async);
    a.accept(&key, &rec).await.expect("accept");
    assert_eq!(a.epoch(&key), Some(1));
    assert!(
        b.claim(10).await.expect("claim").is_empty(),
        "a's lease is live"
    );

    common::expire(&raw, &schema, &key).await;
    let claims = b.claim(10).await.expect("claim");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].key, key);
    assert_eq!(claims[0].record, rec);
    assert_eq!(claims[0].epoch, 2);
    assert_eq!(b.epoch(&key), Some(2));
    let ownership = b.ownership(&key).await.expect("read").expect("row");
    assert_eq!(
        ownership,
        Ownership {
            owner: Some("b".into()),
            epoch: 2,
            lease_live: true
        }
    );
    assert!(
        a.claim(10).await.expect("claim").is_empty(),
        "b's lease is live"
    );
    common::drop_schema(&url, &schema).await;
}

/// A lease left to run out (no renewal) makes the record claimable.
#[tokio::test]
async fn a_lease_that_runs_out_is_claimable() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("lease_runs_out");
    let a = common::store_with_lease(&url, &schema, "a", Duration::from_millis(300)).await;
    let b = common::store(&url, &schema, "b").await;
    let (key, rec) = record("k", Channel::Async);
    a.accept(&key, &rec).await.expect("accept");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let claims = b.claim(10).await.expect("claim");
        if let Some(claim) = claims.first() {
            assert_eq!(claim.key, key);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never claimable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::drop_schema(&url, &schema).await;
}

/// A row another transaction has locked is skipped, not waited for.
#[tokio::test]
async fn claim_skips_locked_rows() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("claim_skips");
    let a = common::store(&url, &schema, "a").await;
    let b = common::store(&url, &schema, "b").await;
    let mut raw = common::raw(&url).await;
    let (locked, rec) = record("locked", Channel::Async);
    let (free, free_rec) = record("free", Channel::Async);
    a.accept(&locked, &rec).await.expect("accept");
    a.accept(&free, &free_rec).await.expect("accept");
    common::expire(&raw, &schema, &locked).await;
    common::expire(&raw, &schema, &free).await;

    let txn = raw.transaction().await.expect("begin");
    txn.query(
        &format!("SELECT 1 FROM {schema}.records WHERE key = $1 FOR UPDATE"),
        &[&locked.encode()],
    )
    .await
    .expect("lock the row");
    let claims = tokio::time::timeout(Duration::from_secs(10), b.claim(10))
        .await
        .expect("claim does not wait for the lock")
        .expect("claim");
    let keys: Vec<_> = claims.iter().map(|c| c.key.clone()).collect();
    assert_eq!(keys, std::slice::from_ref(&free));
    txn.rollback().await.expect("unlock");
    let claims = b.claim(10).await.expect("claim");
    let keys: Vec<_> = claims.iter().map(|c| c.key.clone()).collect();
    assert_eq!(keys, [locked]);
    common::drop_schema(&url, &schema).await;
}

/// Replicas claiming at once split the work: every record goes to one.
#[tokio::test]
async fn concurrent_claims_split_the_work() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("claim_split");
    let dead = common::store(&url, &schema, "dead").await;
    let raw = common::raw(&url).await;
    let mut keys = HashSet::new();
    for i in 0..40 {
        let (key, rec) = record(&format!("w{i}"), Channel::Async);
        dead.accept(&key, &rec).await.expect("accept");
        common::expire(&raw, &schema, &key).await;
        keys.insert(key);
    }
    let a = Arc::new(common::store(&url, &schema, "a").await);
    let b = Arc::new(common::store(&url, &schema, "b").await);
    let mut tasks = Vec::new();
    for store in [&a, &b, &a, &b] {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = store.claim(3).await.expect("claim");
                if claims.is_empty() {
                    return mine;
                }
                mine.extend(claims.into_iter().map(|c| c.key));
            }
        }));
    }
    let mut claimed = HashSet::new();
    for task in tasks {
        for key in task.await.expect("task") {
            assert!(claimed.insert(key.clone()), "{key} claimed twice");
        }
    }
    assert_eq!(claimed, keys);
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn renew_extends_every_lease_of_the_replica_in_one_statement() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("renew");
    let a = common::store_with_lease(&url, &schema, "a", Duration::from_secs(60)).await;
    let b = common::store(&url, &schema, "b").await;
    let raw = common::raw(&url).await;
    for i in 0..3 {
        let (key, rec) = record(&format!("a{i}"), Channel::Async);
        a.accept(&key, &rec).await.expect("accept");
        common::expire(&raw, &schema, &key).await;
    }
    let (other, rec) = record("b0", Channel::Async);
    b.accept(&other, &rec).await.expect("accept");
    // A closed record of a's has no lease to renew.
    let (closed, mut closed_rec) = record("a-closed", Channel::Async);
    a.accept(&closed, &closed_rec).await.expect("accept");
    closed_rec.stage = Stage::Answered {
        response: Arc::new(Response::success(&closed_rec.request, "pid", Data::new())),
        delivered: true,
    };
    a.put(&closed, &closed_rec).await.expect("close");

    let before = a.round_trips();
    assert_eq!(a.renew().await.expect("renew"), 3);
    assert_eq!(a.round_trips() - before, 1);
    let live: i64 = raw
        .query_one(
            &format!(
                "SELECT count(*) FROM {schema}.records
                 WHERE owner = 'a' AND lease_expires_at > now() + interval '30 seconds'"
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(live, 3, "a's expired leases run for a minute again");
    assert!(b.claim(10).await.expect("claim").is_empty());
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn release_frees_the_replicas_records_for_a_peer_at_once() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("release");
    let a = common::store(&url, &schema, "a").await;
    let b = common::store(&url, &schema, "b").await;
    let (k1, r1) = record("r1", Channel::Async);
    let (k2, mut r2) = record("r2", Channel::Async);
    a.accept(&k1, &r1).await.expect("accept");
    a.accept(&k2, &r2).await.expect("accept");
    // Queued before the release, so written before it.
    r2.stage = Stage::Polling {
        state: serde_json::json!({"step": 2}),
        next_poll_at_ms: 5,
        attempt: 1,
        data: Data::new(),
        physical_resource_id: None,
    };
    a.put_eventually(&k2, &r2).await.expect("queued");
    assert_eq!(a.release().await.expect("release"), 2);
    assert_eq!(a.epoch(&k1), None);
    let ownership = a.ownership(&k1).await.expect("read").expect("row");
    assert_eq!((ownership.owner, ownership.lease_live), (None, false));

    let mut claims = b.claim(10).await.expect("claim");
    claims.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(claims.len(), 2);
    assert_eq!(claims[1].record.stage, r2.stage);
    assert!(claims.iter().all(|c| c.epoch == 2));
    let error = a.put_fenced(&k1, &r1).await.expect_err("a released it");
    assert!(error.is_fenced(), "{error}");
    common::drop_schema(&url, &schema).await;
}

/// How long a record is certainly this replica's is its lease, counted
/// from the statement that set it: a peer can claim it only later, and this
/// replica no longer counts on it from then on.
#[tokio::test]
async fn a_record_is_held_to_answer_until_its_lease_could_run_out() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("hold_to_answer");
    let lease = Duration::from_millis(800);
    let a = common::store_with_lease(&url, &schema, "a", lease).await;
    let b = common::store(&url, &schema, "b").await;
    let (key, rec) = record("k", Channel::Async);
    let (other, _) = record("not-accepted", Channel::Async);
    a.accept(&key, &rec).await.expect("accept");
    let hold = a.hold_to_answer(&key).expect("held after the accept");
    assert!(hold <= lease, "{hold:?}");
    assert_eq!(a.hold_to_answer(&other), None, "never accepted here");
    assert_eq!(b.hold_to_answer(&key), None, "another replica's");
    assert!(
        b.claim(10).await.expect("claim").is_empty(),
        "no claim while it is held"
    );

    tokio::time::sleep(hold).await;
    assert_eq!(a.hold_to_answer(&key), None, "the lease may have run out");
    // The database's lease ends a little later: it started when the
    // statement ran, after it was sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let claims = loop {
        let claims = b.claim(10).await.expect("claim");
        if !claims.is_empty() || tokio::time::Instant::now() > deadline {
            break claims;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(claims.len(), 1, "the lease ran out in the database too");
    assert_eq!(claims[0].key, key);
    common::drop_schema(&url, &schema).await;
}

/// A release leaves a record whose answer is on its way unjournaled
/// ([`PostgresStore::hold_to_answer`]) with this replica until the answer
/// is written, and frees the rest.
#[tokio::test]
async fn release_keeps_a_record_held_to_answer() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("release_pinned");
    let a = common::store(&url, &schema, "a").await;
    let b = common::store(&url, &schema, "b").await;
    let (pinned, mut answered) = record("pinned", Channel::Async);
    let (free, free_record) = record("free", Channel::Async);
    a.accept(&pinned, &answered).await.expect("accept");
    a.accept(&free, &free_record).await.expect("accept");
    assert!(a.hold_to_answer(&pinned).is_some());
    assert_eq!(a.release().await.expect("release"), 1, "only the other");
    let ownership = a.ownership(&pinned).await.expect("read").expect("row");
    assert_eq!(
        ownership,
        Ownership {
            owner: Some("a".into()),
            epoch: 1,
            lease_live: true
        }
    );
    let claims = b.claim(10).await.expect("claim");
    let claimed: Vec<_> = claims.iter().map(|c| &c.key).collect();
    assert_eq!(claimed, [&free], "a peer takes only the released one");

    answered.stage = Stage::Answered {
        response: Arc::new(Response::success(&answered.request, "id", Data::new())),
        delivered: true,
    };
    a.put_fenced(&pinned, &answered)
        .await
        .expect("the answer is written after the release");
    assert_eq!(a.get_record(&pinned).await.expect("read"), Some(answered));
    assert_eq!(a.epoch(&pinned), None, "closed: no longer held");
    common::drop_schema(&url, &schema).await;
}

/// The heart of fencing: once another replica claimed a record, the old
/// owner's writes fail with a typed error and change nothing, awaited or
/// not, and the new owner's go through.
#[tokio::test]
async fn a_write_at_a_stale_epoch_is_fenced() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("fenced");
    let a = common::store(&url, &schema, "a").await;
    let b = common::store(&url, &schema, "b").await;
    let raw = common::raw(&url).await;
    let (key, rec) = record("k", Channel::Async);
    a.accept(&key, &rec).await.expect("accept");
    common::expire(&raw, &schema, &key).await;
    let claims = b.claim(1).await.expect("claim");
    assert_eq!(claims.len(), 1);

    let mut stale = rec.clone();
    stale.stage = Stage::Answered {
        response: Arc::new(Response::failed(&rec.request, "pid", "from a")),
        delivered: false,
    };
    match a.put_fenced(&key, &stale).await {
        Err(Error::Fenced { key: text, epoch }) => {
            assert_eq!(epoch, 1);
            assert_eq!(text, key.to_string());
        }
        other => panic!("expected a fenced error, got {other:?}"),
    }
    assert_eq!(a.epoch(&key), None, "a no longer holds it");
    // Through the trait, the core's error says so.
    let error = Store::put(&a, &key, &stale)
        .await
        .expect_err("still fenced");
    assert!(error.to_string().contains("another replica"), "{error}");
    // Unawaited writes are fenced too.
    a.put_eventually(&key, &stale).await.expect("queued");
    a.flush().await.expect("flush");
    assert_eq!(b.get(&key).await.expect("get"), Some(rec.clone()));

    let mut fresh = rec.clone();
    fresh.stage = Stage::Answered {
        response: Arc::new(Response::success(&rec.request, "pid", Data::new())),
        delivered: false,
    };
    b.put_fenced(&key, &fresh).await.expect("b owns it");
    assert_eq!(a.get(&key).await.expect("get"), Some(fresh));
    common::drop_schema(&url, &schema).await;
}

/// The epoch fences on its own: a record claimed again under the same
/// replica id (another incarnation of it, say) refuses the old epoch.
#[tokio::test]
async fn a_stale_epoch_is_fenced_even_under_the_same_owner() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("fenced_epoch");
    let a = common::store(&url, &schema, "a").await;
    let raw = common::raw(&url).await;
    let (key, rec) = record("k", Channel::Async);
    a.accept(&key, &rec).await.expect("accept");
    raw.execute(
        &format!("UPDATE {schema}.records SET epoch = epoch + 1 WHERE key = $1"),
        &[&key.encode()],
    )
    .await
    .expect("claimed again elsewhere");
    match a.put_fenced(&key, &rec).await {
        Err(Error::Fenced { epoch: 1, .. }) => {}
        other => panic!("expected a fenced error at epoch 1, got {other:?}"),
    }
    common::drop_schema(&url, &schema).await;
}

/// A replica that never held a record cannot write over another's live
/// lease; once the lease lapses, its write takes the record.
#[tokio::test]
async fn an_unheld_write_takes_only_a_free_record() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("unheld");
    let a = common::store(&url, &schema, "a").await;
    let b = common::store(&url, &schema, "b").await;
    let raw = common::raw(&url).await;
    let (key, rec) = record("k", Channel::Async);
    a.accept(&key, &rec).await.expect("accept");
    let error = b
        .put_fenced(&key, &rec)
        .await
        .expect_err("a's lease is live");
    assert!(error.is_fenced(), "{error}");
    common::expire(&raw, &schema, &key).await;
    b.put_fenced(&key, &rec).await.expect("free now");
    assert_eq!(b.epoch(&key), Some(2));
    assert!(
        a.put_fenced(&key, &rec)
            .await
            .expect_err("taken")
            .is_fenced()
    );
    common::drop_schema(&url, &schema).await;
}

/// A sync duplicate on replica B waits for replica A's answer, and is
/// woken by the notification rather than by polling.
#[tokio::test]
async fn a_sync_answer_wakes_a_waiter_on_another_replica() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("wait_answer");
    let a = common::store(&url, &schema, "a").await;
    let b = Arc::new(common::store(&url, &schema, "b").await);
    let (key, mut rec) = record("sync", Channel::Sync);
    a.accept(&key, &rec).await.expect("accept");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !b.is_listening() {
        assert!(tokio::time::Instant::now() < deadline, "never listening");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let waiter = {
        let (b, key) = (Arc::clone(&b), key.clone());
        tokio::spawn(async move {
            let answer = b
                .wait_for_answer(&key, Duration::from_secs(30))
                .await
                .expect("wait");
            (answer, tokio::time::Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = Arc::new(Response::success(&rec.request, "pid", Data::new()));
    rec.stage = Stage::Answered {
        response: Arc::clone(&response),
        delivered: true,
    };
    // As the runtime writes a sync reply: without waiting for it.
    let written = tokio::time::Instant::now();
    a.put_eventually(&key, &rec).await.expect("queued");
    let (answer, woke) = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the waiter wakes")
        .expect("task");
    assert_eq!(answer.as_deref(), Some(&*response));
    // Polling while listening happens once a second; the notification
    // wakes the waiter as soon as the write commits (within 20 ms).
    let waited = woke - written;
    assert!(
        waited < Duration::from_millis(900),
        "woken after {waited:?}: by polling, not by the notification"
    );
    common::drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn waiting_for_an_answer_that_does_not_come_times_out() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("wait_timeout");
    let a = common::store(&url, &schema, "a").await;
    let (key, rec) = record("sync", Channel::Sync);
    a.accept(&key, &rec).await.expect("accept");
    let answer = a
        .wait_for_answer(&key, Duration::from_millis(300))
        .await
        .expect("wait");
    assert_eq!(answer, None);
    let (missing, _) = record("never-sent", Channel::Sync);
    let answer = a
        .wait_for_answer(&missing, Duration::from_millis(50))
        .await
        .expect("wait");
    assert_eq!(answer, None);
    common::drop_schema(&url, &schema).await;
}

/// While one replica purges, another's purge is skipped, not queued.
#[tokio::test]
async fn purge_runs_on_one_replica_at_a_time() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("purge_one");
    let a = common::store(&url, &schema, "a").await;
    let mut raw = common::raw(&url).await;
    let (key, mut rec) = record("old", Channel::Async);
    rec.accepted_at_ms = 1_000;
    rec.stage = Stage::Answered {
        response: Arc::new(Response::success(&rec.request, "pid", Data::new())),
        delivered: true,
    };
    a.put(&key, &rec).await.expect("put");

    // Hold the purge lock as another replica purging would.
    let txn = raw.transaction().await.expect("begin");
    let locked: bool = txn
        .query_one(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("stackhook:purge:{schema}")],
        )
        .await
        .expect("lock")
        .get(0);
    assert!(locked);
    assert_eq!(a.try_purge(2_000).await.expect("purge"), None);
    assert_eq!(a.purge(2_000).await.expect("purge"), 0);
    assert!(a.get(&key).await.expect("get").is_some());
    txn.rollback().await.expect("unlock");
    assert_eq!(a.try_purge(2_000).await.expect("purge"), Some(1));
    common::drop_schema(&url, &schema).await;
}
