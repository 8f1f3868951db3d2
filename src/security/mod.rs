//! Hostile input and secrets: request authentication, the callback guard,
//! resource limits, and keeping secrets out of logs.
//!
//! See `docs/security.md` for what is defended and the defaults.
//!
//! - [`signature`]: ROS's `HttpConfig.SignKey` signature, with pluggable readings.
//! - [`token`]: the shared `X-Stackhook-Token` / `?token=` for `web:` URLs.
//! - [`callback_guard`]: the allow list callbacks must match (SSRF guard).
//! - [`limits`]: nesting depth, header size, read times, connections, bodies read at once per address.
//! - [`sensitive`]: [`Sensitive<T>`](sensitive::Sensitive), a value that never prints.
//! - [`redact`]: bodies made safe for TRACE logs.

pub mod callback_guard;
pub mod limits;
pub mod redact;
pub mod sensitive;
pub mod signature;
pub mod token;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use serde_json::json;

use crate::reply::json_reply;
use crate::request::{CallbackUrl, Target};
use callback_guard::{CallbackGuard, HostPattern};
use limits::{ConnectionLimit, IpSlot, PerIpLimit};
use sensitive::Sensitive;
use signature::{Reading, SignatureScheme, Verifier};
use token::TokenCheck;

/// The security part of [`Config`](crate::Config). Set it through `Config`'s setters.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    pub(crate) auth_token: Option<Sensitive<String>>,
    pub(crate) sign_key: Option<Sensitive<String>>,
    pub(crate) sign_url: Option<String>,
    pub(crate) sign_content_type: String,
    pub(crate) sign_headers: Vec<(String, Sensitive<String>)>,
    pub(crate) sign_reading: Reading,
    pub(crate) sign_skew: Duration,
    pub(crate) replay_capacity: usize,
    pub(crate) auth_fc_routes: bool,
    pub(crate) callback_allow: Vec<HostPattern>,
    pub(crate) json_depth: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_requests_per_ip: usize,
    pub(crate) sensitive_properties: Vec<String>,
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            auth_token: None,
            sign_key: None,
            sign_url: None,
            sign_content_type: signature::DEFAULT_SIGN_CONTENT_TYPE.to_string(),
            sign_headers: Vec::new(),
            sign_reading: Reading::default(),
            sign_skew: signature::DEFAULT_SIGN_SKEW,
            replay_capacity: signature::DEFAULT_REPLAY_CAPACITY,
            auth_fc_routes: false,
            callback_allow: callback_guard::default_allow_list(),
            json_depth: limits::DEFAULT_JSON_DEPTH,
            header_read_timeout: limits::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: limits::DEFAULT_BODY_READ_TIMEOUT,
            max_header_bytes: limits::DEFAULT_MAX_HEADER_BYTES,
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            max_requests_per_ip: limits::DEFAULT_MAX_REQUESTS_PER_IP,
            sensitive_properties: Vec::new(),
            tls: None,
        }
    }
}

/// The receiver's side of security: authentication and limits, shared by
/// every request.
#[derive(Debug)]
pub(crate) struct Gate {
    token: Option<TokenCheck>,
    verifier: Option<Verifier>,
    auth_fc_routes: bool,
    json_depth: usize,
    body_read_timeout: Duration,
    pub(crate) connections: ConnectionLimit,
    per_ip: PerIpLimit,
    per_ip_max: usize,
    callbacks: CallbackGuard,
    sensitive: Vec<String>,
}

/// A refused request: the status and the reason for the JSON reply body.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    error: String,
    /// Seconds after which to try again, for a refusal for load.
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Refusal {
            status,
            error: error.into(),
            retry_after: None,
        }
    }

    /// Why it was refused (never a secret, never a URL's query).
    pub(crate) fn reason(&self) -> &str {
        &self.error
    }

    /// The reply: `{"error": "..."}` with the status, and `Retry-After`
    /// when the refusal is for load.
    pub(crate) fn into_reply(self) -> hyper::Response<Full<Bytes>> {
        let mut reply = json_reply(self.status, json!({"error": self.error}));
        if let Some(seconds) = self.retry_after {
            reply
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        reply
    }
}

