//! Request authentication: the shared token and ROS's SignKey signature.
//! Unauthenticated requests get 401, are never dispatched and get no callback.

mod security_support;

use std::time::{Duration, SystemTime};

use serde_json::Value;
use stackhook::Config;
use stackhook::security::signature::{SignatureScheme, format_date};
use stackhook::sink::CallbackSink;

use security_support::{client, create, start};

const TOKEN: &str = "a-long-random-shared-token-0001";
const SIGN_KEY: &str = "ros-sign-key-0001";
const SIGN_URL: &str = "https://provider.example.com/";

/// How long to wait to be sure no callback arrives for a refused request.
const NO_CALLBACK_WAIT: Duration = Duration::from_millis(300);

async fn post(url: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut req = client().post(url).json(body);
    if let Some(token) = token {
        req = req.header("X-Stackhook-Token", token);
    }
    let reply = req.send().await.expect("server reachable");
    let status = reply.status().as_u16();
    let body = reply.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn token_in_header_or_query_is_accepted() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(Config::for_local_testing().auth_token(TOKEN)).await;
    let body = create(&sink.url("/cb"));

    let (status, _) = post(&server.url("/"), &body, Some(TOKEN)).await;
    assert_eq!(status, 200);
    let (status, _) = post(&server.url(&format!("/?token={TOKEN}")), &body, None).await;
    assert_eq!(status, 200);
    assert_eq!(sink.wait_for(2, Duration::from_secs(10)).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_token_is_refused_without_dispatch_or_callback() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(Config::for_local_testing().auth_token(TOKEN)).await;
    let body = create(&sink.url("/cb"));

    let (status, reply) = post(&server.url("/"), &body, None).await;
    assert_eq!(status, 401);
    assert!(
        reply["error"]
            .as_str()
            .expect("error")
            .contains("missing token"),
        "{reply}"
    );

    let (status, reply) = post(
        &server.url("/"),
        &body,
        Some("a-long-random-shared-token-0002"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(!reply.to_string().contains(TOKEN));
    let (status, _) = post(&server.url("/sync"), &body, Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, _) = post(&server.url("/?token=wrong"), &body, None).await;
    assert_eq!(status, 401);

    // A broken body would normally get FAILED at its callback; not when unauthenticated.
    let mut broken = body.clone();
    broken["RequestType"] = "Replace".into();
    let (status, _) = post(&server.url("/"), &broken, None).await;
    assert_eq!(status, 401);

    tokio::time::sleep(NO_CALLBACK_WAIT).await;
    assert!(
        sink.received().is_empty(),
        "no callback for refused requests"
    );
    server.stop().await;
}

#[tokio::test]
async fn fc_invoke_is_exempt_by_default_and_guarded_when_asked() {
    let sink = CallbackSink::start().await.expect("sink");
    let body = create(&sink.url("/cb"));

    let server = start(Config::for_local_testing().auth_token(TOKEN)).await;
    let (status, _) = post(&server.url("/invoke"), &body, None).await;
    assert_eq!(status, 200, "FC's invoke API authenticates its callers");
    server.stop().await;

    let server = start(
        Config::for_local_testing()
            .auth_token(TOKEN)
            .auth_fc_routes(true),
    )
    .await;
    let (status, _) = post(&server.url("/invoke"), &body, None).await;
    assert_eq!(status, 404, "FC failures are 404 with x-fc-status");
    let (status, _) = post(&server.url("/invoke"), &body, Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(sink.wait_for(2, Duration::from_secs(10)).await.len(), 2);
    server.stop().await;
}

fn signing() -> SignatureScheme {
    SignatureScheme::new(SIGN_KEY, SIGN_URL)
}

fn signed_config() -> Config {
    Config::for_local_testing().sign_key(SIGN_KEY, SIGN_URL)
}

#[tokio::test]
async fn valid_signature_is_accepted_once() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(signed_config()).await;
    let body = signing().signed_body(&create(&sink.url("/cb")), &format_date(SystemTime::now()));

    let (status, _) = post(&server.url("/"), &body, None).await;
    assert_eq!(status, 200);
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).await.len(), 1);

    // The same signed body again is a replay.
    let (status, reply) = post(&server.url("/"), &body, None).await;
    assert_eq!(status, 401);
    assert!(
        reply["error"].as_str().expect("error").contains("replayed"),
        "{reply}"
    );
    tokio::time::sleep(NO_CALLBACK_WAIT).await;
    assert_eq!(sink.received().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn missing_forged_and_stale_signatures_are_refused() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(signed_config()).await;
    let plain = create(&sink.url("/cb"));
    let now = format_date(SystemTime::now());

    let (status, reply) = post(&server.url("/"), &plain, None).await;
    assert_eq!(status, 401);
    assert!(
        reply["error"]
            .as_str()
            .expect("error")
            .contains("missing signature")
    );

    // Signed with another key.
    let forged = SignatureScheme::new("not-the-key", SIGN_URL).signed_body(&plain, &now);
    let (status, reply) = post(&server.url("/"), &forged, None).await;
    assert_eq!(status, 401);
    assert!(
        reply["error"]
            .as_str()
            .expect("error")
            .contains("does not match")
    );

    // Signed correctly, then tampered with.
    let mut tampered = signing().signed_body(&plain, &now);
    tampered["ResourceProperties"]["Greeting"] = "tampered".into();
    let (status, _) = post(&server.url("/"), &tampered, None).await;
    assert_eq!(status, 401);

    // Signed for another URL.
    let other_url =
        SignatureScheme::new(SIGN_KEY, "https://elsewhere.example.com/").signed_body(&plain, &now);
    let (status, _) = post(&server.url("/"), &other_url, None).await;
    assert_eq!(status, 401);

    // Stale: an hour old, and an hour ahead.
    for offset in [-3600i64, 3600] {
        let at = if offset < 0 {
            SystemTime::now() - Duration::from_secs(3600)
        } else {
            SystemTime::now() + Duration::from_secs(3600)
        };
        let stale = signing().signed_body(&plain, &format_date(at));
        let (status, reply) = post(&server.url("/"), &stale, None).await;
        assert_eq!(status, 401);
        assert!(
            reply["error"].as_str().expect("error").contains("stale"),
            "{reply}"
        );
    }

    // Malformed Signature objects.
    for signature in [
        serde_json::json!("just a string"),
        serde_json::json!({"Date": now, "Value": 5}),
        serde_json::json!({"Date": "yesterday", "Value": "00"}),
    ] {
        let mut body = plain.clone();
        body["Signature"] = signature;
        let (status, reply) = post(&server.url("/"), &body, None).await;
        assert_eq!(status, 401, "{reply}");
        assert!(!reply.to_string().contains(SIGN_KEY));
    }

    tokio::time::sleep(NO_CALLBACK_WAIT).await;
    assert!(
        sink.received().is_empty(),
        "no callback for refused requests"
    );
    server.stop().await;
}

#[tokio::test]
async fn signed_headers_and_sync_route_are_checked() {
    let sink = CallbackSink::start().await.expect("sink");
    let headers = [("X-Env", "prod"), ("Authorization-Hint", "ros")];
    let server = start(signed_config().sign_headers(headers)).await;
    let plain = create(&sink.url("/cb"));
    let now = format_date(SystemTime::now());

    let mut scheme = signing();
    scheme.headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (status, reply) = post(
        &server.url("/sync"),
        &scheme.signed_body(&plain, &now),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reply["Status"], "SUCCESS", "{reply}");

    // Without the headers in the string to sign, it does not match.
    let (status, _) = post(
        &server.url("/sync"),
        &signing().signed_body(&plain, &now),
        None,
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn token_and_signature_together_need_both() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(signed_config().auth_token(TOKEN)).await;
    let plain = create(&sink.url("/cb"));
    let body = signing().signed_body(&plain, &format_date(SystemTime::now()));

    let (status, _) = post(&server.url("/"), &body, None).await;
    assert_eq!(
        status, 401,
        "signature alone is not enough when a token is set"
    );
    let (status, _) = post(&server.url("/"), &plain, Some(TOKEN)).await;
    assert_eq!(
        status, 401,
        "token alone is not enough when a SignKey is set"
    );
    let (status, _) = post(&server.url("/"), &body, Some(TOKEN)).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn healthz_needs_no_authentication() {
    let server = start(Config::for_local_testing().auth_token(TOKEN)).await;
    let reply = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 200);
    server.stop().await;
}

#[test]
fn empty_token_is_a_config_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let config = Config::for_local_testing().auth_token("");
        let served = stackhook::serve(listener, stackhook::Router::new(), config, async {}).await;
        assert!(
            matches!(served, Err(stackhook::Error::Config(_))),
            "{served:?}"
        );
    });
}
