//! # stackhook-postgres
//!
//! A shared journal for [stackhook] on PostgreSQL (13 or later: ApsaraDB
//! RDS or PolarDB for PostgreSQL on Alibaba Cloud, or any other), so that
//! several replicas of a provider serve one set of ROS stacks: a request
//! redelivered to any of them is recognised, a dead replica's work is
//! claimed by another, and a replica that lost a record can no longer
//! write it.
//!
//! ```no_run
//! # async fn run() -> Result<(), stackhook_postgres::Error> {
//! use stackhook_postgres::{PostgresConfig, PostgresStore};
//!
//! let config = PostgresConfig::from_url("postgres://stackhook:pw@db.internal/stackhook?sslmode=verify-full")?
//!     .schema("stackhook");
//! let store = PostgresStore::connect(config).await?; // migrates the schema
//! // Hand it to the runtime as its `Arc<dyn stackhook::journal::Store>`;
//! // heartbeat with `store.renew()`, take over with `store.claim(n)`,
//! // and `store.release()` at shutdown.
//! # Ok(()) }
//! ```
//!
//! ## The client: tokio-postgres with deadpool-postgres
//! We chose tokio-postgres (with deadpool-postgres for the pool) over sqlx:
//! - It pipelines: the statement that commits a whole group of writes is
//!   one prepared-statement round trip, which is what keeps a request at
//!   three round trips or fewer (accept, answer, delivered mark) and lets
//!   many requests share each.
//! - Its notification stream (`Connection::poll_message`) is what LISTEN
//!   needs, without a second abstraction over it.
//! - Its queries are checked at run time against a real server in the
//!   tests, not at compile time; sqlx without its macros gives the same,
//!   with a larger dependency tree (its own runtime and TLS layers).
//!
//! TLS is rustls (with the *ring* provider, as the core crate uses), via
//! tokio-postgres-rustls: `sslmode` `disable`, `prefer` (default),
//! `require`, `verify-ca` and `verify-full` as libpq means them, and
//! `sslrootcert` for a database's own CA. See [`PostgresConfig`].
//!
//! ## Map
//! - [`PostgresConfig`]: the URL (redacted whenever shown), schema,
//!   replica id, lease, pool size.
//! - [`PostgresStore`]: the [`stackhook::journal::Store`], plus ownership:
//!   [`claim`](PostgresStore::claim), [`renew`](PostgresStore::renew),
//!   [`release`](PostgresStore::release), fenced writes
//!   ([`put_fenced`](PostgresStore::put_fenced)),
//!   [`wait_for_answer`](PostgresStore::wait_for_answer) and a
//!   one-replica-at-a-time [`try_purge`](PostgresStore::try_purge).
//! - [`Error`]: one enum; [`Error::Fenced`] is the fenced write.
//! - Schema: versioned migrations under `migrations/`, applied at connect
//!   under an advisory lock; see [`SCHEMA_VERSION`].
//!
//! ## Writes
//! One writer task per store commits every accept and put queued at the
//! moment in one statement (see [`MAX_GROUP`] and [`LINGER`]): an accept or
//! a `put` returns once committed, `put_eventually` is committed within
//! [`LINGER`] plus one commit, riding with the next awaited write.

// The unit tests share the integration tests' helpers (the test server's
// URL, a schema per test), which name this crate.
#[cfg(test)]
extern crate self as stackhook_postgres;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;

mod config;
mod error;
mod listen;
mod migrate;
mod store;
mod tls;
mod writer;

pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE, DEFAULT_LEASE, DEFAULT_POOL_SIZE, DEFAULT_SCHEMA,
    DEFAULT_TCP_USER_TIMEOUT, PostgresConfig, SslMode, redact_url,
};
pub use error::{Error, Result};
pub use migrate::SCHEMA_VERSION;
pub use store::{Claim, Ownership, PostgresStore};
pub use writer::{LINGER, MAX_GROUP};
