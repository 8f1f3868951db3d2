//! Shared by the `security_*` integration tests: a real server on
//! 127.0.0.1:0, request bodies, and a log capture.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use stackhook::{Config, Router};
use stackhook_handlers::Echo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; dropping `stop` shuts it down.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<stackhook::Result<()>>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stop and wait for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
    }
}

/// Serve the Echo handler with `config` on 127.0.0.1:0.
pub async fn start(config: Config) -> Server {
    start_with(Router::new().route("Custom::Echo", Echo), config).await
}

/// Serve `router` with `config` on 127.0.0.1:0.
pub async fn start_with(router: Router, config: Config) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let config = config.shutdown_grace(std::time::Duration::from_secs(2));
    let task = tokio::spawn(stackhook::serve(listener, router, config, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A Create request for `Custom::Echo` answering at `callback`.
pub fn create(callback: &str) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": "req-0001",
        "ResponseURL": callback,
        "ResourceType": "Custom::Echo",
        "LogicalResourceId": "Echo",
        "StackId": "stack-0001",
        "StackName": "demo",
        "ResourceOwnerId": "123",
        "CallerId": "123",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": {"Greeting": "hello"}
    })
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A log capture: every line any subscriber writes, at TRACE.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs lock")).into_owned()
    }

    /// Install as the thread's default subscriber (use a current-thread
    /// runtime so the server's tasks log here too).
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
