//! ROS requests through an SMQ (MNS) queue and topic pushes, end to end:
//! the real `stackhook serve --mns-queue` against the SMQ emulator
//! (`stackhook_smq::emulator`), answers at a callback sink.

mod common;
#[path = "common/provider.rs"]
mod provider;

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use stackhook::sink::{CallbackSink, Received};
use stackhook_smq::emulator::push::{
    PushSigner, TEST_SIGNING_KEY_PEM, TopicPusher, test_certificate_pem,
};
use stackhook_smq::emulator::{Emulator, QueueConfig};
use stackhook_smq::{Client, Credentials, Notification, NotifyFormat, Queue};
use tempfile::TempDir;

use common::{answer_of, fixture_for};
use provider::Provider;

const KEY_ID: &str = "test-id";
const KEY_SECRET: &str = "test-secret";
const QUEUE: &str = "ros-requests";
const ARN: &str = "acs:mns:cn-hangzhou:1234567890:queues/ros-requests";
const ENV: [(&str, &str); 2] = [
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET),
];
const WITHIN: Duration = Duration::from_secs(20);

struct Smq {
    emulator: Emulator,
    queue: Queue,
    sink: CallbackSink,
    dir: TempDir,
}

impl Smq {
    async fn start(config: QueueConfig) -> Smq {
        let credentials = Credentials::new(KEY_ID, KEY_SECRET);
        let emulator = Emulator::start(credentials.clone())
            .await
            .expect("emulator");
        emulator.create_queue(QUEUE, config);
        let queue = Client::new(&emulator.endpoint(), credentials)
            .expect("client")
            .queue(QUEUE);
        Smq {
            emulator,
            queue,
            sink: CallbackSink::start().await.expect("sink"),
            dir: TempDir::new().expect("state dir"),
        }
    }

    fn flags(&self, extra: &[&str]) -> Vec<String> {
        let mut flags: Vec<String> = vec![
            "--mns-queue".into(),
            ARN.into(),
            "--mns-endpoint".into(),
            self.emulator.endpoint(),
        ];
        if !extra.contains(&"--mns-wait") {
            flags.extend(["--mns-wait".into(), "5".into()]);
        }
        flags.extend(extra.iter().map(|s| s.to_string()));
        flags
    }

