//! Bad days, injected by the emulator: throttling, 5xx, the immediate empty
//! answer of too many long polls, a restart, and the server going away.

mod common;

use std::time::Duration;

use common::{NOW, PROMPTLY, start};
use stackhook_smq::emulator::QueueConfig;
use stackhook_smq::{Error, ErrorCode};

const REQUEST: &str = r#"{"RequestType":"Delete","RequestId":"req-9"}"#;

#[tokio::test]
async fn throttling_is_a_typed_retryable_error() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    queue.send(REQUEST).await.expect("send");
    emulator.throttle_next(2);
    for _ in 0..2 {
        let err = queue.batch_receive(16, NOW).await.expect_err("throttled");
        assert_eq!(err.code(), Some(&ErrorCode::TooManyRequests));
        assert_eq!(err.service().map(|s| s.status()), Some(429));
        assert!(err.is_retryable());
        assert!(err.service().and_then(|s| s.request_id()).is_some());
    }
    assert_eq!(
        queue.batch_receive(16, NOW).await.expect("third try").len(),
        1
    );
}

#[tokio::test]
async fn a_server_error_is_retryable_and_the_call_succeeds_after_it() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    emulator.fail_next(1);
    let err = queue.send(REQUEST).await.expect_err("500");
    assert_eq!(err.code(), Some(&ErrorCode::InternalError));
    assert!(err.is_retryable());
    queue.send(REQUEST).await.expect("retry");
    assert_eq!(
        emulator.stats(common::QUEUE).map(|s| s.visible),
        Some(1),
        "sent once"
    );
}

#[tokio::test]
async fn too_many_long_polls_answer_empty_at_once() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    queue.send(REQUEST).await.expect("send");
    emulator.empty_next_receives(1);
    let got = tokio::time::timeout(
        PROMPTLY,
        queue.batch_receive(16, Some(Duration::from_secs(30))),
    )
    .await
    .expect("answered at once, not after the wait")
    .expect("empty is not an error");
    assert!(got.is_empty(), "the consumer must back off, not spin");
    assert_eq!(queue.batch_receive(16, NOW).await.expect("next").len(), 1);
}

#[tokio::test]
async fn a_restart_cuts_long_polls_and_the_client_reconnects_to_the_same_messages() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    let poller = queue.clone();
    let poll = tokio::spawn(async move {
        poller
            .batch_receive(16, Some(Duration::from_secs(30)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    emulator.restart();
    let err = tokio::time::timeout(PROMPTLY, poll)
        .await
        .expect("the poll ends with the connection")
        .expect("task")
        .expect_err("connection dropped");
    assert!(matches!(err, Error::Network(_)), "{err}");
    assert!(err.is_retryable());

    queue.send(REQUEST).await.expect("reconnects");
    let got = queue.batch_receive(16, NOW).await.expect("receive");
    assert_eq!(got.len(), 1);
    queue.delete(&got[0].receipt_handle).await.expect("delete");
}

#[tokio::test]
async fn a_vanished_server_is_a_retryable_network_error() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    emulator.shutdown().await;
    let err = queue.batch_receive(16, NOW).await.expect_err("gone");
    assert!(matches!(err, Error::Network(_)), "{err}");
    assert!(err.is_retryable());
}
