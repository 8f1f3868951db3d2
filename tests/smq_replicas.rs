//! Two `stackhook serve` replicas consuming one SMQ queue on one PostgreSQL
//! journal (issue 24): every request runs once across both, whichever
//! replica each delivery reaches, redeliveries included. The real binary,
//! the SMQ emulator (`stackhook_smq::emulator`) and a real PostgreSQL:
//! `STACKHOOK_TEST_POSTGRES_URL`, set by `.ci/postgres.sh`
//! (`source .ci/postgres.sh && pg_start`). Without it this test fails under
//! CI=true and is skipped, saying so, elsewhere.

mod common;
#[path = "common/provider.rs"]
mod provider;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use stackhook::Response;
use stackhook::sink::CallbackSink;
use stackhook_smq::emulator::{Emulator, QueueConfig};
use stackhook_smq::{Client, Credentials, Queue};
use tempfile::TempDir;

use common::fixture_for;
use provider::{Logs, Provider};

const KEY_ID: &str = "test-id";
const KEY_SECRET: &str = "test-secret";
const QUEUE: &str = "ros-requests";
const ARN: &str = "acs:mns:cn-hangzhou:1234567890:queues/ros-requests";
const ENV: [(&str, &str); 2] = [
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET),
];

/// Requests, and how many of them are enqueued a second time.
const REQUESTS: usize = 40;
const SENT_TWICE: usize = 10;

/// The longest wait for every answer and delete: a debug build of two
/// replicas and PostgreSQL on a shared machine. A passing run is far quicker.
const WITHIN: Duration = Duration::from_secs(60);

/// How long nothing more may arrive once every answer did.
const QUIET: Duration = Duration::from_secs(2);

fn url() -> Option<String> {
    match std::env::var("STACKHOOK_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STACKHOOK_TEST_POSTGRES_URL is not set under CI=true: .ci/run starts PostgreSQL \
                 (.ci/postgres.sh) and the PostgreSQL tests must not be skipped"
            );
            eprintln!(
                "skipped: STACKHOOK_TEST_POSTGRES_URL is not set \
                 (run `source .ci/postgres.sh && pg_start` first)"
            );
            None
        }
    }
}

/// A schema of this test run's own, so runs share one database.
fn schema(name: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{name}_{}", &suffix[..10])
}

/// `stackhook serve` consuming the emulator's queue, journaling to `schema`
/// on PostgreSQL `url`.
async fn replica(url: &str, schema: &str, endpoint: &str) -> (Provider, TempDir) {
    let dir = TempDir::new().expect("state dir");
    let flags: Vec<String> = [
        "--mns-queue",
        ARN,
        "--mns-endpoint",
        endpoint,
        "--mns-wait",
        "5",
        "--journal",
        url,
        "--journal-schema",
        schema,
        "--secret-key",
        "0123456789abcdef0123456789abcdef",
    ]
    .map(String::from)
    .to_vec();
    let provider = Provider::start_with_env(dir.path(), &flags, &ENV)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (provider, dir)
}

