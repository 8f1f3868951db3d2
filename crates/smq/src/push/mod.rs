//! Topic HTTP push: reading a notification and proving SMQ sent it.
//!
//! SMQ signs each push with RSA-SHA1 over the same string-to-sign as a
//! request (method, `Content-MD5`, `Content-Type`, `Date`, the sorted
//! `x-mns-*` headers, the path), puts the base64 signature in
//! `Authorization` (no `MNS ` prefix) and the base64 URL of its X.509
//! signing certificate in `x-mns-signing-cert-url`.
//!
//! [`PushVerifier::verify`] checks, in order:
//! 1. the certificate URL is on an allowed prefix: by default only
//!    `https://mnstest.oss-cn-hangzhou.aliyuncs.com/`, the bucket Alibaba
//!    documents (an `http://` URL on that host is fetched over `https`);
//! 2. `Content-MD5`, when present, matches the body (the signature covers
//!    the header, not the body);
//! 3. `Date` is within 15 minutes of now (replays);
//! 4. the signature verifies with the certificate's RSA key.
//!
//! Certificates are fetched through a [`CertFetcher`] (HTTPS by default, or
//! [`PinnedCerts`] to pin them) and cached by URL, as Alibaba advises.
//! Answer SMQ within 5 s: record the notification, answer 2xx, then work.

mod handler;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::{AUTHORIZATION, DATE};
use url::Url;

use crate::error::{Error, Result};
use crate::message::{self, DecodedBody, Envelope};
use crate::notification::{Notification, NotifyFormat};
use crate::signature::{self, CONTENT_MD5};
use crate::xml;

pub use handler::{PUSH_ANSWER_BUDGET, PushOutcome, PushReply, handle, handle_within};

/// The header with the base64 certificate URL.
pub const SIGNING_CERT_URL_HEADER: &str = "x-mns-signing-cert-url";
/// The only certificate location Alibaba documents.
pub const ALIBABA_CERT_URL_PREFIX: &str = "https://mnstest.oss-cn-hangzhou.aliyuncs.com/";
/// How far a push's `Date` may be from now: SMQ's own request window, and
/// the limit Alibaba recommends against replays.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// Timeout for fetching a certificate: SMQ waits 5 s for the push's answer,
/// so the fetch must leave time to record the notification.
pub const CERT_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Certificates kept; SMQ rotates its certificate rarely, so a handful is
/// plenty and bounds what a flood of allowed URLs can pin in memory.
const CERT_CACHE_CAPACITY: usize = 8;
/// A certificate larger than this is refused.
const MAX_CERT_BYTES: usize = 64 * 1024;

/// Which certificate URLs a push may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUrlPolicy {
    allowed: Vec<Url>,
    upgrade_alibaba_http: bool,
}

impl Default for CertUrlPolicy {
    fn default() -> Self {
        CertUrlPolicy::alibaba()
    }
}

impl CertUrlPolicy {
    /// Alibaba's documented bucket only. An `http://` URL on that host (as
    /// older pushes carry) is fetched over `https`.
    pub fn alibaba() -> Self {
        CertUrlPolicy {
            allowed: vec![
                Url::parse(ALIBABA_CERT_URL_PREFIX).unwrap_or_else(|_| unreachable!("a valid URL")),
            ],
            upgrade_alibaba_http: true,
        }
    }

    /// Only URLs under `prefix` (scheme, host and port equal, path starting
    /// with the prefix's path): for tests and private emulators.
    pub fn only(prefix: &str) -> Result<Self> {
        Ok(CertUrlPolicy {
            allowed: vec![parse_prefix(prefix)?],
            upgrade_alibaba_http: false,
        })
    }

    /// Also allow URLs under `prefix`.
    pub fn and(mut self, prefix: &str) -> Result<Self> {
        self.allowed.push(parse_prefix(prefix)?);
        Ok(self)
    }

