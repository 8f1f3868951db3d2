//! The crate's one error type, and SMQ's error codes.
//!
//! SMQ answers a failed call with an HTTP status and an XML body
//! (`<Error><Code/><Message/><RequestId/><HostId/></Error>`). The client turns
//! that into [`Error::Service`] with a typed [`ErrorCode`], so a consumer can
//! tell "the queue does not exist" (stop, tell the operator) from "slow down"
//! (back off and try again) without string matching.

use std::fmt;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to SMQ, reading its messages or
/// checking a topic push.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SMQ (or the emulator) answered with an error.
    #[error("{0}")]
    Service(Box<ServiceError>),
    /// The request did not get an answer: connect, TLS, reset or timeout.
    #[error("network error talking to SMQ")]
    Network(#[source] reqwest::Error),
    /// SMQ answered with something this client cannot read.
    #[error("unexpected answer from SMQ: {0}")]
    Protocol(String),
    /// A caller-supplied value is outside what SMQ accepts (a wait over 30 s,
    /// more than 16 messages, an ARN of another service...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A message's `MessageBodyMD5` (or a topic envelope's `MessageMD5`) does
    /// not match the body as received.
    #[error("message body MD5 mismatch: SMQ says {expected}, the body hashes to {actual}")]
    Md5Mismatch {
        /// The MD5 SMQ sent (hex).
        expected: String,
        /// The MD5 of the body as received (upper-case hex).
        actual: String,
    },
    /// A message body is in none of the shapes this crate knows.
    #[error("message body is not a JSON request in any known shape: {0}")]
    UndecodableBody(String),
    /// A topic push notification failed verification and must be refused.
    #[error("push notification rejected: {0}")]
    PushRejected(String),
    /// The push signing certificate could not be fetched or read.
    #[error("push signing certificate: {0}")]
    Certificate(String),
    /// The consumer's start-up check failed: the queue is missing, the key
    /// may not use it, the signature or clock is off, or SMQ is unreachable
    /// ([`Error::is_retryable`] tells which).
    #[error("cannot consume SMQ queue {queue} at {endpoint}: {hint}")]
    QueueCheck {
        /// The queue's ARN.
        queue: String,
        /// The endpoint asked.
        endpoint: String,
        /// What to fix.
        hint: &'static str,
        /// SMQ's answer (or the network failure).
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Whether the same call may succeed if tried again after a backoff:
    /// network failures, throttling, and server-side (5xx) errors.
    ///
    /// Configuration errors (`QueueNotExist`, `AccessDenied`, a bad
    /// signature) and per-message errors (`ReceiptHandleError`) are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Network(_) => true,
            Error::Service(e) => e.is_retryable(),
            Error::QueueCheck { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The service error, when SMQ answered with one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            Error::Service(e) => Some(e),
            Error::QueueCheck { source, .. } => source.service(),
            _ => None,
        }
    }

    /// The SMQ error code, when SMQ answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        self.service().map(ServiceError::code)
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        Error::Service(Box::new(e))
    }
}

/// An error answer from SMQ: HTTP status, code, message and request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    status: u16,
    code: ErrorCode,
    message: String,
    request_id: Option<String>,
}

impl ServiceError {
    /// An error answer as SMQ would send it.
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError {
            status,
            code,
            message: message.into(),
            request_id: None,
        }
    }

    /// The same, with SMQ's request id (quote it to Alibaba support).
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// SMQ's human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// SMQ's request id, if it sent one.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Throttling and server-side errors: worth another try after a backoff.
    pub fn is_retryable(&self) -> bool {
        self.status == 429
            || self.status >= 500
            || self.code.is_throttling()
            || self.code.is_server_side()
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SMQ answered HTTP {} {}: {}",
            self.status, self.code, self.message
        )?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// SMQ's error codes that a consumer acts on; the rest are [`ErrorCode::Other`].
///
/// Sources: the SMQ error-code table and the per-action pages, and the codes
/// the official Go SDK maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The queue does not exist (404).
    QueueNotExist,
    /// The topic does not exist (404).
    TopicNotExist,
    /// Receive: the queue was empty when the wait ended, or too many long
    /// polls are open (then it comes back at once). Visibility change: the
    /// message is gone or visible again (404).
    MessageNotExist,
    /// The receipt handle is malformed or no longer the latest (400).
    ReceiptHandleError,
    /// The key may not do this (403).
    AccessDenied,
    /// The access key id does not exist (403).
    InvalidAccessKeyId,
    /// The signature does not match the request (403).
    SignatureDoesNotMatch,
    /// The request's Date is more than 15 minutes off the server clock.
    TimeExpired,
    /// A parameter is out of range or the XML does not validate (400).
    InvalidArgument,
    /// Throttled by the cluster flow limiter (429).
    TooManyRequests,
    /// Throttled: the account's QPS limit.
    QpsLimitExceeded,
    /// An SMQ-side failure (500).
    InternalError,
    /// Any other code, as SMQ sent it.
    Other(String),
}

