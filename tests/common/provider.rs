//! A `stackhook serve` process for tests that crash, signal and restart the
//! real binary: it listens on 127.0.0.1:0, logs JSON on stderr, and every log
//! line it writes is kept, so a test can read what the process did even after
//! it was killed.
//!
//! Included with `#[path = "common/provider.rs"] mod provider;` by the test
//! files that use it, so the other tests do not compile it; they also declare
//! `mod common;`, whose `stackhook_bin` finds the workspace's binary.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// How long a process may take to start listening: a debug build opening a
/// journal a SIGKILL left behind, on a shared machine.
pub(crate) const START_WITHIN: Duration = Duration::from_secs(30);

/// The message of the line `dispatch` writes each time a handler runs (a
/// first run or a poll), in the request's span.
pub(crate) const HANDLER_STARTED: &str = "handler started";

/// Every line one process wrote on stderr, parsed (a line that is not JSON is
/// kept as `{"raw": line}`).
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<Value>>>);

impl Logs {
    fn lock(&self) -> MutexGuard<'_, Vec<Value>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of every line so far.
    pub(crate) fn lines(&self) -> Vec<Value> {
        self.lock().clone()
    }

    /// The lines with this message, in the span of `request_id`.
    pub(crate) fn about(&self, request_id: &str, message: &str) -> Vec<Value> {
        self.lock()
            .iter()
            .filter(|line| line["message"] == message && line["span"]["request_id"] == request_id)
            .cloned()
            .collect()
    }

    /// When each handler run for `request_id` started, by the log's clock.
    pub(crate) fn handler_runs(&self, request_id: &str) -> Vec<SystemTime> {
        self.about(request_id, HANDLER_STARTED)
            .iter()
            .map(|line| {
                let stamp = line["timestamp"].as_str().unwrap_or_default();
                parse_timestamp(stamp)
                    .unwrap_or_else(|| panic!("a log line without a readable timestamp: {line}"))
            })
            .collect()
    }

    /// The lines as text, for a failure message.
    pub(crate) fn dump(&self) -> String {
        self.lock()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Wait until a line matches `matches`; false if none did within `within`.
    pub(crate) async fn wait_for(
        &self,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.lock().iter().any(&matches) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A running `stackhook serve`; SIGKILLed when dropped.
pub(crate) struct Provider {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// What it logged.
    pub(crate) logs: Logs,
    /// When it was started.
    pub(crate) started: SystemTime,
}

impl Provider {
    /// The `stackhook serve` command every start runs: on `state_dir` with
    /// `extra` flags, listening on 127.0.0.1:0, logging JSON at `info`, and
    /// answering callbacks on loopback. Not spawned, so that a test of a
    /// refused start can run it to the end and read its output.
    pub(crate) fn command(state_dir: &Path, extra: &[impl AsRef<OsStr>]) -> Command {
        let mut command = Command::new(crate::common::stackhook_bin());
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--callback-endpoint",
                "public",
                // The tests' callback sinks listen on loopback.
                "--callback-allow",
                "127.0.0.1",
            ])
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .env("RUST_LOG", "info");
        command
    }

    /// Start `stackhook serve` on `state_dir` with `extra` flags, answering
    /// callbacks on loopback, and wait until it listens.
    ///
    /// # Errors
    /// What it logged, when it exited or stayed silent instead of listening.
    pub(crate) async fn start(state_dir: &Path, extra: &[String]) -> Result<Provider, String> {
        Provider::start_with_env(state_dir, extra, &[]).await
    }

    /// [`Provider::start`] with these environment variables set too.
    ///
    /// # Errors
    /// As [`Provider::start`].
    pub(crate) async fn start_with_env(
        state_dir: &Path,
        extra: &[String],
        env: &[(&str, &str)],
    ) -> Result<Provider, String> {
        let started = SystemTime::now();
        let mut child = Provider::command(state_dir, extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start stackhook serve: {e}"))?;
        let logs = Logs::default();
        let Some(stderr) = child.stderr.take() else {
            return Err("no stderr pipe".into());
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let entry = serde_json::from_str::<Value>(&line).unwrap_or(json!({"raw": line}));
                if entry["message"] == "stackhook is listening" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(entry["addr"].as_str().unwrap_or_default().to_string());
                    }
                }
                sink.lock().push(entry);
            }
        });
        let addr = match tokio::time::timeout(START_WITHIN, rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => {
                let _ = child.wait();
                return Err(format!(
                    "stackhook serve exited before listening:\n{}",
                    logs.dump()
                ));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "stackhook serve did not listen within {START_WITHIN:?}:\n{}",
                    logs.dump()
                ));
            }
        };
        let addr = addr
            .parse()
            .map_err(|e| format!("the logged address {addr:?} is not one: {e}"))?;
        Ok(Provider {
            child,
            addr,
            logs,
            started,
        })
    }

    /// `http://ADDR{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The text of its `/metrics`.
    pub(crate) async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`TERM`, `INT`) with kill(1).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGKILL, and reap the process; returns when it died.
    pub(crate) fn kill_hard(mut self) -> SystemTime {
        let _ = self.child.kill();
        let _ = self.child.wait();
        SystemTime::now()
    }

    /// Wait for the process to exit by itself, at most `within`.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`Provider::start`] for a test that cannot go on without the provider:
/// `flags` as written in the test, and a panic with what the process logged
/// when it does not listen.
pub(crate) async fn started(state_dir: &Path, flags: &[&str]) -> Provider {
    let flags: Vec<String> = flags.iter().map(|flag| flag.to_string()).collect();
    Provider::start(state_dir, &flags)
        .await
        .expect("the provider starts")
}

/// POST `body` to the provider's async route, as ROS does; the status of its
/// acknowledgement.
pub(crate) async fn ack(provider: &Provider, body: &Value) -> u16 {
    reqwest::Client::builder()
        // A provider that accepts the connection but never acknowledges
        // fails the test rather than hanging it.
        .timeout(crate::common::WAIT)
        .build()
        .expect("an HTTP client")
        .post(provider.url("/"))
        .json(body)
        .send()
        .await
        .expect("the provider is reachable")
        .status()
        .as_u16()
}

/// A log timestamp as tracing-subscriber writes it
/// (`2025-01-31T12:34:56.123456Z`), as a `SystemTime`.
pub(crate) fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.splitn(3, ':').map(str::parse::<u64>);
    let (hour, minute, second) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    // Days since 1970-01-01 in the proleptic Gregorian calendar.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = u64::try_from(era * 146_097 + day_of_era - 719_468).ok()?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits = &fraction[..fraction.len().min(9)];
        digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
    };
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_nanos(nanos))
}
