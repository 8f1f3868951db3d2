//! How records sit in the table: a record's answer is written on the page
//! its accept filled, so answering touches no index.
//!
//! Under load, other statements' snapshots keep the dead versions of a page
//! from being pruned at once, so an answer only stays on its page if the
//! page kept room for it. The test holds such a snapshot open.

mod common;

use stackhook::journal::contract;
use stackhook::journal::{Channel, Store};

/// The block of `key`'s row in `schema`'s records table.
async fn block_of(client: &tokio_postgres::Client, schema: &str, key: &str) -> String {
    let row = client
        .query_one(
            &format!("SELECT ctid::text FROM {schema}.records WHERE key = $1"),
            &[&key],
        )
        .await
        .expect("ctid");
    let ctid: String = row.get(0);
    // "(block,offset)"
    ctid.trim_start_matches('(')
        .split(',')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_answer_is_written_on_the_page_of_its_accept() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("layout");
    let store = common::store(&url, &schema, "a").await;
    let raw = common::raw(&url).await;
    // Records of about 1.5 kB, under the 2 kB at which PostgreSQL would
    // compress or move them out of line.
    let properties = "x".repeat(1300);
    let mut accepted = Vec::new();
    for i in 0..40 {
        let (key, mut rec) = common::record(&format!("layout-{i}"), Channel::Async);
        let mut request = (*rec.request).clone();
        request
            .resource_properties
            .insert("Padding".to_owned(), serde_json::json!(properties));
        rec.request = std::sync::Arc::new(request);
        assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
        accepted.push((key, rec));
    }
    // A snapshot from before the answers, as a concurrent statement holds:
    // the versions the answers replace stay on their pages meanwhile.
    let snapshot = common::raw(&url).await;
    snapshot
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM {schema}.records"
        ))
        .await
        .expect("snapshot");
    let mut moved = 0;
    for (key, rec) in &mut accepted {
        let before = block_of(&raw, &schema, &key.encode()).await;
        rec.stage = contract::answered(rec, false);
        store.put(key, rec).await.expect("answer");
        if block_of(&raw, &schema, &key.encode()).await != before {
            moved += 1;
        }
    }
    snapshot
        .batch_execute("COMMIT")
        .await
        .expect("end snapshot");
    assert_eq!(moved, 0, "answers written away from their accept's page");
    common::drop_schema(&url, &schema).await;
}
