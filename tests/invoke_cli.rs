//! `stackhook invoke` with request-type switching and property overrides,
//! run as the real binary against a provider served in the test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use serde_json::{Map, Value, json};
use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::{Config, Router};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod common;

/// Reports what it was sent, so the test can see the overrides arrive.
struct Mirror;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

fn fail_if_asked(p: &Map<String, Value>) -> Result<(), Refused> {
    match p.get("FailWith").and_then(Value::as_str) {
        Some(text) => Err(Refused(text.to_string())),
        None => Ok(()),
    }
}

impl Handler for Mirror {
    type Properties = Map<String, Value>;
    type Error = Refused;

    async fn create(&self, r: CreateRequest<Self::Properties>) -> Result<Created, Refused> {
        fail_if_asked(&r.properties)?;
        Ok(Created::with_id("mirror-1")
            .with_data("Type", "Create")
            .with_data("Props", Value::Object(r.properties)))
    }
    async fn update(&self, r: UpdateRequest<Self::Properties>) -> Result<Updated, Refused> {
        fail_if_asked(&r.properties)?;
        Ok(Updated::new()
            .with_data("Type", "Update")
            .with_data("Props", Value::Object(r.properties))
            .with_data("Old", Value::Object(r.old_properties)))
    }
    async fn delete(&self, _r: DeleteRequest<Self::Properties>) -> Result<Deleted, Refused> {
        Ok(Deleted::new())
    }
}

struct Provider {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn provider() -> Provider {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Router::new().route("Custom::Mirror", Mirror);
    tokio::spawn(async move {
        let _ = stackhook::serve(listener, router, Config::for_local_testing(), async {
            let _ = stopped.await;
        })
        .await;
    });
    Provider { addr, _stop: stop }
}

fn fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("create.json");
    let body = json!({
        "RequestType": "Create",
        "RequestId": "f1b6a6a0-0000-4000-8000-000000000001",
        "ResponseURL": "https://ros.example.com/cb?Signature=x",
        "IntranetResponseURL": "https://ros-vpc.example.com/cb?Signature=x",
        "ResourceType": "Custom::Mirror",
        "LogicalResourceId": "Mirror",
        "StackId": "0c2f3a9e-1111-4111-8111-111111111111",
        "StackName": "demo",
        "ResourceOwnerId": "123",
        "CallerId": "123",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": {"Size": "1"}
    });
    std::fs::write(&path, body.to_string()).expect("write fixture");
    path
}

