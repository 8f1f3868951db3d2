//! Topic HTTP push as SMQ sends it: a notification body in one of the three
//! formats, `x-mns-*` headers, and an RSA-SHA1 signature in `Authorization`
//! with the certificate's base64 URL in `x-mns-signing-cert-url`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use stackhook_smq::emulator::push::{test_certificate_pem, PushSigner, TopicPusher, TEST_SIGNING_KEY_PEM};
//! use stackhook_smq::emulator::Emulator;
//! use stackhook_smq::{Credentials, Notification, NotifyFormat};
//!
//! let emulator = Emulator::start(Credentials::new("id", "secret")).await?;
//! let cert_url = emulator.serve_certificate("/certs/signing.pem", test_certificate_pem()?);
//! let pusher = TopicPusher::new(PushSigner::from_pkcs8_pem(TEST_SIGNING_KEY_PEM, cert_url)?)?;
//! let notification = Notification::new("ros-topic", "m-1", r#"{"RequestType":"Create"}"#);
//! let status = pusher.push("http://127.0.0.1:8080/notifications", &notification, NotifyFormat::Xml).await?;
//! # Ok(())
//! # }
//! ```

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HeaderMap, HeaderName, HeaderValue};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use sha1::Sha1;

use crate::error::{Error, Result};
use crate::notification::{Notification, NotifyFormat};
use crate::push::SIGNING_CERT_URL_HEADER;
use crate::signature::{self, API_VERSION, CONTENT_MD5, VERSION_HEADER};

/// A 2048-bit RSA key (PKCS#8 PEM) for signing pushes in tests. It is
/// public: never trust it outside a test.
pub const TEST_SIGNING_KEY_PEM: &str = include_str!("test-signing-key.pem");

/// A self-signed certificate (PEM) for [`TEST_SIGNING_KEY_PEM`], made with
/// rcgen.
pub fn test_certificate_pem() -> Result<String> {
    certificate_pem(TEST_SIGNING_KEY_PEM)
}

/// A self-signed certificate (PEM) for an RSA key (PKCS#8 PEM).
pub fn certificate_pem(key_pem: &str) -> Result<String> {
    let bad = |e: rcgen::Error| Error::Certificate(format!("cannot make a test certificate: {e}"));
    let key =
        rcgen::KeyPair::from_pem_and_sign_algo(key_pem, &rcgen::PKCS_RSA_SHA256).map_err(bad)?;
    let params =
        rcgen::CertificateParams::new(vec!["mnstest.localhost".to_owned()]).map_err(bad)?;
    Ok(params.self_signed(&key).map_err(bad)?.pem())
}

/// Signs pushes the way SMQ does (RSA PKCS#1 v1.5 with SHA-1).
pub struct PushSigner {
    key: SigningKey<Sha1>,
    cert_url: String,
}

impl std::fmt::Debug for PushSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSigner")
            .field("cert_url", &self.cert_url)
            .finish_non_exhaustive()
    }
}

impl PushSigner {
    /// A signer with an RSA key (PKCS#8 DER) whose certificate is at
    /// `cert_url`.
    pub fn from_pkcs8_der(der: &[u8], cert_url: impl Into<String>) -> Result<Self> {
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| Error::Certificate(format!("not an RSA PKCS#8 key: {e}")))?;
        Ok(PushSigner {
            key: SigningKey::new(key),
            cert_url: cert_url.into(),
        })
    }

    /// The same, from PEM.
    pub fn from_pkcs8_pem(pem: &str, cert_url: impl Into<String>) -> Result<Self> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| Error::Certificate(format!("not an RSA PKCS#8 PEM key: {e}")))?;
        Ok(PushSigner {
            key: SigningKey::new(key),
            cert_url: cert_url.into(),
        })
    }

    /// The certificate URL pushes name.
    pub fn cert_url(&self) -> &str {
        &self.cert_url
    }

    /// Add `x-mns-signing-cert-url` and `Authorization` to a push's
    /// headers (which must already hold `Date` and the other `x-mns-*`).
    pub fn sign(&self, method: &str, path: &str, headers: &mut HeaderMap) -> Result<()> {
        let url = HeaderValue::from_str(&STANDARD.encode(&self.cert_url))
            .map_err(|e| Error::Certificate(format!("certificate URL header: {e}")))?;
        headers.insert(HeaderName::from_static(SIGNING_CERT_URL_HEADER), url);
        let string_to_sign = signature::string_to_sign(method, headers, path);
        let sig = self
            .key
            .try_sign(string_to_sign.as_bytes())
            .map_err(|e| Error::Certificate(format!("RSA signing failed: {e}")))?;
        let value = HeaderValue::from_str(&STANDARD.encode(sig.to_bytes()))
            .map_err(|e| Error::Certificate(format!("signature header: {e}")))?;
        headers.insert(AUTHORIZATION, value);
        Ok(())
    }
}

