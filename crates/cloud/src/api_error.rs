//! The error a cloud API answered with, as [`Error::Api`](crate::Error::Api) carries it.

use std::fmt;

/// A service's error answer: its code, message and request id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// `ROS`, `OOS`, `RFS` or `ROS WaitConditionHandle`.
    pub service: &'static str,
    /// HTTP status of the answer.
    pub http_status: u16,
    /// The service's error code (`Code` or `error_code`); empty when the
    /// answer carried none (for example an HTML page from a proxy).
    pub code: String,
    /// The service's message, or the start of an unreadable body.
    pub message: String,
    /// The request id (`RequestId`, or Huawei's `X-Request-Id` header).
    pub request_id: Option<String>,
    /// Alibaba's `HostId`.
    pub host_id: Option<String>,
    /// Alibaba's troubleshooting URL (`Recommend`).
    pub recommend: Option<String>,
    /// Huawei's `details` (code and message pairs).
    pub details: Vec<(String, String)>,
    /// Whether the error is transient; when set, the client already retried
    /// and ran out of attempts.
    pub retryable: bool,
    /// Attempts made, the first included.
    pub attempts: u32,
}

/// The error codes callers commonly branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// `Throttling`, `Throttling.*` or HTTP 429.
    Throttling,
    /// `ServiceUnavailable`, `InternalError` or another 5xx.
    ServerError,
    /// ROS `StackGroupOperationNotFound`: the operation does not exist.
    StackGroupOperationNotFound,
    /// ROS `ResourceNotAvailable`, `ResourceNotFound` or `StackNotFound`.
    NotFound,
    /// A signature or AccessKey problem (`SignatureDoesNotMatch`,
    /// `InvalidAccessKeyId.*`, Huawei `APIGW.0301` and friends).
    Authentication,
    /// Anything else.
    Other,
}

impl ApiError {
    /// An error, for building answers in tests.
    pub fn new(
        service: &'static str,
        http_status: u16,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            service,
            http_status,
            code: code.into(),
            message: message.into(),
            request_id: None,
            host_id: None,
            recommend: None,
            details: Vec::new(),
            retryable: false,
            attempts: 1,
        }
    }

    /// Set the request id.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The kind of error, by code and status.
    pub fn kind(&self) -> ApiErrorKind {
        let code = self.code.as_str();
        if code.starts_with("Throttling") || self.http_status == 429 {
            ApiErrorKind::Throttling
        } else if code == "StackGroupOperationNotFound" {
            ApiErrorKind::StackGroupOperationNotFound
        } else if matches!(
            code,
            "ResourceNotAvailable" | "ResourceNotFound" | "StackNotFound"
        ) {
            ApiErrorKind::NotFound
        } else if code == "SignatureDoesNotMatch"
            || code.starts_with("InvalidAccessKeyId")
            || code.starts_with("InvalidSecurityToken")
            || code == "APIGW.0301"
        {
            ApiErrorKind::Authentication
        } else if matches!(code, "ServiceUnavailable" | "InternalError") || self.http_status >= 500
        {
            ApiErrorKind::ServerError
        } else {
            ApiErrorKind::Other
        }
    }

    /// Remove `secret` (raw, percent-encoded once or twice) from the message
    /// and details. Gateways echo their canonical request or string to sign
    /// on signature errors, and those can hold the STS token.
    pub(crate) fn redact(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let once = crate::encode::percent_encode(secret);
        let twice = crate::encode::percent_encode(&once);
        let scrub = |text: &mut String| {
            for form in [secret, &once, &twice] {
                if text.contains(form) {
                    *text = text.replace(form, "<redacted>");
                }
            }
        };
        scrub(&mut self.message);
        for (_, message) in &mut self.details {
            scrub(message);
        }
    }

    /// Whether ROS said the stack-group operation does not exist.
    pub fn is_stack_group_operation_not_found(&self) -> bool {
        self.kind() == ApiErrorKind::StackGroupOperationNotFound
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = if self.code.is_empty() {
            "error"
        } else {
            &self.code
        };
        write!(
            f,
            "{} {code} (HTTP {}): {}",
            self.service, self.http_status, self.message
        )?;
        for (code, message) in &self.details {
            write!(f, "; {code}: {message}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [RequestId {id}]")?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_code_status_and_request() {
        let e =
            ApiError::new("ROS", 404, "StackGroupOperationNotFound", "gone").with_request_id("R-1");
        assert_eq!(
            e.to_string(),
            "ROS StackGroupOperationNotFound (HTTP 404): gone [RequestId R-1]"
        );
        assert!(e.is_stack_group_operation_not_found());
    }

    #[test]
    fn redacts_tokens_in_every_encoding() {
        let mut e = ApiError::new(
            "ROS",
            400,
            "SignatureDoesNotMatch",
            "string to sign: SecurityToken%3Da%252Bb / a+b / a%2Bb",
        );
        e.redact("a+b");
        assert_eq!(
            e.message,
            "string to sign: SecurityToken%3D<redacted> / <redacted> / <redacted>"
        );
    }

    #[test]
    fn kinds_follow_codes_and_statuses() {
        assert_eq!(
            ApiError::new("OOS", 400, "Throttling.User", "").kind(),
            ApiErrorKind::Throttling
        );
        assert_eq!(
            ApiError::new("RFS", 503, "", "").kind(),
            ApiErrorKind::ServerError
        );
        assert_eq!(
            ApiError::new("ROS", 400, "InvalidParameter", "").kind(),
            ApiErrorKind::Other
        );
    }
}