    /// The URL to fetch for a pushed one, or why it is refused.
    pub fn resolve(&self, url: &str) -> Result<Url> {
        let refused =
            |why: &str| Error::PushRejected(format!("signing certificate URL {url:?} {why}"));
        let mut parsed = Url::parse(url).map_err(|_| refused("is not a URL"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused("carries credentials"));
        }
        if self.upgrade_alibaba_http
            && parsed.scheme() == "http"
            && parsed.host_str()
                == Url::parse(ALIBABA_CERT_URL_PREFIX)
                    .ok()
                    .as_ref()
                    .and_then(Url::host_str)
            && parsed.port().is_none()
        {
            parsed
                .set_scheme("https")
                .map_err(|()| refused("cannot be fetched over https"))?;
        }
        let allowed = self.allowed.iter().any(|prefix| {
            prefix.scheme() == parsed.scheme()
                && prefix.host_str() == parsed.host_str()
                && prefix.port_or_known_default() == parsed.port_or_known_default()
                && parsed.path().starts_with(prefix.path())
        });
        if allowed {
            Ok(parsed)
        } else {
            Err(refused("is not on an allowed prefix"))
        }
    }
}

fn parse_prefix(prefix: &str) -> Result<Url> {
    let url = Url::parse(prefix)
        .map_err(|e| Error::InvalidArgument(format!("certificate URL prefix {prefix:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::InvalidArgument(format!(
            "certificate URL prefix {prefix:?} must be an http(s) URL with a host"
        )));
    }
    Ok(url)
}

/// Where certificates come from.
pub trait CertFetcher: Send + Sync {
    /// The certificate at `url` (PEM or DER).
    fn fetch(&self, url: &Url) -> impl Future<Output = Result<Vec<u8>>> + Send;
}

/// Fetches certificates over HTTP(S) with a short timeout.
#[derive(Debug, Clone)]
pub struct HttpCertFetcher {
    http: reqwest::Client,
}

impl HttpCertFetcher {
    /// A fetcher with its own client (rustls, [`CERT_FETCH_TIMEOUT`]).
    pub fn new() -> Result<Self> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(CERT_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Certificate(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpCertFetcher { http })
    }

    /// A fetcher on a caller's client (proxies, custom roots).
    pub fn with_http_client(http: reqwest::Client) -> Self {
        HttpCertFetcher { http }
    }
}

