//! A loopback mock of ROS, OOS and RFS for the cloud tests.
//!
//! It records every request and checks its signature with verifiers written
//! here from the published algorithms (not by calling stackhook's signers).
//! A request whose signature does not verify, or whose nonce was already
//! used, gets the error the real service would send, and the recorded
//! request keeps the reason.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which signature the mock expects.
#[derive(Clone)]
pub enum Verify {
    /// Alibaba: V3 when an Authorization header is present, else V2.
    Alibaba { key_id: String, secret: String },
    /// Huawei SDK-HMAC-SHA256.
    Huawei { ak: String, sk: String },
    /// Accept anything (presigned URLs).
    Nothing,
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// An HTTP answer.
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Close the connection without answering.
    Drop,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Http {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }
    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Http {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Reply::Http {
                    status,
                    headers,
                    body,
                }
            }
            Reply::Drop => Reply::Drop,
        }
    }
    /// An Alibaba error body.
    pub fn alibaba_error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            &serde_json::json!({
                "RequestId": format!("req-{code}"),
                "HostId": "mock.aliyuncs.com",
                "Code": code,
                "Message": message,
            })
            .to_string(),
        )
    }
}

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    /// The query, decoded.
    pub query: Vec<(String, String)>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// `Ok(scheme)` when the signature verified (`v3`, `v2`, `huawei`).
    pub verified: Result<&'static str, String>,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct State {
    verify: Verify,
    script: VecDeque<Reply>,
    default: Reply,
    seen: Vec<Seen>,
    nonces: HashSet<String>,
}

/// The Alibaba mock with keys `testid` / `testsecret`, answering success.
pub async fn alibaba(script: Vec<Reply>) -> MockCloud {
    MockCloud::start(
        Verify::Alibaba {
            key_id: "testid".into(),
            secret: "testsecret".into(),
        },
        Reply::json(200, r#"{"RequestId":"mock-request-id"}"#),
        script,
    )
    .await
}

/// The Huawei mock with the signing guide's keys, answering `default`.
pub async fn huawei(default: Reply, script: Vec<Reply>) -> MockCloud {
    MockCloud::start(
        Verify::Huawei {
            ak: HUAWEI_AK.into(),
            sk: HUAWEI_SK.into(),
        },
        default,
        script,
    )
    .await
}

pub const HUAWEI_AK: &str = "QTWAOYTTINDUT2QVKYUC";
pub const HUAWEI_SK: &str = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc";
pub const PROJECT: &str = "77b6a44cba5143ab91d13ab9a8ff44fd";

/// A running mock; stops when dropped.
pub struct MockCloud {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl MockCloud {
    /// Start on 127.0.0.1:0, answering `default` once `script` runs out.
    pub async fn start(verify: Verify, default: Reply, script: Vec<Reply>) -> MockCloud {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            verify,
            script: script.into(),
            default,
            seen: Vec::new(),
            nonces: HashSet::new(),
        }));
        let task = tokio::spawn(accept(listener, Arc::clone(&state)));
        MockCloud { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }

    /// The only request, asserting it verified.
    pub fn single(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "{seen:#?}");
        let one = seen.into_iter().next().expect("one");
        assert!(one.verified.is_ok(), "{:?}", one.verified);
        one
    }
}

impl Drop for MockCloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let state = Arc::clone(&state);
                async move { handle(req, &state).await }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped")
    }
}
impl std::error::Error for Dropped {}

async fn handle(
    req: hyper::Request<Incoming>,
    state: &Mutex<State>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let query = decode_query(&raw_query);
    let mut seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        raw_query,
        query,
        headers: parts.headers,
        body,
        verified: Err(String::new()),
    };
    let reply = {
        let mut state = state.lock().expect("lock");
        let verified = match state.verify.clone() {
            Verify::Alibaba { key_id, secret } => verify_alibaba(&seen, &key_id, &secret),
            Verify::Huawei { ak, sk } => verify_huawei(&seen, &ak, &sk),
            Verify::Nothing => Ok(("none", None)),
        };
        let verified = verified.and_then(|(scheme, nonce)| match nonce {
            Some(nonce) if !state.nonces.insert(nonce.clone()) => {
                Err(format!("nonce {nonce} used twice"))
            }
            _ => Ok(scheme),
        });
        seen.verified = verified.clone();
        state.seen.push(seen.clone());
        match verified {
            Ok(_) => state
                .script
                .pop_front()
                .unwrap_or_else(|| state.default.clone()),
            Err(why) => match state.verify {
                Verify::Alibaba { .. } | Verify::Nothing => {
                    Reply::alibaba_error(403, "SignatureDoesNotMatch", &why)
                }
                Verify::Huawei { .. } => Reply::json(
                    401,
                    &serde_json::json!({"error_code": "APIGW.0301", "error_msg": why}).to_string(),
                ),
            },
        }
    };
    match reply {
        Reply::Drop => Err(Dropped),
        Reply::Http {
            status,
            headers,
            body,
        } => {
            let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
            for (name, value) in headers {
                response.headers_mut().append(
                    http::HeaderName::try_from(name).expect("name"),
                    http::HeaderValue::try_from(value).expect("value"),
                );
            }
            Ok(response)
        }
    }
}

