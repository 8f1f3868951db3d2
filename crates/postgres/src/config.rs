//! The journal URL and the store's settings.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result, scrub};

/// How long a replica's claim on a record lasts without a heartbeat
/// ([`crate::PostgresStore::renew`]). A dead replica's work is taken over
/// after this, so it is the takeover delay; ROS waits up to its resource
/// `Timeout` (60 s by default) for an answer, so 10 s leaves it most of that.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// Connections per replica. One is the writer's, one more serves reads while
/// the writer commits; the rest absorb bursts of reads and claims. Small,
/// because managed PostgreSQL counts connections per instance.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How long a connection attempt may take when the URL sets no
/// `connect_timeout`: long enough for a TLS handshake across a region,
/// short enough that a start-up against a black-holed address fails in
/// one clear line instead of hanging.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keepalives when the URL sets none: idle time, then probes at this
/// interval, three of them. A database that vanished without closing the
/// connection (a failover, a dropped NAT entry) is then noticed within
/// about 30 s instead of the operating system's two hours.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// How long sent data may stay unacknowledged before the connection is
/// given up (Linux's `TCP_USER_TIMEOUT`), when the URL sets none: a write
/// to a vanished database fails in this time instead of retransmitting for
/// fifteen minutes.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema the journal's tables live in when none is set.
pub const DEFAULT_SCHEMA: &str = "stackhook";

/// Longest schema name: PostgreSQL identifiers have 63 bytes, and the
/// answer channel (`<schema>.answered`) must fit too.
const MAX_SCHEMA_LEN: usize = 50;

/// TLS to the database, as libpq's `sslmode` names it. rustls does the TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, plain otherwise; the certificate is not
    /// checked. libpq's default, and so the default here.
    Prefer,
    /// TLS or fail; the certificate is not checked (an eavesdropper learns
    /// nothing, an active attacker can still pose as the server). With
    /// `sslrootcert`, the chain is checked as in `verify-ca`, as libpq does.
    Require,
    /// TLS, and the certificate must chain to a trusted root.
    VerifyCa,
    /// TLS, a trusted chain, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the journal is and how this replica uses it.
///
/// Built from a `postgres://` or `postgresql://` URL with
/// [`PostgresConfig::from_url`], then adjusted with the `#[must_use]`
/// setters. Its `Display` and `Debug` show the URL with the password
/// replaced by `***`.
///
/// The URL takes libpq's options that tokio-postgres understands
/// (`connect_timeout`, `application_name`, `options`, several hosts for
/// failover, `target_session_attrs`, ...) and these, handled here:
/// - `sslmode`: `disable`, `prefer` (the default), `require`, `verify-ca`,
///   `verify-full`; see [`SslMode`].
/// - `sslrootcert`: a PEM file of the roots to trust, instead of the
///   bundled Mozilla roots (`system` keeps those). Managed databases such as
///   ApsaraDB RDS hand out such a file.
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) ssl_mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
    pub(crate) schema: String,
    pub(crate) replica_id: String,
    pub(crate) lease: Duration,
    pub(crate) pool_size: usize,
    redacted: String,
    password: Option<String>,
}

