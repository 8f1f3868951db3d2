//! The crate's one error type.

use std::fmt;

/// What went wrong with the PostgreSQL journal.
///
/// No variant ever carries the database password: URLs appear in their
/// redacted form ([`crate::PostgresConfig`]'s `Display`), and messages from
/// the client library are scrubbed of the password before they are kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The journal URL or an option is invalid.
    #[error("invalid journal URL {url}: {message}")]
    Config {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The database could not be reached or refused the login.
    #[error("cannot connect to the journal database {url}: {message}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Why: refused, timed out, wrong credentials, TLS.
        message: String,
    },
    /// Creating or migrating the journal's schema failed.
    #[error("migrating the journal schema {schema}: {message}")]
    Migration {
        /// The schema migrated.
        schema: String,
        /// What failed.
        message: String,
    },
    /// A statement failed, or the connection was lost during it.
    #[error("journal database: {0}")]
    Database(String),
    /// A fenced write lost: another replica claimed the record since this
    /// replica took it, so this replica must stop working on it and never
    /// deliver an answer for it.
    #[error("{}", fenced(key, *epoch))]
    Fenced {
        /// The record's key, as `stack/logical id/request id`.
        key: String,
        /// The epoch this replica held (the record's is higher now, or its
        /// owner another replica); 0 when it held none and the record
        /// was not free to take.
        epoch: i64,
    },
    /// A stored record could not be read back.
    #[error("a journal record is corrupt: {0}")]
    Corrupt(String),
    /// The store's writer task has stopped (the store is shutting down).
    #[error("the journal writer has stopped")]
    WriterStopped,
}

impl Error {
    /// Whether this is [`Error::Fenced`].
    pub fn is_fenced(&self) -> bool {
        matches!(self, Error::Fenced { .. })
    }
}

/// Into the core crate's error: a fenced write becomes its typed
/// `Fenced` (the runtime stops working on that record), everything else
/// its `Journal` variant, with the message.
impl From<Error> for stackhook::Error {
    fn from(error: Error) -> Self {
        if error.is_fenced() {
            stackhook::Error::Fenced(error.to_string())
        } else {
            stackhook::Error::Journal(error.to_string())
        }
    }
}

fn fenced(key: &str, epoch: i64) -> String {
    if epoch == 0 {
        format!(
            "the journal record {key} belongs to another replica, whose lease is live; this replica does not work on it"
        )
    } else {
        format!(
            "the journal record {key} belongs to another replica now (this replica held epoch {epoch}); its work here stops"
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client-library error as one line, its sources joined, with `secret`
/// (the password, if any) replaced wherever it appears.
pub(crate) fn scrub(error: &(dyn std::error::Error + 'static), secret: Option<&str>) -> String {
    let text = stackhook::error::error_chain(error).replace('\n', " ");
    scrub_text(text, secret)
}

/// `text` with every occurrence of `secret` replaced by `***`.
pub(crate) fn scrub_text(text: impl fmt::Display, secret: Option<&str>) -> String {
    let text = text.to_string();
    match secret {
        Some(secret) if !secret.is_empty() => text.replace(secret, "***"),
        _ => text,
    }
}
