//! Round-trip benchmark: stackhook against the physical floor, side by side.
//!
//! `cargo build --release -p stackhook-cli && cargo bench --bench roundtrip`
//! (add `-- --quick` for a tiny smoke run, `-- --rounds N` for more
//! interleaved rounds than the default). The binary lives in another
//! package of the workspace, so the bench runs the release build Cargo put
//! beside it.
//!
//! `ROUNDTRIP_POSTGRES_URL=postgres://…` adds async Echo through the
//! shared PostgreSQL journal, with one replica and with three, then one
//! replica with Echo declared not idempotent (its answer journaled before
//! it is given), and the database round trips per answered request (see
//! the `postgres` module).
//!
//! `ROUNDTRIP_BASELINE=/path/to/stackhook` adds a row for another build of
//! the binary (say, the commit before a change) with the disk journal,
//! interleaved in the same rounds as this build's, so a change's cost is
//! measured before and after in one run.
//!
//! The **floor** is a minimal hyper server (a mode of this same executable,
//! `roundtrip --floor`) that acknowledges each request, takes `ResponseURL`
//! from its body and POSTs a fixed answer with the same HTTP client stack as
//! `src/delivery.rs` (reqwest + rustls, same builder settings), with no
//! routing, journal or logging; `/sync` replies a fixed body. It is the most
//! any provider can do on this machine with this stack.
//!
//! The orchestrator starts each server as a child process on 127.0.0.1 (every
//! child is killed on drop), drives it with [`stackhook_testing::loadgen`] (loopback
//! only, bounded in count and time) and prints a markdown table with absolute
//! figures and ratios to the floor.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use stackhook_testing::loadgen::{self, LoadPlan, LoadReport};

/// How long a server may take to accept connections before the run gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests in flight for the maximum-throughput runs.
const CONCURRENCY: usize = 64;
/// Each load run stops after this long, whatever is left.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// The least traffic a half-load run sends, at its paced rate.
const HALF_LOAD_RUN: Duration = Duration::from_secs(3);
/// Interleaved rounds per figure. On this shared 2-core machine one round's
/// ratio to the floor ranges over 30 points for the same two binaries, and
/// the median of five still moved by 15 from run to run; nine narrow that.
const DEFAULT_ROUNDS: usize = 9;

/// The same allocator as the `stackhook` binary, so the floor and stackhook
/// differ only in what stackhook does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--floor") {
        floor::main();
        return;
    }
    // Test runners list tests with `--list` (nextest with --all-targets,
    // `cargo test --benches`): there are none here, and listing must not
    // start a benchmark.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes `--bench`. Without it (`cargo test` running this
    // target), do nothing: the load harness has its own smoke test.
    if !args.iter().any(|a| a == "--bench") {
        println!("roundtrip: run it with `cargo bench --bench roundtrip [-- --quick]`");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let rounds = match args.iter().position(|a| a == "--rounds") {
        None => None,
        Some(at) => match args.get(at + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                eprintln!("roundtrip: --rounds takes a number of rounds, at least 1");
                std::process::exit(2);
            }
        },
    };
    if let Err(error) = orchestrate(quick, rounds) {
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

fn wait_ready(
    mut child: Child,
    addr: SocketAddr,
    started: Instant,
) -> Result<(Child, Duration), String> {
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
            return Err(format!(
                "the server did not accept connections within {READY_TIMEOUT:?}"
            ));
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
    Ok(Server {
        child,
        addr,
        startup,
        _state: None,
    })
}

/// The `stackhook` binary of this profile, beside the bench's executable
/// (`target/release/deps/..`).
fn built_stackhook() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the bench's own path: {e}"))?;
    let mut dir = exe
        .parent()
        .map(PathBuf::from)
        .ok_or("the bench has no directory")?;
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join(format!("stackhook{}", std::env::consts::EXE_SUFFIX));
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "no `stackhook` binary at {}: run `cargo build --release -p stackhook-cli` first",
            binary.display()
        ))
    }
}

fn start_stackhook(journal: &str, extra: &[&str]) -> Result<Server, String> {
    // ROUNDTRIP_STACKHOOK runs another build of the binary (A/B comparisons).
    let exe = match std::env::var_os("ROUNDTRIP_STACKHOOK") {
        Some(path) => PathBuf::from(path),
        None => built_stackhook()?,
    };
    start_build(exe, journal, extra)
}

