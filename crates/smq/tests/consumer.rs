//! The queue consumer against the emulator on 127.0.0.1:0, with a fake
//! intake: the lifecycle, crashes, poison, slow and unavailable journals,
//! every body shape, two consumers on one queue, and shutdown.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::intake::{FakeIntake, Mode, Running, config, eventually};
use common::{QUEUE, start};
use stackhook_smq::emulator::QueueConfig;
use stackhook_smq::{Consumer, Notification, Via};

const REQUEST: &str = r#"{"RequestType":"Create","RequestId":"req-1","ResponseURL":"https://ros.example/cb?Signature=presigned","ResourceType":"Custom::Thing","LogicalResourceId":"Thing"}"#;

fn request(id: usize) -> String {
    format!(
        r#"{{"RequestType":"Create","RequestId":"req-{id}","ResponseURL":"https://ros.example/cb"}}"#
    )
}

fn quick_visibility() -> QueueConfig {
    QueueConfig::default().visibility_timeout(Duration::from_secs(1))
}

#[tokio::test]
async fn a_request_goes_from_send_to_record_to_delete() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    let intake = FakeIntake::new(Mode::Normal);
    let consumer = Running::start(config(&emulator), intake.clone());
    let sent = queue.send(REQUEST).await.expect("send");

    let seen = intake.wait_for(1).await;
    eventually("the message is deleted", || {
        emulator.stats(QUEUE).is_some_and(|s| s.deleted == 1)
    })
    .await;
    let (json, origin) = &seen[0];
    assert_eq!(json.as_ref(), REQUEST.as_bytes());
    assert_eq!(origin.message_id, sent.message_id);
    assert_eq!(origin.dequeue_count, Some(1));
    assert_eq!(origin.shape.as_str(), "raw");
    assert_eq!(origin.via, Via::Queue(QUEUE.to_owned()));
    let queue_stats = emulator.stats(QUEUE).expect("queue");
    assert_eq!((queue_stats.visible, queue_stats.in_flight), (0, 0));
    let stats = consumer.stats.clone();
    consumer.stop().await;
    assert_eq!(stats.received(), 1);
    assert_eq!(stats.recorded(), 1);
    assert_eq!(stats.deleted(), 1);
    assert_eq!(stats.in_flight(), 0);
    assert_eq!(intake.seen().len(), 1, "recorded once");
}

#[tokio::test]
async fn a_crash_between_record_and_delete_redelivers_the_same_request() {
    let (emulator, queue) = start(quick_visibility()).await;
    // The first consumer records the request, then dies before deleting.
    let intake = FakeIntake::new(Mode::Hang);
    let first = Running::start(config(&emulator), intake.clone());
    queue.send(REQUEST).await.expect("send");
    intake.wait_for(1).await;
    first.kill().await;
    assert_eq!(emulator.stats(QUEUE).map(|s| s.deleted), Some(0));

    // Its replacement gets the message again after the visibility timeout.
    intake.set_mode(Mode::Normal);
    let second = Running::start(config(&emulator), intake.clone());
    let seen = intake.wait_for(2).await;
    eventually("the redelivered message is deleted", || {
        emulator.stats(QUEUE).is_some_and(|s| s.deleted == 1)
    })
    .await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, seen[1].0, "the same request, for dedupe");
    assert_eq!(seen[0].1.message_id, seen[1].1.message_id);
    assert_eq!(seen[0].1.dequeue_count, Some(1));
    assert_eq!(seen[1].1.dequeue_count, Some(2));
    assert_eq!(second.stats.recorded(), 1);
    second.stop().await;
    assert_eq!(
        emulator.stats(QUEUE).map(|s| s.visible + s.in_flight),
        Some(0)
    );
}

