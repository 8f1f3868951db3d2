//! The mock ROS (`stackhook_testing`): lifecycles in-process and over HTTP,
//! and violations it must catch.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::{Config, Router, Status};
use stackhook_handlers::Echo;
use stackhook_testing::{Lifecycle, MockRos, Rule, Severity, Step};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn echo_router() -> Router {
    Router::new().route("Custom::Echo", Echo)
}

fn echo() -> MockRos {
    MockRos::new(echo_router()).resource_type("Custom::Echo")
}

/// A handler with a deterministic id and an optional delay.
struct Named;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NamedProps {
    name: String,
    #[serde(default, with = "stackhook::lenient")]
    sleep_seconds: u64,
}

impl Handler for Named {
    type Properties = NamedProps;
    type Error = std::io::Error;

    async fn create(&self, req: CreateRequest<NamedProps>) -> Result<Created, Self::Error> {
        tokio::time::sleep(Duration::from_secs(req.properties.sleep_seconds)).await;
        Ok(Created::with_id(format!("named-{}", req.properties.name))
            .with_data("Name", req.properties.name))
    }
    async fn update(&self, req: UpdateRequest<NamedProps>) -> Result<Updated, Self::Error> {
        Ok(Updated::new().with_data("Name", req.properties.name))
    }
    async fn delete(&self, _req: DeleteRequest<NamedProps>) -> Result<Deleted, Self::Error> {
        Ok(Deleted::new())
    }
}

#[tokio::test]
async fn typed_calls_in_a_few_lines() -> Result<(), stackhook::Error> {
    let ros =
        MockRos::new(Router::new().route("Custom::Named", Named)).resource_type("Custom::Named");
    let created = ros.create(json!({"Name": "a"})).await?.require_success()?;
    assert_eq!(created.physical_resource_id(), "named-a");

    #[derive(Deserialize)]
    struct Out {
        #[serde(rename = "Name")]
        name: String,
    }
    let updated = ros.update(&created, json!({"Name": "b"})).await?;
    assert_eq!(updated.data_as::<Out>()?.name, "b");
    assert_eq!(updated.physical_resource_id(), "named-a");
    let deleted = ros.delete(&updated).await?;
    assert!(deleted.is_success());
    Ok(())
}

#[tokio::test]
async fn failed_answer_is_not_a_violation() {
    let answer = echo()
        .create(json!({"FailWith": "quota exceeded"}))
        .await
        .expect("no violation");
    assert_eq!(answer.status(), Status::Failed);
    assert_eq!(answer.reason(), Some("quota exceeded"));
    let err = answer.require_success().unwrap_err().to_string();
    assert!(err.contains("quota exceeded"), "{err}");
}

#[tokio::test]
async fn every_ready_made_lifecycle_passes_in_process() {
    let ros = echo();
    let a = json!({"Greeting": "hello"});
    let b = json!({"Greeting": "bonjour"});
    for lifecycle in [
        Lifecycle::standard(a.clone(), b.clone()),
        Lifecycle::failed_create(json!({"FailWith": "nope"})),
        Lifecycle::rollback(a.clone(), b.clone()),
        Lifecycle::redelivery(a.clone(), b.clone()),
    ] {
        let report = lifecycle.run(&ros).await;
        report.assert_ok();
    }
}

/// A handler that names what it creates with a fresh random id, instead of
/// one derived from the request: a redelivered Create runs again and
/// answers with another id.
struct RandomId;

impl Handler for RandomId {
    type Properties = serde_json::Map<String, Value>;
    type Error = std::io::Error;

    async fn create(&self, _req: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
        Ok(Created::with_id(format!("random-{}", uuid::Uuid::new_v4())))
    }
    async fn update(&self, _req: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
        Ok(Updated::new())
    }
    async fn delete(&self, _req: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
        Ok(Deleted::new())
    }
}

