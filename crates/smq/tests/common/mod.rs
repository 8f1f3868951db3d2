//! Shared set-up: an emulator on 127.0.0.1:0 with one queue, and a client.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use stackhook_smq::emulator::{Emulator, QueueConfig};
use stackhook_smq::{Client, Credentials, Queue};

pub const QUEUE: &str = "ros-requests";

pub fn credentials() -> Credentials {
    Credentials::new("test-access-key-id", "test-access-key-secret")
}

/// An emulator with queue [`QUEUE`] and a client queue handle on it.
pub async fn start(config: QueueConfig) -> (Emulator, Queue) {
    let emulator = Emulator::start(credentials()).await.expect("emulator");
    emulator.create_queue(QUEUE, config);
    let queue = Client::new(&emulator.endpoint(), credentials())
        .expect("client")
        .queue(QUEUE);
    (emulator, queue)
}

/// No wait: a receive that answers at once.
pub const NOW: Option<Duration> = Some(Duration::ZERO);

/// An upper bound for something that should happen promptly; only a hang
/// exceeds it.
pub const PROMPTLY: Duration = Duration::from_secs(10);

pub mod intake;