/// The build named by `ROUNDTRIP_BASELINE`, if any.
fn baseline_build() -> Result<Option<PathBuf>, String> {
    match std::env::var_os("ROUNDTRIP_BASELINE") {
        None => Ok(None),
        Some(path) if PathBuf::from(&path).is_file() => Ok(Some(PathBuf::from(path))),
        Some(path) => Err(format!(
            "ROUNDTRIP_BASELINE names {}, which is not a file",
            PathBuf::from(path).display()
        )),
    }
}

/// `stackhook serve` from the binary at `exe`.
fn start_build(exe: PathBuf, journal: &str, extra: &[&str]) -> Result<Server, String> {
    start_build_env(exe, journal, extra, &[])
}

/// [`start_build`] with these environment variables too.
fn start_build_env(
    exe: PathBuf,
    journal: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Server, String> {
    let addr = free_port()?;
    let state = tempfile::tempdir().map_err(|e| format!("state dir: {e}"))?;
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
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("starting stackhook: {e}"))?;
    let (child, startup) = wait_ready(child, addr, started)?;
    Ok(Server {
        child,
        addr,
        startup,
        _state: Some(state),
    })
}

fn plan(server: &Server, path: &str, requests: usize, rate: Option<f64>) -> LoadPlan {
    LoadPlan {
        rate,
        time_limit: RUN_LIMIT,
        provider_pid: Some(server.pid()),
        ..LoadPlan::echo(server.url(path), requests, CONCURRENCY)
    }
}

fn load(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    path: &str,
    requests: usize,
    rate: Option<f64>,
) -> Result<LoadReport, String> {
    rt.block_on(loadgen::run(&plan(server, path, requests, rate)))
        .map_err(|e| e.to_string())
}

/// The median of `reports` by `key`: other load on a shared machine moves
/// single runs a lot, so each figure is the median of interleaved rounds.
fn median_by(mut reports: Vec<LoadReport>, key: impl Fn(&LoadReport) -> f64) -> LoadReport {
    reports.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = reports.len() / 2;
    reports.swap_remove(middle)
}

/// The median over rounds of `runs[i]`'s throughput over `floor[i]`'s.
fn paired_ratio(runs: &[LoadReport], floor: &[LoadReport]) -> f64 {
    let mut ratios: Vec<f64> = runs
        .iter()
        .zip(floor)
        .map(|(run, floor)| run.throughput / floor.throughput.max(1e-9))
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
}

/// One row of the table.
struct Row {
    name: String,
    report: LoadReport,
    /// Throughput as a share of the floor's.
    vs_floor: f64,
    floor_p99: f64,
}

fn row(name: &str, report: &LoadReport, floor: &LoadReport) -> Row {
    Row {
        name: name.into(),
        report: report.clone(),
        vs_floor: report.throughput / floor.throughput.max(1e-9),
        floor_p99: floor.p99_ms,
    }
}

/// A maximum-load row, its share of the floor's throughput paired by round.
fn paired_row(name: &str, report: &LoadReport, vs_floor: f64, floor: &LoadReport) -> Row {
    Row {
        vs_floor,
        ..row(name, report, floor)
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0))
        .unwrap_or_else(|| "-".into())
}

