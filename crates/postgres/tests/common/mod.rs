//! Shared by the PostgreSQL tests: the server's URL, and a fresh schema
//! per test so tests run side by side on one database.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use stackhook::journal::{Channel, Record, RequestKey};
use stackhook::request::{Request, RequestType};
use stackhook_postgres::{PostgresConfig, PostgresStore};

/// The test server's URL (`STACKHOOK_TEST_POSTGRES_URL`, set by
/// `.ci/postgres.sh`). Without it the test fails under CI=true and is
/// skipped, saying so, elsewhere.
pub fn url() -> Option<String> {
    match std::env::var("STACKHOOK_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STACKHOOK_TEST_POSTGRES_URL is not set under CI=true: .ci/run starts PostgreSQL \
                 (.ci/postgres.sh) and the PostgreSQL tests must not be skipped"
            );
            eprintln!(
                "skipped: STACKHOOK_TEST_POSTGRES_URL is not set \
                 (run `source .ci/postgres.sh && pg_start` first)"
            );
            None
        }
    }
}

/// The test CA's certificate (`STACKHOOK_TEST_POSTGRES_CA`), under the same
/// rule as [`url`].
pub fn ca() -> Option<String> {
    match std::env::var("STACKHOOK_TEST_POSTGRES_CA") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STACKHOOK_TEST_POSTGRES_CA is not set under CI=true"
            );
            eprintln!("skipped: STACKHOOK_TEST_POSTGRES_CA is not set");
            None
        }
    }
}

/// `url` with its options replaced by `query` (e.g. `sslmode=require`).
pub fn with_query(url: &str, query: &str) -> String {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    format!("{base}?{query}")
}

/// A schema name of its own for the test `name`.
pub fn schema(name: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{name}_{}", &suffix[..10])
}

/// A config for `url` in `schema`, as replica `replica`.
pub fn config(url: &str, schema: &str, replica: &str) -> PostgresConfig {
    PostgresConfig::from_url(url)
        .expect("the test URL parses")
        .schema(schema)
        .replica_id(replica)
}

/// A store in `schema` as replica `replica`.
pub async fn store(url: &str, schema: &str, replica: &str) -> PostgresStore {
    PostgresStore::connect(config(url, schema, replica))
        .await
        .expect("connect to the test database")
}

/// As [`store`], with a lease of `lease`.
pub async fn store_with_lease(
    url: &str,
    schema: &str,
    replica: &str,
    lease: Duration,
) -> PostgresStore {
    PostgresStore::connect(config(url, schema, replica).lease(lease))
        .await
        .expect("connect to the test database")
}

/// A plain client, for what the tests check or arrange behind the store's
/// back.
pub async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("raw connection");
    tokio::spawn(connection);
    client
}

/// A freshly accepted record for request `id`, arriving on `channel`.
pub fn record(id: &str, channel: Channel) -> (RequestKey, Record) {
    let request = Request::new(RequestType::Create, "Custom::T", "Res", "stack", id);
    (
        RequestKey::of(&request),
        Record::accepted(Arc::new(request), channel),
    )
}

/// Make `key`'s lease in `schema` lapse now, as if its owner died.
pub async fn expire(client: &tokio_postgres::Client, schema: &str, key: &RequestKey) {
    let changed = client
        .execute(
            &format!(
                "UPDATE {schema}.records SET lease_expires_at = now() - interval '1 second' WHERE key = $1"
            ),
            &[&key.encode()],
        )
        .await
        .expect("expire");
    assert_eq!(changed, 1, "{key} exists");
}

/// Drop the test's schema.
pub async fn drop_schema(url: &str, schema: &str) {
    raw(url)
        .await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .expect("drop schema");
}
