//! The queue client against the emulator on 127.0.0.1:0: the SMQ semantics a
//! consumer relies on (visibility, handles, dequeue counts, long poll).

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{NOW, PROMPTLY, QUEUE, credentials, start};
use stackhook_smq::emulator::{Emulator, QueueConfig, QueueStats};
use stackhook_smq::message::{Encoding, Envelope};
use stackhook_smq::{Client, Credentials, ErrorCode, Notification, OutgoingMessage};

const REQUEST: &str = r#"{"RequestType":"Create","RequestId":"req-1","ResponseURL":"https://ros.example/cb","StackId":"s-1","LogicalResourceId":"R"}"#;

#[tokio::test]
async fn a_received_message_is_deleted_with_its_handle() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    let sent = queue.send(REQUEST).await.expect("send");
    let got = queue.batch_receive(16, NOW).await.expect("receive");
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id, sent.message_id);
    assert_eq!(m.dequeue_count, 1);
    assert_eq!(m.body, REQUEST);
    assert!(m.receipt_handle.contains('+') && m.receipt_handle.contains('/'));
    let decoded = m.decode().expect("decode");
    assert_eq!(decoded.json, REQUEST);
    assert_eq!(decoded.shape.as_str(), "raw");

    // The handle travels escaped and is signed in that form; the emulator
    // checks the signature against the raw request line.
    queue.delete(&m.receipt_handle).await.expect("delete");
    assert_eq!(
        emulator.stats(QUEUE),
        Some(QueueStats {
            visible: 0,
            in_flight: 0,
            delayed: 0,
            deleted: 1
        })
    );
    assert!(
        queue
            .batch_receive(16, NOW)
            .await
            .expect("receive")
            .is_empty()
    );
    assert!(queue.receive(NOW).await.expect("receive").is_none());
}

#[tokio::test]
async fn an_expired_message_is_redelivered_with_dequeue_count_two_and_a_new_handle() {
    let (_emulator, queue) =
        start(QueueConfig::default().visibility_timeout(Duration::from_secs(1))).await;
    queue.send(REQUEST).await.expect("send");
    let first = queue
        .receive(NOW)
        .await
        .expect("receive")
        .expect("a message");
    assert_eq!(first.dequeue_count, 1);
    assert!(
        queue.receive(NOW).await.expect("receive").is_none(),
        "hidden while in flight"
    );

    // The long poll wakes when the visibility timeout ends.
    let second = tokio::time::timeout(
        PROMPTLY,
        queue.batch_receive(16, Some(Duration::from_secs(20))),
    )
    .await
    .expect("redelivered before the wait ended")
    .expect("receive")
    .remove(0);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.dequeue_count, 2);
    assert_ne!(second.receipt_handle, first.receipt_handle);
    assert_eq!(second.first_dequeue_time, first.first_dequeue_time);
    assert!(second.next_visible_time >= first.next_visible_time);

    let err = queue
        .delete(&first.receipt_handle)
        .await
        .expect_err("the old handle is dead");
    assert_eq!(err.code(), Some(&ErrorCode::ReceiptHandleError));
    assert!(!err.is_retryable());
    queue
        .delete(&second.receipt_handle)
        .await
        .expect("the new handle deletes");
}

#[tokio::test]
async fn a_long_poll_wakes_when_a_message_is_sent() {
    let (_emulator, queue) = start(QueueConfig::default()).await;
    let poller = queue.clone();
    let poll = tokio::spawn(async move {
        poller
            .batch_receive(16, Some(Duration::from_secs(30)))
            .await
    });
    // Give the poll time to be waiting on the server before sending.
    tokio::time::sleep(Duration::from_millis(200)).await;
    queue.send(REQUEST).await.expect("send");
    let got = tokio::time::timeout(PROMPTLY, poll)
        .await
        .expect("woken by the send, not by the 30 s wait")
        .expect("task")
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, REQUEST);
}

