//! Several `stackhook serve` replicas on one PostgreSQL journal (issue 23),
//! against the real binary and a real server: `STACKHOOK_TEST_POSTGRES_URL`,
//! set by `.ci/postgres.sh` (`source .ci/postgres.sh && pg_start`). Without
//! it these tests fail under CI=true and are skipped, saying so, elsewhere.
//!
//! Each test keeps its tables in a schema of its own (`--journal-schema`),
//! so tests run side by side on one database. Handler runs are counted from
//! the `handler started` lines every replica logs.

mod common;
#[path = "common/provider.rs"]
mod provider;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use stackhook::sink::{CallbackSink, Received};
use stackhook::{Response, Status};

use provider::Provider;

/// Lease and heartbeat of the replicas here: short, so a takeover comes
/// within seconds (one lease plus one scan).
const LEASE: &str = "3";
const HEARTBEAT: &str = "1";

/// The longest wait for every answer: a takeover (lease plus scan), the
/// rest of a handler's work, and a debug build on a shared machine.
const ANSWERS_WITHIN: Duration = Duration::from_secs(40);

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

/// A schema of its own for the test `name`.
fn schema(name: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{name}_{}", &suffix[..10])
}

/// `stackhook serve --journal <journal>` that must not start: its exit
/// status and stderr.
fn refused_start(journal: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(common::stackhook_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--journal", journal])
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .expect("run stackhook serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_clear_line(journal: &str, secret: &str, says: &str) {
    let (code, stderr) = refused_start(journal);
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(says), "says {says:?}: {stderr}");
    assert!(!stderr.contains(secret), "the password is shown: {stderr}");
}

/// A refused connection, a bad URL and a scheme that is not PostgreSQL's
/// stop the start with one error line that never shows the password.
#[test]
fn a_journal_that_cannot_be_opened_is_one_line_without_the_password() {
    assert_one_clear_line(
        "postgres://stackhook:pw-refused-7d1@127.0.0.1:1/stackhook?sslmode=disable",
        "pw-refused-7d1",
        "cannot connect to the journal database postgres://stackhook:***@127.0.0.1:1/",
    );
    assert_one_clear_line(
        "postgresql://stackhook:pw-badport-7d1@127.0.0.1:notaport/stackhook",
        "pw-badport-7d1",
        "invalid journal URL",
    );
    assert_one_clear_line(
        "mysql://stackhook:pw-scheme-7d1@127.0.0.1/stackhook",
        "pw-scheme-7d1",
        "postgres or postgresql, not `mysql`",
    );
}

/// Wrong credentials: one line, naming the login failure, no password.
#[test]
fn wrong_credentials_are_one_line_without_the_password() {
    let Some(url) = url() else { return };
    let (rest, host) = url.split_once('@').expect("a URL with credentials");
    let user = rest.rsplit_once(':').map_or(rest, |(user, _)| user);
    let wrong = format!("{user}:pw-wrong-7d1@{host}");
    assert_one_clear_line(&wrong, "pw-wrong-7d1", "password authentication failed");
    let real = rest.rsplit_once(':').map(|(_, pw)| pw).unwrap_or_default();
    let (_, stderr) = refused_start(&wrong);
    assert!(real.is_empty() || !stderr.contains(real));
}

fn create(sink: &CallbackSink, resource_type: &str, id: &str, properties: Value) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": id,
        "ResponseURL": sink.url("/cb"),
        "ResourceType": resource_type,
        "LogicalResourceId": format!("Res-{id}"),
        "StackId": "9a6c9851-3b0f-4f5f-b4ca-a14bf691cccc",
        "StackName": "replicas",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": properties,
    })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("an HTTP client")
}

/// `POST /` to `provider`: the status.
async fn post(provider: &Provider, body: &Value) -> u16 {
    client()
        .post(provider.url("/"))
        .json(body)
        .send()
        .await
        .map(|reply| reply.status().as_u16())
        .unwrap_or(0)
}

/// `POST /sync` to `provider`: the answer.
async fn post_sync(provider: &Provider, body: &Value) -> Response {
    let reply = client()
        .post(provider.url("/sync"))
        .json(body)
        .send()
        .await
        .expect("a sync reply");
    let bytes = reply.bytes().await.expect("its body");
    Response::from_slice(&bytes).expect("an answer")
}

