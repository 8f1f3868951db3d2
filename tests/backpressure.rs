//! Back-pressure: requests beyond the concurrency limit wait in the queue and
//! are answered in turn; beyond the queue limit they are answered FAILED
//! "overloaded" at once, never dropped.

use std::time::Duration;

use serde_json::{Value, json};
use stackhook::sink::CallbackSink;
use stackhook::{Config, Response, Router, Status};
use stackhook_handlers::Echo;
use tokio_util::sync::CancellationToken;

fn request(sink: &CallbackSink, id: &str, properties: Value) -> Value {
    json!({
        "RequestType": "Create",
        "RequestId": id,
        "ResponseURL": sink.url("/cb"),
        "ResourceType": "Custom::Echo",
        "LogicalResourceId": format!("Res-{id}"),
        "StackId": "stack-backpressure",
        "ResourceProperties": properties,
    })
}

async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn over_the_limit_requests_queue_then_overflow_fails_fast() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let config = Config::for_local_testing().max_concurrency(1).max_queue(1);
    let server = tokio::spawn(stackhook::serve(
        listener,
        Router::new().route("Custom::Echo", Echo),
        config,
        stop.clone().cancelled_owned(),
    ));
    let sink = CallbackSink::start().await.expect("sink");
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let client = client.clone();
        let url = format!("{base}/");
        async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };

    assert_eq!(
        post(request(&sink, "slow", json!({"SleepSeconds": 1.5}))).await,
        200
    );
    assert_eq!(post(request(&sink, "queued", json!({}))).await, 200);
    // Wait until the second request is really waiting for the slot.
    let mut queued = false;
    for _ in 0..100 {
        if metric(&base, "stackhook_queue_depth").await == Some(1.0) {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(queued, "the second request never queued");

    assert_eq!(post(request(&sink, "overflow", json!({}))).await, 503);
    let first = sink.wait_for(1, Duration::from_secs(5)).await;
    let overflow = first[0].response().expect("answer");
    assert_eq!(overflow.request_id, "overflow");
    assert_eq!(overflow.status, Status::Failed);
    assert!(overflow.reason.expect("reason").contains("overloaded"));

    let all = sink.wait_for(3, Duration::from_secs(10)).await;
    let answers: Vec<Response> = all.iter().filter_map(|r| r.response()).collect();
    let status_of = |id: &str| {
        answers
            .iter()
            .find(|a| a.request_id == id)
            .map(|a| a.status)
    };
    assert_eq!(status_of("slow"), Some(Status::Success));
    assert_eq!(status_of("queued"), Some(Status::Success));
    assert_eq!(answers.len(), 3);

    stop.cancel();
    server.await.expect("join").expect("clean shutdown");
}
