//! Limits: oversize and deeply nested bodies, oversize headers, slow
//! clients, the connection cap and the per-address cap on bodies being read. Timeouts
//! here are short and configured; no assertion depends on timing.

mod security_support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use stackhook::Config;
use stackhook::sink::CallbackSink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use security_support::{client, create, start, start_with};

/// Upper bound for anything the server should do "soon".
const BOUND: Duration = Duration::from_secs(10);

/// Send raw bytes, then read until the server closes or BOUND passes.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(bytes).await;
    // Half-close: the server sees the end of the request stream.
    let _ = stream.shutdown().await;
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn oversize_body_gets_413() {
    let server = start(Config::for_local_testing().body_limit(1024)).await;
    let body = "x".repeat(4096);
    let reply = client()
        .post(server.url("/"))
        .body(body)
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 413);
    server.stop().await;
}

#[tokio::test]
async fn large_bodies_within_the_limit_pass_the_small_header_buffer() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(Config::for_local_testing().max_header_bytes(8192)).await;
    let mut body = create(&sink.url("/cb"));
    body["ResourceProperties"]["Blob"] = "b".repeat(300 * 1024).into();
    let reply = client()
        .post(server.url("/sync"))
        .json(&body)
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn deeply_nested_body_gets_400_before_parsing() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(Config::for_local_testing().json_depth_limit(16)).await;
    let mut body = create(&sink.url("/cb"));
    let mut deep = Value::from("bottom");
    for _ in 0..20 {
        deep = Value::Array(vec![deep]);
    }
    body["ResourceProperties"]["Deep"] = deep;
    for path in ["/", "/sync", "/invoke"] {
        let reply = client()
            .post(server.url(path))
            .json(&body)
            .send()
            .await
            .expect("reachable");
        assert!(
            reply.status() == 400 || reply.status() == 404,
            "{path}: {}",
            reply.status()
        );
        let text = reply.text().await.expect("text");
        assert!(
            text.contains("nests deeper than 16 levels"),
            "{path}: {text}"
        );
    }
    // Far deeper than serde_json's own limit, and not even valid JSON.
    let bomb = "[".repeat(200_000);
    let reply = client()
        .post(server.url("/"))
        .body(bomb)
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sink.received().is_empty(),
        "hostile bodies are not answered at their callback"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversize_headers_are_refused() {
    let server = start(Config::for_local_testing().max_header_bytes(8192)).await;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "a".repeat(32 * 1024)
    );
    let reply = raw(server.addr, request.as_bytes()).await;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    // The server is still fine.
    let health = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(health.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let server =
        start(Config::for_local_testing().header_read_timeout(Duration::from_millis(200))).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Never finish the headers: the server must close the connection.
    let reply = read_to_close(&mut stream).await;
    assert!(!reply.contains("200 OK"), "{reply}");
    let mut probe = [0u8; 1];
    let closed = tokio::time::timeout(BOUND, stream.read(&mut probe)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the connection was closed"
    );
    server.stop().await;
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() {
    let server =
        start(Config::for_local_testing().header_read_timeout(Duration::from_millis(200))).await;
    // Connects and never sends a byte.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut probe = [0u8; 1];
    let closed = tokio::time::timeout(BOUND, silent.read(&mut probe)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "silent connection closed"
    );

    // Sends one request, then idles on the kept-alive connection.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let closed = tokio::time::timeout(BOUND, idle.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the idle kept-alive connection was closed");
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    server.stop().await;
}

#[tokio::test]
async fn slow_bodies_get_408() {
    let server =
        start(Config::for_local_testing().body_read_timeout(Duration::from_millis(200))).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Request")
        .await
        .expect("write");
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_slots_come_back() {
    let server = start(
        Config::for_local_testing()
            .max_connections(2)
            .header_read_timeout(Duration::from_secs(60)),
    )
    .await;
    let held_a = TcpStream::connect(server.addr).await.expect("connect");
    let held_b = TcpStream::connect(server.addr).await.expect("connect");
    // A third one is accepted and closed at once, without an answer.
    let reply = raw(server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(reply.is_empty(), "{reply}");

    drop(held_a);
    drop(held_b);
    // Once the held connections are gone, the slots come back.
    let mut answered = false;
    for _ in 0..100 {
        let reply = raw(
            server.addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if reply.starts_with("HTTP/1.1 200") {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "a slot came back");
    server.stop().await;
}

/// Start a request to `/` from 127.0.0.1 whose body never ends, holding one
/// of the address's intake slots.
async fn trickling_body(addr: SocketAddr) -> TcpStream {
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n{",
    )
    .await
    .expect("write");
    slow
}

#[tokio::test]
async fn one_address_cannot_take_every_intake_slot() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(
        Config::for_local_testing()
            .max_requests_per_ip(1)
            .body_read_timeout(Duration::from_secs(60)),
    )
    .await;
    // Hold the only slot of 127.0.0.1 with a request whose body never ends.
    let slow = trickling_body(server.addr).await;

    // A request from the same address waits for the slot, then is refused
    // with a status ROS retries. Its body was not read: nothing to answer.
    let mut refused = None;
    for attempt in 0..100 {
        let reply = client()
            .post(server.url("/"))
            .json(&create(&sink.url("/cb")))
            .send()
            .await
            .expect("reachable");
        if reply.status() == 503 {
            refused = Some(reply);
            break;
        }
        // The slow request may not hold its slot yet.
        assert_eq!(reply.status(), 200, "attempt {attempt}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("a request from the same address was refused");
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = refused.json().await.expect("json");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("--max-requests-per-ip"), "{error}");

    // Another client address is served meanwhile, and so are requests
    // without a body from this one.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(BOUND)
        .build()
        .expect("client");
    let mut body = create(&sink.url("/cb"));
    body["RequestId"] = "req-other".into();
    let reply = other
        .post(server.url("/"))
        .json(&body)
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 200);
    let health = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(health.status(), 200);
    drop(slow);
    server.stop().await;
}

#[tokio::test]
async fn a_request_over_the_cap_gets_the_slot_once_the_body_before_it_arrives() {
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(
        Config::for_local_testing()
            .max_requests_per_ip(1)
            .body_read_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut slow = trickling_body(server.addr).await;
    // Make sure the slow request holds the slot: a request sent now waits.
    let waiting = {
        let url = server.url("/");
        let body = create(&sink.url("/cb"));
        tokio::spawn(async move { client().post(url).json(&body).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The slow body completes (not a valid request: 400) and frees the slot.
    slow.write_all(&[b' '; 999]).await.expect("write");
    let reply = read_to_close(&mut slow).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let waited = waiting.await.expect("task").expect("reachable");
    assert_eq!(waited.status(), 200, "the waiting request was served");
    server.stop().await;
}

/// Creates say they started, then wait for a permit the test hands out.
struct Held {
    started: std::sync::Arc<tokio::sync::Notify>,
    go: std::sync::Arc<tokio::sync::Semaphore>,
}

impl stackhook::Handler for Held {
    type Properties = serde_json::Map<String, Value>;
    type Error = std::io::Error;

    async fn create(
        &self,
        _: stackhook::handler::CreateRequest<Self::Properties>,
    ) -> Result<stackhook::handler::Created, Self::Error> {
        self.started.notify_one();
        let permit = self.go.acquire().await.map_err(std::io::Error::other)?;
        permit.forget();
        Ok(stackhook::handler::Created::with_id("held"))
    }
    async fn update(
        &self,
        _: stackhook::handler::UpdateRequest<Self::Properties>,
    ) -> Result<stackhook::handler::Updated, Self::Error> {
        Ok(stackhook::handler::Updated::new())
    }
    async fn delete(
        &self,
        _: stackhook::handler::DeleteRequest<Self::Properties>,
    ) -> Result<stackhook::handler::Deleted, Self::Error> {
        Ok(stackhook::handler::Deleted::new())
    }
}

#[tokio::test]
async fn a_sync_request_waiting_for_its_handler_holds_no_intake_slot() {
    let sink = CallbackSink::start().await.expect("sink");
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let go = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Held {
        started: std::sync::Arc::clone(&started),
        go: std::sync::Arc::clone(&go),
    };
    let router = stackhook::Router::new()
        .route("Custom::Held", handler)
        .route("Custom::Echo", stackhook_handlers::Echo);
    // One slot: were it held by the sync request, the requests below would
    // wait 5 s for it and then be refused.
    let server = start_with(router, Config::for_local_testing().max_requests_per_ip(1)).await;
    let mut held = create(&sink.url("/cb"));
    held["ResourceType"] = "Custom::Held".into();
    held["RequestId"] = "req-held".into();
    let sync = {
        let url = server.url("/sync");
        tokio::spawn(async move { client().post(url).json(&held).send().await })
    };
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("the sync request's handler runs");
    // While the sync request waits for its handler, requests from the same
    // address are read and answered.
    for n in 0..3 {
        let mut body = create(&sink.url("/cb"));
        body["RequestId"] = format!("req-{n}").into();
        let reply = client()
            .post(server.url("/"))
            .json(&body)
            .send()
            .await
            .expect("reachable");
        assert_eq!(reply.status(), 200);
    }
    assert!(!sync.is_finished(), "the handler is still held");
    go.add_permits(1);
    let reply = sync.await.expect("task").expect("reachable");
    let answer: Value = reply.json().await.expect("json");
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn garbage_never_takes_the_server_down() {
    let server =
        start(Config::for_local_testing().header_read_timeout(Duration::from_millis(500))).await;
    let inputs: [&[u8]; 6] = [
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /sync HTTP/1.1\r\nContent-Length: 3\r\n\r\n\xff\xfe\xfd",
        b"GET /%%%% HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
    ];
    for input in inputs {
        let _ = raw(server.addr, input).await;
    }
    let health = client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(health.status(), 200);
    server.stop().await;
}
