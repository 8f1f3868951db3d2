//! A load harness that plays ROS at scale against a provider on this machine.
//!
//! It sends `requests` Create requests at `concurrency` (optionally paced to a
//! rate) to a provider URL and runs the callback receiver itself, so it can
//! time each round trip: request sent → answer received (at the callback in
//! async mode, in the reply in sync mode). It reports throughput, latency
//! percentiles, errors, and the provider's peak RSS when given its pid. It
//! bounds its own run time and refuses any target that is not loopback.
//!
//! `stackhook bench` is its command line; `benches/roundtrip.rs` uses it to
//! compare stackhook with the floor server.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

use stackhook::error::{Error, Result};

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The provider's URL: `/` (async), `/sync` or `/invoke`. Loopback only.
    pub url: String,
    /// How many requests.
    pub requests: usize,
    /// How many in flight at once.
    pub concurrency: usize,
    /// Requests per second to pace at; `None` sends as fast as answers allow.
    pub rate: Option<f64>,
    /// The resource type to create.
    pub resource_type: String,
    /// Its properties.
    pub properties: Value,
    /// Stop after this long, whatever is left.
    pub time_limit: Duration,
    /// Count a request done when acknowledged, without waiting for its
    /// answer (for long-running work such as `Custom::Wait`).
    pub ack_only: bool,
    /// The provider's pid, to read its peak RSS.
    pub provider_pid: Option<u32>,
}