fn cpu_per_request(report: &LoadReport) -> String {
    report
        .provider_cpu_ms
        .filter(|_| report.completed > 0)
        .map(|ms| format!("{:.0}", ms * 1000.0 / report.completed as f64))
        .unwrap_or_else(|| "-".into())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn orchestrate(quick: bool, rounds: Option<usize>) -> Result<(), String> {
    let (n, waits, startups, default_rounds) = if quick {
        (200, 200, 3, 1)
    } else {
        (5000, 10_000, 7, DEFAULT_ROUNDS)
    };
    let rounds = rounds.unwrap_or(default_rounds);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;

    let floor = start_floor()?;
    let disk = start_stackhook("disk", &[])?;
    let memory = start_stackhook("memory", &[])?;
    let sync = start_stackhook("disk", &[])?;
    let baseline = baseline_build()?
        .map(|exe| start_build(exe, "disk", &[]))
        .transpose()?;
    let mut servers = vec![&floor, &disk, &memory, &floor, &sync];
    let mut paths = vec!["/", "/", "/", "/sync", "/sync"];
    // The baseline build last: its rows come after the fixed ones.
    if let Some(baseline) = &baseline {
        servers.push(baseline);
        paths.push("/");
    }
    // Warm up every server's connections and caches.
    for (server, path) in servers.iter().zip(paths.iter().copied()) {
        load(&rt, server, path, 500.min(n), None)?;
    }

    eprintln!("maximum load: {rounds} interleaved rounds of {n} requests at c={CONCURRENCY}");
    let mut max: Vec<Vec<LoadReport>> = vec![Vec::new(); servers.len()];
    for round in 0..rounds {
        for (i, (server, path)) in servers.iter().zip(paths.iter().copied()).enumerate() {
            let report = load(&rt, server, path, n, None)?;
            eprintln!(
                "  round {round} {i}: {:.0} req/s p99 {:.1} ms",
                report.throughput, report.p99_ms
            );
            max[i].push(report);
        }
    }
    // Each stackhook run against the floor run of its own round: a ratio
    // within a round is spared the machine's slower and faster spells.
    let paired = |i: usize, floor: usize| paired_ratio(&max[i], &max[floor]);
    let (disk_ratio, memory_ratio, sync_ratio) = (paired(1, 0), paired(2, 0), paired(4, 3));
    let baseline_ratio = baseline.as_ref().map(|_| paired(5, 0));
    let mut max = max.into_iter().map(|r| median_by(r, |r| r.throughput));
    let mut next = || max.next().ok_or("missing a run");
    let (floor_async, disk_async, memory_async, floor_sync, sync_report) =
        (next()?, next()?, next()?, next()?, next()?);
    let baseline_async = match baseline_ratio {
        Some(ratio) => Some((next()?, ratio)),
        None => None,
    };

    eprintln!(
        "half load: each server at 50% of its own maximum, at least {HALF_LOAD_RUN:?} per run"
    );
    let half_servers = [
        (&floor, floor_async.throughput),
        (&disk, disk_async.throughput),
        (&memory, memory_async.throughput),
    ];
    let mut half: Vec<Vec<LoadReport>> = vec![Vec::new(); half_servers.len()];
    // Half as many rounds as at maximum load (each run here lasts at least
    // HALF_LOAD_RUN): a single run moves by ±20 points with the shared
    // machine's other load, and the median of five rides over two bad ones.
    let half_rounds = rounds.div_ceil(2);
    for _ in 0..half_rounds {
        for (i, (server, max)) in half_servers.iter().enumerate() {
            let rate = max * 0.5;
            // At least HALF_LOAD_RUN of traffic: over a fraction of a
            // second, p99 is a handful of requests and one stall of the
            // shared machine decides it.
            let count = if quick {
                n / 2
            } else {
                (n / 2).max((rate * HALF_LOAD_RUN.as_secs_f64()) as usize)
            };
            half[i].push(load(&rt, server, "/", count, Some(rate))?);
        }
    }
    let mut half = half.into_iter().map(|r| median_by(r, |r| r.p99_ms));
    let mut next = || half.next().ok_or("missing a run");
    let (floor_half, disk_half, memory_half) = (next()?, next()?, next()?);
    let floor_rss = loadgen::process_stats(floor.pid()).0;
    drop((floor, disk, memory, sync, baseline));

    let mut queue_rows: Vec<(String, f64, f64, usize)> = Vec::new();
    let mut rows = vec![
        row("floor, async", &floor_async, &floor_async),
        paired_row(
            "stackhook async Echo, journal disk",
            &disk_async,
            disk_ratio,
            &floor_async,
        ),
        paired_row(
            "stackhook async Echo, journal memory",
            &memory_async,
            memory_ratio,
            &floor_async,
        ),
        row("floor, sync", &floor_sync, &floor_sync),
        paired_row(
            "stackhook sync Echo, journal disk",
            &sync_report,
            sync_ratio,
            &floor_sync,
        ),
        row("floor, async at 50% of its max", &floor_half, &floor_half),
        row(
            "stackhook async Echo, disk, at 50% of its max",
            &disk_half,
            &floor_half,
        ),
        row(
            "stackhook async Echo, memory, at 50% of its max",
            &memory_half,
            &floor_half,
        ),
    ];
    if let Some((report, ratio)) = &baseline_async {
        rows.insert(
            2,
            paired_row(
                "baseline build (ROUNDTRIP_BASELINE) async Echo, journal disk",
                report,
                *ratio,
                &floor_async,
            ),
        );
    }

    eprintln!("queue round trips through the SMQ emulator: {rounds} rounds of {n} messages");
    for receivers in [1, 4] {
        let (report, errors) = rt.block_on(queue::roundtrips(receivers, n, rounds))?;
        let name = format!(
            "stackhook queue Echo, {receivers} receiver{}, journal disk (SMQ emulator)",
            if receivers == 1 { "" } else { "s" }
        );
        let vs_floor = report / floor_async.throughput.max(1e-9);
        queue_rows.push((name, report, vs_floor, errors));
    }

    let mut round_trips = Vec::new();
    if let Some(url) = postgres::url() {
        eprintln!("PostgreSQL journal: {rounds} rounds of {n} requests");
        for (row, trips) in postgres::rows(&rt, &url, n, rounds, &floor_async)? {
            round_trips.push((row.name.clone(), trips));
            rows.push(row);
        }
    }

    eprintln!("{waits} concurrent Custom::Wait");
    let wait = start_stackhook("disk", &["--type-timeout", "Custom::Wait=600"])?;
    let wait_plan = LoadPlan {
        resource_type: "Custom::Wait".into(),
        properties: json!({"Seconds": 300}),
        ack_only: true,
        ..plan(&wait, "/", waits, None)
    };
    let wait_report = rt
        .block_on(loadgen::run(&wait_plan))
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let (wait_peak, wait_rss, wait_threads) = loadgen::process_stats(wait.pid());
    drop(wait);

    eprintln!("start-up and idle RSS ({startups} runs each)");
    let mut stackhook_startups = Vec::new();
    let mut floor_startups = Vec::new();
    let mut idle = (None, None);
    for i in 0..startups {
        let server = start_stackhook("disk", &[])?;
        stackhook_startups.push(server.startup);
        if i == 0 {
            std::thread::sleep(Duration::from_millis(500));
            let (_, rss, threads) = loadgen::process_stats(server.pid());
            idle = (rss, threads);
        }
        drop(server);
        floor_startups.push(start_floor()?.startup);
    }
    let stackhook_startup = median(stackhook_startups);
    let floor_startup = median(floor_startups);

    println!();
    println!(
        "| run | req/s | vs floor | p50 ms | p99 ms | p99 vs floor | errors | CPU µs/req | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let report = &r.report;
        println!(
            "| {} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.2}x | {} | {} | {} |",
            r.name,
            report.throughput,
            100.0 * r.vs_floor,
            report.p50_ms,
            report.p99_ms,
            report.p99_ms / r.floor_p99.max(1e-9),
            report.errors,
            cpu_per_request(report),
            mib(report.peak_rss_kib),
        );
    }
    // Queue rows: send to answer, timed over a whole batch (no per-request
    // latency: a message's send and its answer are on different paths).
    for (name, throughput, vs_floor, errors) in &queue_rows {
        println!(
            "| {name} | {throughput:.0} | {:.0}% | - | - | - | {errors} | - | - |",
            100.0 * vs_floor
        );
    }
    println!();
    println!(
        "Figures are medians of {rounds} interleaved rounds at maximum load ({half_rounds} at half \
         load); \"vs floor\" at maximum load is the median of each round's ratio to that round's \
         floor run."
    );
    println!();
    if !round_trips.is_empty() {
        println!("| PostgreSQL journal run | database round trips per answered request |");
        println!("|---|---:|");
        for (name, trips) in &round_trips {
            println!("| {name} | {trips:.2} |");
        }
        println!();
    }
    println!("| figure | stackhook | floor |");
    println!("|---|---:|---:|");
    println!(
        "| start-up, exec to accepting TCP (median of {startups}) | {:.1} ms | {:.1} ms |",
        stackhook_startup.as_secs_f64() * 1e3,
        floor_startup.as_secs_f64() * 1e3
    );
    println!(
        "| idle RSS | {} MiB ({} threads) | {} MiB peak under load |",
        mib(idle.0),
        idle.1.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
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
        wait_threads
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into())
    );
    Ok(())
}

