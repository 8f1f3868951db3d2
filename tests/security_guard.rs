//! The callback guard: answers go only to allowed hosts, never to private,
//! loopback, link-local or metadata addresses unless listed, only over http
//! and https, and never through a redirect.
//!
//! Network traffic in these tests stays on loopback: addresses outside it
//! are only ever given to the guard, which refuses them before connecting.

mod security_support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;
use stackhook::config::{CallbackEndpoint, JournalMode};
use stackhook::delivery::{Delivery, Target};
use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::journal::{RedbStore, RequestKey, Store};
use stackhook::request::CallbackUrl;
use stackhook::response::Data;
use stackhook::security::callback_guard::{
    CallbackGuard, GuardError, HostPattern, parse_allow_list,
};
use stackhook::sink::CallbackSink;
use stackhook::{Config, Request, RequestType, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use security_support::{client, create, start, start_with};

fn allow(list: &str) -> Vec<HostPattern> {
    parse_allow_list(list).expect("valid allow list")
}

fn request(public: Option<String>, intranet: Option<String>) -> Request {
    let mut request = Request::new(
        RequestType::Create,
        "Custom::Echo",
        "Echo",
        "stack-1",
        "req-1",
    );
    request.response_url = public.map(CallbackUrl::new);
    request.intranet_response_url = intranet.map(CallbackUrl::new);
    request
}

async fn deliver(
    config: &Config,
    request: &Request,
) -> stackhook::Result<stackhook::delivery::Delivered> {
    let delivery = Delivery::new(config).expect("delivery");
    let response = Response::success(request, "id-1", Data::new());
    delivery
        .deliver(request, &response, Instant::now() + Duration::from_secs(5))
        .await
}

#[test]
fn private_link_local_and_metadata_literals_are_refused_even_with_a_star() {
    for list in ["*", "*.aliyuncs.com,*.alibabacloud.com"] {
        let guard = CallbackGuard::new(allow(list));
        for url in [
            "http://100.100.100.200/latest/meta-data/ram/security-credentials/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.0.1/",
            "http://127.0.0.1:9000/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fc00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:100.100.100.200]/",
            "http://[::ffff:10.0.0.1]/",
            "http://0177.0.0.1/",
            "http://2852039166/",
        ] {
            assert!(
                matches!(guard.check(url), Err(GuardError::AddressNotListed(_))),
                "{list}: {url} must be refused"
            );
        }
    }
}

#[test]
fn other_schemes_are_refused() {
    let guard = CallbackGuard::new(allow("*"));
    for url in [
        "file:///etc/passwd",
        "ftp://ros.aliyuncs.com/x",
        "gopher://ros.aliyuncs.com/",
        "ws://ros.aliyuncs.com/",
        "javascript:alert(1)",
    ] {
        assert!(guard.check(url).is_err(), "{url}");
    }
}

#[tokio::test]
async fn default_config_refuses_loopback_callbacks_and_sends_nothing() {
    let sink = CallbackSink::start().await.expect("sink");
    let config = Config::default().callback_endpoint(CallbackEndpoint::Public);
    let err = deliver(&config, &request(Some(sink.url("/cb")), None))
        .await
        .unwrap_err();
    assert!(matches!(err, stackhook::Error::CallbackRefused(_)), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert!(!err.to_string().contains("Signature="), "{err}");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn loopback_is_allowed_when_listed() {
    let sink = CallbackSink::start().await.expect("sink");
    let config = Config::for_local_testing().callback_endpoint(CallbackEndpoint::Public);
    let done = deliver(&config, &request(Some(sink.url("/cb")), None))
        .await
        .expect("delivered");
    assert_eq!(done.target, Target::Public);
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn a_refused_intranet_url_falls_back_to_an_allowed_public_one() {
    let sink = CallbackSink::start().await.expect("sink");
    let config = Config::default()
        .callback_allow(allow("127.0.0.1"))
        .callback_endpoint(CallbackEndpoint::Auto);
    let req = request(
        Some(sink.url("/public")),
        Some("http://169.254.169.254/latest/meta-data/?x=1".into()),
    );
    let done = deliver(&config, &req).await.expect("delivered");
    assert_eq!(done.target, Target::Public);
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn names_allowed_by_wildcard_must_not_resolve_to_loopback() {
    let sink = CallbackSink::start().await.expect("sink");
    let port = sink.addr().port();
    let url = format!("http://localhost:{port}/cb?Signature=x");

    let star = Config::default()
        .callback_allow(allow("*"))
        .callback_endpoint(CallbackEndpoint::Public);
    let err = deliver(&star, &request(Some(url.clone()), None))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("resolves only to addresses"),
        "{err}"
    );
    assert!(sink.received().is_empty());

    // Listed exactly, the name may resolve anywhere.
    let exact = Config::default()
        .callback_allow(allow("localhost"))
        .callback_endpoint(CallbackEndpoint::Public);
    deliver(&exact, &request(Some(url), None))
        .await
        .expect("delivered");
    assert_eq!(sink.received().len(), 1);
}

/// A one-shot server that answers every request with a redirect to `location`.
async fn redirector(location: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 16 * 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            let reply = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    addr
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let sink = CallbackSink::start().await.expect("sink");
    let hop = redirector(sink.url("/stolen")).await;
    let config = Config::for_local_testing().callback_endpoint(CallbackEndpoint::Public);
    let err = deliver(&config, &request(Some(format!("http://{hop}/cb")), None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("307"), "{err}");
    assert!(
        sink.received().is_empty(),
        "the redirect target got nothing"
    );
}

#[tokio::test]
async fn server_refuses_to_call_back_to_loopback_by_default() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(Config::default()).await;

    // FC /invoke delivers before it replies, so the refusal shows in the reply.
    let reply = client()
        .post(server.url("/invoke"))
        .json(&create(&sink.url("/cb")))
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 404);
    let body: Value = reply.json().await.expect("json");
    let message = body["errorMessage"].as_str().expect("errorMessage");
    assert!(message.contains("callback refused"), "{message}");
    assert!(!message.contains("Signature="), "{message}");

    // Async mode refuses it up front: no answer could be sent.
    let reply = client()
        .post(server.url("/"))
        .json(&create(&sink.url("/cb")))
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.received().is_empty());
    server.stop().await;
}

/// Counts its runs.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl Handler for Counted {
    type Properties = serde_json::Map<String, Value>;
    type Error = std::io::Error;

    async fn create(&self, _: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Created::with_id("counted"))
    }
    async fn update(&self, _: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Updated::new())
    }
    async fn delete(&self, _: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Deleted::new())
    }
}