impl LoadPlan {
    /// A plan of `requests` `Custom::Echo` creates at `concurrency` against `url`.
    pub fn echo(url: impl Into<String>, requests: usize, concurrency: usize) -> Self {
        LoadPlan {
            url: url.into(),
            requests,
            concurrency: concurrency.max(1),
            rate: None,
            resource_type: "Custom::Echo".into(),
            properties: json!({"Greeting": "hello"}),
            time_limit: Duration::from_secs(120),
            ack_only: false,
            provider_pid: None,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct LoadReport {
    /// Requests sent.
    pub sent: usize,
    /// Round trips finished with SUCCESS.
    pub completed: usize,
    /// Requests refused, failed, answered FAILED or not answered in time.
    pub errors: usize,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Finished round trips per second.
    pub throughput: f64,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest round trip.
    pub max_ms: f64,
    /// The provider's peak resident set, in KiB (Linux only).
    pub peak_rss_kib: Option<u64>,
    /// The provider's resident set at the end, in KiB (Linux only).
    pub rss_kib: Option<u64>,
    /// The provider's thread count at the end (Linux only).
    pub threads: Option<u64>,
    /// CPU time (user + system) the provider spent during the run, in
    /// milliseconds (Linux only). Divided by `completed` it is a cost per
    /// request that other load on the machine disturbs less than throughput.
    pub provider_cpu_ms: Option<f64>,
}

/// Check that `url` points at this machine.
///
/// # Errors
/// [`Error::Validation`] for any other host.
pub fn require_loopback(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Error::Validation {
        field: "url".into(),
        message: format!("`{url}` is not a URL: {e}"),
    })?;
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if loopback {
        Ok(())
    } else {
        Err(Error::Validation {
            field: "url".into(),
            message: "the load harness only targets loopback (127.0.0.0/8, ::1, localhost)".into(),
        })
    }
}

/// Per-request timings, shared with the callback receiver.
struct Timings {
    origin: Instant,
    /// Nanoseconds after `origin` the request was sent (0: not yet).
    sent: Vec<AtomicU64>,
    /// Nanoseconds after `origin` its answer arrived (0: not yet).
    answered: Vec<AtomicU64>,
    /// Woken when that request's answer arrives (async round trips wait on it).
    answered_signal: Vec<Notify>,
    successes: AtomicUsize,
    failures: AtomicUsize,
    done: Notify,
    /// Whether a callback ends a round trip; not when acknowledgements do
    /// (`ack_only`), where a callback may even arrive before its ack.
    callbacks_count: bool,
}

impl Timings {
    fn stamp(&self, slot: &AtomicU64) {
        let nanos = self.origin.elapsed().as_nanos().max(1) as u64;
        let _ = slot.compare_exchange(0, nanos, Ordering::AcqRel, Ordering::Acquire);
    }

    fn answer(&self, index: usize, success: bool) {
        let Some(slot) = self.answered.get(index) else {
            return;
        };
        if slot.load(Ordering::Acquire) != 0 {
            return;
        }
        let nanos = self.origin.elapsed().as_nanos().max(1) as u64;
        if slot
            .compare_exchange(0, nanos, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // A redelivered callback: the first answer counts.
            return;
        }
        if success {
            self.successes.fetch_add(1, Ordering::AcqRel);
        } else {
            self.failures.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(signal) = self.answered_signal.get(index) {
            signal.notify_one();
        }
        self.done.notify_waiters();
    }

    fn is_answered(&self, index: usize) -> bool {
        self.answered
            .get(index)
            .is_some_and(|slot| slot.load(Ordering::Acquire) != 0)
    }

    fn finished(&self) -> usize {
        self.successes.load(Ordering::Acquire) + self.failures.load(Ordering::Acquire)
    }
}

/// Whether a response body says SUCCESS, without a full parse.
fn says_success(body: &[u8]) -> bool {
    let needle = br#""Status":"SUCCESS""#;
    body.windows(needle.len()).any(|w| w == needle)
}

/// The request index in a callback URI (`...?rid=N&...`).
fn index_of(uri: &http::Uri) -> Option<usize> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("rid="))
        .and_then(|n| n.parse().ok())
}

/// The callback receiver: its address, and the task to abort when the run
/// ends (aborting it closes every connection it holds).
async fn start_receiver(
    timings: Arc<Timings>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| Error::io("binding the callback receiver", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the receiver's address", e))?;
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let Ok((stream, _)) = accepted else {
                // Out of descriptors and the like: back off briefly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let timings = Arc::clone(&timings);
            connections.spawn(async move {
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let timings = Arc::clone(&timings);
                    async move {
                        let index = index_of(req.uri());
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if let Some(index) = index.filter(|_| timings.callbacks_count) {
                            timings.answer(index, says_success(&body));
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"{}",
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

fn request_body(plan: &LoadPlan, run: &str, index: usize, callback: SocketAddr) -> Vec<u8> {
    json!({
        "RequestType": "Create",
        "RequestId": format!("{run}-{index}"),
        "ResponseURL": format!("http://{callback}/cb?rid={index}&Signature=load"),
        "ResourceType": plan.resource_type,
        "LogicalResourceId": format!("Load{index}"),
        "StackId": format!("{run}-stack"),
        "StackName": "load",
        "ResourceOwnerId": "123456789",
        "CallerId": "123456789",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": plan.properties,
    })
    .to_string()
    .into_bytes()
}

/// Run `plan` and report.
///
/// # Errors
/// [`Error::Validation`] for a non-loopback URL; [`Error::Io`] when the
/// callback receiver cannot start.
pub async fn run(plan: &LoadPlan) -> Result<LoadReport> {
    require_loopback(&plan.url)?;
    let path = plan
        .url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    let sync = path.ends_with("/sync");
    let timings = Arc::new(Timings {
        origin: Instant::now(),
        sent: (0..plan.requests).map(|_| AtomicU64::new(0)).collect(),
        answered: (0..plan.requests).map(|_| AtomicU64::new(0)).collect(),
        answered_signal: (0..plan.requests).map(|_| Notify::new()).collect(),
        successes: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
        done: Notify::new(),
        callbacks_count: !plan.ack_only,
    });
    let cpu_before = plan.provider_pid.and_then(process_cpu_ms);
    let (callback, receiver) = start_receiver(Arc::clone(&timings)).await?;
    let _receiver = AbortOnDrop(receiver);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .tcp_nodelay(true)
        .timeout(plan.time_limit)
        .build()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
    let run_id = format!("load{:x}", rand::random::<u64>());
    let deadline = Instant::now() + plan.time_limit;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let pacing = plan
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));

    let mut workers = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency.min(plan.requests.max(1)) {
        let (client, timings, next, plan) = (
            client.clone(),
            Arc::clone(&timings),
            Arc::clone(&next),
            plan.clone(),
        );
        let run_id = run_id.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::AcqRel);
                if index >= plan.requests || Instant::now() >= deadline {
                    return;
                }
                if let Some(interval) = pacing {
                    tokio::time::sleep_until(started + interval * index as u32).await;
                }
                let body = request_body(&plan, &run_id, index, callback);
                timings.stamp(&timings.sent[index]);
                let exchange = async {
                    let reply = client
                        .post(&plan.url)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(body)
                        .send()
                        .await
                        .ok()?;
                    let ok = reply.status().is_success();
                    let body = reply.bytes().await.ok()?;
                    Some((ok, body))
                };
                let (ok, reply_body) = tokio::time::timeout_at(deadline, exchange)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if !ok {
                    timings.answer(index, false);
                } else if sync {
                    timings.answer(index, says_success(&reply_body));
                } else if plan.ack_only {
                    timings.answer(index, true);
                } else {
                    // A round trip ends at the callback: keep `concurrency`
                    // round trips in flight, not just `concurrency` requests.
                    let signal = &timings.answered_signal[index];
                    while !timings.is_answered(index) {
                        if tokio::time::timeout_at(deadline, signal.notified())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let sent = next.load(Ordering::Acquire).min(plan.requests);
    while timings.finished() < sent {
        let notified = timings.done.notified();
        if timings.finished() >= sent || tokio::time::timeout_at(deadline, notified).await.is_err()
        {
            break;
        }
    }
    let elapsed = started.elapsed();

    let mut latencies: Vec<u64> = (0..sent)
        .filter_map(|i| {
            let s = timings.sent[i].load(Ordering::Acquire);
            let a = timings.answered[i].load(Ordering::Acquire);
            (s != 0 && a >= s).then(|| a - s)
        })
        .collect();
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1] as f64 / 1e6
    };
    let completed = timings.successes.load(Ordering::Acquire);
    let (peak_rss_kib, rss_kib, threads) = plan.provider_pid.map(process_stats).unwrap_or_default();
    let provider_cpu_ms = plan
        .provider_pid
        .and_then(process_cpu_ms)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    Ok(LoadReport {
        sent,
        completed,
        errors: sent - completed,
        elapsed_s: elapsed.as_secs_f64(),
        throughput: completed as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: percentile(50.0),
        p90_ms: percentile(90.0),
        p99_ms: percentile(99.0),
        max_ms: percentile(100.0),
        peak_rss_kib,
        rss_kib,
        threads,
        provider_cpu_ms,
    })
}

/// Aborts a task when dropped, so a run never leaves its receiver behind.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Peak RSS, current RSS (KiB) and thread count of `pid`, from /proc.
pub fn process_stats(pid: u32) -> (Option<u64>, Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    (field("VmHWM:"), field("VmRSS:"), field("Threads:"))
}

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on
/// every Linux architecture the provider runs on).
const USER_HZ: f64 = 100.0;

/// User + system CPU time of `pid` so far, in milliseconds, from /proc.
pub fn process_cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_ms_from_stat(&stat)
}

fn cpu_ms_from_stat(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after
    // the last `)`, with the state (field 3) first; utime and stime are
    // fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1000.0 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(require_loopback("http://127.0.0.1:9000/").is_ok());
        assert!(require_loopback("http://[::1]:9000/sync").is_ok());
        assert!(require_loopback("http://localhost:9000/").is_ok());
        assert!(require_loopback("http://10.0.0.1:9000/").is_err());
        assert!(require_loopback("https://example.com/").is_err());
        assert!(require_loopback("not a url").is_err());
    }

    #[test]
    fn reads_cpu_time_from_proc_stat() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(cpu_ms_from_stat(stat), Some(3000.0));
        assert_eq!(cpu_ms_from_stat("garbage"), None);
    }

    #[test]
    fn reads_the_request_index_and_status() {
        let uri: http::Uri = "/cb?rid=42&Signature=x".parse().expect("uri");
        assert_eq!(index_of(&uri), Some(42));
        assert!(says_success(br#"{"Status":"SUCCESS","RequestId":"a"}"#));
        assert!(!says_success(br#"{"Status":"FAILED"}"#));
    }
}