/// Queue-to-answer round trips: requests sent to an SMQ queue (the emulator,
/// in this process), consumed by `stackhook serve --mns-queue`, answered at
/// a callback sink.
mod queue {
    use std::time::{Duration, Instant};

    use futures_util::StreamExt as _;
    use serde_json::Value;
    use stackhook::sink::CallbackSink;
    use stackhook_smq::emulator::{Emulator, QueueConfig};
    use stackhook_smq::{Client, Credentials};

    const KEY_ID: &str = "bench-id";
    const KEY_SECRET: &str = "bench-secret";
    const ARN: &str = "acs:mns:cn-hangzhou:1234567890:queues/bench";
    /// Concurrent senders: enough to keep the queue ahead of the consumer.
    const SENDERS: usize = 32;

    /// The median over `rounds` of `n` requests' round trips per second with
    /// `receivers` long polls, and the errors (unanswered or not SUCCESS).
    pub(super) async fn roundtrips(
        receivers: usize,
        n: usize,
        rounds: usize,
    ) -> Result<(f64, usize), String> {
        let credentials = Credentials::new(KEY_ID, KEY_SECRET);
        let emulator = Emulator::start(credentials.clone())
            .await
            .map_err(|e| format!("SMQ emulator: {e}"))?;
        emulator.create_queue("bench", QueueConfig::default());
        let queue = Client::new(&emulator.endpoint(), credentials)
            .map_err(|e| e.to_string())?
            .queue("bench");
        let endpoint = emulator.endpoint();
        let receivers_flag = receivers.to_string();
        let server = super::start_build_env(
            super::built_stackhook()?,
            "disk",
            &[
                "--mns-queue",
                ARN,
                "--mns-endpoint",
                &endpoint,
                "--mns-receivers",
                &receivers_flag,
            ],
            &[
                ("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET),
            ],
        )?;
        let template: Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/echo-create.json"
            ))
            .map_err(|e| format!("fixture: {e}"))?,
        )
        .map_err(|e| format!("fixture: {e}"))?;
        let mut rates = Vec::new();
        let mut errors = 0;
        // A warm-up round, not counted.
        for round in 0..=rounds {
            let sink = CallbackSink::start()
                .await
                .map_err(|e| format!("sink: {e}"))?;
            let bodies: Vec<String> = (0..n)
                .map(|i| {
                    let mut body = template.clone();
                    body["RequestId"] = Value::String(format!("bench-{receivers}-{round}-{i}"));
                    body["ResponseURL"] = Value::String(sink.url("/public"));
                    if let Some(map) = body.as_object_mut() {
                        map.remove("IntranetResponseURL");
                    }
                    body.to_string()
                })
                .collect();
            let started = Instant::now();
            let sent = futures_util::stream::iter(bodies)
                .map(|body| {
                    let queue = &queue;
                    async move { queue.send(body).await.is_ok() }
                })
                .buffer_unordered(SENDERS)
                .filter(|ok| std::future::ready(*ok))
                .count()
                .await;
            let answers = sink.wait_for(sent, super::RUN_LIMIT).await;
            let elapsed = started.elapsed().max(Duration::from_micros(1));
            let succeeded = answers
                .iter()
                .filter(|a| a.response().is_some_and(|r| r.status.as_str() == "SUCCESS"))
                .count();
            if round > 0 {
                errors += n - succeeded;
                rates.push(succeeded as f64 / elapsed.as_secs_f64());
                eprintln!(
                    "  queue, {receivers} receivers, round {round}: {:.0} req/s",
                    rates[rates.len() - 1]
                );
            }
        }
        drop(server);
        rates.sort_by(f64::total_cmp);
        Ok((rates.get(rates.len() / 2).copied().unwrap_or(0.0), errors))
    }
}

