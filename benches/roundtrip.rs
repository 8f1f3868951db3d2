//! Round-trip benchmark: stackhook against the physical floor, side by side.
//!
//! `cargo bench --bench roundtrip` (add `-- --quick` for a tiny smoke run).
//!
//! The **floor** is a minimal hyper server (a mode of this same executable,
//! `roundtrip --floor`) that acknowledges each request, takes `ResponseURL`
//! from its body and POSTs a fixed answer with the same HTTP client stack as
//! `src/delivery.rs` (reqwest + rustls, same builder settings), with no
//! routing, journal or logging; `/sync` replies a fixed body. It is the most
//! any provider can do on this machine with this stack.
//!
//! The orchestrator starts each server as a child process on 127.0.0.1 (every
//! child is killed on drop), drives it with [`stackhook::loadgen`] (loopback
//! only, bounded in count and time) and prints a markdown table with absolute
//! figures and ratios to the floor.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use stackhook::loadgen::{self, LoadPlan, LoadReport};

/// How long a server may take to accept connections before the run gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests in flight for the maximum-throughput runs.
const CONCURRENCY: usize = 64;
/// Each load run stops after this long, whatever is left.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--floor") {
        floor::main();
        return;
    }
    // `cargo bench` passes `--bench`; ignore it and any other libtest flag.
    let quick = args.iter().any(|a| a == "--quick");
    if let Err(error) = orchestrate(quick) {
        eprintln!("roundtrip: {error}");
        std::process::exit(1);
    }
}

/// The floor server: no routing, no journal, no logging.
mod floor {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    const ANSWER: &[u8] = br#"{"Status":"SUCCESS","Reason":"","PhysicalResourceId":"floor","StackId":"s","RequestId":"r","LogicalResourceId":"l","Data":{}}"#;
    const ACK: &[u8] = br#"{"accepted":true}"#;

    #[derive(serde::Deserialize)]
    struct Callback {
        #[serde(rename = "ResponseURL")]
        response_url: String,
    }