fn counted_request(id: &str, public: &str, intranet: Option<&str>) -> Value {
    let mut body = create(public);
    body["RequestId"] = id.into();
    body["ResourceType"] = "Custom::Counted".into();
    if let Some(intranet) = intranet {
        body["IntranetResponseURL"] = intranet.into();
    }
    body
}

#[tokio::test]
async fn a_request_whose_every_callback_is_refused_is_refused_up_front() {
    let sink = CallbackSink::start().await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = Counted::default();
    let router = stackhook::Router::new().route("Custom::Counted", runs.clone());
    // `localhost` only: the sink's IP literal is refused, its name allowed.
    // A disk journal, to see that nothing was recorded.
    let config = Config::default()
        .callback_allow(allow("localhost"))
        .journal(JournalMode::Disk(dir.path().to_path_buf()));
    let server = start_with(router, config).await;
    let public = format!("{}?Signature=s3cret", sink.url("/cb"));
    let intranet = "http://100.100.100.200/latest/meta-data/?Signature=s3cret";

    let reply = client()
        .post(server.url("/"))
        .json(&counted_request("async-1", &public, Some(intranet)))
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 403);
    let body: Value = reply.json().await.expect("json");
    let error = body["error"].as_str().expect("error").to_string();
    for part in [
        "callback refused",
        "public URL",
        "intranet URL",
        "`127.0.0.1`",
        "`100.100.100.200`",
        "--callback-allow",
    ] {
        assert!(error.contains(part), "{part} missing from: {error}");
    }
    assert!(!error.contains("s3cret"), "{error}");

    // Function Compute: a failed invocation, FC's way, naming the same.
    let reply = client()
        .post(server.url("/invoke"))
        .header("content-type", "application/octet-stream")
        .body(counted_request("fc-1", &public, None).to_string())
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 404);
    assert_eq!(
        reply
            .headers()
            .get("x-fc-status")
            .and_then(|v| v.to_str().ok()),
        Some("404")
    );
    let body: Value = reply.json().await.expect("json");
    let message = body["errorMessage"].as_str().expect("errorMessage");
    assert!(
        message.contains("`127.0.0.1`") && message.contains("--callback-allow"),
        "{message}"
    );

    // One allowed URL is enough: the request runs and answers there.
    let allowed = format!("http://localhost:{}/allowed", sink.addr().port());
    let reply = client()
        .post(server.url("/"))
        .json(&counted_request("async-2", &allowed, Some(intranet)))
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 200);
    let calls = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(calls.len(), 1, "the allowed request was answered");
    assert!(calls[0].uri.starts_with("/allowed"), "{}", calls[0].uri);
    server.stop().await;

    assert_eq!(
        runs.0.load(Ordering::SeqCst),
        1,
        "only the request with an allowed callback ran"
    );
    assert_eq!(sink.received().len(), 1, "nothing else reached the sink");
    // The stopped server lets go of the journal as its last tasks end.
    let mut journal = RedbStore::open(dir.path());
    for _ in 0..100 {
        if journal.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        journal = RedbStore::open(dir.path());
    }
    let journal = journal.expect("journal");
    for id in ["async-1", "fc-1"] {
        let key = RequestKey {
            stack_id: "stack-0001".into(),
            logical_resource_id: "Echo".into(),
            request_id: id.into(),
        };
        assert_eq!(
            journal.get(&key).await.expect("read"),
            None,
            "{id} journaled"
        );
    }
    let open = journal.open_records().await.expect("read");
    assert!(
        open.iter().all(|(key, _)| key.request_id == "async-2"),
        "a refused request was left in the outbox: {open:?}"
    );
}

