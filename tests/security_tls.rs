//! The optional native HTTPS listener, with a self-signed certificate made
//! in the test and a client that trusts it.

mod security_support;

use std::time::Duration;

use serde_json::Value;
use stackhook::Config;
use stackhook::sink::CallbackSink;

use security_support::{create, start};

struct Pki {
    _dir: tempfile::TempDir,
    cert_pem: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn self_signed() -> Pki {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let cert_pem = certified.cert.pem();
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
    Pki {
        _dir: dir,
        cert_pem,
        cert,
        key,
    }
}

fn trusting_client(pki: &Pki, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.cert_pem.as_bytes()).expect("pem"))
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let pki = self_signed();
    let sink = CallbackSink::start().await.expect("sink");
    let server = start(Config::for_local_testing().tls(&pki.cert, &pki.key)).await;
    let https = trusting_client(&pki, server.addr);
    let base = format!("https://localhost:{}", server.addr.port());

    let health = https
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("TLS handshake");
    assert_eq!(health.status(), 200);

    let reply = https
        .post(format!("{base}/sync"))
        .json(&create(&sink.url("/cb")))
        .send()
        .await
        .expect("reachable");
    let answer: Value = reply.json().await.expect("json");
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");

    let reply = https
        .post(format!("{base}/"))
        .json(&create(&sink.url("/cb")))
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 200);
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).await.len(), 1);

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    assert!(plain.get(server.url("/healthz")).send().await.is_err());

    // A client that does not trust the certificate cannot connect.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", server.addr)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    assert!(
        untrusting
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let pki = self_signed();
    let server = start(
        Config::for_local_testing()
            .tls(&pki.cert, &pki.key)
            .header_read_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the server closed the silent connection"
    );
    server.stop().await;
}

#[tokio::test]
async fn unreadable_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate").expect("write");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let served = stackhook::serve(
        listener,
        stackhook::Router::new(),
        Config::for_local_testing().tls(&cert, dir.path().join("missing.pem")),
        async {},
    )
    .await;
    assert!(
        matches!(served, Err(stackhook::Error::Config(_))),
        "{served:?}"
    );
}
