//! The store outlives its connections: killed, they are replaced, and
//! writes nobody waited for are retried rather than lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use stackhook::journal::{Channel, Stage, Store};
use stackhook::response::{Data, Response};
use stackhook_postgres::PostgresStore;

#[tokio::test]
async fn writes_survive_the_connections_being_killed() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("reconnect");
    let application = schema.clone();
    let named = common::with_query(
        &url,
        &format!("sslmode=disable&application_name={application}"),
    );
    let store = PostgresStore::connect(common::config(&named, &schema, "a"))
        .await
        .expect("connect");
    let raw = common::raw(&url).await;
    let (key, mut rec) = common::record("k", Channel::Sync);
    store.accept(&key, &rec).await.expect("accept");

    let killed: i64 = raw
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1) t",
            &[&application],
        )
        .await
        .expect("terminate")
        .get(0);
    assert!(
        killed >= 2,
        "the writer's and the listener's connections: {killed}"
    );
    // Let the client notice the termination.
    tokio::time::sleep(Duration::from_millis(100)).await;

    rec.stage = Stage::Answered {
        response: Arc::new(Response::success(&rec.request, "pid", Data::new())),
        delivered: true,
    };
    store.put_eventually(&key, &rec).await.expect("queued");
    // The flush waits for the retried write.
    tokio::time::timeout(Duration::from_secs(30), async {
        while store.flush().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the writer reconnects");
    assert_eq!(store.get(&key).await.expect("get"), Some(rec.clone()));
    let (other, other_rec) = common::record("after", Channel::Async);
    assert_eq!(
        store.accept(&other, &other_rec).await.expect("accept"),
        None
    );
    // The listener comes back too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !store.is_listening() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never listening again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::drop_schema(&url, &schema).await;
}
