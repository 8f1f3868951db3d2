//! The crash matrix: the real `stackhook` binary SIGKILLed at each point of a
//! request's life, restarted on the same state directory, and the request
//! redelivered where ROS would redeliver it (no acknowledgement, or no sync
//! reply).
//!
//! Each row of [`MATRIX`] names its kill point, journal, restart policy and
//! channel. After the last restart every case asserts:
//!
//! - the request is answered (by a callback, or in a sync reply);
//! - it never gets two different answers, and its physical id never changes;
//! - no handler runs (first run or poll) once an answer was delivered and
//!   [`SETTLE`] had passed while the process that delivered it was alive:
//!   the journal's bound on making an answer's identity durable is shorter;
//! - once an answer settled, no callback arrives again until the request is
//!   redelivered, and a redelivery (disk journal) gets the same answer again
//!   without a run;
//! - a sync request never gets a callback;
//! - a FAILED reason names the true cause (both built-in types used here are
//!   idempotent, so "not declared idempotent" is never true).
//!
//! Handler runs are counted from the `handler started` lines each process
//! logs (JSON on stderr), across every process of a case.
//!
//! **The memory journal** keeps nothing across a restart. What still holds:
//! a request SIGKILLed before its acknowledgement is answered once ROS
//! redelivers it; a redelivered sync request gets the answer it got before
//! (the same physical id, from a rerun); no answer is delivered twice. What
//! does not hold: a request acknowledged before the SIGKILL is never answered
//! (ROS waits for the resource's Timeout; the `memory-*-is-lost` cases show
//! that nothing comes); and a restarted process runs a redelivered request
//! again, so the no-run rule holds only within one process.
//!
//! The cases of one group run concurrently, each with its own state
//! directory, callback sink and processes.

mod common;
#[path = "common/provider.rs"]
mod provider;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use stackhook::sink::{CallbackSink, Received};
use stackhook::{Response, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use provider::{Logs, Provider, ack, started};

/// The journal's stated bound on making the record, the answer, the
/// delivered mark and a sync reply durable, plus the time between the sink
/// recording an answer and the provider queuing its delivered mark: an
/// answer delivered this long before a crash must survive it.
const SETTLE: Duration =
    Duration::from_millis(stackhook::journal::DURABILITY_BOUND.as_millis() as u64 + 200);

/// The longest wait for an answer after the last restart: a rerun of the
/// slowest work (1.5 s) or the rest of a 2 s wait, plus restarts of a debug
/// build on a shared machine. A passing case never waits this long.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// How long to keep listening after an answer, to see that no other comes.
const QUIET: Duration = Duration::from_millis(700);

/// How long a handler runs before the mid-handler kill.
const INTO_THE_HANDLER: Duration = Duration::from_millis(300);

/// How long a `Custom::Wait` waits before the kill between its polls.
const INTO_THE_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journal {
    Disk,
    Memory,
}

/// The restart policy for the case's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// None configured: Echo and Wait are idempotent, so rerun.
    Default,
    /// `--restart-policy TYPE=fail`.
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// `POST /`: acknowledged, answered by callback.
    Async,
    /// `POST /sync`: answered in the reply.
    Sync,
}

/// Where in the request's life the process is SIGKILLed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Half the body sent: the request never arrived.
    MidBody,
    /// The whole request sent, killed at once, before reading the ack.
    BeforeAck,
    /// The acknowledgement read, killed at once.
    AfterAck,
    /// The handler logged its start and is still running.
    MidHandler,
    /// A `Custom::Wait` between its polls.
    DuringPoll,
    /// The answer arrived (callback or sync reply), killed at once: within
    /// the journal's bound.
    AfterAnswer,
    /// The answer arrived [`SETTLE`] before the kill: past the bound.
    AfterDelivery,
}

/// What the request asks of its handler.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// `Custom::Echo`, sleeping this many milliseconds first.
    Echo(u64),
    /// `Custom::Wait` for this many seconds, by polling.
    Wait(u64),
}

/// The answer the case must end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Success,
    /// FAILED, saying the provider restarted during the operation.
    FailedRestarted,
    /// Either of those: which one depends on where the kill landed.
    Either,
    /// No answer at all: the memory journal lost an acknowledged request.
    Unanswered,
}

#[derive(Debug)]
struct Case {
    name: &'static str,
    journal: Journal,
    policy: Policy,
    channel: Channel,
    kill: Kill,
    work: Work,
    expect: Expect,
    /// Restarts after the first, each once the answer settled.
    more_restarts: u8,
}

use Channel::{Async, Sync};
use Expect::{Either, FailedRestarted, Success, Unanswered};
use Journal::{Disk, Memory};
use Kill::*;
use Policy::{Default, Fail};

const QUICK: Work = Work::Echo(0);
const SLOW: Work = Work::Echo(1500);

const fn case(
    name: &'static str,
    (journal, policy, channel): (Journal, Policy, Channel),
    kill: Kill,
    work: Work,
    expect: Expect,
) -> Case {
    Case {
        name,
        journal,
        policy,
        channel,
        kill,
        work,
        expect,
        more_restarts: 0,
    }
}

const fn restarted(mut case: Case, more: u8) -> Case {
    case.more_restarts = more;
    case
}

const DISK_RERUN: (Journal, Policy, Channel) = (Disk, Default, Async);
const DISK_FAIL: (Journal, Policy, Channel) = (Disk, Fail, Async);
const DISK_RERUN_SYNC: (Journal, Policy, Channel) = (Disk, Default, Sync);
const DISK_FAIL_SYNC: (Journal, Policy, Channel) = (Disk, Fail, Sync);
const MEMORY: (Journal, Policy, Channel) = (Memory, Default, Async);
const MEMORY_SYNC: (Journal, Policy, Channel) = (Memory, Default, Sync);

