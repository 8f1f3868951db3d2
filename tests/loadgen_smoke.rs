//! The load harness against a real server, briefly, so it cannot rot:
//! async (round trip to the callback), sync, and ack-only, with the disk
//! journal, zero errors and sane percentiles.

use std::time::Duration;

use serde_json::json;
use stackhook::config::JournalMode;
use stackhook::{Config, Router};
use stackhook_handlers::{Echo, Wait};
use stackhook_testing::loadgen::{self, LoadPlan, LoadReport};
use tokio_util::sync::CancellationToken;

struct Server {
    base: String,
    stop: CancellationToken,
    _state: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let state = tempfile::tempdir().expect("state dir");
    let stop = CancellationToken::new();
    let config = Config::for_local_testing().journal(JournalMode::Disk(state.path().into()));
    tokio::spawn(stackhook::serve(
        listener,
        Router::new()
            .route("Custom::Echo", Echo)
            .route("Custom::Wait", Wait),
        config,
        stop.clone().cancelled_owned(),
    ));
    Server {
        base,
        stop,
        _state: state,
    }
}

fn assert_sane(report: &LoadReport, n: usize) {
    assert_eq!(report.sent, n, "{report:?}");
    assert_eq!(report.completed, n, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.throughput > 0.0, "{report:?}");
    assert!(report.p50_ms > 0.0, "{report:?}");
    assert!(report.p50_ms <= report.p90_ms, "{report:?}");
    assert!(report.p90_ms <= report.p99_ms, "{report:?}");
    assert!(report.p99_ms <= report.max_ms, "{report:?}");
    assert!(report.max_ms < 20_000.0, "{report:?}");
}

fn plan(url: String) -> LoadPlan {
    LoadPlan {
        time_limit: Duration::from_secs(30),
        provider_pid: Some(std::process::id()),
        ..LoadPlan::echo(url, 20, 4)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_round_trips_reach_the_callback() {
    let server = start().await;
    let report = loadgen::run(&plan(format!("{}/", server.base)))
        .await
        .expect("load");
    assert_sane(&report, 20);
    if cfg!(target_os = "linux") {
        assert!(report.peak_rss_kib.is_some_and(|kib| kib > 0), "{report:?}");
        assert!(report.threads.is_some_and(|t| t > 0), "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_round_trips_end_in_the_reply() {
    let server = start().await;
    let report = loadgen::run(&plan(format!("{}/sync", server.base)))
        .await
        .expect("load");
    assert_sane(&report, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_and_ack_only_runs_finish() {
    let server = start().await;
    let paced = LoadPlan {
        rate: Some(200.0),
        ..plan(format!("{}/", server.base))
    };
    let report = loadgen::run(&paced).await.expect("load");
    assert_sane(&report, 20);
    // 20 requests at 200/s cannot take less than ~95 ms.
    assert!(report.elapsed_s >= 0.09, "{report:?}");

    let waits = LoadPlan {
        resource_type: "Custom::Wait".into(),
        properties: json!({"Seconds": 300}),
        ack_only: true,
        ..plan(format!("{}/", server.base))
    };
    let report = loadgen::run(&waits).await.expect("load");
    assert_sane(&report, 20);
}

#[tokio::test]
async fn a_dead_target_stops_within_the_time_limit() {
    // Nothing listens on this port once the listener is dropped.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let plan = LoadPlan {
        time_limit: Duration::from_secs(2),
        ..LoadPlan::echo(format!("http://{addr}/"), 20, 4)
    };
    let started = std::time::Instant::now();
    let report = loadgen::run(&plan).await.expect("load");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(report.completed, 0);
    assert_eq!(report.errors, report.sent);
}

#[tokio::test]
async fn refuses_a_target_off_this_machine() {
    let plan = LoadPlan::echo("http://192.0.2.1:9000/", 1, 1);
    assert!(loadgen::run(&plan).await.is_err());
}