    async fn provider(&self, extra: &[&str]) -> Provider {
        Provider::start_with_env(self.dir.path(), &self.flags(extra), &ENV)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Send, retrying through faults the test injected.
    /// Send `body`; the new message's id.
    async fn send(&self, body: String) -> String {
        for _ in 0..50 {
            if let Ok(sent) = self.queue.send(body.as_str()).await {
                return sent.message_id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the emulator never took the message");
    }

    async fn deleted(&self, count: u64) -> bool {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let stats = self.emulator.stats(QUEUE).expect("queue");
            if stats.deleted >= count {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn request(smq: &Smq, fixture: &str) -> Value {
    fixture_for(fixture, &smq.sink)
}

fn request_id(body: &Value) -> &str {
    body["RequestId"].as_str().expect("RequestId")
}

async fn answers(sink: &CallbackSink, count: usize) -> Vec<Received> {
    let calls = sink.wait_for(count, WITHIN).await;
    assert!(
        calls.len() >= count,
        "{} answers, wanted {count}",
        calls.len()
    );
    calls
}

/// The value of one series on `/metrics`.
async fn metric(provider: &Provider, series: &str) -> f64 {
    let text = provider.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_lifecycle_arrives_through_the_queue_raw_and_base64() {
    let smq = Smq::start(QueueConfig::default()).await;
    let provider = smq.provider(&[]).await;

    let create = request(&smq, "echo-create.json");
    let create_message = smq.send(create.to_string()).await;
    let created = answer_of(&answers(&smq.sink, 1).await[0]);
    assert_eq!(created.status.as_str(), "SUCCESS", "{created:?}");
    assert_eq!(created.request_id, request_id(&create));
    let physical_id = created.physical_resource_id.clone();

    // Update as base64 JSON: the body shape SMQ's console and some SDKs send.
    let mut update = request(&smq, "echo-update.json");
    update["PhysicalResourceId"] = Value::String(physical_id.clone());
    let update_message = smq
        .send(base64::engine::general_purpose::STANDARD.encode(update.to_string()))
        .await;
    let updated = answer_of(&answers(&smq.sink, 2).await[1]);
    assert_eq!(updated.status.as_str(), "SUCCESS", "{updated:?}");
    assert_eq!(updated.request_id, request_id(&update));

    let mut delete = request(&smq, "echo-delete.json");
    delete["PhysicalResourceId"] = Value::String(physical_id);
    let delete_message = smq.send(delete.to_string()).await;
    let deleted = answer_of(&answers(&smq.sink, 3).await[2]);
    assert_eq!(deleted.status.as_str(), "SUCCESS", "{deleted:?}");
    assert_eq!(deleted.request_id, request_id(&delete));

    assert!(
        smq.deleted(3).await,
        "every message is deleted once recorded"
    );
    let stats = smq.emulator.stats(QUEUE).expect("queue");
    assert_eq!((stats.visible, stats.in_flight), (0, 0));
    assert_eq!(
        metric(
            &provider,
            "stackhook_smq_deleted_total{queue=\"ros-requests\"}"
        )
        .await,
        3.0
    );
    for id in [&create, &update, &delete].map(request_id) {
        assert_eq!(provider.logs.handler_runs(id).len(), 1, "{id}");
    }
    // Each message's shape, by its id: the receivers log "recorded" once
    // the journal has it, which may come after a later message's line.
    let lines = provider.logs.lines();
    let shape_of = |message_id: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["message"] == "recorded" && l["message_id"] == message_id)
            .map(|l| l["shape"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for (message, shape) in [
        (&create_message, "raw"),
        (&update_message, "base64"),
        (&delete_message, "raw"),
    ] {
        assert_eq!(shape_of(message), [shape], "{}", provider.logs.dump());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_record_and_delete_redelivers_and_runs_once() {
    let smq = Smq::start(QueueConfig::default().visibility_timeout(Duration::from_secs(2))).await;
    smq.emulator.refuse_deletes(true);
    // The journal outlives the process: the restart's dedupe needs it.
    let persistent = ["--journal-lifetime", "persistent"];
    let first = smq.provider(&persistent).await;
    let create = request(&smq, "echo-create.json");
    let id = request_id(&create).to_owned();
    smq.send(create.to_string()).await;
    // Recorded, run and answered; the delete is refused, so the message
    // is still SMQ's when the process dies.
    let answer = answer_of(&answers(&smq.sink, 1).await[0]);
    assert!(
        first
            .logs
            .wait_for(WITHIN, |l| l["message"] == "recorded")
            .await
    );
    // The answer is journaled too (within the journal's 100 ms durability
    // bound): a kill before that reruns the handler by design, which
    // crash_matrix.rs covers; this test is about the queue message.
    assert!(
        first
            .logs
            .wait_for(WITHIN, |l| l["message"] == "answer delivered")
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs_before = first.logs.handler_runs(&id).len();
    let first_logs = first.logs.clone();
    first.kill_hard();
    assert_eq!(smq.emulator.stats(QUEUE).expect("queue").deleted, 0);

    smq.emulator.refuse_deletes(false);
    let second = smq.provider(&persistent).await;
    assert!(smq.deleted(1).await, "the redelivery is deleted");
    assert!(
        second
            .logs
            .wait_for(WITHIN, |l| l["message"] == "recorded before (a redelivery)")
            .await,
        "{}",
        second.logs.dump()
    );
    assert_eq!(
        runs_before + second.logs.handler_runs(&id).len(),
        1,
        "one handler run: {}\n---\n{}",
        first_logs.dump(),
        second.logs.dump()
    );
    // Every answer ROS got is the one answer.
    for call in smq.sink.received() {
        let again = answer_of(&call);
        assert_eq!(again.request_id, answer.request_id);
        assert_eq!(again.status, answer.status);
        assert_eq!(again.physical_resource_id, answer.physical_resource_id);
        assert_eq!(again.data, answer.data);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_are_deleted_at_the_limit_and_counted() {
    let smq = Smq::start(QueueConfig::default().visibility_timeout(Duration::from_secs(1))).await;
    let provider = smq.provider(&["--mns-poison-limit", "2"]).await;
    let mut no_callback = request(&smq, "echo-create.json");
    no_callback
        .as_object_mut()
        .expect("object")
        .remove("ResponseURL");
    no_callback
        .as_object_mut()
        .expect("object")
        .remove("IntranetResponseURL");
    smq.send("not a ROS request".into()).await;
    smq.send(r#"{"RequestType":"Create"}"#.into()).await;
    smq.send(no_callback.to_string()).await;

    assert!(smq.deleted(3).await, "{}", provider.logs.dump());
    let q = "{queue=\"ros-requests\"}";
    assert_eq!(
        metric(&provider, &format!("stackhook_smq_poison_deleted_total{q}")).await,
        3.0
    );
    assert!(metric(&provider, &format!("stackhook_smq_poison_total{q}")).await >= 6.0);
    assert_eq!(
        metric(&provider, &format!("stackhook_smq_recorded_total{q}")).await,
        0.0
    );
    assert!(
        smq.sink.received().is_empty(),
        "nothing ran, nothing answered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_failures_and_an_emulator_restart_are_survived() {
    let smq = Smq::start(QueueConfig::default()).await;
    let provider = smq.provider(&[]).await;
    assert!(
        provider
            .logs
            .wait_for(WITHIN, |l| l["message"] == "consuming SMQ queue")
            .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    smq.emulator.throttle_next(4);
    smq.emulator.fail_next(2);
    // Drops the open long polls: the receivers reconnect into the faults.
    smq.emulator.restart();
    let first = request(&smq, "echo-create.json");
    smq.send(first.to_string()).await;
    answers(&smq.sink, 1).await;
    smq.emulator.restart();
    smq.emulator.empty_next_receives(4);
    let second = request(&smq, "echo-create.json");
    smq.send(second.to_string()).await;
    let calls = answers(&smq.sink, 2).await;
    let ids: Vec<String> = calls.iter().map(|c| answer_of(c).request_id).collect();
    assert!(
        ids.contains(&request_id(&first).to_owned())
            && ids.contains(&request_id(&second).to_owned())
    );
    assert!(smq.deleted(2).await);
    let q = "{queue=\"ros-requests\"}";
    assert!(metric(&provider, &format!("stackhook_smq_receive_errors_total{q}")).await >= 1.0);
    // Backoff, not a busy loop: far fewer requests than a spin would make.
    assert!(
        smq.emulator.requests() < 500,
        "{} requests",
        smq.emulator.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn four_receivers_share_one_queue_and_one_journal() {
    let smq = Smq::start(QueueConfig::default()).await;
    let provider = smq.provider(&["--mns-receivers", "4"]).await;
    let requests: Vec<Value> = (0..24).map(|_| request(&smq, "echo-create.json")).collect();
    for body in &requests {
        smq.send(body.to_string()).await;
    }
    let calls = answers(&smq.sink, requests.len()).await;
    assert!(smq.deleted(requests.len() as u64).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smq.sink.received().len(), calls.len().max(requests.len()));
    for body in &requests {
        let id = request_id(body);
        assert_eq!(provider.logs.handler_runs(id).len(), 1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_pushes_are_recorded_when_signed_and_refused_when_forged() {
    let smq = Smq::start(QueueConfig::default()).await;
    let cert_url = smq.emulator.serve_certificate(
        "/certs/signing.pem",
        test_certificate_pem().expect("certificate"),
    );
    let prefix = format!("{}/certs/", smq.emulator.endpoint());
    let provider = Provider::start_with_env(
        smq.dir.path(),
        &[
            "--mns-push-path".into(),
            "/notifications".into(),
            "--mns-cert-url".into(),
            prefix,
        ],
        &ENV,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let pusher = TopicPusher::new(
        PushSigner::from_pkcs8_pem(TEST_SIGNING_KEY_PEM, cert_url).expect("signer"),
    )
    .expect("pusher");
    let endpoint = provider.url("/notifications");

    // Every notify format, the message raw or base64.
    let formats = [
        (NotifyFormat::Json, false),
        (NotifyFormat::Xml, true),
        (NotifyFormat::Simplified, false),
    ];
    for (n, (format, encode)) in formats.into_iter().enumerate() {
        let body = request(&smq, "echo-create.json");
        let message = if encode {
            base64::engine::general_purpose::STANDARD.encode(body.to_string())
        } else {
            body.to_string()
        };
        let notification = Notification::new("ros-topic", format!("m-ok-{n}"), message);
        let status = pusher
            .push(&endpoint, &notification, format)
            .await
            .expect("push");
        assert_eq!(status.as_u16(), 204, "{format:?}");
        let answer = answer_of(&answers(&smq.sink, n + 1).await[n]);
        assert_eq!(answer.request_id, request_id(&body), "{format:?}");
    }

    // Signed, then altered: the signature no longer matches.
    let forged_body = request(&smq, "echo-create.json");
    let notification = Notification::new("ros-topic", "m-2", forged_body.to_string());
    let url = url::Url::parse(&endpoint).expect("url");
    let (headers, text) = pusher
        .build(&url, &notification, NotifyFormat::Json)
        .expect("build");
    let tampered = text.replace("m-2", "m-3");
    let status = reqwest::Client::new()
        .post(&endpoint)
        .headers(headers)
        .body(tampered)
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status.as_u16(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smq.sink.received().len(), 3, "the forged push never ran");
    assert!(
        provider
            .logs
            .handler_runs(request_id(&forged_body))
            .is_empty()
    );
    let forged = "stackhook_smq_push_total{path=\"/notifications\",outcome=\"forged\"}";
    assert_eq!(metric(&provider, forged).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_that_cannot_be_consumed_stops_the_start_with_one_error_line() {
    let smq = Smq::start(QueueConfig::default()).await;
    let cases = [
        (
            "acs:mns:cn-hangzhou:1234567890:queues/missing",
            KEY_SECRET,
            "does not exist",
        ),
        (ARN, "wrong-secret", "signature does not match"),
    ];
    for (arn, secret, says) in cases {
        let output = tokio::process::Command::new(common::stackhook_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--journal", "memory"])
            .args([
                "--mns-queue",
                arn,
                "--mns-endpoint",
                &smq.emulator.endpoint(),
            ])
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
            .env("RUST_LOG", "warn")
            .output();
        let output = tokio::time::timeout(WITHIN, output)
            .await
            .expect("exits at once")
            .expect("runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(says), "{stderr}");
        assert!(!stderr.contains(KEY_SECRET) && !stderr.contains("wrong-secret"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_receiving_at_once_and_leaves_the_queue_alone() {
    let smq = Smq::start(QueueConfig::default()).await;
    // A 30 s long poll is open when the signal comes.
    let mut provider = smq.provider(&["--mns-wait", "30"]).await;
    let body = request(&smq, "echo-create.json");
    smq.send(body.to_string()).await;
    answers(&smq.sink, 1).await;
    assert!(smq.deleted(1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    provider.signal("TERM");
    let status = provider
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits without waiting out the long poll");
    assert!(status.success(), "{}", provider.logs.dump());
    assert!(
        provider
            .logs
            .lines()
            .iter()
            .any(|l| l["message"] == "stopped receiving from SMQ; finishing in-flight records")
    );
    smq.send(request(&smq, "echo-create.json").to_string())
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = smq.emulator.stats(QUEUE).expect("queue");
    assert_eq!(
        (stats.visible, stats.deleted),
        (1, 1),
        "nothing received after SIGTERM"
    );
}

/// `stackhook mock-api` serves the SMQ emulator; `stackhook serve` consumes
/// its queue; the mock ROS plays a whole lifecycle through the queue.
#[tokio::test(flavor = "multi_thread")]
async fn the_mock_ros_plays_a_lifecycle_through_mock_api_s_queue() {
    use std::io::{BufRead, BufReader};

    let mut mock_api = std::process::Command::new(common::stackhook_bin())
        .args([
            "mock-api",
            "--listen",
            "127.0.0.1:0",
            "--smq-listen",
            "127.0.0.1:0",
        ])
        .args(["--access-key-id", KEY_ID, "--access-key-secret", KEY_SECRET])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mock-api");
    let stdout = mock_api.stdout.take().expect("stdout");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("SMQ emulator on ") {
                let endpoint = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(endpoint);
                }
            }
        }
    });
    let endpoint = tokio::time::timeout(WITHIN, rx)
        .await
        .expect("mock-api announces its SMQ emulator")
        .expect("endpoint");

    let dir = TempDir::new().expect("state dir");
    let flags: Vec<String> = [
        "--mns-queue",
        ARN,
        "--mns-endpoint",
        &endpoint,
        "--mns-wait",
        "5",
    ]
    .map(String::from)
    .to_vec();
    let provider = Provider::start_with_env(dir.path(), &flags, &ENV)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let queue = Client::new(&endpoint, Credentials::new(KEY_ID, KEY_SECRET))
        .expect("client")
        .queue(QUEUE);
    let ros = stackhook_testing::MockRos::queue(queue)
        .expect("mock ROS")
        .resource_type("Custom::Echo")
        .timeout(WITHIN);
    let report = stackhook_testing::Lifecycle::standard(
        serde_json::json!({"Greeting": "hello"}),
        serde_json::json!({"Greeting": "hello again"}),
    )
    .run(&ros)
    .await;
    let _ = mock_api.kill();
    let _ = mock_api.wait();
    assert!(
        report.is_ok(),
        "{}\n{}",
        report.render(false),
        provider.logs.dump()
    );
}

/// A stand-in for ECS's instance metadata service: the session token, then
/// the RAM role's STS credentials. Returns its URL and the requests it saw.
async fn fake_metadata(
    role: &'static str,
    token: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let line = text.lines().next().unwrap_or_default().to_owned();
            let has_token = text
                .to_ascii_lowercase()
                .contains(&format!("x-aliyun-ecs-metadata-token: {token}"));
            log.lock()
                .expect("log")
                .push(format!("{line} token={has_token}"));
            let body = if line.starts_with("PUT /latest/api/token") {
                token.to_owned()
            } else if line.starts_with(&format!(
                "GET /latest/meta-data/ram/security-credentials/{role} "
            )) && has_token
            {
                serde_json::json!({
                    "AccessKeyId": KEY_ID,
                    "AccessKeySecret": KEY_SECRET,
                    "SecurityToken": "sts-token",
                    "Expiration": "2099-01-01T00:00:00Z",
                    "Code": "Success"
                })
                .to_string()
            } else {
                String::new()
            };
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ecs_ram_role_s_sts_credentials_consume_the_queue() {
    let smq = Smq::start(QueueConfig::default()).await;
    let sts = Credentials::new(KEY_ID, KEY_SECRET).with_security_token("sts-token");
    // The emulator now insists on the STS token.
    smq.emulator.set_credentials(sts.clone());
    let (metadata, seen) = fake_metadata("ros-provider", "session-1").await;
    let provider = Provider::start_with_env(
        smq.dir.path(),
        &smq.flags(&[]),
        &[
            ("ALIBABA_CLOUD_ECS_METADATA", "ros-provider"),
            ("STACKHOOK_ECS_METADATA_ENDPOINT", &metadata),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let queue = Client::new(&smq.emulator.endpoint(), sts)
        .expect("client")
        .queue(QUEUE);
    let body = request(&smq, "echo-create.json");
    queue.send(body.to_string()).await.expect("send");
    let answer = answer_of(&answers(&smq.sink, 1).await[0]);
    assert_eq!(answer.request_id, request_id(&body));
    let seen = seen.lock().expect("log").clone();
    assert!(
        seen.iter().any(|l| l.starts_with("PUT /latest/api/token")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l
            .starts_with("GET /latest/meta-data/ram/security-credentials/ros-provider ")
            && l.ends_with("token=true")),
        "{seen:?}"
    );
    assert!(!provider.logs.dump().contains(KEY_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn stackhook_mock_ros_runs_a_scenario_through_the_queue() {
    let smq = Smq::start(QueueConfig::default()).await;
    let _provider = smq.provider(&[]).await;
    let scenario = common::fixtures_dir().join("scenarios/echo-lifecycle.yaml");
    let run = tokio::process::Command::new(common::stackhook_bin())
        .args(["mock-ros", "run", "--color", "never"])
        .arg(&scenario)
        .args(["--queue", ARN, "--queue-endpoint", &smq.emulator.endpoint()])
        .envs(ENV)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("finishes")
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("smq:ros-requests"), "{stdout}");
    let stats = smq.emulator.stats(QUEUE).expect("queue");
    assert!(
        stats.deleted >= 3,
        "every step went through the queue: {stats:?}"
    );
}
