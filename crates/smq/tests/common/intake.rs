//! A fake intake that records what it got and can be told to refuse, be
//! unavailable, hang, take its time or panic; and a running consumer that a
//! test can stop or kill.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use stackhook_smq::emulator::Emulator;
use stackhook_smq::{Consumer, ConsumerConfig, ConsumerStats, Intake, IntakeOutcome, Origin};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{PROMPTLY, QUEUE, credentials};

/// How the fake intake answers the next records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Recorded when the JSON has a `RequestType`, refused otherwise (as the
    /// core refuses what is not a ROS request).
    Normal,
    /// Unavailable, as a journal that is down.
    Unavailable,
    /// Never answers.
    Hang,
    /// Answers as `Normal`, after this long.
    Slow(Duration),
    /// Panics.
    Panic,
}

#[derive(Debug)]
struct Inner {
    mode: Mutex<Mode>,
    seen: Mutex<Vec<(Bytes, Origin)>>,
    count: watch::Sender<usize>,
}

/// Clones share what they saw.
#[derive(Debug, Clone)]
pub struct FakeIntake(Arc<Inner>);

impl FakeIntake {
    pub fn new(mode: Mode) -> Self {
        FakeIntake(Arc::new(Inner {
            mode: Mutex::new(mode),
            seen: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        }))
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.0.mode.lock().expect("lock") = mode;
    }

    /// Every record call so far: the JSON and its origin.
    pub fn seen(&self) -> Vec<(Bytes, Origin)> {
        self.0.seen.lock().expect("lock").clone()
    }

    /// The JSON of every record call so far, as text.
    pub fn jsons(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .map(|(json, _)| String::from_utf8(json.to_vec()).expect("utf8"))
            .collect()
    }

    /// Wait until at least `n` record calls were made; panics after
    /// [`PROMPTLY`].
    pub async fn wait_for(&self, n: usize) -> Vec<(Bytes, Origin)> {
        let mut count = self.0.count.subscribe();
        tokio::time::timeout(PROMPTLY, count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("the intake saw {} records, not {n}", self.seen().len()))
            .expect("sender alive");
        self.seen()
    }
}

fn judge(json: &Bytes) -> IntakeOutcome {
    let value: serde_json::Value = serde_json::from_slice(json).expect("the consumer hands JSON");
    if value.get("RequestType").is_some() {
        IntakeOutcome::Recorded
    } else {
        IntakeOutcome::refused("not a ROS request: no RequestType")
    }
}

impl Intake for FakeIntake {
    async fn record(&self, request_json: Bytes, origin: Origin) -> IntakeOutcome {
        // The mode is read before the call is visible to `wait_for`, so a
        // test may change it as soon as it sees the call.
        let mode = *self.0.mode.lock().expect("lock");
        self.0
            .seen
            .lock()
            .expect("lock")
            .push((request_json.clone(), origin));
        self.0.count.send_modify(|c| *c += 1);
        match mode {
            Mode::Normal => judge(&request_json),
            Mode::Unavailable => IntakeOutcome::unavailable("journal down (fake)"),
            Mode::Hang => std::future::pending().await,
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                judge(&request_json)
            }
            Mode::Panic => panic!("the fake intake panics"),
        }
    }
}

pub fn arn() -> stackhook_smq::Arn {
    format!("acs:mns:cn-hangzhou:1234567890:queues/{QUEUE}")
        .parse()
        .expect("arn")
}

/// A consumer config for the emulator's queue, with short waits and
/// backoffs so tests finish quickly.
pub fn config(emulator: &Emulator) -> ConsumerConfig {
    ConsumerConfig::new(arn(), credentials())
        .endpoint(emulator.endpoint())
        .wait(Duration::from_secs(5))
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .shutdown_grace(Duration::from_secs(5))
}

/// A consumer running in a task.
pub struct Running {
    pub stats: Arc<ConsumerStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    pub fn start(config: ConsumerConfig, intake: FakeIntake) -> Self {
        Running::start_consumer(Consumer::new(config).expect("consumer"), intake)
    }

    pub fn start_consumer(consumer: Consumer, intake: FakeIntake) -> Self {
        let stats = consumer.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move { consumer.run(intake, stopped).await });
        Running {
            stats,
            stop: Some(stop),
            task,
        }
    }

    /// Ask for shutdown and wait until `run` returns; panics if it takes
    /// longer than [`PROMPTLY`].
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PROMPTLY, &mut self.task)
            .await
            .expect("run returns promptly after shutdown")
            .expect("run does not panic");
    }

    /// A crash: the consumer vanishes mid-work, nothing more is sent.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Wait until `condition` holds; panics after [`PROMPTLY`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