impl CertFetcher for HttpCertFetcher {
    async fn fetch(&self, url: &Url) -> Result<Vec<u8>> {
        let response = self
            .http
            .get(url.clone())
            .timeout(CERT_FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| Error::Certificate(format!("fetching {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::Certificate(format!(
                "fetching {url}: HTTP {}",
                response.status()
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::Certificate(format!("reading {url}: {e}")))?;
        if bytes.len() > MAX_CERT_BYTES {
            return Err(Error::Certificate(format!(
                "{url} is larger than {MAX_CERT_BYTES} bytes"
            )));
        }
        Ok(bytes.to_vec())
    }
}

/// Certificates given up front, by URL: pinning, or tests. A URL not given
/// is refused.
#[derive(Debug, Clone, Default)]
pub struct PinnedCerts {
    certs: HashMap<String, Vec<u8>>,
}

impl PinnedCerts {
    /// No certificates.
    pub fn new() -> Self {
        PinnedCerts::default()
    }

    /// Serve `cert` (PEM or DER) for `url`.
    #[must_use]
    pub fn with(mut self, url: &str, cert: impl Into<Vec<u8>>) -> Self {
        let key = Url::parse(url)
            .map(String::from)
            .unwrap_or_else(|_| url.to_owned());
        self.certs.insert(key, cert.into());
        self
    }
}

impl CertFetcher for PinnedCerts {
    async fn fetch(&self, url: &Url) -> Result<Vec<u8>> {
        self.certs
            .get(url.as_str())
            .cloned()
            .ok_or_else(|| Error::Certificate(format!("{url} is not pinned")))
    }
}

/// The RSA public key of a certificate (PKCS#1 `RSAPublicKey` DER).
fn rsa_public_key(cert: &[u8]) -> Result<Vec<u8>> {
    use x509_cert::der::{Decode, DecodePem};
    const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
    let text = std::str::from_utf8(cert).ok().map(str::trim_start);
    let parsed = match text {
        Some(t) if t.starts_with("-----BEGIN") => x509_cert::Certificate::from_pem(t.as_bytes()),
        _ => x509_cert::Certificate::from_der(cert),
    }
    .map_err(|e| Error::Certificate(format!("not an X.509 certificate: {e}")))?;
    let spki = parsed.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid.to_string() != RSA_ENCRYPTION {
        return Err(Error::Certificate(format!(
            "the certificate's key is {}, not RSA",
            spki.algorithm.oid
        )));
    }
    Ok(spki.subject_public_key.raw_bytes().to_vec())
}

/// Checks that a push came from SMQ. See the module docs for the steps.
pub struct PushVerifier<F = HttpCertFetcher> {
    policy: CertUrlPolicy,
    fetcher: F,
    max_clock_skew: Option<Duration>,
    cache: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl<F> std::fmt::Debug for PushVerifier<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushVerifier")
            .field("policy", &self.policy)
            .field("max_clock_skew", &self.max_clock_skew)
            .finish_non_exhaustive()
    }
}

impl PushVerifier<HttpCertFetcher> {
    /// Alibaba's certificate bucket only, fetched over HTTPS.
    pub fn new() -> Result<Self> {
        Ok(PushVerifier::with_fetcher(HttpCertFetcher::new()?))
    }
}

impl<F: CertFetcher> PushVerifier<F> {
    /// Alibaba's certificate bucket only, fetched by `fetcher`.
    pub fn with_fetcher(fetcher: F) -> Self {
        PushVerifier {
            policy: CertUrlPolicy::alibaba(),
            fetcher,
            max_clock_skew: Some(DEFAULT_MAX_CLOCK_SKEW),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Use another certificate URL policy.
    #[must_use]
    pub fn with_policy(mut self, policy: CertUrlPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How far `Date` may be from now; `None` skips the check (replaying
    /// recorded pushes in tests).
    #[must_use]
    pub fn with_max_clock_skew(mut self, skew: Option<Duration>) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// Verify a push: `method` and `path_and_query` as received, all its
    /// headers, and the raw body. `Err(Error::PushRejected)` means refuse it
    /// (answer 403); `Err(Error::Certificate)` means the certificate could
    /// not be had (answer 5xx so SMQ retries).
    pub async fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<()> {
        let rejected = |why: &str| Error::PushRejected(why.to_owned());
        let signature = header(headers, AUTHORIZATION.as_str())
            .ok_or_else(|| rejected("no Authorization header"))?;
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| rejected("the Authorization header is not base64"))?;
        let cert_url = header(headers, SIGNING_CERT_URL_HEADER)
            .ok_or_else(|| rejected("no x-mns-signing-cert-url header"))?;
        let cert_url = STANDARD
            .decode(cert_url.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| rejected("x-mns-signing-cert-url is not base64 of a URL"))?;
        let cert_url = self.policy.resolve(&cert_url)?;

        if let Some(md5) = header(headers, CONTENT_MD5.as_str()) {
            if !signature::content_md5_matches(md5, body) {
                return Err(rejected("Content-MD5 does not match the body"));
            }
        }
        let date = header(headers, DATE.as_str()).ok_or_else(|| rejected("no Date header"))?;
        if let Some(skew) = self.max_clock_skew {
            let sent = httpdate::parse_http_date(date)
                .map_err(|_| rejected("the Date header is not an HTTP date"))?;
            let now = SystemTime::now();
            let off = now
                .duration_since(sent)
                .or_else(|_| sent.duration_since(now))
                .unwrap_or_default();
            if off > skew {
                return Err(rejected("the Date header is too far from now (a replay?)"));
            }
        }

        let key = self.public_key(&cert_url).await?;
        // SHA-1 and (possibly) a 1024-bit key are SMQ's choice, not ours;
        // ring names them legacy for that reason.
        let string_to_sign = signature::string_to_sign(method, headers, path_and_query);
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            key.as_slice(),
        )
        .verify(string_to_sign.as_bytes(), &signature)
        .map_err(|_| rejected("the signature does not verify with SMQ's certificate"))
    }

    async fn public_key(&self, url: &Url) -> Result<Arc<Vec<u8>>> {
        if let Some(key) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url.as_str())
        {
            return Ok(key.clone());
        }
        let cert = self.fetcher.fetch(url).await?;
        let key = Arc::new(rsa_public_key(&cert)?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CERT_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(url.as_str().to_owned(), key.clone());
        tracing::debug!(cert_url = %url, "SMQ signing certificate cached");
        Ok(key)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A push notification as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushNotification {
    /// The format the body came in.
    pub format: NotifyFormat,
    /// Its fields. For SIMPLIFIED, the message is the body and the other
    /// fields come from the `x-mns-*` headers.
    pub notification: Notification,
    /// SMQ's `x-mns-request-id`.
    pub request_id: Option<String>,
}

impl PushNotification {
    /// Read a push in any of the three formats.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::Protocol("a topic push body is not UTF-8".into()))?;
        let trimmed = text.trim_start();
        let request_id = header(headers, "x-mns-request-id").map(str::to_owned);
        if trimmed.starts_with('<') && xml::root_element(trimmed).as_deref() == Some("Notification")
        {
            return Ok(PushNotification {
                format: NotifyFormat::Xml,
                notification: Notification::from_xml(trimmed)?,
                request_id,
            });
        }
        if trimmed.starts_with('{') {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
                if Notification::is_json_envelope(&value) {
                    return Ok(PushNotification {
                        format: NotifyFormat::Json,
                        notification: Notification::from_json(trimmed)?,
                        request_id,
                    });
                }
            }
        }
        let field = |name: &str| header(headers, name).unwrap_or_default().to_owned();
        Ok(PushNotification {
            format: NotifyFormat::Simplified,
            notification: Notification {
                topic_owner: field("x-mns-topic-owner"),
                topic_name: field("x-mns-topic-name"),
                subscriber: field("x-mns-subscriber"),
                subscription_name: field("x-mns-subscription-name"),
                message_id: field("x-mns-message-id"),
                message: text.to_owned(),
                message_md5: String::new(),
                message_tag: header(headers, "x-mns-message-tag").map(str::to_owned),
                publish_time: header(headers, "x-mns-publish-time")
                    .and_then(|t| t.trim().parse().ok()),
            },
            request_id,
        })
    }

    /// Check the envelope's MD5 and decode the message into its JSON.
    pub fn decode(&self) -> Result<DecodedBody> {
        match self.format {
            NotifyFormat::Xml => {
                message::unwrap_envelope(self.notification.clone(), Envelope::TopicXml)
            }
            NotifyFormat::Json => {
                message::unwrap_envelope(self.notification.clone(), Envelope::TopicJson)
            }
            NotifyFormat::Simplified => message::decode_body(&self.notification.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_alibabas_bucket_is_allowed_by_default() {
        let policy = CertUrlPolicy::alibaba();
        let ok = policy
            .resolve("https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem")
            .expect("allowed");
        assert_eq!(ok.scheme(), "https");
        // Older pushes name the bucket over http; it is fetched over https.
        let upgraded = policy
            .resolve("http://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem")
            .expect("allowed");
        assert_eq!(
            upgraded.as_str(),
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem"
        );
        for bad in [
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com.evil.example/cert.pem",
            "https://evil.example/https://mnstest.oss-cn-hangzhou.aliyuncs.com/",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com@evil.example/cert.pem",
            "https://user@mnstest.oss-cn-hangzhou.aliyuncs.com/cert.pem",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com:8443/cert.pem",
            "https://other.oss-cn-hangzhou.aliyuncs.com/cert.pem",
            "file:///etc/passwd",
            "not a url",
        ] {
            let err = policy.resolve(bad).expect_err(bad);
            assert!(matches!(err, Error::PushRejected(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn a_test_policy_allows_its_prefix_only() {
        let policy = CertUrlPolicy::only("http://127.0.0.1:4000/certs/").expect("policy");
        assert!(policy.resolve("http://127.0.0.1:4000/certs/a.pem").is_ok());
        assert!(policy.resolve("http://127.0.0.1:4001/certs/a.pem").is_err());
        assert!(policy.resolve("http://127.0.0.1:4000/other/a.pem").is_err());
        assert!(
            policy
                .resolve("https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem")
                .is_err()
        );
        assert!(CertUrlPolicy::only("ftp://x/").is_err());
    }

    fn simplified_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("x-mns-message-id", "AC10020B0019681A95159E591D10"),
            ("x-mns-message-tag", "ros"),
            ("x-mns-topic-owner", "1234"),
            ("x-mns-topic-name", "HTTP-test"),
            ("x-mns-subscriber", "1234"),
            ("x-mns-subscription-name", "sub-test-header"),
            ("x-mns-publish-time", "1730368640272"),
            ("x-mns-request-id", "6723548030353019000"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn a_simplified_push_takes_its_fields_from_the_headers() {
        let body = br#"{"RequestType":"Delete","RequestId":"r"}"#;
        let push = PushNotification::parse(&simplified_headers(), body).expect("parse");
        assert_eq!(push.format, NotifyFormat::Simplified);
        assert_eq!(push.notification.message_id, "AC10020B0019681A95159E591D10");
        assert_eq!(push.notification.topic_name, "HTTP-test");
        assert_eq!(push.notification.message_tag.as_deref(), Some("ros"));
        assert_eq!(push.notification.publish_time, Some(1730368640272));
        assert_eq!(push.request_id.as_deref(), Some("6723548030353019000"));
        let decoded = push.decode().expect("decode");
        assert_eq!(decoded.json, std::str::from_utf8(body).expect("utf8"));
        assert_eq!(decoded.shape.as_str(), "raw");
    }

    #[test]
    fn xml_and_json_pushes_are_recognised_and_decoded() {
        let request = r#"{"RequestType":"Create","RequestId":"r"}"#;
        let n = Notification::new("t", "m", STANDARD.encode(request));
        for (format, body) in [
            (NotifyFormat::Xml, n.to_xml().expect("xml")),
            (NotifyFormat::Json, n.to_json()),
        ] {
            let push = PushNotification::parse(&HeaderMap::new(), body.as_bytes()).expect("parse");
            assert_eq!(push.format, format);
            assert_eq!(push.notification, n);
            let decoded = push.decode().expect("decode");
            assert_eq!(decoded.json, request);
            assert_eq!(decoded.shape.encoding, message::Encoding::Base64);
        }
    }

    #[test]
    fn a_request_pushed_simplified_is_not_taken_for_an_envelope() {
        let body = br#"{"RequestType":"Create","Message":"not an envelope"}"#;
        let push = PushNotification::parse(&HeaderMap::new(), body).expect("parse");
        assert_eq!(push.format, NotifyFormat::Simplified);
    }

    #[test]
    fn a_non_rsa_or_garbage_certificate_is_refused() {
        let ec = ec_certificate();
        let err = rsa_public_key(ec.as_bytes()).expect_err("EC key");
        assert!(err.to_string().contains("not RSA"), "{err}");
        assert!(
            rsa_public_key(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(rsa_public_key(b"\x30\x03\x02\x01\x01").is_err());
    }

    /// An ECDSA P-256 self-signed certificate.
    fn ec_certificate() -> String {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("certificate")
            .cert
            .pem()
    }
}
