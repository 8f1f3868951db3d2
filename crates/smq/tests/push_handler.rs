//! `push::handle`: a topic push verified, decoded and recorded through the
//! intake, with the answer SMQ gets. The pushes are signed by the
//! emulator's pusher and checked against a pinned certificate, so no server
//! is needed and time can be paused.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::intake::{FakeIntake, Mode};
use http::{Method, Request, StatusCode};
use stackhook_smq::emulator::push::{
    PushSigner, TEST_SIGNING_KEY_PEM, TopicPusher, certificate_pem, test_certificate_pem,
};
use stackhook_smq::push::{
    self, CertUrlPolicy, PUSH_ANSWER_BUDGET, PinnedCerts, PushOutcome, PushVerifier,
};
use stackhook_smq::{Notification, NotifyFormat, Via};

const REQUEST: &str = r#"{"RequestType":"Create","RequestId":"req-3","ResponseURL":"https://ros.example/cb?Signature=presigned"}"#;
const CERT_URL: &str = "https://certs.test/smq/signing.pem";
const ENDPOINT: &str = "http://127.0.0.1:8080/notifications";
const FORGER_KEY_PEM: &str = include_str!("data/forger-key.pem");

fn verifier() -> PushVerifier<PinnedCerts> {
    let pinned = PinnedCerts::new().with(CERT_URL, test_certificate_pem().expect("cert"));
    PushVerifier::with_fetcher(pinned)
        .with_policy(CertUrlPolicy::only("https://certs.test/smq/").expect("policy"))
}

fn pusher(key_pem: &str) -> TopicPusher {
    TopicPusher::new(PushSigner::from_pkcs8_pem(key_pem, CERT_URL).expect("key")).expect("pusher")
}

/// A push as SMQ would send it, signed with `key_pem`.
fn signed(key_pem: &str, message: &str, format: NotifyFormat) -> Request<Bytes> {
    let url = url::Url::parse(ENDPOINT).expect("url");
    let notification = Notification::new("ros-topic", "m-1", message);
    let (headers, body) = pusher(key_pem)
        .build(&url, &notification, format)
        .expect("build");
    let mut request = Request::post("/notifications")
        .body(Bytes::from(body))
        .expect("request");
    *request.headers_mut() = headers;
    request
}

#[tokio::test]
async fn a_signed_push_in_every_format_is_recorded_before_its_2xx() {
    let verifier = verifier();
    let intake = FakeIntake::new(Mode::Normal);
    for format in [
        NotifyFormat::Xml,
        NotifyFormat::Json,
        NotifyFormat::Simplified,
    ] {
        let reply = push::handle(
            &signed(TEST_SIGNING_KEY_PEM, REQUEST, format),
            &verifier,
            &intake,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{format}: {reply:?}");
        assert_eq!(reply.outcome, PushOutcome::Recorded);
    }
    let seen = intake.seen();
    assert_eq!(seen.len(), 3);
    for ((json, origin), format) in seen.iter().zip([
        NotifyFormat::Xml,
        NotifyFormat::Json,
        NotifyFormat::Simplified,
    ]) {
        assert_eq!(json.as_ref(), REQUEST.as_bytes());
        assert_eq!(origin.via, Via::TopicPush(format));
        assert_eq!(origin.message_id, "m-1");
        assert_eq!(origin.dequeue_count, None);
    }
}

#[tokio::test]
async fn a_forged_push_is_refused_with_403_and_never_recorded() {
    let verifier = verifier();
    let intake = FakeIntake::new(Mode::Normal);
    // Signed by another key, naming the real certificate.
    let forged = signed(FORGER_KEY_PEM, REQUEST, NotifyFormat::Json);
    let reply = push::handle(&forged, &verifier, &intake).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.outcome, PushOutcome::Forged);

    // A genuine push whose body was changed on the way.
    let genuine = signed(TEST_SIGNING_KEY_PEM, REQUEST, NotifyFormat::Simplified);
    let (parts, _) = genuine.into_parts();
    let tampered = Request::from_parts(parts, Bytes::from(REQUEST.replace("Create", "Delete")));
    let reply = push::handle(&tampered, &verifier, &intake).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // No signature at all.
    let unsigned = Request::post("/notifications")
        .body(Bytes::from(REQUEST))
        .expect("request");
    assert_eq!(
        push::handle(&unsigned, &verifier, &intake).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(intake.seen().is_empty());
}

#[tokio::test]
async fn a_certificate_that_cannot_be_had_asks_smq_to_push_again() {
    // A forger's certificate would be pinned nowhere; here the real one is
    // missing, as when the fetch fails.
    let verifier = PushVerifier::with_fetcher(PinnedCerts::new().with(
        "https://certs.test/smq/other.pem",
        certificate_pem(FORGER_KEY_PEM).expect("cert"),
    ))
    .with_policy(CertUrlPolicy::only("https://certs.test/smq/").expect("policy"));
    let intake = FakeIntake::new(Mode::Normal);
    let reply = push::handle(
        &signed(TEST_SIGNING_KEY_PEM, REQUEST, NotifyFormat::Xml),
        &verifier,
        &intake,
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.outcome, PushOutcome::CertificateUnavailable);
    assert!(intake.seen().is_empty());
}

#[tokio::test]
async fn an_unavailable_journal_answers_503_so_smq_retries() {
    let verifier = verifier();
    let intake = FakeIntake::new(Mode::Unavailable);
    let reply = push::handle(
        &signed(TEST_SIGNING_KEY_PEM, REQUEST, NotifyFormat::Json),
        &verifier,
        &intake,
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.outcome, PushOutcome::Unavailable);
    assert_eq!(intake.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_record_that_hangs_is_answered_503_within_smqs_five_seconds() {
    let verifier = verifier();
    let intake = FakeIntake::new(Mode::Hang);
    let started = tokio::time::Instant::now();
    let reply = push::handle(
        &signed(TEST_SIGNING_KEY_PEM, REQUEST, NotifyFormat::Xml),
        &verifier,
        &intake,
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.outcome, PushOutcome::TimedOut);
    assert_eq!(started.elapsed(), PUSH_ANSWER_BUDGET);
    assert!(PUSH_ANSWER_BUDGET < Duration::from_secs(5));
    assert_eq!(intake.seen().len(), 1);
}

#[tokio::test]
async fn poison_pushes_are_dropped_with_a_2xx_and_told_apart() {
    let verifier = verifier();
    let intake = FakeIntake::new(Mode::Normal);
    // Refused by the intake: JSON, but not a ROS request.
    let refused = push::handle(
        &signed(
            TEST_SIGNING_KEY_PEM,
            r#"{"Hello":"world"}"#,
            NotifyFormat::Xml,
        ),
        &verifier,
        &intake,
    )
    .await;
    // Not JSON at all: never reaches the intake.
    let undecodable = push::handle(
        &signed(TEST_SIGNING_KEY_PEM, "plain text", NotifyFormat::Simplified),
        &verifier,
        &intake,
    )
    .await;
    for reply in [&refused, &undecodable] {
        assert!(reply.status.is_success(), "{reply:?}");
        assert_eq!(reply.outcome, PushOutcome::Poison);
    }
    assert_eq!(intake.jsons(), [r#"{"Hello":"world"}"#]);
}

#[tokio::test]
async fn only_a_post_is_a_push() {
    let verifier = verifier();
    let intake = FakeIntake::new(Mode::Normal);
    let mut get = signed(TEST_SIGNING_KEY_PEM, REQUEST, NotifyFormat::Xml);
    *get.method_mut() = Method::GET;
    let reply = push::handle(&get, &verifier, &intake).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(intake.seen().is_empty());
}