impl PostgresConfig {
    /// Parse `url`.
    ///
    /// # Errors
    /// [`Error::Config`] for another scheme, an unknown option or a bad
    /// value; its message shows the URL without its password.
    pub fn from_url(url: &str) -> Result<Self> {
        let redacted = redact_url(url);
        let password = password_of(url);
        let fail = |message: String| Error::Config {
            url: redacted.clone(),
            message,
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(fail(
                "the journal URL must start with postgres:// or postgresql://".into(),
            ));
        }
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut passed = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "sslmode" => {
                    ssl_mode = SslMode::parse(value).ok_or_else(|| {
                        fail(format!(
                            "sslmode `{value}` is not one of disable, prefer, require, verify-ca, verify-full"
                        ))
                    })?;
                }
                "sslrootcert" if value == "system" => root_cert = None,
                "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value))),
                _ => passed.push(pair),
            }
        }
        let rebuilt = if passed.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", passed.join("&"))
        };
        let mut pg = tokio_postgres::Config::from_str(&rebuilt)
            .map_err(|e| fail(scrub(&e, password.as_deref())))?;
        if pg.get_hosts().is_empty() {
            return Err(fail("the URL names no host".into()));
        }
        if ssl_mode == SslMode::Require && root_cert.is_some() {
            ssl_mode = SslMode::VerifyCa;
        }
        pg.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let given = |name: &str| {
            passed
                .iter()
                .any(|pair| pair.starts_with(&format!("{name}=")))
        };
        if !given("keepalives_idle") {
            pg.keepalives_idle(DEFAULT_KEEPALIVE);
        }
        if !given("keepalives_interval") {
            pg.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if !given("keepalives_retries") {
            pg.keepalives_retries(KEEPALIVE_RETRIES);
        }
        if !given("tcp_user_timeout") {
            pg.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("stackhook");
        }
        Ok(PostgresConfig {
            pg,
            ssl_mode,
            root_cert,
            schema: DEFAULT_SCHEMA.to_owned(),
            replica_id: default_replica_id(),
            lease: DEFAULT_LEASE,
            pool_size: DEFAULT_POOL_SIZE,
            redacted,
            password,
        })
    }

    /// Keep the journal's tables in `schema` (created if missing) instead
    /// of [`DEFAULT_SCHEMA`]. Lower-case letters, digits and `_`, starting
    /// with a letter or `_`, at most 50 characters; checked at connect.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Name this replica in the records it owns. Must be unique among the
    /// replicas running at once; the default is the host name (when set in
    /// `HOSTNAME`) and a random suffix, new for every process.
    #[must_use]
    pub fn replica_id(mut self, replica_id: impl Into<String>) -> Self {
        self.replica_id = replica_id.into();
        self
    }

    /// How long a claim lasts without renewal; [`DEFAULT_LEASE`] by default.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The most connections this replica opens; [`DEFAULT_POOL_SIZE`] by
    /// default, and at least 2.
    #[must_use]
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size.max(2);
        self
    }

    /// The TLS mode in force.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The schema the tables are in.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica_id
    }

    /// The lease length.
    pub fn lease_length(&self) -> Duration {
        self.lease
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// The password, to scrub it from client-library messages.
    pub(crate) fn secret(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The schema name, checked, as a quoted identifier.
    pub(crate) fn quoted_schema(&self) -> Result<String> {
        let schema = &self.schema;
        let mut chars = schema.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !first_ok || !rest_ok || schema.len() > MAX_SCHEMA_LEN {
            return Err(Error::Config {
                url: self.redacted.clone(),
                message: format!(
                    "schema `{schema}` must be lower-case letters, digits and _, start with a letter or _, and have at most {MAX_SCHEMA_LEN} characters"
                ),
            });
        }
        Ok(format!("\"{schema}\""))
    }
}

impl fmt::Display for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .field("schema", &self.schema)
            .field("replica_id", &self.replica_id)
            .field("lease", &self.lease)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let suffix = &suffix[..12];
    if host.is_empty() {
        format!("replica-{suffix}")
    } else {
        format!("{host}-{suffix}")
    }
}

/// Where the user-info part of `url` ends: the last `@` before the query.
/// (The last, so that an unescaped `@` or `/` in a password is still
/// counted as part of it.)
fn user_info(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let end = url.find('?').unwrap_or(url.len());
    let at = url[start..end].rfind('@')? + start;
    Some((start, at))
}

/// The password in `url`, percent-decoded, from the user info or from a
/// `password=` option.
fn password_of(url: &str) -> Option<String> {
    if let Some((start, at)) = user_info(url)
        && let Some((_, password)) = url[start..at].split_once(':')
    {
        return Some(percent_decode(password));
    }
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("password="))
        .map(percent_decode)
}