#[tokio::test]
async fn redelivered_create_with_a_new_id_is_a_warning() {
    let ros = MockRos::new(Router::new().route("Custom::RandomId", RandomId))
        .resource_type("Custom::RandomId");
    let report = Lifecycle::redelivery(json!({}), json!({"X": 1}))
        .run(&ros)
        .await;
    assert!(report.is_ok(), "a warning, not a violation: {report}");
    let findings: Vec<_> = report.findings().collect();
    assert_eq!(findings.len(), 1, "only the Create's two ids: {report}");
    let (step, finding) = findings[0];
    assert_eq!(step.index, 1);
    assert_eq!(finding.rule, Rule::Redelivery);
    assert_eq!(finding.severity, Severity::Warning);
    assert!(
        finding.message.contains("two physical ids") && finding.message.contains("random-"),
        "{}",
        finding.message
    );
}

#[tokio::test]
async fn redelivered_create_with_a_generated_id_keeps_it() {
    // Echo lets the runtime generate the id, which is derived from the
    // request, so the redelivered Create answers with the same one.
    let report = Lifecycle::redelivery(json!({}), json!({"X": 1}))
        .run(&echo())
        .await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.findings().count(), 0, "{report}");
}

#[tokio::test]
async fn unexpected_status_is_reported() {
    let report = Lifecycle::new("expects success")
        .step(Step::create(json!({"FailWith": "broken"})))
        .step(Step::delete())
        .run(&echo())
        .await;
    assert!(!report.is_ok());
    let text = report.render(false);
    assert!(text.contains("expected SUCCESS, got FAILED"), "{text}");
    assert!(text.contains("FAIL: 1 violation(s)"), "{text}");
    assert!(!text.contains('\x1b'), "no colour asked for");
}

#[tokio::test(start_paused = true)]
async fn slow_handler_still_answers_before_ros_gives_up() {
    let ros =
        MockRos::new(Router::new().route("Custom::Named", Named)).resource_type("Custom::Named");
    let report = Lifecycle::timeout(
        json!({"Name": "slow", "SleepSeconds": 3600}),
        Duration::from_secs(30),
    )
    .run(&ros)
    .await;
    report.assert_ok();
    assert_eq!(report.steps[0].status, Some(Status::Failed));
    assert!(
        report.steps[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("timed out")),
        "{report}"
    );
}

#[tokio::test]
async fn step_errors_are_reported_not_panicked() {
    let report = Lifecycle::new("bad")
        .step(Step::rollback())
        .step(Step::create(json!(["not", "an", "object"])))
        .run(&echo())
        .await;
    let messages: Vec<String> = report
        .violations()
        .map(|(_, f)| f.message.clone())
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("earlier update"));
    assert!(messages[1].contains("JSON object"));
}

/// A running `stackhook::serve` on loopback; stops when dropped.
struct Provider {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn serve(router: Router, config: Config) -> Provider {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = stackhook::serve(listener, router, config, async {
            let _ = stopped.await;
        })
        .await;
    });
    Provider { addr, _stop: stop }
}

#[tokio::test]
async fn lifecycles_over_http_with_faults() {
    let provider = serve(
        echo_router(),
        Config::for_local_testing().shutdown_grace(Duration::from_secs(1)),
    )
    .await;
    let a = json!({"Greeting": "hello"});
    let b = json!({"Greeting": "bonjour"});
    for path in ["/", "/invoke"] {
        let ros = MockRos::url(format!("http://{}{path}", provider.addr))
            .expect("client")
            .resource_type("Custom::Echo")
            .timeout(Duration::from_secs(20));
        let lifecycle = Lifecycle::new("faults")
            .step(Step::create(a.clone()).callback_fails_first([500]))
            .step(Step::update_unchanged())
            .step(Step::update(b.clone()).redeliver(1))
            .step(Step::rollback())
            .step(Step::delete());
        let report = lifecycle.run(&ros).await;
        report.assert_ok();
        assert!(
            report.steps[0]
                .notes
                .iter()
                .any(|n| n.contains("refused 1")),
            "{report}"
        );
        Lifecycle::failed_create(json!({"FailWith": "nope"}))
            .run(&ros)
            .await
            .assert_ok();
    }
}

#[tokio::test]
async fn sync_route_answers_in_the_reply() {
    let provider = serve(echo_router(), Config::for_local_testing()).await;
    let ros = MockRos::url(format!("http://{}/sync", provider.addr))
        .expect("client")
        .resource_type("Custom::Echo");
    assert!(ros.describe_target().ends_with("(sync)"));
    Lifecycle::standard(json!({"A": 1}), json!({"A": 2}))
        .run(&ros)
        .await
        .assert_ok();
}