// ---- the independent verifiers ------------------------------------------

/// Decode a query: `+` and `%20` both mean a space.
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986: unreserved characters stay, every other byte becomes `%XY`.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sorted_query(pairs: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> =
        pairs.iter().map(|(k, v)| (escape(k), escape(v))).collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hmac256(key: &[u8], data: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Seconds since the epoch of `yyyy-MM-ddTHH:mm:ssZ` or `yyyyMMddTHHmmssZ`.
fn parse_date(text: &str) -> Option<u64> {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 14 || !text.ends_with('Z') {
        return None;
    }
    let n = |a: usize, b: usize| digits[a..b].parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (hh, mm, ss) = (n(8, 10)?, n(10, 12)?, n(12, 14)?);
    // days_from_civil
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

fn fresh(date: &str) -> Result<(), String> {
    let t = parse_date(date).ok_or_else(|| format!("bad date {date:?}"))?;
    if t.abs_diff(unix_now()) > 15 * 60 {
        return Err(format!("date {date} is not within 15 minutes"));
    }
    Ok(())
}

fn verify_alibaba(
    seen: &Seen,
    key_id: &str,
    secret: &str,
) -> Result<(&'static str, Option<String>), String> {
    match seen.header("authorization") {
        Some(auth) => verify_v3(seen, auth, key_id, secret, true),
        None => verify_v2(seen, key_id, secret),
    }
}

fn verify_v3(
    seen: &Seen,
    auth: &str,
    key_id: &str,
    secret: &str,
    check_time: bool,
) -> Result<(&'static str, Option<String>), String> {
    let rest = auth
        .strip_prefix("ACS3-HMAC-SHA256 ")
        .ok_or("not ACS3-HMAC-SHA256")?;
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for part in rest.split(',') {
        let (k, v) = part.split_once('=').ok_or("bad Authorization")?;
        match k {
            "Credential" => credential = v,
            "SignedHeaders" => signed_headers = v,
            "Signature" => signature = v,
            _ => return Err(format!("unknown Authorization part {k}")),
        }
    }
    if credential != key_id {
        return Err(format!("unknown AccessKeyId {credential}"));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in [
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ] {
        if !names.contains(&required) {
            return Err(format!("{required} is not signed"));
        }
    }
    let body_hash = hex_sha256(&seen.body);
    if seen.header("x-acs-content-sha256") != Some(body_hash.as_str()) {
        return Err("x-acs-content-sha256 does not match the body".into());
    }
    if check_time {
        fresh(seen.header("x-acs-date").unwrap_or(""))?;
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let value = seen
            .header(name)
            .ok_or_else(|| format!("signed header {name} missing"))?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        seen.method,
        if seen.path.is_empty() {
            "/"
        } else {
            &seen.path
        },
        sorted_query(&seen.query),
        canonical_headers,
        signed_headers,
        body_hash
    );
    let to_sign = format!("ACS3-HMAC-SHA256\n{}", hex_sha256(canonical.as_bytes()));
    let expected = hmac256(secret.as_bytes(), &to_sign);
    if expected != signature {
        return Err(format!(
            "signature mismatch; canonical request was {canonical:?}"
        ));
    }
    let nonce = seen
        .header("x-acs-signature-nonce")
        .unwrap_or("")
        .to_string();
    Ok(("v3", Some(nonce)))
}

fn verify_v2(
    seen: &Seen,
    key_id: &str,
    secret: &str,
) -> Result<(&'static str, Option<String>), String> {
    let signature = seen.param("Signature").ok_or("no Signature")?.to_string();
    if seen.param("AccessKeyId") != Some(key_id) {
        return Err("unknown AccessKeyId".into());
    }
    if seen.param("SignatureMethod") != Some("HMAC-SHA1")
        || seen.param("SignatureVersion") != Some("1.0")
    {
        return Err("not HMAC-SHA1 1.0".into());
    }
    fresh(seen.param("Timestamp").unwrap_or(""))?;
    let rest: Vec<(String, String)> = seen
        .query
        .iter()
        .filter(|(k, _)| k != "Signature")
        .cloned()
        .collect();
    let to_sign = format!(
        "{}&{}&{}",
        seen.method,
        escape("/"),
        escape(&sorted_query(&rest))
    );
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("key");
    mac.update(to_sign.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if expected != signature {
        return Err(format!(
            "signature mismatch; string to sign was {to_sign:?}"
        ));
    }
    Ok(("v2", seen.param("SignatureNonce").map(str::to_string)))
}

fn verify_huawei(
    seen: &Seen,
    ak: &str,
    sk: &str,
) -> Result<(&'static str, Option<String>), String> {
    let auth = seen.header("authorization").ok_or("no Authorization")?;
    let rest = auth
        .strip_prefix("SDK-HMAC-SHA256 ")
        .ok_or("not SDK-HMAC-SHA256")?;
    let mut access = "";
    let mut signed_headers = "";
    let mut signature = "";
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').ok_or("bad Authorization")?;
        match k {
            "Access" => access = v,
            "SignedHeaders" => signed_headers = v,
            "Signature" => signature = v,
            _ => return Err(format!("unknown Authorization part {k}")),
        }
    }
    if access != ak {
        return Err(format!("unknown AK {access}"));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"x-sdk-date") {
        return Err("x-sdk-date is not signed".into());
    }
    let date = seen.header("x-sdk-date").unwrap_or("").to_string();
    fresh(&date)?;
    let client_request_id = seen.header("client-request-id").unwrap_or("");
    if client_request_id.len() < 36 || client_request_id.len() > 128 {
        return Err("Client-Request-Id must be 36-128 characters".into());
    }
    let mut uri = seen
        .path
        .split('/')
        .map(|s| escape(&unescape(s)))
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let value = seen
            .header(name)
            .ok_or_else(|| format!("signed header {name} missing"))?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        seen.method,
        uri,
        sorted_query(&seen.query),
        canonical_headers,
        signed_headers,
        hex_sha256(&seen.body)
    );
    let to_sign = format!(
        "SDK-HMAC-SHA256\n{date}\n{}",
        hex_sha256(canonical.as_bytes())
    );
    if hmac256(sk.as_bytes(), &to_sign) != signature {
        return Err(format!(
            "verify aksk signature fail; canonical request was {canonical:?}"
        ));
    }
    Ok(("huawei", None))
}

#[test]
fn verifier_accepts_the_spec_golden() {
    // The SignalResource V3 golden, fed through the verifier.
    let raw = "ClientToken=123e4567-e89b-12d3-a456-426655440000&LogicalResourceId=WebServer&RegionId=cn-hangzhou&StackId=4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff&Status=SUCCESS&UniqueId=27c7347b-352a-4377-accf-63d361c1ffff";
    let mut headers = http::HeaderMap::new();
    for (k, v) in [
        ("host", "ros.aliyuncs.com"),
        ("x-acs-version", "2019-09-10"),
        ("x-acs-action", "SignalResource"),
        ("user-agent", "stackhook-test"),
        ("x-acs-date", "2023-10-26T10:22:32Z"),
        ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
        ("accept", "application/json"),
        (
            "x-acs-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        ("x-acs-credentials-provider", "static_sts"),
        ("x-acs-accesskey-id", "YourAccessKeyId"),
        ("x-acs-security-token", "YourSecurityToken"),
    ] {
        headers.insert(k, v.parse().expect("value"));
    }
    let seen = Seen {
        method: "POST".into(),
        path: "/".into(),
        raw_query: raw.into(),
        query: decode_query(raw),
        headers,
        body: Bytes::new(),
        verified: Err(String::new()),
    };
    let auth = "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=accept;host;user-agent;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature=6b0dd9eb98dbc16f33d645e5e34c2985aae2059bc4b223b54e8d01f628f62b34";
    // The golden's date is old: check everything but freshness, then that.
    assert_eq!(
        verify_v3(&seen, auth, "YourAccessKeyId", "YourAccessKeySecret", false),
        Ok(("v3", Some("3156853299f313e23d1673dc12e1703d".to_string())))
    );
    let err =
        verify_v3(&seen, auth, "YourAccessKeyId", "YourAccessKeySecret", true).expect_err("stale");
    assert!(err.contains("15 minutes"), "{err}");
    let tampered = auth.replace("Signature=6b", "Signature=7b");
    assert!(
        verify_v3(
            &seen,
            &tampered,
            "YourAccessKeyId",
            "YourAccessKeySecret",
            false
        )
        .is_err()
    );
    assert_eq!(parse_date("2023-10-26T10:22:32Z"), Some(1_698_315_752));
    assert_eq!(unescape("ok+note%20x"), "ok note x");
}
