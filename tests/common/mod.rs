//! Helpers shared by the integration tests: a real server on 127.0.0.1:0, a
//! callback sink standing in for ROS, fixtures, and a plain HTTP client.
//!
//! Each test file uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub(crate) mod emulator;
pub(crate) mod ros;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use stackhook::sink::{CallbackSink, Received};
use stackhook::{Config, Response, Router};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen at once. Generous,
/// because the machine is shared; a passing test never waits this long.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// How long a test keeps listening after the expected callbacks arrived, to
/// see that no more come.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// A handler that takes an hour for every operation, far longer than any
/// deadline or ROS's 10 s sync wait.
pub(crate) struct Sleepy;

impl stackhook::Handler for Sleepy {
    type Properties = serde_json::Map<String, Value>;
    type Error = std::io::Error;

    async fn create(
        &self,
        _: stackhook::handler::CreateRequest<Self::Properties>,
    ) -> Result<stackhook::handler::Created, Self::Error> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(stackhook::handler::Created::new())
    }
    async fn update(
        &self,
        _: stackhook::handler::UpdateRequest<Self::Properties>,
    ) -> Result<stackhook::handler::Updated, Self::Error> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(stackhook::handler::Updated::new())
    }
    async fn delete(
        &self,
        _: stackhook::handler::DeleteRequest<Self::Properties>,
    ) -> Result<stackhook::handler::Deleted, Self::Error> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(stackhook::handler::Deleted::new())
    }
}

/// The secret key the built-in router is keyed with in tests.
pub(crate) const TEST_KEY: &[u8] = b"stackhook integration tests, not a real secret";

/// The workspace's `stackhook` binary (the `stackhook-cli` crate), for tests
/// that run it as a user would.
///
/// Integration tests of the core crate cannot name another package's binary
/// with `env!("CARGO_BIN_EXE_…")`, so this finds it where Cargo puts it:
/// beside this test's executable (`target/<profile>/deps/..`). A
/// workspace-wide build builds it first (`cargo nextest run --workspace
/// --all-targets`, `cargo test`, `cargo build`); `STACKHOOK_BIN` names
/// another build.
pub(crate) fn stackhook_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("STACKHOOK_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("the test's directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join(format!("stackhook{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the `stackhook` binary is not built at {}: run `cargo build -p stackhook-cli` \
         (or the whole suite, `cargo nextest run --workspace --all-targets`, which builds it)",
        binary.display()
    );
    binary
}

/// The directory holding the fixtures.
pub(crate) fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A fixture file's bytes.
pub(crate) fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A fixture as JSON.
pub(crate) fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

/// A fixture as JSON with both callback URLs pointed at `sink`
/// (`/public` and `/intranet`) and a RequestId of its own: like ROS, every
/// request a test sends is a new request, so the runtime's deduplication of
/// redeliveries never merges two of them.
pub(crate) fn fixture_for(name: &str, sink: &CallbackSink) -> Value {
    static SENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut body = fixture(name);
    stackhook_testing::invoke::redirect_callbacks(&mut body, sink);
    if let Some(id) = body["RequestId"].as_str() {
        let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        body["RequestId"] = Value::String(format!("{id}-{n}"));
    }
    body
}

/// The built-in router, as `stackhook serve` builds it.
pub(crate) fn builtin_router() -> Router {
    stackhook_handlers::builtin_router(TEST_KEY)
}

/// A server running `stackhook::serve` on an ephemeral loopback port.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<stackhook::Result<()>>>,
}

impl TestServer {
    /// Start serving `router` with `config`.
    pub(crate) async fn start(router: Router, config: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(stackhook::serve(listener, router, config, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The built-in handlers with a short shutdown grace.
    pub(crate) async fn builtin() -> TestServer {
        TestServer::start(builtin_router(), test_config()).await
    }

    /// `http://ADDR{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stop the server and check it stopped cleanly.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops within the wait")
                .expect("server task did not panic");
            result.expect("serve returned Ok");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The default config with a short shutdown grace, so a failing test does
/// not hang on in-flight work.
pub(crate) fn test_config() -> Config {
    Config::for_local_testing().shutdown_grace(Duration::from_secs(2))
}

/// A reply from the server under test.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as a ROS answer.
    pub(crate) fn answer(&self) -> Response {
        Response::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "reply body is not a ROS answer ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` text of a JSON error reply.
    pub(crate) fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no `error` in {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }

    /// A header's value as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// POST `body` to `url` with a content type and extra headers.
pub(crate) async fn post_with(
    url: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Reply {
    let client = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client");
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = request.body(body).send().await.expect("server answers");
    let status = reply.status().as_u16();
    let headers = reply.headers().clone();
    let body = reply.bytes().await.expect("reply body");
    Reply {
        status,
        headers,
        body,
    }
}

/// POST JSON to `url`, as ROS does.
pub(crate) async fn post_json(url: &str, body: &Value) -> Reply {
    post_with(url, "application/json", &[], body.to_string()).await
}

/// Wait for exactly `count` callbacks: they arrive within [`WAIT`] and no
/// more arrive within [`QUIET`] after that.
pub(crate) async fn exactly(sink: &CallbackSink, count: usize) -> Vec<Received> {
    let calls = sink.wait_for(count, WAIT).await;
    assert!(
        calls.len() >= count,
        "expected {count} callback(s), got {}: {calls:#?}",
        calls.len()
    );
    let later = sink.wait_for(count + 1, QUIET).await;
    assert_eq!(
        later.len(),
        count,
        "expected exactly {count} callback(s), got more: {later:#?}"
    );
    later
}

/// The ROS answer in a callback.
pub(crate) fn answer_of(call: &Received) -> Response {
    call.response().unwrap_or_else(|| {
        panic!(
            "callback body is not a ROS answer: {}",
            String::from_utf8_lossy(&call.body)
        )
    })
}

/// The path of a callback, without its query.
pub(crate) fn path_of(call: &Received) -> &str {
    call.uri.split('?').next().unwrap_or("")
}

/// Send `body` to the async route and return the one answer that arrives.
pub(crate) async fn run_async(server: &TestServer, sink: &CallbackSink, body: &Value) -> Response {
    let before = sink.received().len();
    let reply = post_json(&server.url("/"), body).await;
    assert_eq!(
        reply.status,
        200,
        "ack: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let calls = exactly(sink, before + 1).await;
    answer_of(&calls[before])
}

/// Check that `answer` carries the identifiers of `request` exactly.
pub(crate) fn assert_identifiers_copied(answer: &Response, request: &Value) {
    assert_eq!(answer.request_id, request["RequestId"], "RequestId");
    assert_eq!(
        answer.logical_resource_id, request["LogicalResourceId"],
        "LogicalResourceId"
    );
    assert_eq!(answer.stack_id, request["StackId"], "StackId");
}