#[tokio::test]
async fn the_queues_polling_wait_applies_when_a_receive_names_none() {
    let (_emulator, queue) =
        start(QueueConfig::default().polling_wait(Duration::from_secs(30))).await;
    let poller = queue.clone();
    let poll = tokio::spawn(async move { poller.receive(None).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !poll.is_finished(),
        "the queue's 30 s polling wait holds the request"
    );
    queue.send(REQUEST).await.expect("send");
    let got = tokio::time::timeout(PROMPTLY, poll)
        .await
        .expect("woken")
        .expect("task")
        .expect("receive");
    assert_eq!(got.map(|m| m.body).as_deref(), Some(REQUEST));
}

#[tokio::test]
async fn messages_come_out_in_the_order_they_were_sent() {
    let (_emulator, queue) = start(QueueConfig::default()).await;
    for i in 0..20 {
        queue.send(format!("{{\"n\":{i}}}")).await.expect("send");
    }
    let first = queue.batch_receive(16, NOW).await.expect("receive");
    let rest = queue.batch_receive(16, NOW).await.expect("receive");
    let order: Vec<String> = first
        .iter()
        .chain(rest.iter())
        .map(|m| m.body.clone())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("{{\"n\":{i}}}")).collect();
    assert_eq!(first.len(), 16, "a batch is capped at 16");
    assert_eq!(order, expected);
    assert!(
        queue.batch_receive(17, NOW).await.is_err(),
        "more than 16 is refused"
    );
    assert!(
        queue
            .batch_receive(1, Some(Duration::from_secs(31)))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn batch_delete_deletes_what_it_can_and_reports_the_rest() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    for _ in 0..3 {
        queue.send(REQUEST).await.expect("send");
    }
    let got = queue.batch_receive(16, NOW).await.expect("receive");
    assert_eq!(got.len(), 3);
    let all: Vec<&str> = got.iter().map(|m| m.receipt_handle.as_str()).collect();
    assert!(
        queue
            .batch_delete(&all[..2])
            .await
            .expect("batch delete")
            .is_empty()
    );

    let stale = "1-+/+/AAAAAAAAAAAAAAAAAAAAAAA=";
    let failures = queue.batch_delete(&[all[2], stale]).await.expect("partial");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].receipt_handle, stale);
    assert_eq!(failures[0].code, ErrorCode::ReceiptHandleError);
    assert_eq!(emulator.stats(QUEUE).map(|s| s.deleted), Some(3));
    assert!(
        queue
            .batch_delete::<&str>(&[])
            .await
            .expect("nothing")
            .is_empty()
    );
}

#[tokio::test]
async fn a_visibility_change_moves_the_deadline_and_replaces_the_handle() {
    let (_emulator, queue) =
        start(QueueConfig::default().visibility_timeout(Duration::from_secs(1))).await;
    queue.send(REQUEST).await.expect("send");
    let m = queue
        .receive(NOW)
        .await
        .expect("receive")
        .expect("a message");
    let changed = queue
        .change_visibility(&m.receipt_handle, Duration::from_secs(60))
        .await
        .expect("change");
    assert_ne!(changed.receipt_handle, m.receipt_handle);
    assert!(changed.next_visible_time > m.next_visible_time);

    // Past the queue's 1 s timeout the message is still hidden.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(queue.receive(NOW).await.expect("receive").is_none());

    let err = queue
        .change_visibility(&m.receipt_handle, Duration::from_secs(60))
        .await
        .expect_err("old handle");
    assert_eq!(err.code(), Some(&ErrorCode::MessageNotExist));
    assert!(queue.delete(&m.receipt_handle).await.is_err());
    assert!(
        queue
            .change_visibility(&changed.receipt_handle, Duration::ZERO)
            .await
            .is_err(),
        "0 s is refused before sending"
    );
    queue
        .delete(&changed.receipt_handle)
        .await
        .expect("the latest handle deletes");
}

#[tokio::test]
async fn base64_raw_and_topic_bodies_decode_and_report_their_shape() {
    let (_emulator, queue) = start(QueueConfig::default()).await;
    let envelope = Notification::new("ros-topic", "m-1", STANDARD.encode(REQUEST))
        .to_xml()
        .expect("xml");
    queue.send(REQUEST).await.expect("raw");
    queue.send(STANDARD.encode(REQUEST)).await.expect("base64");
    queue.send(envelope).await.expect("topic");
    let got = queue.batch_receive(16, NOW).await.expect("receive");
    let shapes: Vec<(Envelope, Encoding)> = got
        .iter()
        .map(|m| {
            let d = m.decode().expect("decode");
            assert_eq!(d.json, REQUEST);
            (d.shape.envelope, d.shape.encoding)
        })
        .collect();
    assert_eq!(
        shapes,
        [
            (Envelope::None, Encoding::Raw),
            (Envelope::None, Encoding::Base64),
            (Envelope::TopicXml, Encoding::Base64)
        ]
    );
}