async fn replica(url: &str, schema: &str, extra: &[&str]) -> (Provider, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut flags: Vec<String> = [
        "--journal",
        url,
        "--journal-schema",
        schema,
        "--heartbeat",
        HEARTBEAT,
        // Echo counts as not idempotent here: a takeover must answer it
        // FAILED, never run it again.
        "--restart-policy",
        "Custom::Echo=fail",
        "--secret-key",
        "0123456789abcdef0123456789abcdef",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--lease") {
        flags.extend(["--lease".to_string(), LEASE.to_string()]);
    }
    flags.extend(extra.iter().map(|s| s.to_string()));
    let provider = Provider::start(dir.path(), &flags)
        .await
        .expect("a replica starts");
    (provider, dir)
}

/// Wait until every one of `ids` has an answer at `sink`, for at most
/// [`ANSWERS_WITHIN`]; then, so that a late extra answer shows, [`QUIET`].
/// Returns the answers by request id.
async fn answers_to<'a>(
    sink: &CallbackSink,
    ids: impl IntoIterator<Item = &'a str> + Clone,
) -> HashMap<String, Vec<Response>> {
    let deadline = tokio::time::Instant::now() + ANSWERS_WITHIN;
    while tokio::time::Instant::now() < deadline && {
        let got = answers(&sink.received());
        !ids.clone().into_iter().all(|id| got.contains_key(id))
    } {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(QUIET).await;
    answers(&sink.received())
}

/// Answers that reached the sink, by request id.
fn answers(received: &[Received]) -> HashMap<String, Vec<Response>> {
    let mut by_id: HashMap<String, Vec<Response>> = HashMap::new();
    for call in received.iter().filter(|c| c.answered < 300) {
        if let Some(response) = call.response() {
            by_id
                .entry(response.request_id.clone())
                .or_default()
                .push(response);
        }
    }
    by_id
}

/// Three replicas on one journal. Requests go round-robin, and each is
/// redelivered to another replica; one replica is SIGKILLed while a slow
/// Echo runs on it (a takeover answers it FAILED, naming the stop, and
/// never runs it again), another while a Wait is between polls (its work
/// is parked in the journal, so a live replica runs the poll when due and
/// answers it). A sync duplicate sent to
/// another replica gets the first one's answer. Every request gets one
/// answer (sent again only to a redelivery that finds it); no Echo runs
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_answer_every_request_once_through_kills_and_redeliveries() {
    let Some(url) = url() else { return };
    let schema = schema("replicas");
    let sink = CallbackSink::start().await.expect("sink");
    let (a, _da) = replica(&url, &schema, &[]).await;
    let (b, _db) = replica(&url, &schema, &[]).await;
    let (c, _dc) = replica(&url, &schema, &[]).await;
    let mut replicas = vec![Some(a), Some(b), Some(c)];
    let at = |replicas: &Vec<Option<Provider>>, i: usize| -> usize { i % replicas.len() };

    // Quick Echo requests, round-robin, each redelivered to the next replica.
    let mut expected = Vec::new();
    for i in 0..9 {
        let id = format!("echo-{i}");
        let body = create(&sink, "Custom::Echo", &id, json!({"N": i}));
        let first = replicas[at(&replicas, i)].as_ref().expect("alive");
        assert_eq!(post(first, &body).await, 200, "{id}");
        let second = replicas[at(&replicas, i + 1)].as_ref().expect("alive");
        assert_eq!(post(second, &body).await, 200, "{id} redelivered");
        expected.push(id);
    }

    // A slow Echo on replica 0, killed mid-handler; a Wait on replica 1,
    // killed between polls.
    let slow = create(&sink, "Custom::Echo", "slow", json!({"SleepSeconds": 20}));
    let waiting = create(&sink, "Custom::Wait", "waiting", json!({"Seconds": 6}));
    assert_eq!(post(replicas[0].as_ref().expect("alive"), &slow).await, 200);
    assert_eq!(
        post(replicas[1].as_ref().expect("alive"), &waiting).await,
        200
    );
    expected.extend(["slow".to_string(), "waiting".to_string()]);
    for (i, id) in [(0usize, "slow"), (1, "waiting")] {
        let provider = replicas[i].as_ref().expect("alive");
        assert!(
            provider
                .logs
                .wait_for(Duration::from_secs(10), |line| {
                    line["message"] == provider::HANDLER_STARTED && line["span"]["request_id"] == id
                })
                .await,
            "{id} started on replica {i}"
        );
    }
    let killed: Vec<Provider> = [0usize, 1]
        .iter()
        .map(|&i| replicas[i].take().expect("alive"))
        .collect();
    let mut logs = Vec::new();
    for provider in killed {
        logs.push(provider.logs.clone());
        provider.kill_hard();
    }
    let survivor = replicas[2].as_ref().expect("alive");
    // Redelivered to the survivor after the kills: recognised, not run.
    assert_eq!(post(survivor, &slow).await, 200);

    // A sync request on the survivor, its duplicate at once on a fresh
    // replica: one run, one answer for both.
    let (d, _dd) = replica(&url, &schema, &[]).await;
    let sync = create(
        &sink,
        "Custom::Echo",
        "sync",
        json!({"SleepSeconds": 2, "K": "v"}),
    );
    let (first, second) = tokio::join!(post_sync(survivor, &sync), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        post_sync(&d, &sync).await
    });
    assert_eq!(first.status, Status::Success, "{first:?}");
    assert_eq!(first, second, "the duplicate gets the same answer");

    let got = answers_to(&sink, expected.iter().map(String::as_str)).await;
    let survivor = replicas[2].take().expect("alive");
    logs.push(survivor.logs.clone());
    logs.push(d.logs.clone());
    let dump = || logs.iter().map(|l| l.dump()).collect::<Vec<_>>().join("\n");
    // A redelivery that finds the answer gets it again (ROS redelivers
    // only what it did not hear about): one answer, maybe sent twice.
    for id in &expected {
        let answers = got.get(id).cloned().unwrap_or_default();
        assert!(
            !answers.is_empty() && answers.len() <= 2 && answers.iter().all(|a| *a == answers[0]),
            "{id} has one answer: {answers:?}\n{}",
            dump()
        );
    }
    assert_eq!(got.len(), expected.len(), "no other answers: {got:?}");
    assert!(!got.contains_key("sync"), "a sync request gets no callback");
    let slow_answer = &got["slow"][0];
    assert_eq!(slow_answer.status, Status::Failed);
    let reason = slow_answer.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("the replica running it stopped during the operation"),
        "{reason}"
    );
    assert_eq!(
        got["waiting"][0].status,
        Status::Success,
        "{:?}",
        got["waiting"]
    );
    for id in expected
        .iter()
        .filter(|id| *id != "waiting")
        .chain(["sync".to_string()].iter())
    {
        let runs: usize = logs.iter().map(|l| l.handler_runs(id).len()).sum();
        assert_eq!(runs, 1, "{id} ran {runs} times\n{}", dump());
    }
}