#[tokio::test]
async fn poison_messages_are_deleted_at_the_dequeue_limit_and_counted() {
    let (emulator, queue) = start(quick_visibility()).await;
    let intake = FakeIntake::new(Mode::Normal);
    let consumer = Running::start(config(&emulator).poison_dequeue_limit(2), intake.clone());
    queue.send("hunter2 is not JSON").await.expect("send");
    queue
        .send(r#"{"Hello":"not a ROS request"}"#)
        .await
        .expect("send");

    eventually("both poison messages are deleted", || {
        emulator.stats(QUEUE).is_some_and(|s| s.deleted == 2)
    })
    .await;
    let stats = consumer.stats.clone();
    consumer.stop().await;
    // The undecodable body never reaches the intake; the refused one does,
    // once per delivery, until the limit.
    let seen = intake.seen();
    let counts: Vec<Option<u32>> = seen.iter().map(|(_, o)| o.dequeue_count).collect();
    assert_eq!(counts, [Some(1), Some(2)]);
    assert!(intake.jsons().iter().all(|j| j.contains("Hello")));
    assert_eq!(stats.poison(), 4, "two messages, two deliveries each");
    assert_eq!(stats.poison_deleted(), 2);
    assert_eq!(stats.recorded(), 0);
    let queue_stats = emulator.stats(QUEUE).expect("queue");
    assert_eq!((queue_stats.visible, queue_stats.in_flight), (0, 0));
}

#[tokio::test]
async fn an_unavailable_journal_leaves_the_message_for_redelivery() {
    for failing in [Mode::Unavailable, Mode::Panic] {
        let (emulator, queue) = start(quick_visibility()).await;
        let intake = FakeIntake::new(failing);
        let consumer = Running::start(config(&emulator), intake.clone());
        queue.send(REQUEST).await.expect("send");
        intake.wait_for(1).await;
        intake.set_mode(Mode::Normal);
        let seen = intake.wait_for(2).await;
        eventually("deleted once recorded", || {
            emulator.stats(QUEUE).is_some_and(|s| s.deleted == 1)
        })
        .await;
        let counts: Vec<Option<u32>> = seen.iter().map(|(_, o)| o.dequeue_count).collect();
        assert_eq!(counts, [Some(1), Some(2)], "{failing:?}");
        let stats = consumer.stats.clone();
        consumer.stop().await;
        assert_eq!(stats.unavailable(), 1, "{failing:?}");
        assert_eq!(stats.recorded(), 1, "{failing:?}");
        assert!(stats.backoffs() >= 1, "{failing:?}: the receiver backs off");
        assert_eq!(stats.poison(), 0, "{failing:?}");
    }
}

#[tokio::test]
async fn a_slow_record_keeps_its_message_hidden_and_is_deleted_with_the_latest_handle() {
    // The queue hides a message for 2 s; the record takes 4. The check
    // reads the queue's timeout, so the consumer extends every second.
    let (emulator, queue) =
        start(QueueConfig::default().visibility_timeout(Duration::from_secs(2))).await;
    let intake = FakeIntake::new(Mode::Slow(Duration::from_secs(4)));
    let consumer = Consumer::new(
        config(&emulator)
            .receivers(2)
            .visibility_extension(Duration::from_secs(2)),
    )
    .expect("consumer");
    assert_eq!(consumer.check().await.expect("check").visibility_timeout, 2);
    let running = Running::start_consumer(consumer, intake.clone());
    queue.send(REQUEST).await.expect("send");
    eventually("the slow message is deleted", || {
        emulator.stats(QUEUE).is_some_and(|s| s.deleted == 1)
    })
    .await;
    let stats = running.stats.clone();
    running.stop().await;
    assert_eq!(intake.seen().len(), 1, "no other receiver got it meanwhile");
    assert!(
        stats.visibility_extensions() >= 2,
        "{}",
        stats.visibility_extensions()
    );
    assert_eq!(stats.delete_failures(), 0, "deleted with the latest handle");
    assert_eq!(stats.deleted(), 1);
}

#[tokio::test]
async fn every_body_shape_reaches_the_intake_as_the_same_json() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    let intake = FakeIntake::new(Mode::Normal);
    let consumer = Running::start(config(&emulator), intake.clone());
    let base64 = STANDARD.encode(REQUEST);
    let raw_envelope = Notification::new("ros-topic", "m-raw", REQUEST);
    let b64_envelope = Notification::new("ros-topic", "m-b64", base64.clone());
    let bodies = [
        REQUEST.to_owned(),
        base64,
        raw_envelope.to_xml().expect("xml"),
        b64_envelope.to_xml().expect("xml"),
        raw_envelope.to_json(),
        b64_envelope.to_json(),
    ];
    for body in &bodies {
        queue.send(body.as_str()).await.expect("send");
    }
    let seen = intake.wait_for(bodies.len()).await;
    consumer.stop().await;
    assert!(
        intake.jsons().iter().all(|j| j == REQUEST),
        "{:?}",
        intake.jsons()
    );
    let shapes: BTreeSet<&str> = seen.iter().map(|(_, o)| o.shape.as_str()).collect();
    assert_eq!(
        shapes,
        BTreeSet::from([
            "raw",
            "base64",
            "topic-xml+raw",
            "topic-xml+base64",
            "topic-json+raw",
            "topic-json+base64"
        ])
    );
    assert_eq!(emulator.stats(QUEUE).map(|s| s.deleted), Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_on_one_queue_record_every_message() {
    const MESSAGES: usize = 40;
    let (emulator, queue) = start(QueueConfig::default()).await;
    let intake = FakeIntake::new(Mode::Normal);
    let a = Running::start(config(&emulator).batch_size(4), intake.clone());
    let b = Running::start(config(&emulator).batch_size(4), intake.clone());
    for id in 0..MESSAGES {
        queue.send(request(id)).await.expect("send");
    }
    eventually("every message is deleted", || {
        emulator
            .stats(QUEUE)
            .is_some_and(|s| s.deleted == MESSAGES as u64)
    })
    .await;
    let (stats_a, stats_b) = (a.stats.clone(), b.stats.clone());
    a.stop().await;
    b.stop().await;
    let ids: BTreeSet<String> = intake
        .jsons()
        .iter()
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(j).expect("json");
            v["RequestId"].as_str().expect("id").to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = (0..MESSAGES).map(|i| format!("req-{i}")).collect();
    assert_eq!(ids, expected, "every message recorded, none lost");
    assert_eq!(stats_a.deleted() + stats_b.deleted(), MESSAGES as u64);
    assert_eq!(stats_a.delete_failures() + stats_b.delete_failures(), 0);
}

#[tokio::test]
async fn shutdown_stops_receiving_at_once_and_lets_a_record_finish() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    let intake = FakeIntake::new(Mode::Slow(Duration::from_millis(800)));
    // A 30 s long poll: stopping must not wait for it to end.
    let consumer = Running::start(
        config(&emulator).wait(Duration::from_secs(30)).receivers(2),
        intake.clone(),
    );
    queue.send(REQUEST).await.expect("send");
    intake.wait_for(1).await;
    let stats = consumer.stats.clone();
    consumer.stop().await;
    assert_eq!(stats.recorded(), 1, "the record in progress finished");
    assert_eq!(
        emulator.stats(QUEUE).map(|s| s.deleted),
        Some(1),
        "and was deleted"
    );
    let requests = emulator.requests();
    queue.send(REQUEST).await.expect("send");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        emulator.requests(),
        requests + 1,
        "no receive after shutdown"
    );
    assert_eq!(intake.seen().len(), 1);
}

#[tokio::test]
async fn shutdown_gives_up_on_a_hung_record_after_the_grace_and_leaves_the_message() {
    let (emulator, queue) = start(QueueConfig::default()).await;
    let intake = FakeIntake::new(Mode::Hang);
    let consumer = Running::start(
        config(&emulator).shutdown_grace(Duration::from_millis(300)),
        intake.clone(),
    );
    queue.send(REQUEST).await.expect("send");
    intake.wait_for(1).await;
    let stats = consumer.stats.clone();
    consumer.stop().await;
    assert_eq!(stats.deleted(), 0);
    assert_eq!(stats.in_flight(), 0);
    let queue_stats = emulator.stats(QUEUE).expect("queue");
    assert_eq!(
        (queue_stats.in_flight, queue_stats.deleted),
        (1, 0),
        "left for redelivery"
    );
}