async fn invoke(provider: &Provider, fixture: &Path, extra: &[&str]) -> (Output, Value) {
    let output = tokio::process::Command::new(common::stackhook_bin())
        .arg("invoke")
        .arg(fixture)
        .args([
            "--url",
            &format!("http://{}/", provider.addr),
            "--wait",
            "20",
        ])
        .args(extra)
        .output()
        .await
        .expect("run stackhook invoke");
    let answer = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output, answer)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_inline_properties() {
    let provider = provider().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, answer) = invoke(
        &provider,
        &fixture(dir.path()),
        &["--properties", r#"{"Size": "3"}"#],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(answer["PhysicalResourceId"], "mirror-1");
    assert_eq!(answer["Data"]["Props"], json!({"Size": "3"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_to_update_with_old_properties_from_a_file() {
    let provider = provider().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join("old.json");
    std::fs::write(&old, r#"{"Size": "1", "Tier": "basic"}"#).expect("write");
    let new = dir.path().join("new.json");
    std::fs::write(&new, r#"{"Size": "2"}"#).expect("write");
    let (output, answer) = invoke(
        &provider,
        &fixture(dir.path()),
        &[
            "--type",
            "Update",
            "--physical-id",
            "mirror-1",
            "--properties",
            new.to_str().expect("utf-8"),
            "--old-properties",
            old.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(answer["PhysicalResourceId"], "mirror-1");
    assert_eq!(answer["Data"]["Type"], "Update");
    assert_eq!(answer["Data"]["Props"], json!({"Size": "2"}));
    assert_eq!(answer["Data"]["Old"], json!({"Size": "1", "Tier": "basic"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_without_old_properties_uses_the_files_and_delete_echoes_the_id() {
    let provider = provider().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixture(dir.path());
    let (output, answer) = invoke(
        &provider,
        &file,
        &[
            "--type",
            "update",
            "--physical-id",
            "p-7",
            "--properties",
            r#"{"Size": "9"}"#,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(answer["Data"]["Old"], json!({"Size": "1"}));

    let (output, answer) = invoke(
        &provider,
        &file,
        &["--type", "Delete", "--physical-id", "p-7"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(answer["PhysicalResourceId"], "p-7");
    assert_eq!(answer["Status"], "SUCCESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_answer_exits_1() {
    let provider = provider().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, answer) = invoke(
        &provider,
        &fixture(dir.path()),
        &["--properties", r#"{"FailWith": "no room"}"#],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(answer["Reason"], "no room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_overrides_exit_2_with_a_clear_message() {
    let provider = provider().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = fixture(dir.path());
    let (output, _) = invoke(&provider, &file, &["--type", "Update"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--physical-id"),
        "{}",
        stderr(&output)
    );

    let (output, _) = invoke(&provider, &file, &["--properties", "[1, 2]"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("neither a JSON object nor a readable file"),
        "{}",
        stderr(&output)
    );

    let (output, _) = invoke(&provider, &file, &["--properties", r#"{"A": "#]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not valid JSON"),
        "{}",
        stderr(&output)
    );
}

/// A `stackhook serve` run as a newcomer first runs it: the real binary with
/// no `--callback-allow`, so its callback guard refuses loopback. Its JSON
/// log lines are kept; the process is killed when dropped.
struct Served {
    child: std::process::Child,
    addr: SocketAddr,
    logs: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Served {
    fn start(state_dir: &Path) -> Served {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(common::stackhook_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--state-dir")
            .arg(state_dir)
            .env("RUST_LOG", "info")
            .env_remove("STACKHOOK_CALLBACK_ALLOW")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start stackhook serve");
        let stderr = child.stderr.take().expect("stderr");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = std::sync::Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let entry = serde_json::from_str::<Value>(&line).unwrap_or(json!({"raw": line}));
                if entry["message"] == "stackhook is listening" {
                    let _ = tx.send(entry["addr"].as_str().unwrap_or_default().to_string());
                }
                kept.lock().expect("logs").push(entry);
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("stackhook serve logs the address it listens on");
        Served {
            child,
            addr: addr.parse().expect("a socket address"),
            logs,
        }
    }

    fn lines_with(&self, message: &str) -> usize {
        let logs = self.logs.lock().expect("logs");
        logs.iter()
            .filter(|line| line["message"] == message)
            .count()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_refusing_the_local_callback_is_reported_at_once_with_the_flag() {
    let state = tempfile::tempdir().expect("tempdir");
    let served = Served::start(state.path());
    // `invoke`'s default wait is 70 s. A refusal must end it at once; were
    // it waited out, this bound would cut the run off first.
    let run = tokio::process::Command::new(common::stackhook_bin())
        .arg("invoke")
        .arg(common::fixtures_dir().join("echo-create.json"))
        .args(["--url", &format!("http://{}/", served.addr)])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(35), run)
        .await
        .expect("invoke ends long before its 70 s wait")
        .expect("run stackhook invoke");
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty(), "no answer is printed: {stderr}");
    assert!(stderr.contains("provider replied HTTP 403"), "{stderr}");
    assert!(
        stderr
            .contains("error: the provider refused this request's callback URLs: callback refused"),
        "{stderr}"
    );
    // The server's refusal names the refused host and the flag; the hint
    // says exactly what to start it with.
    assert!(stderr.contains("`127.0.0.1`"), "{stderr}");
    assert!(
        stderr.contains("with --callback-allow (STACKHOOK_CALLBACK_ALLOW)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("start it with `--callback-allow 127.0.0.1`"),
        "{stderr}"
    );
    assert!(!stderr.contains("no answer arrived"), "{stderr}");
    // Refused up front: the handler never ran.
    assert_eq!(served.lines_with("handler started"), 0);
}
