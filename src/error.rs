//! The library's one error type.

use std::error::Error as StdError;

/// A boxed error from user code (handlers), kept with its source chain.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong inside stackhook.
///
/// Variants are failure domains a caller may want to match on. Each variant
/// carries its cause either in the message or as a `#[source]`, never both.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request body is not a ROS custom-resource request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The resource properties do not fit the handler's `Properties` type.
    #[error("invalid {field} at `{path}`: {message}")]
    Properties {
        /// `ResourceProperties` or `OldResourceProperties`.
        field: &'static str,
        /// JSON path of the offending value, such as `Tags[2].Value`.
        path: String,
        /// What serde said about it.
        message: String,
    },

    /// A value failed validation before anything was sent.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The parameter, flag or field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// The response could not be delivered to the callback URL.
    #[error("callback delivery failed: {0}")]
    Delivery(String),

    /// Configuration is missing or inconsistent.
    #[error("configuration error: {0}")]
    Config(String),

    /// The journal (the durable record of requests and answers) failed.
    #[error("journal error: {0}")]
    Journal(String),

    /// A fenced journal write lost: another replica of a shared journal
    /// claimed the record since this one took it (its lease ran out, or it
    /// released it). The writer must stop working on that record and never
    /// deliver an answer for it; the new owner does.
    #[error("journal write fenced: {0}")]
    Fenced(String),

    /// An I/O operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The callback guard refused every callback URL of a request (the
    /// message names hosts only, never a query string).
    #[error("callback refused: {0}")]
    CallbackRefused(String),
    /// The mock ROS (`stackhook-testing`) saw the provider break one of ROS's
    /// rules, got no answer, or could not reach the provider.
    #[error("mock ROS: {0}")]
    MockRos(String),
}

impl Error {
    /// An [`Error::Validation`] naming `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether this is [`Error::Fenced`]: the record belongs to another
    /// replica now.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Error::Fenced(_))
    }

    /// An [`Error::Io`] saying what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Render an error and its whole source chain as one line: `outer: inner: root`.
///
/// Sources whose text is already contained in the previous message are skipped,
/// so wrappers that repeat their cause do not stutter.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let part = source.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_joins_sources() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&e), "outer failed: disk full");
    }

    #[test]
    fn chain_skips_repeated_text() {
        let e = Error::io("reading x: disk full", std::io::Error::other("disk full"));
        assert_eq!(error_chain(&e), "reading x: disk full");
    }
}