impl ErrorCode {
    /// The code as SMQ spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::QueueNotExist => "QueueNotExist",
            ErrorCode::TopicNotExist => "TopicNotExist",
            ErrorCode::MessageNotExist => "MessageNotExist",
            ErrorCode::ReceiptHandleError => "ReceiptHandleError",
            ErrorCode::AccessDenied => "AccessDenied",
            ErrorCode::InvalidAccessKeyId => "InvalidAccessKeyId",
            ErrorCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            ErrorCode::TimeExpired => "TimeExpired",
            ErrorCode::InvalidArgument => "InvalidArgument",
            ErrorCode::TooManyRequests => "TooManyRequests",
            ErrorCode::QpsLimitExceeded => "QpsLimitExceeded",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::Other(code) => code,
        }
    }

    /// A code as SMQ spells it.
    pub fn parse(code: &str) -> Self {
        match code {
            "QueueNotExist" => ErrorCode::QueueNotExist,
            "TopicNotExist" => ErrorCode::TopicNotExist,
            "MessageNotExist" => ErrorCode::MessageNotExist,
            "ReceiptHandleError" => ErrorCode::ReceiptHandleError,
            "AccessDenied" => ErrorCode::AccessDenied,
            "InvalidAccessKeyId" => ErrorCode::InvalidAccessKeyId,
            "SignatureDoesNotMatch" => ErrorCode::SignatureDoesNotMatch,
            "TimeExpired" => ErrorCode::TimeExpired,
            "InvalidArgument" => ErrorCode::InvalidArgument,
            "TooManyRequests" => ErrorCode::TooManyRequests,
            "QpsLimitExceeded" => ErrorCode::QpsLimitExceeded,
            "InternalError" | "InternalServerError" => ErrorCode::InternalError,
            other => ErrorCode::Other(other.to_owned()),
        }
    }

    /// A throttling code: slow down and try again.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            ErrorCode::TooManyRequests | ErrorCode::QpsLimitExceeded
        )
    }

    /// An SMQ-side failure: try again.
    pub fn is_server_side(&self) -> bool {
        matches!(self, ErrorCode::InternalError)
    }

    /// A code that means the consumer is misconfigured (wrong queue, key,
    /// permissions or clock): report it and stop rather than retry.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            ErrorCode::QueueNotExist
                | ErrorCode::TopicNotExist
                | ErrorCode::AccessDenied
                | ErrorCode::InvalidAccessKeyId
                | ErrorCode::SignatureDoesNotMatch
                | ErrorCode::TimeExpired
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        let throttled = ServiceError::new(429, ErrorCode::TooManyRequests, "slow down");
        let qps = ServiceError::new(403, ErrorCode::QpsLimitExceeded, "qps");
        let internal = ServiceError::new(500, ErrorCode::InternalError, "oops");
        let unknown_5xx = ServiceError::new(503, ErrorCode::Other("Busy".into()), "busy");
        for e in [throttled, qps, internal, unknown_5xx] {
            assert!(Error::from(e.clone()).is_retryable(), "{e}");
        }
    }

    #[test]
    fn configuration_and_handle_errors_are_not_retryable() {
        for code in [
            ErrorCode::QueueNotExist,
            ErrorCode::AccessDenied,
            ErrorCode::SignatureDoesNotMatch,
            ErrorCode::ReceiptHandleError,
            ErrorCode::MessageNotExist,
        ] {
            let e = Error::from(ServiceError::new(403, code.clone(), "no"));
            assert!(!e.is_retryable(), "{code}");
        }
        assert!(ErrorCode::QueueNotExist.is_configuration());
        assert!(!ErrorCode::ReceiptHandleError.is_configuration());
    }

    #[test]
    fn codes_parse_back_to_their_spelling() {
        for code in [
            "QueueNotExist",
            "TopicNotExist",
            "MessageNotExist",
            "ReceiptHandleError",
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "TimeExpired",
            "InvalidArgument",
            "TooManyRequests",
            "QpsLimitExceeded",
            "InternalError",
            "SomethingNew",
        ] {
            assert_eq!(ErrorCode::parse(code).as_str(), code);
        }
        assert_eq!(
            ErrorCode::parse("InternalServerError"),
            ErrorCode::InternalError
        );
    }

    #[test]
    fn display_names_status_code_and_request_id() {
        let e = ServiceError::new(
            404,
            ErrorCode::QueueNotExist,
            "The queue name you provided is not exist.",
        )
        .with_request_id("5FD0A8E1");
        assert_eq!(
            e.to_string(),
            "SMQ answered HTTP 404 QueueNotExist: The queue name you provided is not exist. (request id 5FD0A8E1)"
        );
    }
}