/// A throwaway PostgreSQL cluster of this test's own (`.ci/postgres.sh`),
/// which it may stop and start; removed when dropped.
struct Cluster {
    url: String,
    dir: String,
    bin: String,
    port: String,
}

fn shell(script: &str) -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}/.ci/postgres.sh && {script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Cluster {
    fn start() -> Cluster {
        let out = shell(
            "pg_start >/dev/null && printf '%s\\n' \"$STACKHOOK_TEST_POSTGRES_URL\" \"$PG_DIR\" \"$PG_BIN\" \"$PG_PORT\"",
        );
        let mut lines = out.lines().map(str::to_owned);
        let mut next = || lines.next().expect("pg_start's output");
        Cluster {
            url: next(),
            dir: next(),
            bin: next(),
            port: next(),
        }
    }

    fn ctl(&self, args: &str) {
        shell(&format!(
            "pg_as_server_user {}/pg_ctl -D {}/data -l {}/server.log -w -t 60 {args} >/dev/null",
            self.bin, self.dir, self.dir
        ));
    }

    fn stop(&self) {
        self.ctl("-m fast stop");
    }

    fn restart(&self) {
        self.ctl(&format!(
            "start -o \"-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c ssl=on\"",
            self.port, self.dir
        ));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}/.ci/postgres.sh && PG_DIR={} PG_BIN={} pg_stop",
                env!("CARGO_MANIFEST_DIR"),
                self.dir,
                self.bin
            ))
            .output();
    }
}