/// The shared PostgreSQL journal's rows, when `ROUNDTRIP_POSTGRES_URL`
/// names a database this run may use. Async Echo through `stackhook serve
/// --journal postgres://…` with one replica, and with three on one schema,
/// the load split evenly over them; all share the machine's cores with the
/// database. Round trips are the statements the replicas sent
/// (`stackhook_journal_round_trips` on `/metrics`), heartbeats included.
mod postgres {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    use stackhook_testing::loadgen::{self, LoadReport};

    use super::{CONCURRENCY, LoadPlan, Row, Server, plan, row, start_stackhook};

    /// The database's URL, if the run is asked for.
    pub(super) fn url() -> Option<String> {
        std::env::var("ROUNDTRIP_POSTGRES_URL")
            .ok()
            .filter(|url| !url.is_empty())
    }

    /// Round trips `servers` have made to the database so far, from their
    /// `/metrics`.
    fn round_trips(servers: &[Server]) -> Result<u64, String> {
        let mut total = 0;
        for server in servers {
            let mut stream =
                TcpStream::connect(server.addr).map_err(|e| format!("metrics: {e}"))?;
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nhost: bench\r\n\r\n")
                .map_err(|e| format!("metrics: {e}"))?;
            let mut text = String::new();
            stream
                .read_to_string(&mut text)
                .map_err(|e| format!("metrics: {e}"))?;
            total += text
                .lines()
                .find_map(|line| line.strip_prefix("stackhook_journal_round_trips "))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .ok_or("no stackhook_journal_round_trips on /metrics")?;
        }
        Ok(total)
    }