/// A fake provider on loopback: it acknowledges every request and hands
/// the request to `answer`, in a task of its own.
async fn fake_provider<F, Fut>(answer: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(Value) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                        tokio::spawn(answer(request));
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(bytes::Bytes::from(
                            "{}",
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// Breaks the rules: answers Create twice, changes the id on Update, forgets
/// to copy the StackId on Delete and never sends a Date header.
async fn answer_badly(request: Value) {
    let kind = request["RequestType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = match kind.as_str() {
        "Create" => "rogue-1".to_string(),
        _ => format!(
            "{}-changed",
            request["PhysicalResourceId"].as_str().unwrap_or("")
        ),
    };
    let stack = if kind == "Delete" {
        "wrong-stack"
    } else {
        request["StackId"].as_str().unwrap_or("")
    };
    let answer = json!({
        "Status": "SUCCESS",
        "PhysicalResourceId": id,
        "StackId": stack,
        "RequestId": request["RequestId"],
        "LogicalResourceId": request["LogicalResourceId"],
    });
    let url = request["ResponseURL"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let client = reqwest::Client::new();
    let times = if kind == "Create" { 2 } else { 1 };
    for _ in 0..times {
        let _ = client
            .post(&url)
            .header("content-type", "application/json")
            .body(answer.to_string())
            .send()
            .await;
    }
}

#[tokio::test]
async fn violations_are_caught_and_named() {
    let (addr, task) = fake_provider(answer_badly).await;
    let ros = MockRos::url(format!("http://{addr}/"))
        .expect("client")
        .resource_type("Custom::Rogue")
        .timeout(Duration::from_secs(10));
    let report = Lifecycle::new("rogue")
        .step(Step::create(json!({})))
        .step(Step::update(json!({"X": 1})))
        .step(Step::delete())
        .run(&ros)
        .await;
    task.abort();
    let rules =
        |i: usize| -> Vec<Rule> { report.steps[i].findings.iter().map(|f| f.rule).collect() };
    assert!(rules(0).contains(&Rule::OneAnswer), "{report}");
    assert!(rules(0).contains(&Rule::Headers), "{report}");
    assert!(rules(1).contains(&Rule::PhysicalIdStable), "{report}");
    assert!(rules(2).contains(&Rule::DeleteEchoesId), "{report}");
    assert!(rules(2).contains(&Rule::IdentifiersCopied), "{report}");
    assert!(!report.is_ok());

    // The typed API turns a violation into an error that names the rule.
    let err = ros.create(json!({})).await.unwrap_err().to_string();
    assert!(err.contains("one-answer"), "{err}");
}

#[tokio::test]
async fn unreachable_provider_is_a_violation_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let ros = MockRos::url(format!("http://{addr}/"))
        .expect("client")
        .timeout(Duration::from_secs(2));
    let err = ros.create(json!({})).await.unwrap_err().to_string();
    assert!(err.contains("could not reach the provider"), "{err}");
}

/// Answers correctly, but only after `delay`.
async fn answer_late(request: Value) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answer = json!({
        "Status": "SUCCESS",
        "PhysicalResourceId": "late-1",
        "StackId": request["StackId"],
        "RequestId": request["RequestId"],
        "LogicalResourceId": request["LogicalResourceId"],
    });
    let url = request["ResponseURL"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let _ = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header(
            "date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
        .body(answer.to_string())
        .send()
        .await;
}

#[tokio::test]
async fn an_answer_after_ros_gave_up_does_not_count() {
    let (addr, task) = fake_provider(answer_late).await;
    let ros = MockRos::url(format!("http://{addr}/"))
        .expect("client")
        .timeout(Duration::from_secs(1))
        .duplicate_wait(Duration::from_secs(4));
    let err = ros.create(json!({})).await.unwrap_err().to_string();
    task.abort();
    assert!(err.contains("answer-in-time"), "{err}");
    assert!(err.contains("came only after"), "{err}");
}
