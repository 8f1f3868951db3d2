//! Versioned migrations of the journal's schema, run at connect.
//!
//! Each migration is a numbered SQL file under `migrations/`, embedded in
//! the binary. `schema_migrations` in the journal's schema lists those
//! applied. Connecting replicas take a transaction-scoped advisory lock
//! (one per schema) first, so when several start at once one migrates and
//! the others wait for it, then find nothing left to do. Each migration and
//! its row in `schema_migrations` commit together, in one transaction with
//! the lock: a crash half-way leaves the schema as it was.

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// One migration: its number, a name, and its SQL (run with `search_path`
/// set to the journal's schema).
#[derive(Debug, Clone, Copy)]
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append only: a released migration never
/// changes, since databases have recorded it as applied.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "records",
        sql: include_str!("../migrations/0001_records.sql"),
    },
    Migration {
        version: 2,
        name: "parked polls",
        sql: include_str!("../migrations/0002_parked_polls.sql"),
    },
    Migration {
        version: 3,
        name: "room for answers",
        sql: include_str!("../migrations/0003_room_for_answers.sql"),
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Bring `schema` (a name already checked, and its quoted form) up to
/// [`SCHEMA_VERSION`]; return how many migrations this call applied.
pub(crate) async fn migrate(client: &mut Client, schema: &str, quoted: &str) -> Result<usize> {
    let fail = |e: tokio_postgres::Error| Error::Migration {
        schema: schema.to_owned(),
        message: crate::error::scrub(&e, None),
    };
    let txn = client.transaction().await.map_err(fail)?;
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("stackhook:migrate:{schema}")],
    )
    .await
    .map_err(fail)?;
    // Checked before creating: CREATE SCHEMA IF NOT EXISTS needs the CREATE
    // privilege on the database even when the schema exists, and a role
    // given only its own schema should still start.
    let exists = txn
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(fail)?
        .is_some();
    if !exists {
        txn.batch_execute(&format!("CREATE SCHEMA {quoted}"))
            .await
            .map_err(fail)?;
    }
    txn.batch_execute(&format!(
        "SET LOCAL search_path TO {quoted};
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(fail)?;
    let applied: Vec<i32> = txn
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(fail)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut count = 0;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        txn.batch_execute(migration.sql).await.map_err(fail)?;
        txn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(fail)?;
        tracing::info!(
            schema,
            version = migration.version,
            name = migration.name,
            "journal schema migrated"
        );
        count += 1;
    }
    if let Some(newest) = applied.iter().max()
        && *newest > SCHEMA_VERSION
    {
        // Migrations only add, so an older build keeps working beside a
        // newer one during a rolling upgrade; say so, since it should not
        // last.
        tracing::warn!(
            schema,
            database = newest,
            this_build = SCHEMA_VERSION,
            "the journal schema is newer than this build: run the same version on every replica"
        );
    }
    txn.commit().await.map_err(fail)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_up_without_gaps() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i32 + 1, "{}", migration.name);
            assert!(!migration.sql.trim().is_empty());
        }
        assert_eq!(SCHEMA_VERSION, MIGRATIONS.len() as i32);
    }
}