/// Sends signed topic notifications to an HTTP endpoint.
#[derive(Debug)]
pub struct TopicPusher {
    signer: PushSigner,
    http: reqwest::Client,
}

impl TopicPusher {
    /// A pusher with its own HTTP client.
    pub fn new(signer: PushSigner) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Ok(TopicPusher { signer, http })
    }

    /// The body, headers (signed) and path of a push of `notification` in
    /// `format` to `endpoint`: what [`TopicPusher::push`] sends.
    pub fn build(
        &self,
        endpoint: &url::Url,
        notification: &Notification,
        format: NotifyFormat,
    ) -> Result<(HeaderMap, String)> {
        let body = notification.to_format(format)?;
        let mut headers = HeaderMap::new();
        let content_type = match format {
            NotifyFormat::Xml => "text/xml;charset=utf-8",
            NotifyFormat::Json => "application/json;charset=utf-8",
            NotifyFormat::Simplified => "text/plain;charset=utf-8",
        };
        let mut insert = |name: &str, value: &str| -> Result<()> {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::Protocol(e.to_string()))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::Protocol(format!("{name}: {e}")))?;
            headers.insert(name, value);
            Ok(())
        };
        insert(CONTENT_TYPE.as_str(), content_type)?;
        insert(
            CONTENT_MD5.as_str(),
            &signature::content_md5(body.as_bytes()),
        )?;
        insert(DATE.as_str(), &httpdate::fmt_http_date(SystemTime::now()))?;
        insert(VERSION_HEADER, API_VERSION)?;
        insert(
            "x-mns-request-id",
            &format!("{:024X}", rand::random::<u64>()),
        )?;
        if format == NotifyFormat::Simplified {
            insert("x-mns-message-id", &notification.message_id)?;
            if let Some(tag) = &notification.message_tag {
                insert("x-mns-message-tag", tag)?;
            }
            insert("x-mns-topic-owner", &notification.topic_owner)?;
            insert("x-mns-topic-name", &notification.topic_name)?;
            insert("x-mns-subscriber", &notification.subscriber)?;
            insert("x-mns-subscription-name", &notification.subscription_name)?;
            if let Some(t) = notification.publish_time {
                insert("x-mns-publish-time", &t.to_string())?;
            }
        }
        let path = match endpoint.query() {
            Some(q) => format!("{}?{q}", endpoint.path()),
            None => endpoint.path().to_owned(),
        };
        self.signer.sign("POST", &path, &mut headers)?;
        Ok((headers, body))
    }

    /// Push `notification` to `endpoint` in `format`; returns the status the
    /// endpoint answered.
    pub async fn push(
        &self,
        endpoint: &str,
        notification: &Notification,
        format: NotifyFormat,
    ) -> Result<StatusCode> {
        let url = url::Url::parse(endpoint)
            .map_err(|e| Error::InvalidArgument(format!("push endpoint {endpoint:?}: {e}")))?;
        let (headers, body) = self.build(&url, notification, format)?;
        let response = self
            .http
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(Error::Network)?;
        Ok(response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::{CertUrlPolicy, PinnedCerts, PushVerifier};

    const CERT_URL: &str =
        "https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem";

    fn pusher() -> TopicPusher {
        TopicPusher::new(PushSigner::from_pkcs8_pem(TEST_SIGNING_KEY_PEM, CERT_URL).expect("key"))
            .expect("pusher")
    }

    fn verifier() -> PushVerifier<PinnedCerts> {
        let cert = test_certificate_pem().expect("cert");
        PushVerifier::with_fetcher(PinnedCerts::new().with(CERT_URL, cert))
    }

    #[tokio::test]
    async fn a_signed_push_verifies_in_every_format() {
        let endpoint = url::Url::parse("http://127.0.0.1:1/notifications").expect("url");
        let pusher = pusher();
        let verifier = verifier();
        let n = Notification::new("ros-topic", "m-1", r#"{"RequestType":"Create"}"#);
        for format in [
            NotifyFormat::Xml,
            NotifyFormat::Json,
            NotifyFormat::Simplified,
        ] {
            let (headers, body) = pusher.build(&endpoint, &n, format).expect("build");
            verifier
                .verify("POST", "/notifications", &headers, body.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("{format}: {e}"));
        }
    }

    #[tokio::test]
    async fn a_tampered_push_is_rejected() {
        let endpoint = url::Url::parse("http://127.0.0.1:1/notifications").expect("url");
        let n = Notification::new("ros-topic", "m-1", r#"{"RequestType":"Create"}"#);
        let (headers, body) = pusher()
            .build(&endpoint, &n, NotifyFormat::Simplified)
            .expect("build");
        let verifier = verifier();

        let other_body = body.replace("Create", "Delete");
        let err = verifier
            .verify("POST", "/notifications", &headers, other_body.as_bytes())
            .await
            .expect_err("body");
        assert!(err.to_string().contains("Content-MD5"), "{err}");

        let mut renamed = headers.clone();
        renamed.insert("x-mns-topic-name", HeaderValue::from_static("other-topic"));
        let err = verifier
            .verify("POST", "/notifications", &renamed, body.as_bytes())
            .await
            .expect_err("header");
        assert!(
            err.to_string().contains("signature does not verify"),
            "{err}"
        );

        let err = verifier
            .verify("POST", "/elsewhere", &headers, body.as_bytes())
            .await
            .expect_err("path");
        assert!(matches!(err, Error::PushRejected(_)), "{err}");

        let mut unsigned = headers.clone();
        unsigned.remove(AUTHORIZATION);
        assert!(
            verifier
                .verify("POST", "/notifications", &unsigned, body.as_bytes())
                .await
                .is_err()
        );

        let mut garbage = headers.clone();
        garbage.insert(AUTHORIZATION, HeaderValue::from_static("AAAA"));
        assert!(
            verifier
                .verify("POST", "/notifications", &garbage, body.as_bytes())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_push_naming_a_foreign_certificate_is_rejected_before_any_fetch() {
        let endpoint = url::Url::parse("http://127.0.0.1:1/notifications").expect("url");
        let signer =
            PushSigner::from_pkcs8_pem(TEST_SIGNING_KEY_PEM, "https://evil.example/cert.pem")
                .expect("key");
        let pusher = TopicPusher::new(signer).expect("pusher");
        let n = Notification::new("t", "m", "{}");
        let (headers, body) = pusher
            .build(&endpoint, &n, NotifyFormat::Xml)
            .expect("build");
        // Pinning the foreign URL does not help: the policy refuses it first.
        let verifier = PushVerifier::with_fetcher(PinnedCerts::new().with(
            "https://evil.example/cert.pem",
            test_certificate_pem().expect("cert"),
        ));
        let err = verifier
            .verify("POST", "/notifications", &headers, body.as_bytes())
            .await
            .expect_err("foreign");
        assert!(
            err.to_string().contains("not on an allowed prefix"),
            "{err}"
        );
        // A test policy that allows it lets the same push through.
        let allowed =
            verifier.with_policy(CertUrlPolicy::only("https://evil.example/").expect("policy"));
        allowed
            .verify("POST", "/notifications", &headers, body.as_bytes())
            .await
            .expect("allowed by the test policy");
    }

    #[tokio::test]
    async fn an_old_push_is_rejected_as_a_replay() {
        let endpoint = url::Url::parse("http://127.0.0.1:1/notifications").expect("url");
        let pusher = pusher();
        let n = Notification::new("t", "m", "{}");
        let (mut headers, body) = pusher
            .build(&endpoint, &n, NotifyFormat::Json)
            .expect("build");
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        headers.insert(
            DATE,
            HeaderValue::from_str(&httpdate::fmt_http_date(old)).expect("date"),
        );
        pusher
            .signer
            .sign("POST", "/notifications", &mut headers)
            .expect("re-sign");
        let err = verifier()
            .verify("POST", "/notifications", &headers, body.as_bytes())
            .await
            .expect_err("replay");
        assert!(err.to_string().contains("too far from now"), "{err}");
        verifier()
            .with_max_clock_skew(None)
            .verify("POST", "/notifications", &headers, body.as_bytes())
            .await
            .expect("skew check off");
    }
}