/// Send, retrying a refused send a few times.
async fn send(queue: &Queue, body: &str) {
    for _ in 0..50 {
        if queue.send(body).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the emulator never took the message");
}

fn dump(logs: &[Logs]) -> String {
    logs.iter()
        .map(Logs::dump)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Forty Echo Creates through one queue, ten of them enqueued twice (SMQ
/// redelivering): both replicas consume it, sharing the journal. Every
/// request is answered, a request sent once exactly once, a request sent
/// twice at most once per delivery and always with the same answer (a
/// delivery that finds the request answered gets that answer again); each
/// handler runs once across both replicas; every message is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_consume_one_queue_and_run_each_request_once() {
    let Some(url) = url() else { return };
    let credentials = Credentials::new(KEY_ID, KEY_SECRET);
    let emulator = Emulator::start(credentials.clone())
        .await
        .expect("emulator");
    emulator.create_queue(QUEUE, QueueConfig::default());
    let queue = Client::new(&emulator.endpoint(), credentials)
        .expect("client")
        .queue(QUEUE);
    let sink = CallbackSink::start().await.expect("sink");
    let schema = schema("smq_replicas");
    let (a, _da) = replica(&url, &schema, &emulator.endpoint()).await;
    let (b, _db) = replica(&url, &schema, &emulator.endpoint()).await;
    let logs = [a.logs.clone(), b.logs.clone()];
    for provider in [&a, &b] {
        assert!(
            provider
                .logs
                .wait_for(WITHIN, |l| l["message"] == "consuming SMQ queue")
                .await,
            "{}",
            provider.logs.dump()
        );
    }

    let requests: Vec<Value> = (0..REQUESTS)
        .map(|_| fixture_for("echo-create.json", &sink))
        .collect();
    let ids: Vec<String> = requests
        .iter()
        .map(|r| r["RequestId"].as_str().expect("RequestId").to_owned())
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        REQUESTS,
        "distinct request ids"
    );
    // The duplicates: every fourth request, once right after itself and
    // once at the end, so both an in-progress and an answered request are
    // likely redelivered.
    let twice: Vec<usize> = (0..REQUESTS).step_by(REQUESTS / SENT_TWICE).collect();
    assert_eq!(twice.len(), SENT_TWICE);
    for (i, body) in requests.iter().enumerate() {
        let text = body.to_string();
        send(&queue, &text).await;
        if twice.contains(&i) && i % 2 == 0 {
            send(&queue, &text).await;
        }
    }
    for &i in twice.iter().filter(|&&i| i % 2 == 1) {
        send(&queue, &requests[i].to_string()).await;
    }
    let messages = (REQUESTS + SENT_TWICE) as u64;

    // Every request answered, every message deleted.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let answered: HashSet<String> = sink
            .received()
            .iter()
            .filter_map(|c| c.response())
            .map(|r| r.request_id)
            .collect();
        let stats = emulator.stats(QUEUE).expect("queue");
        if (ids.iter().all(|id| answered.contains(id)) && stats.deleted >= messages)
            || tokio::time::Instant::now() >= deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(QUIET).await;

    let mut by_id: HashMap<String, Vec<Response>> = HashMap::new();
    for call in sink.received() {
        let response = call
            .response()
            .unwrap_or_else(|| panic!("not a ROS answer: {}", String::from_utf8_lossy(&call.body)));
        by_id
            .entry(response.request_id.clone())
            .or_default()
            .push(response);
    }
    assert_eq!(
        by_id.keys().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>(),
        "every request answered, no other answers\n{}",
        dump(&logs)
    );
    for (i, id) in ids.iter().enumerate() {
        let answers = &by_id[id];
        let deliveries = if twice.contains(&i) { 2 } else { 1 };
        assert!(
            answers.len() <= deliveries,
            "{id} (delivered {deliveries}x) answered {} times: {answers:?}\n{}",
            answers.len(),
            dump(&logs)
        );
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{id} got different answers: {answers:?}"
        );
        assert_eq!(
            answers[0].status.as_str(),
            "SUCCESS",
            "{id}: {:?}",
            answers[0]
        );
        let runs: usize = logs.iter().map(|l| l.handler_runs(id).len()).sum();
        assert_eq!(runs, 1, "{id} ran {runs} times\n{}", dump(&logs));
    }

    let stats = emulator.stats(QUEUE).expect("queue");
    assert_eq!(
        (stats.visible, stats.in_flight, stats.delayed, stats.deleted),
        (0, 0, 0, messages),
        "the queue is empty, every message deleted once\n{}",
        dump(&logs)
    );
    // Each message recorded once, by one replica or the other (a message
    // seen twice would have outlived its visibility timeout), and both
    // replicas took a share: two long polls on one queue of fifty.
    let recorded = |l: &Logs| {
        l.lines()
            .iter()
            .filter(|line| {
                line["message"] == "recorded" || line["message"] == "recorded before (a redelivery)"
            })
            .count()
    };
    let per_replica: Vec<usize> = logs.iter().map(recorded).collect();
    assert_eq!(
        per_replica.iter().sum::<usize>(),
        REQUESTS + SENT_TWICE,
        "each message recorded once: {per_replica:?}\n{}",
        dump(&logs)
    );
    assert!(
        per_replica.iter().all(|&n| n > 0),
        "both replicas consumed: {per_replica:?}"
    );
}
