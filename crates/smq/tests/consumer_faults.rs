//! The consumer on bad days, injected by the emulator: throttling, 5xx,
//! SMQ's immediate empty answer, a restart, the server going away; and the
//! start-up check's errors.
//!
//! "No busy loop" is checked by counting the requests the emulator saw over
//! a window while every receive fails: a loop without backoff makes
//! thousands on loopback, the backoff a few dozen at most.

mod common;

use std::time::Duration;

use common::intake::{FakeIntake, Mode, Running, arn, config, eventually};
use common::{QUEUE, credentials, start};
use stackhook_smq::emulator::{Emulator, QueueConfig};
use stackhook_smq::{Consumer, ConsumerConfig, Credentials, Error, ErrorCode};
use tokio::net::TcpListener;

const REQUEST: &str =
    r#"{"RequestType":"Update","RequestId":"req-2","ResponseURL":"https://ros.example/cb"}"#;
/// How long a fault lasts while requests are counted.
const WINDOW: Duration = Duration::from_millis(1500);
/// The most requests two backing-off receivers may make in [`WINDOW`]:
/// with a 50 ms base and 400 ms ceiling each makes about ten.
const MOST_REQUESTS: u64 = 80;

/// Start two receivers under a fault that hits every request, count the
/// requests over a window, lift the fault, and check a message then goes
/// through.
async fn backs_off_then_recovers(inject: impl Fn(&Emulator, u32)) -> Running {
    let (emulator, queue) = start(QueueConfig::default()).await;
    inject(&emulator, u32::MAX);
    let intake = FakeIntake::new(Mode::Normal);
    let consumer = Running::start(config(&emulator).receivers(2), intake.clone());
    tokio::time::sleep(WINDOW).await;
    let requests = emulator.requests();
    assert!(
        (2..=MOST_REQUESTS).contains(&requests),
        "{requests} requests in {WINDOW:?}"
    );
    assert!(consumer.stats.backoffs() >= 2);

    inject(&emulator, 0);
    queue.send(REQUEST).await.expect("send");
    intake.wait_for(1).await;
    eventually("the message is deleted", || {
        emulator.stats(QUEUE).is_some_and(|s| s.deleted == 1)
    })
    .await;
    consumer
}

#[tokio::test]
async fn throttling_backs_off_then_recovers() {
    let consumer = backs_off_then_recovers(Emulator::throttle_next).await;
    assert!(consumer.stats.receive_errors() >= 2);
    consumer.stop().await;
}

#[tokio::test]
async fn server_errors_back_off_then_recover() {
    let consumer = backs_off_then_recovers(Emulator::fail_next).await;
    assert!(consumer.stats.receive_errors() >= 2);
    consumer.stop().await;
}

#[tokio::test]
async fn immediate_empty_answers_back_off_then_recover() {
    // SMQ's "too many long polls": not an error, but no wait either.
    let consumer = backs_off_then_recovers(Emulator::empty_next_receives).await;
    assert_eq!(consumer.stats.receive_errors(), 0);
    consumer.stop().await;
}

#[tokio::test]
async fn an_emulator_restart_cuts_long_polls_and_the_consumer_reconnects() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    let intake = FakeIntake::new(Mode::Normal);
    let consumer = Running::start(config(&emulator).receivers(2), intake.clone());
    eventually("both long polls are open", || emulator.requests() >= 2).await;
    emulator.restart();
    eventually("the cut polls are noticed", || {
        consumer.stats.receive_errors() >= 1
    })
    .await;
    queue.send(REQUEST).await.expect("send");
    intake.wait_for(1).await;
    eventually("the message is deleted", || {
        emulator.stats(QUEUE).is_some_and(|s| s.deleted == 1)
    })
    .await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_lost_server_is_retried_with_backoff_until_it_is_back() {
    let (emulator, _) = start(QueueConfig::default()).await;
    let addr = emulator.addr();
    let intake = FakeIntake::new(Mode::Normal);
    let consumer = Running::start(config(&emulator).receivers(2), intake.clone());
    eventually("the consumer is polling", || emulator.requests() >= 1).await;
    emulator.shutdown().await;
    tokio::time::sleep(WINDOW).await;
    let errors = consumer.stats.receive_errors();
    assert!(
        (2..=MOST_REQUESTS).contains(&errors),
        "{errors} failed receives in {WINDOW:?}"
    );

    // The server comes back on the same address.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let back = Emulator::serve(listener, credentials()).expect("emulator");
    back.create_queue(QUEUE, QueueConfig::default());
    let queue = stackhook_smq::Client::new(&back.endpoint(), credentials())
        .expect("client")
        .queue(QUEUE);
    queue.send(REQUEST).await.expect("send");
    intake.wait_for(1).await;
    eventually("the message is deleted", || {
        back.stats(QUEUE).is_some_and(|s| s.deleted == 1)
    })
    .await;
    consumer.stop().await;
}

async fn check_error(config: ConsumerConfig) -> Error {
    Consumer::new(config)
        .expect("consumer")
        .check()
        .await
        .expect_err("the check fails")
}

#[tokio::test]
async fn the_start_up_check_names_what_is_wrong() {
    let (emulator, _) = start(QueueConfig::default()).await;
    let endpoint = emulator.endpoint();

    let missing = check_error(
        ConsumerConfig::new(
            "acs:mns:cn-hangzhou:1234567890:queues/nope"
                .parse()
                .expect("arn"),
            credentials(),
        )
        .endpoint(&endpoint),
    )
    .await;
    assert_eq!(missing.code(), Some(&ErrorCode::QueueNotExist));
    assert!(!missing.is_retryable());
    let line = missing.to_string();
    assert!(line.contains("queues/nope"), "{line}");
    assert!(line.contains(&endpoint), "{line}");
    assert!(line.contains("does not exist"), "{line}");

    let wrong_secret = check_error(
        ConsumerConfig::new(
            arn(),
            Credentials::new("test-access-key-id", "not-the-secret"),
        )
        .endpoint(&endpoint),
    )
    .await;
    assert_eq!(wrong_secret.code(), Some(&ErrorCode::SignatureDoesNotMatch));
    assert!(wrong_secret.to_string().contains("secret"));
    assert!(!format!("{wrong_secret:?}").contains("not-the-secret"));

    let wrong_key = check_error(
        ConsumerConfig::new(arn(), Credentials::new("someone-else", "x")).endpoint(&endpoint),
    )
    .await;
    assert_eq!(wrong_key.code(), Some(&ErrorCode::InvalidAccessKeyId));

    emulator.set_credentials(credentials().with_security_token("sts-token"));
    let denied = check_error(config(&emulator)).await;
    assert_eq!(denied.code(), Some(&ErrorCode::AccessDenied));
    assert!(
        denied.to_string().contains("mns:ReceiveMessage"),
        "{denied}"
    );

    emulator.set_credentials(credentials());
    let attributes = Consumer::new(config(&emulator))
        .expect("consumer")
        .check()
        .await
        .expect("the check passes");
    assert_eq!(attributes.name, QUEUE);

    emulator.shutdown().await;
    let unreachable =
        check_error(ConsumerConfig::new(arn(), credentials()).endpoint(&endpoint)).await;
    assert!(unreachable.is_retryable(), "{unreachable}");
    assert!(
        unreachable.to_string().contains("try again"),
        "{unreachable}"
    );
}