async fn get(provider: &Provider, path: &str) -> (u16, String) {
    match client().get(provider.url(path)).send().await {
        Ok(reply) => {
            let status = reply.status().as_u16();
            (status, reply.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Poll `provider`'s `path` until `ok` holds, for at most `within`.
async fn until(
    provider: &Provider,
    path: &str,
    within: Duration,
    ok: impl Fn(u16, &str) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let (status, body) = get(provider, path).await;
        if ok(status, &body) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Three replicas; the database stopped while a handler runs on one, and
/// started again: the health check and the `stackhook_journal_up` metric
/// say so, a new request to another replica gets 503 (and no FAILED
/// callback; a sync one 503 rather than FAILED in its reply), the running handler's answer is written and delivered once
/// the database is back (no peer takes the work over meanwhile), and a
/// retry of the refused request to the third is accepted and answered. No
/// handler runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_refuses_new_requests_and_keeps_running_answers() {
    if url().is_none() {
        return;
    }
    let cluster = Cluster::start();
    let schema = schema("outage");
    let sink = CallbackSink::start().await.expect("sink");
    let (provider, _dir) = replica(&cluster.url, &schema, &[]).await;
    let (b, _db) = replica(&cluster.url, &schema, &[]).await;
    let (c, _dc) = replica(&cluster.url, &schema, &[]).await;
    let slow = create(&sink, "Custom::Echo", "slow", json!({"SleepSeconds": 5}));
    assert_eq!(post(&provider, &slow).await, 200);
    assert!(
        provider
            .logs
            .wait_for(Duration::from_secs(10), |line| {
                line["message"] == provider::HANDLER_STARTED && line["span"]["request_id"] == "slow"
            })
            .await
    );
    cluster.stop();
    assert!(
        until(&provider, "/healthz", Duration::from_secs(10), |s, _| s
            == 503)
        .await,
        "/healthz answers 503 while the database is down"
    );
    assert!(
        until(&provider, "/metrics", Duration::from_secs(10), |_, body| {
            body.contains("stackhook_journal_up 0")
        })
        .await,
        "the metric shows the outage"
    );
    let refused = create(&sink, "Custom::Echo", "refused", json!({}));
    assert_eq!(post(&b, &refused).await, 503, "not recorded: 503");
    let sync_refused = create(&sink, "Custom::Echo", "sync-refused", json!({}));
    let status = client()
        .post(c.url("/sync"))
        .json(&sync_refused)
        .send()
        .await
        .map(|reply| reply.status().as_u16())
        .unwrap_or(0);
    assert_eq!(status, 503, "a sync request not recorded: 503, not FAILED");
    // The slow handler finishes meanwhile; its answer waits for the database.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        answers(&sink.received()).is_empty(),
        "nothing is answered while the database is down: {:?}",
        answers(&sink.received())
    );
    cluster.restart();
    assert!(
        until(&provider, "/healthz", Duration::from_secs(20), |s, _| s
            == 200)
        .await,
        "/healthz recovers"
    );
    assert_eq!(post(&c, &refused).await, 200, "the retry is recorded");
    let got = answers_to(&sink, ["slow", "refused"]).await;
    let all = [&provider, &b, &c];
    let dump = || {
        all.iter()
            .map(|p| p.logs.dump())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(got.len(), 2, "{got:?}\n{}", dump());
    for id in ["slow", "refused"] {
        assert_eq!(got[id].len(), 1, "{id}: {:?}\n{}", got[id], dump());
        assert_eq!(got[id][0].status, Status::Success, "{id}: {:?}", got[id]);
        let runs: usize = all.iter().map(|p| p.logs.handler_runs(id).len()).sum();
        assert_eq!(runs, 1, "{id} ran once\n{}", dump());
    }
    assert!(
        until(&provider, "/metrics", Duration::from_secs(10), |_, body| {
            body.contains("stackhook_journal_up 1")
        })
        .await
    );
}

/// SIGKILL of a replica that gives rerun-policy answers before journaling
/// them: every request is still answered, the same way each time; those
/// answered well before the kill (past the journal's 100 ms durability
/// bound) are never answered or run again; the rest (running when it died,
/// or answered just before) a peer reruns once the lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_around_rerun_answers_leaves_none_unanswered() {
    let Some(url) = url() else { return };
    let schema = schema("rerun_kill");
    let sink = CallbackSink::start().await.expect("sink");
    let flags = [
        "--restart-policy",
        "Custom::Echo=rerun",
        "--lease",
        "10",
        "--claim-scan-ms",
        "300",
    ];
    let (a, _da) = replica(&url, &schema, &flags).await;
    let (b, _db) = replica(&url, &schema, &flags).await;
    let early: Vec<String> = (0..10).map(|i| format!("early-{i}")).collect();
    for (i, id) in early.iter().enumerate() {
        let body = create(&sink, "Custom::Echo", id, json!({"N": i}));
        assert_eq!(post(&a, &body).await, 200, "{id}");
    }
    assert_eq!(
        sink.wait_for(early.len(), ANSWERS_WITHIN).await.len(),
        early.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Quick ones, answered just before the kill or not yet, and slow ones,
    // killed mid-handler.
    let mut late = Vec::new();
    for i in 0..10 {
        let id = format!("late-{i}");
        let properties = if i % 2 == 0 {
            json!({"N": i})
        } else {
            json!({"N": i, "SleepSeconds": 2})
        };
        let body = create(&sink, "Custom::Echo", &id, properties);
        assert_eq!(post(&a, &body).await, 200, "{id}");
        late.push(id);
    }
    let a_logs = a.logs.clone();
    a.kill_hard();
    let got = answers_to(&sink, early.iter().chain(&late).map(String::as_str)).await;
    let dump = || format!("{}\n{}", a_logs.dump(), b.logs.dump());
    for id in early.iter().chain(&late) {
        let answers = got.get(id).cloned().unwrap_or_default();
        assert!(!answers.is_empty(), "{id} unanswered\n{}", dump());
        for answer in &answers {
            assert_eq!(answer.status, Status::Success, "{id}: {answers:?}");
            assert_eq!(
                answer.physical_resource_id, answers[0].physical_resource_id,
                "{id}: answered the same way each time"
            );
        }
    }
    for id in &early {
        assert_eq!(got[id].len(), 1, "{id}: {:?}\n{}", got[id], dump());
        assert!(b.logs.handler_runs(id).is_empty(), "{id} ran again");
    }
    for id in late.iter().skip(1).step_by(2) {
        assert_eq!(
            b.logs.handler_runs(id).len(),
            1,
            "{id}, killed mid-handler, reran once\n{}",
            dump()
        );
    }
}

/// A request that may run again (Echo, by its default restart policy) on
/// a replica that holds its record for a while yet (a 10 s lease): its
/// answer is given first and journaled right after, in one write, so each
/// request is answered once and runs once, and a redelivery to another
/// replica finds the journaled answer and gets it again, without a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_answers_are_given_then_journaled() {
    let Some(url) = url() else { return };
    let schema = schema("rerun");
    let sink = CallbackSink::start().await.expect("sink");
    let flags = ["--restart-policy", "Custom::Echo=rerun", "--lease", "10"];
    let (a, _da) = replica(&url, &schema, &flags).await;
    let (b, _db) = replica(&url, &schema, &flags).await;
    let requests: Vec<(String, Value)> = (0..20)
        .map(|i| {
            let id = format!("rerun-{i}");
            let body = create(&sink, "Custom::Echo", &id, json!({"N": i}));
            (id, body)
        })
        .collect();
    for (id, body) in &requests {
        assert_eq!(post(&a, body).await, 200, "{id}");
    }
    let dump = || format!("{}\n{}", a.logs.dump(), b.logs.dump());
    let first = sink.wait_for(requests.len(), ANSWERS_WITHIN).await;
    let first = answers(&first);
    for (id, _) in &requests {
        let got = first.get(id).cloned().unwrap_or_default();
        assert_eq!(got.len(), 1, "{id}: {got:?}\n{}", dump());
        assert_eq!(got[0].status, Status::Success, "{id}: {got:?}");
    }
    // Past the journal's durability bound for the writes after them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (id, body) in &requests {
        assert_eq!(post(&b, body).await, 200, "{id} redelivered");
    }
    sink.wait_for(2 * requests.len(), ANSWERS_WITHIN).await;
    tokio::time::sleep(QUIET).await;
    let all = answers(&sink.received());
    for (id, _) in &requests {
        let got = all.get(id).cloned().unwrap_or_default();
        assert_eq!(got.len(), 2, "{id}: {got:?}\n{}", dump());
        assert_eq!(got[0], got[1], "{id}: the journaled answer again");
        let runs = a.logs.handler_runs(id).len() + b.logs.handler_runs(id).len();
        assert_eq!(runs, 1, "{id} ran {runs} times\n{}", dump());
    }
}

/// Long-running work is shared out: twelve Waits all sent to one replica
/// park between polls, and their polls run on whichever live replica
/// claims them when due, so more than one replica runs them. Each Wait
/// still gets one SUCCESS answer, and each poll runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_polls_are_shared_out_among_live_replicas() {
    let Some(url) = url() else { return };
    let schema = schema("spread");
    let sink = CallbackSink::start().await.expect("sink");
    let scan = ["--claim-scan-ms", "300"];
    let (a, _da) = replica(&url, &schema, &scan).await;
    let (b, _db) = replica(&url, &schema, &scan).await;
    let (c, _dc) = replica(&url, &schema, &scan).await;
    let ids: Vec<String> = (0..12).map(|i| format!("spread-{i}")).collect();
    for id in &ids {
        let wait = create(&sink, "Custom::Wait", id, json!({"Seconds": 2}));
        assert_eq!(post(&a, &wait).await, 200, "{id}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let got = answers_to(&sink, ids.iter().map(String::as_str)).await;
    let replicas = [&a, &b, &c];
    let dump = || {
        replicas
            .iter()
            .map(|r| r.logs.dump())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Polls run, per replica: the `handler started` lines of step `poll`.
    let polls_on = |replica: &Provider, id: &str| {
        replica
            .logs
            .about(id, provider::HANDLER_STARTED)
            .iter()
            .filter(|line| line["step"] == "poll")
            .count()
    };
    let mut ran_polls = [0usize; 3];
    for id in &ids {
        let answers = got.get(id).cloned().unwrap_or_default();
        assert_eq!(answers.len(), 1, "{id}: {answers:?}\n{}", dump());
        assert_eq!(answers[0].status, Status::Success, "{id}: {answers:?}");
        let polls: Vec<usize> = replicas.iter().map(|r| polls_on(r, id)).collect();
        assert_eq!(
            polls.iter().sum::<usize>(),
            1,
            "{id}'s one poll ran once: {polls:?}\n{}",
            dump()
        );
        for (i, n) in polls.iter().enumerate() {
            ran_polls[i] += n;
        }
        // The first step ran where the request arrived.
        let firsts: usize = replicas
            .iter()
            .map(|r| r.logs.handler_runs(id).len())
            .sum::<usize>()
            - 1;
        assert_eq!(firsts, 1, "{id} started once");
    }
    let busy = ran_polls.iter().filter(|n| **n > 0).count();
    assert!(
        busy >= 2,
        "every poll ran on one replica: {ran_polls:?} (a, b, c)\n{}",
        dump()
    );
}

/// SIGTERM on a replica whose work waits for a later poll: that work is
/// parked in the journal, not held by the replica, so it stays open
/// through the stop and a peer runs its poll when due, well before the
/// 30 s lease would have run out, and answers it, once. The stopping
/// replica releases whatever it still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_waiting_work_to_a_peer() {
    let Some(url) = url() else { return };
    let schema = schema("release");
    let sink = CallbackSink::start().await.expect("sink");
    let slow_lease = ["--lease", "30", "--shutdown-grace", "1"];
    let (mut a, _da) = replica(&url, &schema, &slow_lease).await;
    let (b, _db) = replica(&url, &schema, &slow_lease).await;
    let waiting = create(&sink, "Custom::Wait", "released", json!({"Seconds": 8}));
    assert_eq!(post(&a, &waiting).await, 200);
    assert!(
        a.logs
            .wait_for(Duration::from_secs(10), |line| {
                line["message"] == provider::HANDLER_STARTED
                    && line["span"]["request_id"] == "released"
            })
            .await
    );
    let stopped = tokio::time::Instant::now();
    a.signal("TERM");
    let status = a.wait_exit(Duration::from_secs(20)).await;
    assert!(
        matches!(status, Some(s) if s.success()),
        "{status:?}\n{}",
        a.logs.dump()
    );
    assert!(
        a.logs
            .wait_for(Duration::from_secs(1), |line| {
                line["message"] == "released this replica's journal records to its peers"
            })
            .await,
        "{}",
        a.logs.dump()
    );
    let deadline = tokio::time::Instant::now() + ANSWERS_WITHIN;
    while tokio::time::Instant::now() < deadline
        && !answers(&sink.received()).contains_key("released")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "answered before the lease would have run out"
    );
    tokio::time::sleep(QUIET).await;
    let got = answers(&sink.received());
    assert_eq!(
        got.get("released").map(Vec::len),
        Some(1),
        "{got:?}\n{}",
        b.logs.dump()
    );
    assert_eq!(got["released"][0].status, Status::Success, "{got:?}");
    let polled_by_b = b
        .logs
        .about("released", provider::HANDLER_STARTED)
        .iter()
        .any(|line| line["step"] == "poll");
    assert!(polled_by_b, "the peer ran the poll\n{}", b.logs.dump());
}
