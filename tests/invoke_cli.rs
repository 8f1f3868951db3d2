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