#[rustfmt::skip]
const MATRIX: &[Case] = &[
    case("disk-rerun-mid-body",            DISK_RERUN, MidBody,       QUICK,        Success),
    case("disk-rerun-before-ack",          DISK_RERUN, BeforeAck,     QUICK,        Success),
    case("disk-rerun-before-ack-slow",     DISK_RERUN, BeforeAck,     SLOW,         Success),
    case("disk-rerun-after-ack",           DISK_RERUN, AfterAck,      QUICK,        Success),
    case("disk-rerun-mid-handler",         DISK_RERUN, MidHandler,    SLOW,         Success),
    case("disk-rerun-during-poll",         DISK_RERUN, DuringPoll,    Work::Wait(2), Success),
    case("disk-rerun-after-answer",        DISK_RERUN, AfterAnswer,   QUICK,        Success),
    case("disk-rerun-after-delivery",      DISK_RERUN, AfterDelivery, QUICK,        Success),
    restarted(
    case("disk-rerun-wait-after-delivery", DISK_RERUN, AfterDelivery, Work::Wait(1), Success), 3),

    case("disk-fail-mid-body",             DISK_FAIL, MidBody,       QUICK,         Success),
    case("disk-fail-before-ack",           DISK_FAIL, BeforeAck,     SLOW,          Either),
    case("disk-fail-after-ack",            DISK_FAIL, AfterAck,      QUICK,         Either),
    case("disk-fail-mid-handler",          DISK_FAIL, MidHandler,    SLOW,          FailedRestarted),
    case("disk-fail-during-poll",          DISK_FAIL, DuringPoll,    Work::Wait(2), Success),
    case("disk-fail-after-answer",         DISK_FAIL, AfterAnswer,   QUICK,         Success),
    case("disk-fail-after-delivery",       DISK_FAIL, AfterDelivery, QUICK,         Success),
    restarted(
    case("disk-fail-wait-after-delivery",  DISK_FAIL, AfterDelivery, Work::Wait(1), Success), 3),

    case("disk-rerun-sync-mid-handler",    DISK_RERUN_SYNC, MidHandler,    SLOW,  Success),
    case("disk-rerun-sync-after-answer",   DISK_RERUN_SYNC, AfterAnswer,   QUICK, Success),
    case("disk-rerun-sync-after-delivery", DISK_RERUN_SYNC, AfterDelivery, QUICK, Success),
    case("disk-fail-sync-mid-handler",     DISK_FAIL_SYNC,  MidHandler,    SLOW,  Either),
    case("disk-fail-sync-after-answer",    DISK_FAIL_SYNC,  AfterAnswer,   QUICK, Success),
    case("disk-fail-sync-after-delivery",  DISK_FAIL_SYNC,  AfterDelivery, QUICK, Success),

    case("memory-mid-body",                MEMORY,      MidBody,       QUICK, Success),
    case("memory-before-ack",              MEMORY,      BeforeAck,     QUICK, Success),
    case("memory-after-answer",            MEMORY,      AfterAnswer,   QUICK, Success),
    case("memory-after-delivery",          MEMORY,      AfterDelivery, QUICK, Success),
    case("memory-after-ack-is-lost",       MEMORY,      AfterAck,      SLOW,  Unanswered),
    case("memory-mid-handler-is-lost",     MEMORY,      MidHandler,    SLOW,  Unanswered),
    case("memory-sync-mid-handler",        MEMORY_SYNC, MidHandler,    SLOW,  Success),
    case("memory-sync-after-answer",       MEMORY_SYNC, AfterAnswer,   QUICK, Success),
    case("memory-sync-after-delivery",     MEMORY_SYNC, AfterDelivery, QUICK, Success),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_journal_rerun_policy_async() {
    run_group(|c| c.journal == Disk && c.policy == Default && c.channel == Async).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_journal_fail_policy_async() {
    run_group(|c| c.journal == Disk && c.policy == Fail && c.channel == Async).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_journal_sync() {
    run_group(|c| c.journal == Disk && c.channel == Sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_journal() {
    run_group(|c| c.journal == Memory).await;
}

#[test]
fn the_matrix_names_each_case_once_and_each_kill_fits_its_channel() {
    let mut names: Vec<&str> = MATRIX.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), MATRIX.len(), "two cases share a name");
    for case in MATRIX {
        assert!(
            case.channel == Async || matches!(case.kill, MidHandler | AfterAnswer | AfterDelivery),
            "{}: a sync request has no ack and no poll to kill at",
            case.name
        );
        let acknowledged =
            case.channel == Async && matches!(case.kill, AfterAck | MidHandler | DuringPoll);
        assert_eq!(
            case.journal == Memory && acknowledged,
            case.expect == Unanswered,
            "{}: the memory journal loses acknowledged work, and only it",
            case.name
        );
        assert!(
            case.policy == Fail || case.expect != FailedRestarted,
            "{}: an idempotent request is rerun unless the policy says fail",
            case.name
        );
    }
}

#[test]
fn log_timestamps_are_read_exactly() {
    let at = |text| {
        provider::parse_timestamp(text)
            .expect("a timestamp")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
    };
    assert_eq!(at("1970-01-01T00:00:00Z"), Duration::ZERO);
    assert_eq!(
        at("2000-03-01T00:00:00.5Z"),
        Duration::from_millis(951_868_800_500)
    );
    assert_eq!(
        at("2026-12-04T15:46:30.730498Z"),
        Duration::from_micros(1_796_399_190_730_498)
    );
    assert!(provider::parse_timestamp("yesterday").is_none());
}

/// Run the matching cases concurrently; fail with every broken case.
async fn run_group(filter: impl Fn(&Case) -> bool) {
    let cases: Vec<&'static Case> = MATRIX.iter().filter(|c| filter(c)).collect();
    assert!(!cases.is_empty(), "no case matches");
    let runs: Vec<JoinHandle<Result<(), String>>> = cases
        .iter()
        .map(|&case| tokio::spawn(run_case(case)))
        .collect();
    let mut failures = Vec::new();
    for (case, run) in cases.iter().zip(runs) {
        match run.await {
            Ok(Ok(())) => {}
            Ok(Err(problems)) => {
                failures.push(format!("{} (kill {:?}):\n{problems}", case.name, case.kill))
            }
            Err(panic) => failures.push(format!("{}: panicked: {panic}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases broke a guarantee:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

impl Case {
    fn resource_type(&self) -> &'static str {
        match self.work {
            Work::Echo(_) => "Custom::Echo",
            Work::Wait(_) => "Custom::Wait",
        }
    }

    fn request_id(&self) -> String {
        format!("crash-{}", self.name)
    }

    fn flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--journal".to_string(),
            match self.journal {
                Disk => "disk",
                Memory => "memory",
            }
            .to_string(),
        ];
        if self.policy == Fail {
            flags.push("--restart-policy".into());
            flags.push(format!("{}=fail", self.resource_type()));
        }
        flags
    }

    fn body(&self, sink: &CallbackSink) -> Value {
        let properties = match self.work {
            Work::Echo(0) => json!({"Greeting": self.name}),
            Work::Echo(ms) => json!({"Greeting": self.name, "SleepSeconds": ms as f64 / 1000.0}),
            Work::Wait(seconds) => json!({"Seconds": seconds.to_string()}),
        };
        json!({
            "RequestType": "Create",
            "RequestId": self.request_id(),
            "ResponseURL": sink.url("/callback"),
            "IntranetResponseURL": sink.url("/intranet"),
            "ResourceType": self.resource_type(),
            "LogicalResourceId": "Res",
            "StackId": "4a6c9851-3b0f-4f5f-b4ca-a14bf691aaaa",
            "StackName": "crash-matrix",
            "ResourceOwnerId": "123456789",
            "CallerId": "123456789",
            "RegionId": "cn-hangzhou",
            "ResourceProperties": properties,
        })
    }

    /// The data a SUCCESS answer must carry.
    fn check_data(&self, answer: &Response) -> Result<(), String> {
        let data = answer.data.clone().unwrap_or_default();
        match self.work {
            Work::Echo(_) if data.get("Greeting") == Some(&json!(self.name)) => Ok(()),
            Work::Wait(seconds)
                if data.get("WaitedSeconds").and_then(Value::as_u64) >= Some(seconds) =>
            {
                Ok(())
            }
            _ => Err(format!("SUCCESS without the expected Data: {answer:?}")),
        }
    }
}

/// One process of a case, from start to SIGKILL (or to the end of the case).
struct Life {
    logs: Logs,
    started: SystemTime,
    ended: Option<SystemTime>,
}

/// Every callback the sink received, with when the test saw it.
struct Watch {
    seen: Arc<Mutex<Vec<(SystemTime, Received)>>>,
    task: JoinHandle<()>,
}

impl Watch {
    fn start(sink: CallbackSink) -> Watch {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let known = lock(&record).len();
                let got = sink.wait_for(known + 1, Duration::from_millis(200)).await;
                if got.len() > known {
                    let now = SystemTime::now();
                    lock(&record).extend(got.into_iter().skip(known).map(|call| (now, call)));
                }
            }
        });
        Watch { seen, task }
    }

    fn calls(&self) -> Vec<(SystemTime, Received)> {
        lock(&self.seen).clone()
    }

    /// Wait until `count` callbacks arrived; false if they did not within `within`.
    async fn wait_for(&self, count: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while lock(&self.seen).len() < count {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A case in progress: its processes and what ROS saw.
struct Run {
    case: &'static Case,
    dir: tempfile::TempDir,
    body: Value,
    lives: Vec<Life>,
    /// Sync replies, with when they arrived.
    replies: Vec<(SystemTime, Response)>,
    watch: Watch,
}

impl Run {
    async fn start(&mut self) -> Result<Provider, String> {
        let provider = Provider::start(self.dir.path(), &self.case.flags()).await?;
        self.lives.push(Life {
            logs: provider.logs.clone(),
            started: provider.started,
            ended: None,
        });
        Ok(provider)
    }

    fn kill(&mut self, provider: Provider) {
        let ended = provider.kill_hard();
        if let Some(life) = self.lives.last_mut() {
            life.ended = Some(ended);
        }
    }

    /// Send the request to `POST /` and return the status of the ack.
    async fn send_async(&self, provider: &Provider) -> Result<u16, String> {
        let reply = client()
            .post(provider.url("/"))
            .json(&self.body)
            .send()
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        Ok(reply.status().as_u16())
    }

    /// Send the request to `POST /sync` and keep the answer in the reply.
    async fn send_sync(&mut self, provider: &Provider) -> Result<Response, String> {
        let answer = sync_answer(provider.url("/sync"), self.body.clone()).await?;
        self.replies.push((SystemTime::now(), answer.clone()));
        Ok(answer)
    }

    /// Wait until the handler logged its first start in the current process.
    async fn handler_started(&self, provider: &Provider) -> Result<(), String> {
        let id = self.case.request_id();
        let started = provider
            .logs
            .wait_for(ANSWER_WITHIN, |line| {
                line["message"] == provider::HANDLER_STARTED
                    && line["span"]["request_id"] == id.as_str()
            })
            .await;
        if started {
            Ok(())
        } else {
            Err(format!(
                "the handler never logged its start:\n{}",
                provider.logs.dump()
            ))
        }
    }

    /// Wait for the first callback.
    async fn first_callback(&self) -> Result<(), String> {
        if self.watch.wait_for(1, ANSWER_WITHIN).await {
            Ok(())
        } else {
            Err(format!("no callback within {ANSWER_WITHIN:?}"))
        }
    }

    /// The first process, up to its SIGKILL. Returns whether ROS would
    /// redeliver: no ack (async), or no reply (sync).
    async fn first_life(&mut self) -> Result<bool, String> {
        let provider = self.start().await?;
        let case = self.case;
        let lost = match (case.channel, case.kill) {
            (Async, MidBody | BeforeAck) => {
                let bytes = self.body.to_string().into_bytes();
                let cut = if case.kill == MidBody {
                    bytes.len() / 2
                } else {
                    bytes.len()
                };
                let mut stream = send_raw(provider.addr, &bytes, cut).await?;
                if case.kill == MidBody {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                self.kill(provider);
                read_status(&mut stream).await != Some(200)
            }
            (Async, AfterAck | MidHandler | DuringPoll | AfterAnswer | AfterDelivery) => {
                let status = self.send_async(&provider).await?;
                if status != 200 {
                    return Err(format!("the request was not acknowledged: HTTP {status}"));
                }
                match case.kill {
                    AfterAck => {}
                    MidHandler => {
                        self.handler_started(&provider).await?;
                        tokio::time::sleep(INTO_THE_HANDLER).await;
                    }
                    DuringPoll => {
                        self.handler_started(&provider).await?;
                        tokio::time::sleep(INTO_THE_WAIT).await;
                    }
                    _ => {
                        self.first_callback().await?;
                        if case.kill == AfterDelivery {
                            tokio::time::sleep(SETTLE).await;
                        }
                    }
                }
                self.kill(provider);
                false
            }
            (Sync, MidHandler) => {
                let pending = tokio::spawn(sync_answer(provider.url("/sync"), self.body.clone()));
                self.handler_started(&provider).await?;
                tokio::time::sleep(INTO_THE_HANDLER).await;
                self.kill(provider);
                match pending.await {
                    Ok(Ok(answer)) => {
                        self.replies.push((SystemTime::now(), answer));
                        false
                    }
                    _ => true,
                }
            }
            (Sync, AfterAnswer | AfterDelivery) => {
                self.send_sync(&provider).await?;
                if case.kill == AfterDelivery {
                    tokio::time::sleep(SETTLE).await;
                }
                self.kill(provider);
                // A reply lost on its way back: ROS would send it again.
                true
            }
            (Sync, kill) => return Err(format!("kill point {kill:?} does not apply to /sync")),
        };
        Ok(lost)
    }

    async fn run(&mut self) -> Result<Verdict, String> {
        let case = self.case;
        let redeliver = self.first_life().await?;
        let mut provider = self.start().await?;
        let mut last_saw_request = false;
        if redeliver {
            last_saw_request = true;
            match case.channel {
                Async => {
                    let status = self.send_async(&provider).await?;
                    if status != 200 {
                        return Err(format!(
                            "the redelivery was not acknowledged: HTTP {status}"
                        ));
                    }
                }
                Sync => {
                    self.send_sync(&provider).await?;
                }
            }
        }
        // The memory journal forgets an acknowledged request: nothing comes.
        let must_answer = case.journal == Disk || redeliver;
        if must_answer && case.channel == Async {
            self.first_callback().await?;
        }
        for _ in 0..case.more_restarts {
            tokio::time::sleep(SETTLE).await;
            self.kill(provider);
            provider = self.start().await?;
            last_saw_request = case.journal == Disk;
        }
        // Where nothing may come, long enough for a rerun of the slow work.
        let quiet = match case.expect {
            Unanswered => QUIET + Duration::from_millis(1500),
            _ => QUIET,
        };
        tokio::time::sleep(quiet).await;

        // A redelivery after all that, as ROS might send when an ack is lost
        // in transit: the recorded answer again, without a run.
        let mut final_redelivery = None;
        if case.journal == Disk || last_saw_request {
            let before = self.watch.calls().len();
            final_redelivery = Some(SystemTime::now());
            match case.channel {
                Async => {
                    let status = self.send_async(&provider).await?;
                    if status != 200 {
                        return Err(format!(
                            "the final redelivery was not acknowledged: HTTP {status}"
                        ));
                    }
                    self.watch.wait_for(before + 1, ANSWER_WITHIN).await;
                    tokio::time::sleep(QUIET).await;
                }
                Sync => {
                    self.send_sync(&provider).await?;
                }
            }
        }
        drop(provider);
        Ok(Verdict {
            must_answer,
            final_redelivery,
        })
    }

    /// Every guarantee this case broke, one line each.
    fn check(&self, verdict: &Verdict) -> Vec<String> {
        let case = self.case;
        let mut problems = Vec::new();
        let calls = self.watch.calls();
        let mut all: Vec<(SystemTime, Response)> = answers(&calls);
        all.extend(self.replies.iter().cloned());
        all.sort_by_key(|(at, _)| *at);

        if case.expect == Unanswered {
            if let Some((_, answer)) = all.first() {
                problems.push(format!(
                    "answered, yet the journal kept nothing: {answer:?}"
                ));
            }
            return problems;
        }
        if all.is_empty() {
            if verdict.must_answer {
                problems.push("never answered".to_string());
            }
            return problems;
        }
        let first = &all[0].1;
        if let Some((_, other)) = all.iter().find(|(_, a)| a != first) {
            problems.push(format!("two different answers:\n  {first:?}\n  {other:?}"));
        }
        let mut ids: Vec<&str> = all
            .iter()
            .map(|(_, a)| a.physical_resource_id.as_str())
            .collect();
        ids.dedup();
        if ids.len() > 1 {
            problems.push(format!("the physical id changed: {ids:?}"));
        }
        match (case.expect, first.status) {
            (Success | Either, Status::Success) => {
                if let Err(problem) = case.check_data(first) {
                    problems.push(problem);
                }
            }
            (FailedRestarted | Either, Status::Failed)
                if first
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("restarted during the operation")) =>
            {
                let policy = format!("--restart-policy {}=fail", case.resource_type());
                if case.policy == Fail
                    && !first
                        .reason
                        .as_deref()
                        .unwrap_or_default()
                        .contains(&policy)
                {
                    problems.push(format!("the reason does not name `{policy}`: {first:?}"));
                }
            }
            _ => problems.push(format!("expected {:?}, got {first:?}", case.expect)),
        }
        let mut false_reasons: Vec<&str> = all
            .iter()
            .filter_map(|(_, answer)| answer.reason.as_deref())
            .filter(|reason| reason.contains("not declared idempotent"))
            .collect();
        false_reasons.dedup();
        for reason in false_reasons {
            problems.push(format!(
                "a false reason ({} is idempotent): {reason}",
                case.resource_type()
            ));
        }
        if case.channel == Sync && !calls.is_empty() {
            problems.push(format!("a sync request got {} callback(s)", calls.len()));
        }

        // Handler runs, across every process.
        let id = case.request_id();
        let runs: Vec<(usize, SystemTime)> = self
            .lives
            .iter()
            .enumerate()
            .flat_map(|(n, life)| {
                life.logs
                    .handler_runs(&id)
                    .into_iter()
                    .map(move |at| (n, at))
            })
            .collect();
        if runs.is_empty() && first.status == Status::Success {
            problems.push("answered SUCCESS, yet no `handler started` line was logged".to_string());
        }
        // The memory journal forgets across a restart: only the last process
        // must not run an answer it already gave.
        let from_life = match case.journal {
            Disk => 0,
            Memory => self.lives.len() - 1,
        };
        let lives = &self.lives[from_life..];
        let settled = all
            .iter()
            .filter_map(|(at, _)| {
                let settles = *at + SETTLE;
                let kept = lives.iter().any(|life| {
                    life.started <= *at && life.ended.is_none_or(|ended| ended >= settles)
                });
                kept.then_some(settles)
            })
            .min();
        if let Some(settled) = settled {
            for (life, at) in runs.iter().filter(|(life, _)| *life >= from_life) {
                if *at > settled {
                    problems.push(format!(
                        "the handler ran in process #{} {} ms after the answer settled",
                        life + 1,
                        millis_between(settled, *at)
                    ));
                }
            }
            let until = verdict.final_redelivery.unwrap_or_else(SystemTime::now);
            let again = calls
                .iter()
                .filter(|(at, _)| *at > settled && *at < until)
                .count();
            if again > 0 {
                problems.push(format!(
                    "the answer was delivered {again} more time(s) after it settled, unasked"
                ));
            }
        }
        if let (Some(sent), Async) = (verdict.final_redelivery, case.channel) {
            let after = calls.iter().filter(|(at, _)| *at >= sent).count();
            if after != 1 {
                problems.push(format!(
                    "a redelivery of the answered request got {after} callbacks, not 1"
                ));
            }
        }
        problems
    }

    /// Every process's log, for a failure message.
    fn dump_logs(&self) -> String {
        self.lives
            .iter()
            .enumerate()
            .map(|(n, life)| format!("--- process #{} ---\n{}", n + 1, life.logs.dump()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct Verdict {
    /// Whether the request must have been answered.
    must_answer: bool,
    /// When the last redelivery was sent, if one was.
    final_redelivery: Option<SystemTime>,
}

async fn run_case(case: &'static Case) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let sink = CallbackSink::start()
        .await
        .map_err(|e| format!("sink: {e}"))?;
    let body = case.body(&sink);
    let mut run = Run {
        case,
        dir,
        body,
        lives: Vec::new(),
        replies: Vec::new(),
        watch: Watch::start(sink),
    };
    let result = run.run().await;
    let problems = match result {
        Ok(verdict) => run.check(&verdict),
        Err(error) => vec![error],
    };
    if problems.is_empty() {
        return Ok(());
    }
    // Keep the output readable: the logs only when asked for.
    let logs = if std::env::var_os("CRASH_MATRIX_LOGS").is_some() {
        format!("\n{}", run.dump_logs())
    } else {
        String::new()
    };
    Err(format!("  - {}{logs}", problems.join("\n  - ")))
}

fn millis_between(from: SystemTime, to: SystemTime) -> u128 {
    to.duration_since(from).unwrap_or_default().as_millis()
}

/// The answers among the callbacks ROS accepted (2xx), with when they came.
fn answers(calls: &[(SystemTime, Received)]) -> Vec<(SystemTime, Response)> {
    calls
        .iter()
        .filter(|(_, call)| call.answered < 300)
        .filter_map(|(at, call)| Some((*at, call.response()?)))
        .collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("an HTTP client")
}

/// `POST /sync` and the answer in its reply.
async fn sync_answer(url: String, body: Value) -> Result<Response, String> {
    let reply = client()
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("sending the sync request: {e}"))?;
    let status = reply.status().as_u16();
    let bytes = reply
        .bytes()
        .await
        .map_err(|e| format!("the sync reply: {e}"))?;
    if status != 200 {
        return Err(format!(
            "the sync reply is HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    Response::from_slice(&bytes).map_err(|e| {
        format!(
            "the sync reply is not an answer ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Send `POST /` by hand, stopping after `cut` bytes of the body.
async fn send_raw(
    addr: std::net::SocketAddr,
    body: &[u8],
    cut: usize,
) -> Result<tokio::net::TcpStream, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    stream
        .write_all(&body[..cut])
        .await
        .map_err(|e| format!("sending: {e}"))?;
    stream.flush().await.map_err(|e| format!("sending: {e}"))?;
    Ok(stream)
}

/// The status of a raw reply, if one came before the connection closed.
async fn read_status(stream: &mut tokio::net::TcpStream) -> Option<u16> {
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    if !matches!(read, Ok(Ok(_))) && reply.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&reply);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

// The rows of the fault table (docs/reliability.md) that `tests/fault_matrix.rs` does not
// show, each against the real binary where a flag reaches the behaviour.

/// A Create of `resource_type` answered at `public` (and `intranet`, if given).
fn create(
    public: &str,
    intranet: Option<&str>,
    resource_type: &str,
    request_id: &str,
    properties: Value,
) -> Value {
    let mut body = json!({
        "RequestType": "Create",
        "RequestId": request_id,
        "ResponseURL": public,
        "ResourceType": resource_type,
        "LogicalResourceId": "Res",
        "StackId": "4a6c9851-3b0f-4f5f-b4ca-a14bf691bbbb",
        "StackName": "fault-rows",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": properties,
    });
    if let Some(intranet) = intranet {
        body["IntranetResponseURL"] = json!(intranet);
    }
    body
}

/// The accepted answers at `sink` once `count` arrived, and nothing more
/// within [`QUIET`].
async fn answers_at(sink: &CallbackSink, count: usize) -> Vec<Response> {
    sink.wait_for(count, ANSWER_WITHIN).await;
    tokio::time::sleep(QUIET).await;
    let got: Vec<Response> = sink
        .received()
        .iter()
        .filter(|call| call.answered < 300)
        .filter_map(Received::response)
        .collect();
    assert_eq!(got.len(), count, "expected {count} answer(s): {got:#?}");
    got
}

/// Row "handler hangs": cancelled at the deadline less the delivery margin
/// (1 s of a 3 s timeout), so the answer arrives within the request's time.
#[tokio::test]
async fn a_hanging_handler_is_cancelled_a_delivery_margin_before_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = started(dir.path(), &["--timeout", "3"]).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = create(
        &sink.url("/cb"),
        None,
        "Custom::Echo",
        "hang-margin",
        json!({"SleepSeconds": 600}),
    );
    let sent = tokio::time::Instant::now();
    assert_eq!(ack(&provider, &body).await, 200);
    let calls = sink.wait_for(1, ANSWER_WITHIN).await;
    let took = sent.elapsed();
    let answer = calls
        .first()
        .and_then(Received::response)
        .expect("an answer");
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.expect("a reason");
    assert!(reason.starts_with("timed out"), "{reason}");
    assert!(
        took >= Duration::from_millis(1900),
        "cancelled before the deadline less the margin: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "answered after the request's time: {took:?}"
    );
}

/// Row "callback ...": any 4xx but 429 is final, and logged with its status.
#[tokio::test]
async fn a_callback_refusing_with_403_is_not_retried_and_its_status_is_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = started(dir.path(), &[]).await;
    let sink = CallbackSink::start().await.expect("sink");
    sink.script([403]);
    let body = create(
        &sink.url("/cb"),
        None,
        "Custom::Echo",
        "refused-1",
        json!({}),
    );
    assert_eq!(ack(&provider, &body).await, 200);
    sink.wait_for(1, ANSWER_WITHIN).await;
    // The backoff's first retry would come within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let statuses: Vec<u16> = sink.received().iter().map(|call| call.answered).collect();
    assert_eq!(statuses, [403], "a 403 is final");
    let logged = provider.logs.about("refused-1", "callback attempt failed");
    assert!(
        logged.iter().any(|line| line.to_string().contains("403")),
        "the refusal is logged with its status: {logged:?}"
    );
}

/// Row "callback ... timeouts": an attempt that gets no reply is abandoned
/// after its own timeout and retried. The attempt timeout has no flag, so
/// this runs the library with a short one.
#[tokio::test]
async fn a_callback_that_never_replies_is_retried_after_the_attempt_timeout() {
    let callback = SilentFirst::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = stackhook::Config::for_local_testing()
        .attempt_timeout(Duration::from_millis(500))
        .shutdown_grace(Duration::from_secs(1));
    let router = stackhook_handlers::builtin_router(b"crash matrix tests, not a real key");
    let server = tokio::spawn(stackhook::serve(listener, router, config, async move {
        let _ = stopped.await;
    }));
    let body = create(
        &callback.url(),
        None,
        "Custom::Echo",
        "silent-1",
        json!({"Greeting": "late"}),
    );
    let status = client()
        .post(format!("http://{addr}/"))
        .json(&body)
        .send()
        .await
        .expect("the server is reachable")
        .status();
    assert_eq!(status, 200);
    let answers = callback.wait_for(1, ANSWER_WITHIN).await;
    assert_eq!(answers.len(), 1, "one answer, from the second attempt");
    let answer = Response::from_slice(&answers[0]).expect("an answer");
    assert_eq!(answer.status, Status::Success);
    assert_eq!(
        callback.connections(),
        2,
        "the silent attempt, then the retry"
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(ANSWER_WITHIN, server).await;
}

/// A callback endpoint whose first connection gets no reply at all; later
/// ones get 200 and their bodies are kept.
struct SilentFirst {
    addr: std::net::SocketAddr,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl SilentFirst {
    async fn start() -> SilentFirst {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, counted) = (Arc::clone(&bodies), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            let mut silent = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    // Held open, never answered, until the test ends.
                    silent.push(stream);
                    continue;
                }
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    if let Some(body) = read_request_body(&mut stream).await {
                        lock(&kept).push(body);
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        SilentFirst {
            addr,
            bodies,
            connections,
            task,
        }
    }

    fn url(&self) -> String {
        format!(
            "http://{}/cb?Expires=4102444800&Signature=silent",
            self.addr
        )
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn wait_for(&self, count: usize, within: Duration) -> Vec<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + within;
        while lock(&self.bodies).len() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(QUIET).await;
        lock(&self.bodies).clone()
    }
}

impl Drop for SilentFirst {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one HTTP/1.1 request with a Content-Length and return its body.
async fn read_request_body(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut read = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            while read.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                read.extend_from_slice(&chunk[..n]);
            }
            return Some(read[end + 4..end + 4 + length].to_vec());
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        read.extend_from_slice(&chunk[..n]);
    }
}

/// Row "SIGTERM or SIGINT": SIGINT stops accepting, lets in-flight work
/// finish within the grace period, and exits cleanly.
#[tokio::test]
async fn sigint_stops_accepting_and_lets_in_flight_work_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut provider = started(dir.path(), &["--shutdown-grace", "15"]).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = create(
        &sink.url("/cb"),
        None,
        "Custom::Echo",
        "int-1",
        json!({"SleepSeconds": 1.5, "Greeting": "finished"}),
    );
    assert_eq!(ack(&provider, &body).await, 200);
    provider
        .logs
        .wait_for(ANSWER_WITHIN, |l| l["message"] == provider::HANDLER_STARTED)
        .await;
    provider.signal("INT");
    let stopping = provider
        .logs
        .wait_for(ANSWER_WITHIN, |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutting down"))
        })
        .await;
    assert!(stopping, "no shutdown logged:\n{}", provider.logs.dump());
    let late = create(&sink.url("/cb"), None, "Custom::Echo", "int-2", json!({}));
    let refused = client().post(provider.url("/")).json(&late).send().await;
    assert!(
        refused.as_ref().map_or(true, |reply| reply.status() != 200),
        "a request after SIGINT was accepted: {refused:?}"
    );
    let answer = &answers_at(&sink, 1).await[0];
    assert_eq!(answer.request_id, "int-1");
    assert_eq!(answer.status, Status::Success, "{:?}", answer.reason);
    let status = provider.wait_exit(ANSWER_WITHIN).await.expect("it exits");
    assert!(status.success(), "{status:?}");
}

/// Row "SIGKILL or crash": on restart the outbox is delivered. With the
/// `fail` policy the answer is in the outbox before its first attempt, so
/// the restart delivers it instead of failing or running it again.
#[tokio::test]
async fn sigkill_with_an_undelivered_answer_delivers_it_from_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = ["--restart-policy", "Custom::Echo=fail"];
    let placeholder = CallbackSink::start().await.expect("sink");
    let addr = placeholder.addr();
    let body = create(
        &placeholder.url("/cb"),
        None,
        "Custom::Echo",
        "outbox-1",
        json!({"Greeting": "kept"}),
    );
    drop(placeholder);
    let provider = started(dir.path(), &policy).await;
    assert_eq!(ack(&provider, &body).await, 200);
    let failed = provider
        .logs
        .wait_for(ANSWER_WITHIN, |l| l["message"] == "callback attempt failed")
        .await;
    assert!(failed, "no delivery attempt:\n{}", provider.logs.dump());
    let first = provider.logs.clone();
    provider.kill_hard();
    let sink = CallbackSink::bind(addr)
        .await
        .expect("the callback is back");
    let restarted = started(dir.path(), &policy).await;
    let answer = &answers_at(&sink, 1).await[0];
    assert_eq!(answer.status, Status::Success, "{:?}", answer.reason);
    assert_eq!(answer.data.clone().unwrap_or_default()["Greeting"], "kept");
    let runs = first.handler_runs("outbox-1").len() + restarted.logs.handler_runs("outbox-1").len();
    assert_eq!(runs, 1, "delivered from the outbox, not run again");
}

/// An answer left in the outbox whose every callback URL the callback guard
/// refuses after `--callback-allow` changed: the next start closes it once,
/// with an ERROR naming the refused host and the flag (never the URL's
/// query), and sends nothing; the start after that does not try again.
#[tokio::test]
async fn an_outbox_answer_the_guard_now_refuses_is_closed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `localhost` rather than 127.0.0.1, which every test process allows.
    let placeholder = CallbackSink::start().await.expect("sink");
    let addr = placeholder.addr();
    let url = format!("http://localhost:{}/cb?Signature=s3cret", addr.port());
    drop(placeholder);
    let body = create(
        &url,
        None,
        "Custom::Echo",
        "refused-1",
        json!({"Greeting": "unreachable"}),
    );
    // The fail policy journals the answer durably before its first attempt.
    let policy = ["--restart-policy", "Custom::Echo=fail"];
    let allowed = [&policy[..], &["--callback-allow", "localhost"]].concat();
    let first = started(dir.path(), &allowed).await;
    assert_eq!(ack(&first, &body).await, 200);
    let failed = first
        .logs
        .wait_for(ANSWER_WITHIN, |l| l["message"] == "callback attempt failed")
        .await;
    assert!(failed, "no delivery attempt:\n{}", first.logs.dump());
    let first_logs = first.logs.clone();
    first.kill_hard();

    // The callback is back where the first process tried it, but the allow
    // list no longer names `localhost`.
    let sink = CallbackSink::bind(addr)
        .await
        .expect("the callback is back");
    const NEVER: &str = "an answer left in the outbox can never be delivered";
    let closed = |l: &Value| {
        l["level"] == "ERROR"
            && l["message"].as_str().is_some_and(|m| m.starts_with(NEVER))
            && l["span"]["request_id"] == "refused-1"
    };
    let second = started(dir.path(), &policy).await;
    let errors: Vec<Value> = second.logs.lines().into_iter().filter(closed).collect();
    assert_eq!(
        errors.len(),
        1,
        "closed once, before listening:\n{}",
        second.logs.dump()
    );
    let refused = errors[0]["refused"].as_str().unwrap_or_default();
    assert!(
        refused.contains("`localhost`") && refused.contains("--callback-allow"),
        "the refused host and the flag: {}",
        errors[0]
    );
    tokio::time::sleep(QUIET).await;
    assert!(
        sink.received().is_empty(),
        "a refused callback got the answer"
    );
    let second_logs = second.logs.clone();
    second.kill_hard();

    let third = started(dir.path(), &policy).await;
    tokio::time::sleep(QUIET).await;
    let third_logs = third.logs.clone();
    third.kill_hard();
    assert!(
        !third_logs
            .lines()
            .iter()
            .any(|l| closed(l) || l["message"] == "recovering open requests from the journal"),
        "the record stayed open:\n{}",
        third_logs.dump()
    );
    assert!(
        sink.received().is_empty(),
        "a refused callback got the answer"
    );
    let all = [first_logs, second_logs, third_logs];
    let runs: usize = all.iter().map(|l| l.handler_runs("refused-1").len()).sum();
    assert_eq!(runs, 1, "closed, not run again");
    for logs in all {
        let text = logs.dump();
        assert!(
            !text.contains("s3cret"),
            "a URL's query was logged:\n{text}"
        );
    }
}

/// Row "SIGTERM or SIGINT": undelivered answers stay in the outbox, with a
/// journal declared persistent, and are delivered at the next start.
#[tokio::test]
async fn sigterm_keeps_an_undelivered_answer_for_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--shutdown-grace", "1", "--journal-lifetime", "persistent"];
    let placeholder = CallbackSink::start().await.expect("sink");
    let addr = placeholder.addr();
    let body = create(
        &placeholder.url("/cb"),
        None,
        "Custom::Echo",
        "outbox-2",
        json!({"Greeting": "later"}),
    );
    drop(placeholder);
    let mut provider = started(dir.path(), &flags).await;
    assert_eq!(ack(&provider, &body).await, 200);
    let failed = provider
        .logs
        .wait_for(ANSWER_WITHIN, |l| l["message"] == "callback attempt failed")
        .await;
    assert!(failed, "no delivery attempt:\n{}", provider.logs.dump());
    provider.signal("TERM");
    let status = provider.wait_exit(ANSWER_WITHIN).await.expect("it exits");
    assert!(status.success(), "{status:?}");
    let sink = CallbackSink::bind(addr)
        .await
        .expect("the callback is back");
    let _restarted = started(dir.path(), &flags).await;
    let answer = &answers_at(&sink, 1).await[0];
    assert_eq!(answer.status, Status::Success, "{:?}", answer.reason);
    assert_eq!(answer.data.clone().unwrap_or_default()["Greeting"], "later");
}

/// Row "too much load": beyond `--max-concurrency` requests wait in the
/// queue; beyond `--max-queue` a new one is answered FAILED "overloaded" at
/// once. Every request gets exactly one answer.
#[tokio::test]
async fn beyond_the_queue_a_request_is_answered_overloaded_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = started(dir.path(), &["--max-concurrency", "1", "--max-queue", "1"]).await;
    let sink = CallbackSink::start().await.expect("sink");
    let ids = ["load-running", "load-queued", "load-refused"];
    for id in ids {
        let body = create(
            &sink.url("/cb"),
            None,
            "Custom::Echo",
            id,
            json!({"SleepSeconds": 1, "Greeting": id}),
        );
        ack(&provider, &body).await;
    }
    let got = answers_at(&sink, 3).await;
    let order: Vec<&str> = got.iter().map(|a| a.request_id.as_str()).collect();
    assert_eq!(
        order,
        ["load-refused", "load-running", "load-queued"],
        "{got:#?}"
    );
    assert_eq!(got[0].status, Status::Failed);
    let reason = got[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("overloaded"), "{reason}");
    assert!(
        got[1..].iter().all(|a| a.status == Status::Success),
        "{got:#?}"
    );
}

/// Row "too much load": a queued request is journaled, so a SIGKILL while
/// it waits for a slot does not drop it.
#[tokio::test]
async fn a_queued_request_survives_a_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--max-concurrency", "1"];
    let provider = started(dir.path(), &flags).await;
    let sink = CallbackSink::start().await.expect("sink");
    let running = create(
        &sink.url("/cb"),
        None,
        "Custom::Echo",
        "queue-running",
        json!({"SleepSeconds": 2}),
    );
    let queued = create(
        &sink.url("/cb"),
        None,
        "Custom::Echo",
        "queue-waiting",
        json!({"Greeting": "waited"}),
    );
    assert_eq!(ack(&provider, &running).await, 200);
    provider
        .logs
        .wait_for(ANSWER_WITHIN, |l| l["message"] == provider::HANDLER_STARTED)
        .await;
    assert_eq!(ack(&provider, &queued).await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        provider.logs.handler_runs("queue-waiting").is_empty(),
        "the second request should still be queued"
    );
    provider.kill_hard();
    let _restarted = started(dir.path(), &flags).await;
    let mut got = answers_at(&sink, 2).await;
    got.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(got[0].request_id, "queue-running");
    assert_eq!(got[1].request_id, "queue-waiting");
    assert!(got.iter().all(|a| a.status == Status::Success), "{got:#?}");
}
