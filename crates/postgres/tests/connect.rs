//! Starting up: migrations when replicas start at once, clear errors for a
//! refused connection or a wrong password (never showing the password),
//! and the TLS modes against a server with a certificate.

mod common;

use std::sync::Arc;

use stackhook::journal::{Channel, Store};
use stackhook_postgres::{Error, PostgresConfig, PostgresStore, SCHEMA_VERSION};

#[tokio::test]
async fn replicas_starting_at_once_migrate_the_schema_once() {
    let Some(url) = common::url() else { return };
    let schema = common::schema("migrate_race");
    let mut tasks = Vec::new();
    for i in 0..5 {
        let config = common::config(&url, &schema, &format!("r{i}"));
        tasks.push(tokio::spawn(PostgresStore::connect(config)));
    }
    let mut stores = Vec::new();
    for task in tasks {
        stores.push(Arc::new(task.await.expect("task").expect("connect")));
    }
    let applied: usize = stores.iter().map(|s| s.migrations_applied()).sum();
    assert_eq!(applied, SCHEMA_VERSION as usize, "each migration ran once");
    let raw = common::raw(&url).await;
    let versions: Vec<i32> = raw
        .query(
            &format!("SELECT version FROM {schema}.schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .expect("read")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // And every one of them works.
    for (i, store) in stores.iter().enumerate() {
        let (key, rec) = common::record(&format!("m{i}"), Channel::Async);
        assert_eq!(store.accept(&key, &rec).await.expect("accept"), None);
    }
    // A later start finds nothing to do.
    let late = common::store(&url, &schema, "late").await;
    assert_eq!(late.migrations_applied(), 0);
    common::drop_schema(&url, &schema).await;
}

/// A URL with the real user and host but `password`.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user_info, host) = rest.rsplit_once('@').expect("the test URL has a user");
    let user = user_info.split(':').next().expect("a user");
    format!("{scheme}://{user}:{password}@{host}")
}

fn assert_hides(error: &Error, secret: &str) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(secret), "the password leaked: {text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_one_clear_line_without_the_password() {
    let Some(url) = common::url() else { return };
    let secret = "wr0ng-pa55word";
    let config = PostgresConfig::from_url(&with_password(&url, secret)).expect("parses");
    let error = PostgresStore::connect(config).await.expect_err("refused");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains(":***@"), "{text}");
    assert_hides(&error, secret);
}

#[tokio::test]
async fn a_refused_connection_is_one_clear_line_without_the_password() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let secret = "s3cret-pw";
    let url = format!("postgres://bob:{secret}@127.0.0.1:{port}/j?sslmode=disable");
    let error = PostgresStore::connect(PostgresConfig::from_url(&url).expect("parses"))
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(
        text.contains(&format!("postgres://bob:***@127.0.0.1:{port}/j")),
        "{text}"
    );
    assert_hides(&error, secret);
}

/// Whether the connections named `application` are all encrypted.
async fn uses_tls(store: &PostgresStore, url: &str, application: &str) -> bool {
    let (key, rec) = common::record("tls", Channel::Async);
    store
        .accept(&key, &rec)
        .await
        .expect("accept over this mode");
    let raw = common::raw(url).await;
    let rows = raw
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
             WHERE a.application_name = $1",
            &[&application],
        )
        .await
        .expect("read");
    assert!(!rows.is_empty(), "the store's connections are visible");
    rows.iter().all(|row| row.get::<_, bool>(0))
}

#[tokio::test]
async fn ssl_modes_work_over_rustls() {
    let Some(url) = common::url() else { return };
    let Some(ca) = common::ca() else { return };
    for (mode, expect_tls) in [
        ("sslmode=disable".to_owned(), false),
        ("sslmode=require".to_owned(), true),
        (format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        (format!("sslmode=verify-full&sslrootcert={ca}"), true),
    ] {
        let schema = common::schema("tls");
        // Named, to tell its connections from other tests'.
        let application = schema.clone();
        let query = format!("{mode}&application_name={application}");
        let store = PostgresStore::connect(
            common::config(&common::with_query(&url, &query), &schema, "tls").pool_size(2),
        )
        .await
        .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(
            uses_tls(&store, &url, &application).await,
            expect_tls,
            "{mode}"
        );
        drop(store);
        common::drop_schema(&url, &schema).await;
    }
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_it_cannot_trust() {
    let Some(url) = common::url() else { return };
    if common::ca().is_none() {
        return;
    }
    // The bundled public roots do not include the test CA.
    let config =
        PostgresConfig::from_url(&common::with_query(&url, "sslmode=verify-full")).expect("parses");
    let error = PostgresStore::connect(config).await.expect_err("untrusted");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("TLS"), "{error}");
}