#[tokio::test]
async fn delayed_and_prioritised_sends_are_honoured() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    queue
        .send(OutgoingMessage::new("{\"late\":true}").delay(Duration::from_secs(60)))
        .await
        .expect("send");
    queue.send("{\"n\":1}").await.expect("send");
    queue
        .send(OutgoingMessage::new("{\"urgent\":true}").priority(1))
        .await
        .expect("send");
    let got: Vec<String> = queue
        .batch_receive(16, NOW)
        .await
        .expect("receive")
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(got, ["{\"urgent\":true}", "{\"n\":1}"]);
    assert_eq!(emulator.stats(QUEUE).map(|s| s.delayed), Some(1));
}

#[tokio::test]
async fn attributes_answer_for_a_queue_and_queue_not_exist_otherwise() {
    let (emulator, queue) = start(
        QueueConfig::default()
            .visibility_timeout(Duration::from_secs(45))
            .polling_wait(Duration::from_secs(20)),
    )
    .await;
    queue.send(REQUEST).await.expect("send");
    let attrs = queue.attributes().await.expect("attributes");
    assert_eq!(attrs.name, QUEUE);
    assert_eq!(attrs.visibility_timeout, 45);
    assert_eq!(attrs.polling_wait_seconds, 20);
    assert_eq!(attrs.active_messages, 1);

    let missing = Client::new(&emulator.endpoint(), credentials())
        .expect("client")
        .queue("no-such-queue");
    let err = missing.attributes().await.expect_err("missing");
    assert_eq!(err.code(), Some(&ErrorCode::QueueNotExist));
    assert!(err.code().is_some_and(ErrorCode::is_configuration));
    assert!(!err.is_retryable());
    let err = missing.batch_receive(16, NOW).await.expect_err("missing");
    assert_eq!(err.code(), Some(&ErrorCode::QueueNotExist));
}

#[tokio::test]
async fn a_forged_or_foreign_signature_is_rejected() {
    let (emulator, _queue) = start(QueueConfig::default()).await;
    let wrong_secret = Client::new(
        &emulator.endpoint(),
        Credentials::new("test-access-key-id", "guessed-secret"),
    )
    .expect("client")
    .queue(QUEUE);
    let err = wrong_secret.send(REQUEST).await.expect_err("forged");
    assert_eq!(err.code(), Some(&ErrorCode::SignatureDoesNotMatch));
    assert!(!err.is_retryable());
    assert!(err.code().is_some_and(ErrorCode::is_configuration));

    let wrong_id = Client::new(
        &emulator.endpoint(),
        Credentials::new("someone-else", "test-access-key-secret"),
    )
    .expect("client")
    .queue(QUEUE);
    let err = wrong_id
        .batch_receive(1, NOW)
        .await
        .expect_err("foreign key");
    assert_eq!(err.code(), Some(&ErrorCode::InvalidAccessKeyId));
    assert_eq!(
        emulator.stats(QUEUE).map(|s| s.visible),
        Some(0),
        "nothing was sent"
    );
}

#[tokio::test]
async fn a_security_token_is_required_when_the_credentials_carry_one() {
    let sts = Credentials::new("sts-id", "sts-secret").with_security_token("CAIS-token");
    let emulator = Emulator::start(sts.clone()).await.expect("emulator");
    emulator.create_queue(QUEUE, QueueConfig::default());

    let without = Client::new(
        &emulator.endpoint(),
        Credentials::new("sts-id", "sts-secret"),
    )
    .expect("client")
    .queue(QUEUE);
    let err = without.send(REQUEST).await.expect_err("no token");
    assert_eq!(err.code(), Some(&ErrorCode::AccessDenied));

    let client = Client::new(&emulator.endpoint(), sts).expect("client");
    client.queue(QUEUE).send(REQUEST).await.expect("token sent");

    // A refreshed token reaches every clone of the client.
    let rotated = Credentials::new("sts-id", "sts-secret").with_security_token("CAIS-next");
    emulator.set_credentials(rotated.clone());
    let queue = client.queue(QUEUE);
    assert!(
        queue.receive(NOW).await.is_err(),
        "the old token no longer works"
    );
    client.set_credentials(rotated);
    assert!(queue.receive(NOW).await.expect("receive").is_some());
}