#[tokio::test]
async fn a_sync_request_is_answered_in_its_reply_whatever_its_callbacks() {
    // /sync never calls back, so the guard has nothing to refuse there.
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(Config::default()).await;
    let reply = client()
        .post(server.url("/sync"))
        .json(&create(&sink.url("/cb")))
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 200);
    let answer: Value = reply.json().await.expect("json");
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.received().is_empty());
    server.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn guard_never_panics(url in ".{0,80}", list in "[a-z*.,0-9:\\[\\]]{0,40}") {
        let patterns = parse_allow_list(&list).unwrap_or_default();
        let _ = CallbackGuard::new(patterns).check(&url);
        let _ = CallbackGuard::default().check(&url);
    }

    #[test]
    fn private_ipv4_literals_are_always_refused(
        range in 0usize..6, a in any::<u8>(), b in any::<u8>(), c in any::<u8>(), port in 1u16..,
    ) {
        let ip = match range {
            0 => Ipv4Addr::new(10, a, b, c),
            1 => Ipv4Addr::new(172, 16 | (a & 0x0f), b, c),
            2 => Ipv4Addr::new(192, 168, b, c),
            3 => Ipv4Addr::new(127, a, b, c),
            4 => Ipv4Addr::new(169, 254, b, c),
            _ => Ipv4Addr::new(100, 64 | (a & 0x3f), b, c),
        };
        let guard = CallbackGuard::new(allow("*,*.aliyuncs.com"));
        let literal = format!("http://{ip}:{port}/cb");
        prop_assert!(guard.check(&literal).is_err());
        let mapped = format!("http://[::ffff:{ip}]:{port}/cb");
        prop_assert!(guard.check(&mapped).is_err());
        // Listed explicitly, it is allowed.
        let listed = CallbackGuard::new(vec![HostPattern::Ip(IpAddr::V4(ip))]);
        prop_assert!(listed.check(&literal).is_ok());
    }

    #[test]
    fn subdomains_of_allowed_suffixes_pass(label in "[a-z0-9-]{1,20}", path in "[a-zA-Z0-9/=?&]{0,30}") {
        let guard = CallbackGuard::default();
        let url = format!("https://{label}.aliyuncs.com/{path}");
        prop_assert!(guard.check(&url).is_ok());
        let evil = format!("https://{label}.aliyuncs.com.evil.example/{path}");
        prop_assert!(guard.check(&evil).is_err());
    }
}
