//! The security setters of [`Config`]: authentication, the callback allow
//! list, input limits and TLS. The settings themselves are
//! [`SecurityConfig`], defined with the checks that use them in
//! [`crate::security`]; the setters live here so that the dependency runs one
//! way, from config to security.

use std::path::PathBuf;
use std::time::Duration;

use super::Config;
use crate::security::callback_guard::{self, CallbackGuard, HostPattern};
use crate::security::sensitive::Sensitive;
use crate::security::signature::Reading;
#[cfg(doc)]
use crate::security::{SecurityConfig, limits};

/// Security setters. The defaults are the safe ones; see `docs/security.md`.
impl Config {
    /// A config for tests and local tools: the defaults, plus callbacks to
    /// loopback (`127.0.0.1`, `::1`, `localhost`) allowed, so a local
    /// [`CallbackSink`](crate::sink::CallbackSink) can take answers.
    #[must_use]
    pub fn for_local_testing() -> Self {
        Config::default().callback_allow(
            callback_guard::LOCAL_CALLBACK_ALLOW
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<_>>(),
        )
    }

    /// Require this shared token on `web:` routes, as the `X-Stackhook-Token`
    /// header or the `token` query parameter.
    #[must_use]
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.security.auth_token = Some(Sensitive::new(token.into()));
        self
    }

    /// Verify ROS's `Signature` with this `HttpConfig.SignKey`. `url` is the
    /// URL part of the ServiceToken, exactly as in the template.
    #[must_use]
    pub fn sign_key(mut self, key: impl Into<String>, url: impl Into<String>) -> Self {
        self.security.sign_key = Some(Sensitive::new(key.into()));
        self.security.sign_url = Some(url.into());
        self
    }

    /// The `HttpConfig.Headers` ROS was configured to send (they are signed).
    #[must_use]
    pub fn sign_headers<K: Into<String>, V: Into<String>>(
        mut self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.security.sign_headers = headers
            .into_iter()
            .map(|(k, v)| (k.into(), Sensitive::new(v.into())))
            .collect();
        self
    }

    /// `HttpConfig.ContentType`, when not `application/json`.
    #[must_use]
    pub fn sign_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.security.sign_content_type = content_type.into();
        self
    }

    /// Which reading of the loosely documented signature scheme to verify.
    #[must_use]
    pub fn sign_reading(mut self, reading: Reading) -> Self {
        self.security.sign_reading = reading;
        self
    }

    /// How far a Signature's `Date` may be from the local clock.
    #[must_use]
    pub fn sign_skew(mut self, skew: Duration) -> Self {
        self.security.sign_skew = skew;
        self
    }

    /// How many accepted signature values are remembered to refuse replays.
    #[must_use]
    pub fn replay_capacity(mut self, entries: usize) -> Self {
        self.security.replay_capacity = entries;
        self
    }

    /// Also require the token and signature on Function Compute's `/invoke`
    /// (off by default: FC's invoke API authenticates its callers).
    #[must_use]
    pub fn auth_fc_routes(mut self, on: bool) -> Self {
        self.security.auth_fc_routes = on;
        self
    }

    /// The hosts answers may be sent to (replaces the default list).
    #[must_use]
    pub fn callback_allow(mut self, allow: impl IntoIterator<Item = HostPattern>) -> Self {
        self.security.callback_allow = allow.into_iter().collect();
        self
    }

    /// The deepest JSON nesting accepted in a request body.
    #[must_use]
    pub fn json_depth_limit(mut self, depth: usize) -> Self {
        self.security.json_depth = depth;
        self
    }

    /// Time a client gets to send its request headers.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.security.header_read_timeout = timeout;
        self
    }

    /// Time a client gets to send the whole body.
    #[must_use]
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.security.body_read_timeout = timeout;
        self
    }

    /// Largest request head in bytes (at least 8192, hyper's minimum).
    #[must_use]
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.security.max_header_bytes = bytes;
        self
    }

    /// Most connections open at once.
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.security.max_connections = connections;
        self
    }

    /// Most requests from one client address whose body is being read at
    /// once (see [`limits::DEFAULT_MAX_REQUESTS_PER_IP`]).
    #[must_use]
    pub fn max_requests_per_ip(mut self, requests: usize) -> Self {
        self.security.max_requests_per_ip = requests;
        self
    }

    /// Property names whose values are hidden in TRACE body logs.
    #[must_use]
    pub fn sensitive_properties<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Self {
        self.security.sensitive_properties = names.into_iter().map(Into::into).collect();
        self
    }

    /// Serve HTTPS with this PEM certificate chain and private key.
    #[must_use]
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.security.tls = Some((cert.into(), key.into()));
        self
    }

    /// The callback guard this config describes.
    pub fn callback_guard(&self) -> CallbackGuard {
        CallbackGuard::new(self.security.callback_allow.clone())
    }
}
