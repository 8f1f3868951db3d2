//! What the consumer logs: poison messages by MessageId, each body shape
//! once at INFO; never a body, a presigned URL or a secret. Its own file:
//! it installs a (thread-local) log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::intake::{FakeIntake, Mode, Running, config, eventually};
use common::{QUEUE, start};
use stackhook_smq::emulator::QueueConfig;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

#[tokio::test]
async fn logs_name_messages_and_shapes_but_never_bodies_or_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (emulator, queue) = start(QueueConfig::default()).await;
    let intake = FakeIntake::new(Mode::Normal);
    let consumer = Running::start(config(&emulator).poison_dequeue_limit(1), intake.clone());
    let good = r#"{"RequestType":"Create","RequestId":"r-1","ResponseURL":"https://ros.example/cb?Signature=GOODSIG"}"#;
    let refused = queue
        .send(r#"{"ResponseURL":"https://ros.example/cb?Signature=POISONSIG"}"#)
        .await
        .expect("send");
    let undecodable = queue.send("hunter2 plain text").await.expect("send");
    queue.send(good).await.expect("send");
    queue.send(good).await.expect("send");
    queue.send(STANDARD.encode(good)).await.expect("send");
    eventually("all five are deleted", || {
        emulator.stats(QUEUE).is_some_and(|s| s.deleted == 5)
    })
    .await;
    consumer.stop().await;

    let logs = captured.text();
    for id in [&refused.message_id, &undecodable.message_id] {
        assert!(
            logs.lines()
                .any(|l| l.contains("poison") && l.contains(id.as_str())),
            "poison {id} logged by id:\n{logs}"
        );
    }
    let firsts: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("first SMQ message in this body shape"))
        .collect();
    assert_eq!(firsts.len(), 2, "raw and base64, once each:\n{logs}");
    assert!(
        logs.contains("SMQ message received"),
        "per-message DEBUG line"
    );
    for secret in ["GOODSIG", "POISONSIG", "hunter2", "test-access-key-secret"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}
