//! A burst from one address, as ROS sends it from its few egress addresses,
//! or as every request arrives from behind a proxy: with the default limits,
//! 150 sync requests that each take a second and 300 async requests at once
//! from 127.0.0.1 are all answered SUCCESS. No timing is asserted.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use stackhook::sink::CallbackSink;
use stackhook::{Config, Status};

use common::{TestServer, builtin_router, exactly, fixture_for};

/// Concurrent `web[sync]:` requests: each holds its connection for its
/// second, far longer than the burst takes to arrive.
const SYNC: usize = 150;
/// Concurrent `web:` requests.
const ASYNC: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_address_is_answered_in_full_with_the_default_limits() {
    // The defaults, with callbacks to the loopback sink allowed.
    let config = Config::for_local_testing();
    let server = TestServer::start(builtin_router(), config).await;
    let sink = CallbackSink::start().await.expect("sink");
    // One client, so every request comes from 127.0.0.1; it opens a
    // connection per request in flight, as ROS or a proxy's pool does.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

    let mut sent = Vec::new();
    for _ in 0..SYNC {
        let mut body = fixture_for("echo-create.json", &sink);
        body["ResourceType"] = json!("Custom::Wait");
        body["ResourceProperties"] = json!({"Seconds": 1});
        sent.push(("/sync", body));
    }
    for _ in 0..ASYNC {
        sent.push(("/", fixture_for("echo-create.json", &sink)));
    }
    let replies = futures_util::future::join_all(sent.iter().map(|(path, body)| {
        let request = client.post(server.url(path)).json(body);
        async move {
            let reply = request.send().await.expect("every request is answered");
            let status = reply.status().as_u16();
            let body: Value = reply.json().await.expect("a JSON reply");
            (status, body)
        }
    }))
    .await;

    let mut refused = Vec::new();
    for ((path, body), (status, reply)) in sent.iter().zip(&replies) {
        if *status != 200 {
            refused.push(format!("{path} {}: {status} {reply}", body["RequestId"]));
        } else if *path == "/sync" {
            assert_eq!(reply["Status"], "SUCCESS", "{reply}");
            assert_eq!(reply["Data"]["WaitedSeconds"], 1, "{reply}");
            assert_eq!(reply["RequestId"], body["RequestId"]);
        } else {
            assert_eq!(reply["accepted"], true, "{reply}");
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {} refused: {refused:#?}",
        refused.len(),
        sent.len()
    );

    // Every async request gets exactly one answer, SUCCESS.
    let calls = exactly(&sink, ASYNC).await;
    let mut answers: HashMap<String, usize> = HashMap::new();
    for call in &calls {
        let answer = call.response().expect("an answer");
        assert_eq!(answer.status, Status::Success, "{answer:?}");
        *answers.entry(answer.request_id).or_default() += 1;
    }
    assert_eq!(answers.len(), ASYNC);
    assert!(answers.values().all(|n| *n == 1), "{answers:?}");
    server.stop().await;
}