    pub(super) fn main() {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("floor: {error}");
                std::process::exit(1);
            }
        };
        if let Err(error) = runtime.block_on(serve()) {
            eprintln!("floor: {error}");
            std::process::exit(1);
        }
    }

    async fn serve() -> std::io::Result<()> {
        let listen: SocketAddr = std::env::var("FLOOR_LISTEN")
            .ok()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        // The same builder settings as `stackhook::delivery::Delivery::new`
        // (the DNS resolver aside: callback URLs here are IP literals).
        let client = reqwest::Client::builder()
            .user_agent(stackhook::delivery::USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(std::io::Error::other)?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let client = client.clone();
                    async move { Ok::<_, Infallible>(handle(client, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(
        client: reqwest::Client,
        req: hyper::Request<Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let sync = req.uri().path() == "/sync";
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if sync {
            return hyper::Response::new(Full::new(Bytes::from_static(ANSWER)));
        }
        let Ok(callback) = serde_json::from_slice::<Callback>(&body) else {
            let mut reply = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
            *reply.status_mut() = hyper::StatusCode::BAD_REQUEST;
            return reply;
        };
        tokio::spawn(async move {
            let _ = client
                .post(callback.response_url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json")
                .header(
                    http::header::DATE,
                    httpdate::fmt_http_date(SystemTime::now()),
                )
                .timeout(Duration::from_secs(10))
                .body(Bytes::from_static(ANSWER))
                .send()
                .await;
        });
        hyper::Response::new(Full::new(Bytes::from_static(ACK)))
    }
}

/// A child server, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Exec to first accepted TCP connection.
    startup: Duration,
    _state: Option<tempfile::TempDir>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr, String> {
    let listener = StdListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener.local_addr().map_err(|e| format!("free port: {e}"))
}

fn wait_ready(mut child: Child, addr: SocketAddr, started: Instant) -> Result<(Child, Duration), String> {
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok((child, started.elapsed()));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited before it was ready: {status}"));
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the server did not accept connections within {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn start_floor() -> Result<Server, String> {
    let addr = free_port()?;
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let started = Instant::now();
    let child = Command::new(exe)
        .arg("--floor")
        .env("FLOOR_LISTEN", addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the floor: {e}"))?;
    let (child, startup) = wait_ready(child, addr, started)?;
    Ok(Server { child, addr, startup, _state: None })
}

fn start_stackhook(journal: &str, extra: &[&str]) -> Result<Server, String> {
    let addr = free_port()?;
    let state = tempfile::tempdir().map_err(|e| format!("state dir: {e}"))?;
    // ROUNDTRIP_STACKHOOK runs another build of the binary (A/B comparisons).
    let exe = std::env::var_os("ROUNDTRIP_STACKHOOK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stackhook")));
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(["--journal", journal])
        .arg("--state-dir")
        .arg(state.path())
        .args(["--callback-allow", "127.0.0.1"])
        .args(["--callback-endpoint", "public"])
        .args(["--max-connections", "100000"])
        .args(["--max-requests-per-ip", "100000"])
        .args(["--max-queue", "100000"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("starting stackhook: {e}"))?;
    let (child, startup) = wait_ready(child, addr, started)?;
    Ok(Server { child, addr, startup, _state: Some(state) })
}

fn load(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    path: &str,
    requests: usize,
    rate: Option<f64>,
) -> Result<LoadReport, String> {
    let plan = LoadPlan {
        rate,
        time_limit: RUN_LIMIT,
        provider_pid: Some(server.pid()),
        ..LoadPlan::echo(server.url(path), requests, CONCURRENCY)
    };
    // Warm up connections and caches, then measure.
    let warm = LoadPlan { rate: None, provider_pid: None, ..LoadPlan::echo(server.url(path), (requests / 10).clamp(10, 500), CONCURRENCY) };
    rt.block_on(loadgen::run(&warm)).map_err(|e| e.to_string())?;
    rt.block_on(loadgen::run(&plan)).map_err(|e| e.to_string())
}

/// One row of the table.
struct Row {
    name: String,
    throughput: f64,
    p50: f64,
    p99: f64,
    errors: usize,
    peak_rss_kib: Option<u64>,
    floor_throughput: f64,
    floor_p99: f64,
}

fn row(name: &str, report: &LoadReport, floor: &LoadReport) -> Row {
    Row {
        name: name.into(),
        throughput: report.throughput,
        p50: report.p50_ms,
        p99: report.p99_ms,
        errors: report.errors,
        peak_rss_kib: report.peak_rss_kib,
        floor_throughput: floor.throughput,
        floor_p99: floor.p99_ms,
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "-".into())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn orchestrate(quick: bool) -> Result<(), String> {
    let (n, waits, startups) = if quick { (200, 200, 3) } else { (5000, 10_000, 7) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let mut rows = Vec::new();

    eprintln!("floor: async and sync at maximum load");
    let floor = start_floor()?;
    let floor_async = load(&rt, &floor, "/", n, None)?;
    let floor_sync = load(&rt, &floor, "/sync", n, None)?;
    let floor_half = load(&rt, &floor, "/", n / 2, Some(floor_async.throughput * 0.5))?;
    let floor_rss = loadgen::process_stats(floor.pid()).1;
    drop(floor);
    rows.push(row("floor, async", &floor_async, &floor_async));
    rows.push(row("floor, sync", &floor_sync, &floor_sync));
    rows.push(row("floor, async at 50% of its max", &floor_half, &floor_half));

    eprintln!("stackhook: async Echo, --journal disk");
    let disk = start_stackhook("disk", &[])?;
    let disk_async = load(&rt, &disk, "/", n, None)?;
    let disk_half = load(&rt, &disk, "/", n / 2, Some(disk_async.throughput * 0.5))?;
    drop(disk);
    rows.push(row("stackhook async Echo, journal disk", &disk_async, &floor_async));
    rows.push(row("stackhook async Echo, disk, at 50% of its max", &disk_half, &floor_half));

    eprintln!("stackhook: async Echo, --journal memory");
    let memory = start_stackhook("memory", &[])?;
    let memory_async = load(&rt, &memory, "/", n, None)?;
    let memory_half = load(&rt, &memory, "/", n / 2, Some(memory_async.throughput * 0.5))?;
    drop(memory);
    rows.push(row("stackhook async Echo, journal memory", &memory_async, &floor_async));
    rows.push(row("stackhook async Echo, memory, at 50% of its max", &memory_half, &floor_half));

    eprintln!("stackhook: sync Echo, --journal disk");
    let sync = start_stackhook("disk", &[])?;
    let sync_report = load(&rt, &sync, "/sync", n, None)?;
    drop(sync);
    rows.push(row("stackhook sync Echo, journal disk", &sync_report, &floor_sync));

    eprintln!("stackhook: {waits} concurrent Custom::Wait");
    let wait = start_stackhook("disk", &["--type-timeout", "Custom::Wait=600"])?;
    let plan = LoadPlan {
        resource_type: "Custom::Wait".into(),
        properties: json!({"Seconds": 300}),
        ack_only: true,
        time_limit: RUN_LIMIT,
        provider_pid: Some(wait.pid()),
        ..LoadPlan::echo(wait.url("/"), waits, CONCURRENCY)
    };
    let wait_report = rt.block_on(loadgen::run(&plan)).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let (wait_peak, wait_rss, wait_threads) = loadgen::process_stats(wait.pid());
    drop(wait);

    eprintln!("start-up and idle RSS ({startups} runs each)");
    let mut stackhook_startups = Vec::new();
    let mut floor_startups = Vec::new();
    let mut idle_rss = None;
    let mut idle_threads = None;
    for i in 0..startups {
        let server = start_stackhook("disk", &[])?;
        stackhook_startups.push(server.startup);
        if i == 0 {
            std::thread::sleep(Duration::from_millis(500));
            let (_, rss, threads) = loadgen::process_stats(server.pid());
            idle_rss = rss;
            idle_threads = threads;
        }
        drop(server);
        let floor = start_floor()?;
        floor_startups.push(floor.startup);
    }
    let stackhook_startup = median(stackhook_startups);
    let floor_startup = median(floor_startups);

    println!();
    println!("| run | req/s | vs floor | p50 ms | p99 ms | p99 vs floor | errors | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.2}x | {} | {} |",
            r.name,
            r.throughput,
            100.0 * r.throughput / r.floor_throughput.max(1e-9),
            r.p50,
            r.p99,
            r.p99 / r.floor_p99.max(1e-9),
            r.errors,
            mib(r.peak_rss_kib),
        );
    }
    println!();
    println!("| figure | stackhook | floor |");
    println!("|---|---:|---:|");
    println!(
        "| start-up, exec to accepting TCP (median of {startups}) | {:.1} ms | {:.1} ms |",
        stackhook_startup.as_secs_f64() * 1e3,
        floor_startup.as_secs_f64() * 1e3
    );
    println!(
        "| idle RSS | {} MiB ({} threads) | {} MiB (after load) |",
        mib(idle_rss),
        idle_threads.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
        mib(floor_rss)
    );
    println!(
        "| {waits} waiting Custom::Wait: accepted / errors | {} / {} | - |",
        wait_report.completed, wait_report.errors
    );
    println!(
        "| {waits} waiting Custom::Wait: RSS (peak) | {} MiB ({} MiB) | - |",
        mib(wait_rss),
        mib(wait_peak)
    );
    println!(
        "| {waits} waiting Custom::Wait: threads | {} | - |",
        wait_threads.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
    );
    Ok(())
}