impl Gate {
    pub(crate) fn new(config: &SecurityConfig) -> crate::Result<Self> {
        let verifier = match (&config.sign_key, &config.sign_url) {
            (Some(key), Some(url)) => {
                if key.expose().is_empty() {
                    return Err(crate::Error::Config("the SignKey is empty".into()));
                }
                Some(Verifier::new(
                    SignatureScheme {
                        key: key.clone(),
                        url: url.clone(),
                        content_type: config.sign_content_type.clone(),
                        headers: config
                            .sign_headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.expose().clone()))
                            .collect(),
                        reading: config.sign_reading,
                    },
                    config.sign_skew,
                    config.replay_capacity,
                ))
            }
            (Some(_), None) => {
                return Err(crate::Error::Config(
                    "a SignKey needs the ServiceToken URL it signs (--sign-url)".into(),
                ));
            }
            _ => None,
        };
        let token = match &config.auth_token {
            Some(t) if t.expose().is_empty() => {
                return Err(crate::Error::Config("the auth token is empty".into()));
            }
            Some(t) => {
                if t.expose().len() < token::MIN_TOKEN_LEN {
                    tracing::warn!(
                        min = token::MIN_TOKEN_LEN,
                        "the auth token is short; use at least 16 random characters"
                    );
                }
                Some(TokenCheck::new(t))
            }
            None => None,
        };
        if token.is_none() && verifier.is_none() {
            tracing::warn!(
                "NO REQUEST AUTHENTICATION: anyone who can reach this server can make it run \
                 handlers; set STACKHOOK_AUTH_TOKEN (--auth-token) or STACKHOOK_SIGN_KEY (--sign-key)"
            );
        }
        Ok(Gate {
            token,
            verifier,
            auth_fc_routes: config.auth_fc_routes,
            json_depth: config.json_depth,
            body_read_timeout: config.body_read_timeout,
            connections: ConnectionLimit::new(config.max_connections),
            per_ip: PerIpLimit::new(config.max_requests_per_ip),
            per_ip_max: config.max_requests_per_ip.max(1),
            callbacks: CallbackGuard::new(config.callback_allow.clone()),
            sensitive: config.sensitive_properties.clone(),
        })
    }

    /// Whether requests on `path` must authenticate. Only the routes that
    /// read a body get here: `/` and `/sync` always, FC's `/invoke` when asked.
    fn guards(&self, path: &str) -> bool {
        match path {
            "/invoke" => self.auth_fc_routes,
            _ => true,
        }
    }

    /// A slot for reading a request's body from `ip`, waiting a little for
    /// one when the address has every slot; or the 503 reply, with
    /// `Retry-After`. Its body was not read, so there is nothing to answer
    /// at a callback: ROS retries the status.
    pub(crate) async fn enter(&self, ip: std::net::IpAddr) -> Result<IpSlot<'_>, Refusal> {
        // A free slot is taken without the waiting machinery, which is
        // boxed: its state would otherwise enlarge every request's future.
        if let Some(slot) = self.per_ip.try_enter(ip) {
            return Ok(slot);
        }
        match Box::pin(self.per_ip.enter(ip, limits::PER_IP_SLOT_WAIT)).await {
            Some(slot) => Ok(slot),
            None => {
                tracing::warn!(
                    %ip,
                    limit = self.per_ip_max,
                    "too many request bodies from one address being read at once; refused with 503"
                );
                Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    error: format!(
                        "too many requests from this address are sending their bodies at once \
                         (the limit is {}, --max-requests-per-ip); try again",
                        self.per_ip_max
                    ),
                    retry_after: Some(limits::RETRY_AFTER_SECS),
                })
            }
        }
    }

    /// Refuses, with 403, a request that no answer could reach: every
    /// callback URL in `targets` (those the delivery's endpoint policy would
    /// use, `Delivery::targets`) is refused by the callback guard. Checked
    /// before the request is journaled or its handler runs, so nothing is
    /// left in the outbox to be refused again at every start. The reason
    /// names each refused host and the flag that allows it; never a URL's
    /// query.
    pub(crate) fn check_callbacks<'a>(
        &self,
        targets: impl IntoIterator<Item = (Target, &'a CallbackUrl)>,
    ) -> Result<(), Refusal> {
        match self.callbacks.refuse_all(targets) {
            None => Ok(()),
            Some(refusals) => {
                tracing::warn!(
                    "every callback URL is refused by the callback guard; request refused, not run"
                );
                Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "callback refused: no answer could be sent to this request's callback URL, \
                         so it was not run: {refusals}"
                    ),
                ))
            }
        }
    }

    /// Checks that need only the head: the token.
    pub(crate) fn check_head(&self, head: &http::request::Parts) -> Result<(), Refusal> {
        let path = head.uri.path();
        if !self.guards(path) {
            return Ok(());
        }
        if let Some(token) = &self.token {
            if let Err(error) = token.check(&head.headers, head.uri.query()) {
                return Err(unauthenticated(path, error.reason()));
            }
        }
        Ok(())
    }

    /// The whole-body read time.
    pub(crate) fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// Checks on the body: nesting depth, then the signature.
    pub(crate) fn check_body(&self, path: &str, body: &[u8]) -> Result<(), Refusal> {
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(
                %path,
                body = %redact::body_for_log(body, &self.sensitive),
                "request body"
            );
        }
        if limits::json_too_deep(body, self.json_depth) {
            tracing::warn!(%path, limit = self.json_depth, "request body nests too deep");
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the request body nests deeper than {} levels",
                    self.json_depth
                ),
            ));
        }
        if !self.guards(path) {
            return Ok(());
        }
        if let Some(verifier) = &self.verifier {
            let parsed = serde_json::from_slice::<serde_json::Value>(body)
                .map_err(|_| signature::SignatureError::Malformed);
            if let Err(error) = parsed.and_then(|value| verifier.verify(&value, SystemTime::now()))
            {
                return Err(unauthenticated(path, error.reason()));
            }
        }
        Ok(())
    }
}

/// The 401 reply; `reason` never holds a secret.
fn unauthenticated(path: &str, reason: &str) -> Refusal {
    tracing::warn!(%path, reason, "unauthenticated request refused; not dispatched");
    Refusal::new(
        StatusCode::UNAUTHORIZED,
        format!("unauthenticated: {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn config_debug_hides_every_secret() {
        let config = Config::default()
            .auth_token("token-secret-1234567")
            .sign_key("signkey-secret", "https://provider.example.com/")
            .sign_headers([("Authorization", "header-secret")]);
        let shown = format!("{config:?}");
        for secret in ["token-secret", "signkey-secret", "header-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let gate = Gate::new(&config.security).expect("valid");
        let shown = format!("{gate:?}");
        for secret in ["token-secret", "signkey-secret", "header-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