/// `url` with its password (in the user info or a `password=` option)
/// replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = match user_info(url) {
        Some((start, at)) => match url[start..at].find(':') {
            Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    if let Some(q) = out.find('?') {
        let query: Vec<String> = out[q + 1..]
            .split('&')
            .map(|pair| {
                if pair.starts_with("password=") {
                    "password=***".to_owned()
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        out = format!("{}?{}", &out[..q], query.join("&"));
    }
    out
}

/// `%XX` escapes decoded; malformed escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2-s3cret";

    #[test]
    fn both_schemes_parse_with_their_ssl_modes() {
        for (url, mode) in [
            ("postgres://u:p@db.example/j", SslMode::Prefer),
            (
                "postgresql://u@db.example/j?sslmode=disable",
                SslMode::Disable,
            ),
            (
                "postgres://u@db.example:6543/j?sslmode=require",
                SslMode::Require,
            ),
            (
                "postgres://u@db.example/j?sslmode=verify-ca",
                SslMode::VerifyCa,
            ),
            (
                "postgresql://u@db.example/j?connect_timeout=3&sslmode=verify-full",
                SslMode::VerifyFull,
            ),
            (
                "postgres://u@db.example/j?sslmode=require&sslrootcert=/etc/ca.pem",
                SslMode::VerifyCa,
            ),
        ] {
            let config = PostgresConfig::from_url(url).expect(url);
            assert_eq!(config.ssl_mode(), mode, "{url}");
        }
        let config =
            PostgresConfig::from_url("postgres://u@h/j?connect_timeout=3").expect("parses");
        assert_eq!(
            config.pg.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(config.pg.get_ports(), &[5432]);
        assert_eq!(config.pg.get_dbname(), Some("j"));
        assert_eq!(config.pg.get_keepalives_idle(), DEFAULT_KEEPALIVE);
        assert_eq!(
            config.pg.get_tcp_user_timeout(),
            Some(&DEFAULT_TCP_USER_TIMEOUT)
        );
        let config =
            PostgresConfig::from_url("postgres://u@h/j?keepalives_idle=60&tcp_user_timeout=5")
                .expect("parses");
        assert_eq!(config.pg.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(
            config.pg.get_tcp_user_timeout(),
            Some(&Duration::from_secs(5))
        );
    }

    #[test]
    fn sslrootcert_is_kept_and_removed_from_the_client_options() {
        let config = PostgresConfig::from_url(
            "postgres://u@h/j?sslmode=verify-full&sslrootcert=/tmp/ca%20x.pem",
        )
        .expect("parses");
        assert_eq!(config.root_cert, Some(PathBuf::from("/tmp/ca x.pem")));
    }

    #[test]
    fn redaction_hides_passwords_in_user_info_and_options() {
        assert_eq!(
            redact_url(&format!("postgres://bob:{SECRET}@h:5432/j?sslmode=require")),
            "postgres://bob:***@h:5432/j?sslmode=require"
        );
        assert_eq!(
            redact_url(&format!("postgresql://h/j?user=bob&password={SECRET}")),
            "postgresql://h/j?user=bob&password=***"
        );
        assert_eq!(
            redact_url("postgres://bob:p@ss/w0rd@h/j"),
            "postgres://bob:***@h/j"
        );
        assert_eq!(redact_url("postgres://bob@h/j"), "postgres://bob@h/j");
    }

    #[test]
    fn the_password_never_appears_in_config_errors_or_debug_output() {
        let bad = [
            format!("mysql://bob:{SECRET}@h/j"),
            format!("postgres://bob:{SECRET}@h/j?sslmode=sometimes"),
            format!("postgres://bob:{SECRET}@h:notaport/j"),
            format!("postgres://bob:{SECRET}@h/j?frobnicate=1"),
            format!("postgres://bob:{SECRET}@h/j?connect_timeout=soon"),
            format!("postgres://bob:{SECRET}@/j"),
            format!("postgres://h/j?password={SECRET}&sslmode=bogus"),
            format!("postgres://bob:{}@h:x/j", SECRET.replace('-', "%2D")),
            format!("postgres://bob:{SECRET}%zz@h:x/j"),
        ];
        for url in &bad {
            let error = PostgresConfig::from_url(url).expect_err(url);
            for text in [error.to_string(), format!("{error:?}")] {
                assert!(!text.contains(SECRET), "{url} leaked in {text}");
                assert!(text.contains("***"), "{text} names the URL, redacted");
            }
            let core: stackhook::Error = error.into();
            assert!(!format!("{core} {core:?}").contains(SECRET));
        }
        let good = PostgresConfig::from_url(&format!("postgres://bob:{SECRET}@h/j")).expect("ok");
        for text in [good.to_string(), format!("{good:?}")] {
            assert!(!text.contains(SECRET), "{text}");
        }
        assert_eq!(good.secret(), Some(SECRET));
        let bad_schema = good
            .schema("Robert'); DROP")
            .quoted_schema()
            .expect_err("bad");
        assert!(!format!("{bad_schema} {bad_schema:?}").contains(SECRET));
    }

    #[test]
    fn a_percent_encoded_password_is_scrubbed_in_its_decoded_form() {
        let url = "postgres://bob:a%40b@h/j";
        assert_eq!(password_of(url).as_deref(), Some("a@b"));
        assert_eq!(redact_url(url), "postgres://bob:***@h/j");
    }

    #[test]
    fn schema_names_are_checked_before_use_in_sql() {
        let config = PostgresConfig::from_url("postgres://h/j").expect("parses");
        assert_eq!(config.quoted_schema().expect("default"), "\"stackhook\"");
        for bad in ["", "Upper", "1x", "a-b", "a\"b", &"x".repeat(51)] {
            assert!(config.clone().schema(bad).quoted_schema().is_err(), "{bad}");
        }
        assert!(config.schema("_t_01").quoted_schema().is_ok());
    }
}