    /// The runs: replicas, extra flags, the row's name.
    const RUNS: [(usize, &[&str], &str); 3] = [
        (
            1,
            &[],
            "stackhook async Echo, journal PostgreSQL, 1 replica",
        ),
        (
            3,
            &[],
            "stackhook async Echo, journal PostgreSQL, 3 replicas",
        ),
        // Echo may run again after a crash, so its answer is given before
        // it is journaled; a handler that may not is journaled first.
        (
            1,
            &["--restart-policy", "Custom::Echo=fail"],
            "stackhook async Echo as not idempotent (answer journaled first), journal PostgreSQL, 1 replica",
        ),
    ];

    /// `replicas` servers with `extra` flags on a schema of their own.
    fn start(
        url: &str,
        run: usize,
        replicas: usize,
        extra: &[&str],
    ) -> Result<Vec<Server>, String> {
        let schema = format!("bench_{run}_{}", std::process::id());
        (0..replicas)
            .map(|_| {
                let mut flags = vec!["--journal-schema", &schema];
                flags.extend_from_slice(extra);
                start_stackhook(url, &flags)
            })
            .collect()
    }

    /// `n` requests spread evenly over `servers` at once, as one report:
    /// throughput over the slowest share's time, the worst p99.
    fn load(
        rt: &tokio::runtime::Runtime,
        servers: &[Server],
        n: usize,
    ) -> Result<LoadReport, String> {
        let share = n / servers.len();
        let plans: Vec<LoadPlan> = servers
            .iter()
            .map(|server| LoadPlan {
                concurrency: (CONCURRENCY / servers.len()).max(1),
                ..plan(server, "/", share, None)
            })
            .collect();
        let reports = rt.block_on(futures_util::future::join_all(
            plans.iter().map(loadgen::run),
        ));
        let reports: Vec<LoadReport> = reports
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let mut total = reports[0].clone();
        total.completed = reports.iter().map(|r| r.completed).sum();
        total.sent = reports.iter().map(|r| r.sent).sum();
        total.errors = reports.iter().map(|r| r.errors).sum();
        total.elapsed_s = reports.iter().map(|r| r.elapsed_s).fold(0.0, f64::max);
        total.throughput = total.completed as f64 / total.elapsed_s.max(1e-9);
        total.p99_ms = reports.iter().map(|r| r.p99_ms).fold(0.0, f64::max);
        total.p50_ms = reports.iter().map(|r| r.p50_ms).sum::<f64>() / reports.len() as f64;
        total.provider_cpu_ms = reports.iter().map(|r| r.provider_cpu_ms).sum();
        Ok(total)
    }

    /// The rows, against the async floor `floor`, and the round trips per
    /// answered request of each.
    pub(super) fn rows(
        rt: &tokio::runtime::Runtime,
        url: &str,
        n: usize,
        rounds: usize,
        floor: &LoadReport,
    ) -> Result<Vec<(Row, f64)>, String> {
        let mut rows = Vec::new();
        for (run, (replicas, extra, name)) in RUNS.into_iter().enumerate() {
            let servers = start(url, run, replicas, extra)?;
            load(rt, &servers, 500.min(n))?;
            let mut runs = Vec::new();
            let mut trips = Vec::new();
            for round in 0..rounds {
                let before = round_trips(&servers)?;
                let report = load(rt, &servers, n)?;
                let after = round_trips(&servers)?;
                let per = after.saturating_sub(before) as f64 / report.completed.max(1) as f64;
                eprintln!(
                    "  {name}, round {round}: {:.0} req/s p99 {:.1} ms, {per:.2} round trips/request",
                    report.throughput, report.p99_ms
                );
                runs.push(report);
                trips.push(per);
            }
            drop(servers);
            runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
            trips.sort_by(f64::total_cmp);
            let report = runs.swap_remove(runs.len() / 2);
            rows.push((row(name, &report, floor), trips[trips.len() / 2]));
        }
        Ok(rows)
    }
}
