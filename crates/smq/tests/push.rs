//! Topic HTTP push end to end on 127.0.0.1:0: the emulator's pusher signs
//! like SMQ, a receiver verifies with the certificate fetched over HTTP from
//! the emulator, and forged pushes are refused.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use stackhook_smq::emulator::Emulator;
use stackhook_smq::emulator::push::{
    PushSigner, TEST_SIGNING_KEY_PEM, TopicPusher, test_certificate_pem,
};
use stackhook_smq::message::{DecodedBody, Encoding};
use stackhook_smq::push::{CertUrlPolicy, HttpCertFetcher, PushNotification, PushVerifier};
use stackhook_smq::{Error, Notification, NotifyFormat};
use tokio::net::TcpListener;

const REQUEST: &str =
    r#"{"RequestType":"Update","RequestId":"req-7","ResponseURL":"https://ros.example/cb"}"#;
const FORGER_KEY_PEM: &str = include_str!("data/forger-key.pem");

/// What the receiver saw: the decoded request and its format, or why the
/// push was refused.
type Seen = Arc<Mutex<Vec<Result<(NotifyFormat, DecodedBody), String>>>>;

/// A push endpoint like the one stackhook serves: verify, parse, record,
/// then answer 204 (or 403 for a push that fails verification).
async fn receiver(verifier: PushVerifier<HttpCertFetcher>) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let verifier = Arc::new(verifier);
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let verifier = verifier.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let verifier = verifier.clone();
                    let record = record.clone();
                    async move { Ok::<_, Infallible>(answer(&verifier, &record, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn answer(
    verifier: &PushVerifier<HttpCertFetcher>,
    seen: &Seen,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let outcome = match verifier
        .verify(parts.method.as_str(), path, &parts.headers, &body)
        .await
    {
        Ok(()) => PushNotification::parse(&parts.headers, &body)
            .and_then(|push| push.decode().map(|d| (push.format, d)))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let status = if outcome.is_ok() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::FORBIDDEN
    };
    seen.lock().expect("lock").push(outcome);
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

struct Setup {
    _emulator: Emulator,
    cert_url: String,
    endpoint: String,
    seen: Seen,
}

async fn setup() -> Setup {
    let emulator = Emulator::start(common::credentials())
        .await
        .expect("emulator");
    let cert_url =
        emulator.serve_certificate("/certs/signing.pem", test_certificate_pem().expect("cert"));
    let policy = CertUrlPolicy::only(&format!("{}/certs/", emulator.endpoint())).expect("policy");
    let verifier =
        PushVerifier::with_fetcher(HttpCertFetcher::new().expect("fetcher")).with_policy(policy);
    let (addr, seen) = receiver(verifier).await;
    Setup {
        _emulator: emulator,
        cert_url,
        endpoint: format!("http://{addr}/notifications"),
        seen,
    }
}

fn take(seen: &Seen) -> Vec<Result<(NotifyFormat, DecodedBody), String>> {
    std::mem::take(&mut *seen.lock().expect("lock"))
}

#[tokio::test]
async fn signed_pushes_in_every_format_are_verified_and_decoded() {
    let s = setup().await;
    let pusher = TopicPusher::new(
        PushSigner::from_pkcs8_pem(TEST_SIGNING_KEY_PEM, &s.cert_url).expect("key"),
    )
    .expect("pusher");
    let mut notification = Notification::new("ros-topic", "m-1", REQUEST);
    notification.message_tag = Some("ros".into());
    for format in [
        NotifyFormat::Xml,
        NotifyFormat::Json,
        NotifyFormat::Simplified,
    ] {
        let status = pusher
            .push(&s.endpoint, &notification, format)
            .await
            .expect("push");
        assert_eq!(
            status,
            StatusCode::NO_CONTENT,
            "{format}: {:?}",
            take(&s.seen)
        );
    }
    let seen = take(&s.seen);
    let formats: Vec<NotifyFormat> = seen
        .into_iter()
        .map(|outcome| {
            let (format, decoded) = outcome.expect("accepted");
            assert_eq!(decoded.json, REQUEST);
            assert_eq!(decoded.shape.encoding, Encoding::Raw);
            format
        })
        .collect();
    assert_eq!(
        formats,
        [
            NotifyFormat::Xml,
            NotifyFormat::Json,
            NotifyFormat::Simplified
        ]
    );
}

#[tokio::test]
async fn a_push_signed_by_another_key_is_refused() {
    let s = setup().await;
    // The forger names the real certificate but signs with their own key.
    let forger =
        TopicPusher::new(PushSigner::from_pkcs8_pem(FORGER_KEY_PEM, &s.cert_url).expect("key"))
            .expect("pusher");
    let status = forger
        .push(
            &s.endpoint,
            &Notification::new("ros-topic", "m-2", REQUEST),
            NotifyFormat::Json,
        )
        .await
        .expect("push");
    assert_eq!(status, StatusCode::FORBIDDEN);
    let seen = take(&s.seen);
    assert_eq!(seen.len(), 1);
    let reason = seen[0].as_ref().expect_err("refused");
    assert!(reason.contains("signature does not verify"), "{reason}");
}

#[tokio::test]
async fn a_push_naming_a_certificate_off_the_allowed_prefix_is_refused() {
    let s = setup().await;
    // The forger serves a certificate for their key from their own host.
    let forger_host = Emulator::start(common::credentials())
        .await
        .expect("forger host");
    let forger_cert = stackhook_smq::emulator::push::certificate_pem(FORGER_KEY_PEM).expect("cert");
    let forger_url = forger_host.serve_certificate("/certs/signing.pem", forger_cert);
    let forger =
        TopicPusher::new(PushSigner::from_pkcs8_pem(FORGER_KEY_PEM, &forger_url).expect("key"))
            .expect("pusher");
    let status = forger
        .push(
            &s.endpoint,
            &Notification::new("ros-topic", "m-3", REQUEST),
            NotifyFormat::Xml,
        )
        .await
        .expect("push");
    assert_eq!(status, StatusCode::FORBIDDEN);
    let reason = take(&s.seen).remove(0).expect_err("refused");
    assert!(reason.contains("not on an allowed prefix"), "{reason}");
    assert_eq!(
        forger_host.requests(),
        0,
        "the foreign certificate was never fetched"
    );
}

#[tokio::test]
async fn a_body_changed_in_transit_is_refused() {
    let s = setup().await;
    let pusher = TopicPusher::new(
        PushSigner::from_pkcs8_pem(TEST_SIGNING_KEY_PEM, &s.cert_url).expect("key"),
    )
    .expect("pusher");
    let url = url::Url::parse(&s.endpoint).expect("url");
    let (headers, body): (HeaderMap, String) = pusher
        .build(
            &url,
            &Notification::new("ros-topic", "m-4", REQUEST),
            NotifyFormat::Simplified,
        )
        .expect("build");
    let tampered = body.replace("Update", "Delete");
    let status = reqwest::Client::new()
        .post(url)
        .headers(headers)
        .body(tampered)
        .send()
        .await
        .expect("send")
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let reason = take(&s.seen).remove(0).expect_err("refused");
    assert!(reason.contains("Content-MD5"), "{reason}");
}

#[tokio::test]
async fn the_default_policy_refuses_a_local_certificate_url() {
    let s = setup().await;
    let verifier = PushVerifier::new().expect("verifier");
    let pusher = TopicPusher::new(
        PushSigner::from_pkcs8_pem(TEST_SIGNING_KEY_PEM, &s.cert_url).expect("key"),
    )
    .expect("pusher");
    let url = url::Url::parse(&s.endpoint).expect("url");
    let (headers, body) = pusher
        .build(
            &url,
            &Notification::new("t", "m", REQUEST),
            NotifyFormat::Xml,
        )
        .expect("build");
    let err = verifier
        .verify("POST", "/notifications", &headers, body.as_bytes())
        .await
        .expect_err("only Alibaba's bucket by default");
    assert!(matches!(err, Error::PushRejected(_)), "{err}");
}
