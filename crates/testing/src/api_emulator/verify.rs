//! The independent verifiers: Alibaba ACS3-HMAC-SHA256 (V3), HMAC-SHA1 (V2)
//! and Huawei SDK-HMAC-SHA256, written from the published algorithms in the
//! orchestration-API spec, not by calling stackhook's signers in
//! `stackhook-cloud`, so a bug in a signer cannot hide itself.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::SignatureScheme;

/// How far a V3 or Huawei date, or a V2 timestamp, may be from the
/// emulator's clock: the 15 minutes the V3 and Huawei docs allow (V2 allows
/// 31, the stricter bound is kept for all three).
const MAX_CLOCK_SKEW_SECS: u64 = 15 * 60;

/// What a verifier reads of a request.
pub(super) struct Wire {
    pub(super) method: String,
    pub(super) path: String,
    /// The query, decoded.
    pub(super) query: Vec<(String, String)>,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Bytes,
}

impl Wire {
    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A signature that verified.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Verified {
    pub(super) scheme: SignatureScheme,
    /// The AccessKeyId or AK that signed.
    pub(super) key_id: String,
    /// The nonce to remember (Alibaba only; Huawei signing has none).
    pub(super) nonce: Option<String>,
}

/// Why a signature did not verify; each maps to the service's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The key id is not one the emulator holds.
    UnknownKey(String),
    /// The date or timestamp is not within the allowed skew.
    Stale(String),
    /// A required part is missing or malformed.
    Incomplete(String),
    /// The signature was computed, and differs.
    Mismatch(String),
    /// The nonce was used before.
    NonceUsed(String),
}

impl Refusal {
    pub(super) fn detail(&self) -> &str {
        match self {
            Refusal::UnknownKey(s)
            | Refusal::Stale(s)
            | Refusal::Incomplete(s)
            | Refusal::Mismatch(s)
            | Refusal::NonceUsed(s) => s,
        }
    }
}

impl From<String> for Refusal {
    fn from(text: String) -> Self {
        Refusal::Incomplete(text)
    }
}

impl From<&str> for Refusal {
    fn from(text: &str) -> Self {
        Refusal::Incomplete(text.to_string())
    }
}

/// Looks up the secret of a key id.
pub(super) type Secrets<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Decode a query: `+` and `%20` both mean a space.
pub(super) fn decode_query(raw: &str) -> Vec<(String, String)> {
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
pub(super) fn escape(text: &str) -> String {
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
    // HMAC takes a key of any length: the error case cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
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

fn fresh(date: &str) -> Result<(), Refusal> {
    let t = parse_date(date).ok_or_else(|| Refusal::Incomplete(format!("bad date {date:?}")))?;
    if t.abs_diff(unix_now()) > MAX_CLOCK_SKEW_SECS {
        return Err(Refusal::Stale(format!(
            "date {date} is not within 15 minutes"
        )));
    }
    Ok(())
}

/// Alibaba: V3 when an `Authorization` header is present, else V2.
pub(super) fn verify_alibaba(seen: &Wire, secrets: Secrets<'_>) -> Result<Verified, Refusal> {
    match seen.header("authorization") {
        Some(auth) => verify_v3(seen, auth, secrets, true),
        None => verify_v2(seen, secrets),
    }
}

fn verify_v3(
    seen: &Wire,
    auth: &str,
    secrets: Secrets<'_>,
    check_time: bool,
) -> Result<Verified, Refusal> {
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
            _ => return Err(format!("unknown Authorization part {k}").into()),
        }
    }
    let secret = secrets(credential)
        .ok_or_else(|| Refusal::UnknownKey(format!("unknown AccessKeyId {credential}")))?;
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
            return Err(format!("{required} is not signed").into());
        }
    }
    let body_hash = hex_sha256(&seen.body);
    if seen.header("x-acs-content-sha256") != Some(body_hash.as_str()) {
        return Err(Refusal::Mismatch(
            "x-acs-content-sha256 does not match the body".into(),
        ));
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
        return Err(Refusal::Mismatch(format!(
            "signature mismatch; canonical request was {canonical:?}"
        )));
    }
    let nonce = seen
        .header("x-acs-signature-nonce")
        .unwrap_or("")
        .to_string();
    Ok(Verified {
        scheme: SignatureScheme::V3,
        key_id: credential.to_string(),
        nonce: Some(nonce),
    })
}

fn verify_v2(seen: &Wire, secrets: Secrets<'_>) -> Result<Verified, Refusal> {
    let signature = seen.param("Signature").ok_or("no Signature")?.to_string();
    let key_id = seen.param("AccessKeyId").ok_or("no AccessKeyId")?;
    let secret = secrets(key_id)
        .ok_or_else(|| Refusal::UnknownKey(format!("unknown AccessKeyId {key_id}")))?;
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
    // HMAC takes a key of any length: the error case cannot happen.
    let expected = match Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()) {
        Ok(mut mac) => {
            mac.update(to_sign.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    if expected != signature {
        return Err(Refusal::Mismatch(format!(
            "signature mismatch; string to sign was {to_sign:?}"
        )));
    }
    let nonce = seen.param("SignatureNonce").ok_or("no SignatureNonce")?;
    Ok(Verified {
        scheme: SignatureScheme::V2,
        key_id: key_id.to_string(),
        nonce: Some(nonce.to_string()),
    })
}

/// Huawei SDK-HMAC-SHA256.
pub(super) fn verify_huawei(seen: &Wire, secrets: Secrets<'_>) -> Result<Verified, Refusal> {
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
            _ => return Err(format!("unknown Authorization part {k}").into()),
        }
    }
    let sk = secrets(access).ok_or_else(|| Refusal::UnknownKey(format!("unknown AK {access}")))?;
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
        return Err(Refusal::Mismatch(format!(
            "verify aksk signature fail; canonical request was {canonical:?}"
        )));
    }
    Ok(Verified {
        scheme: SignatureScheme::Huawei,
        key_id: access.to_string(),
        nonce: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn verifier_accepts_the_spec_golden() {
        let secrets =
            |id: &str| (id == "YourAccessKeyId").then(|| "YourAccessKeySecret".to_string());
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
        let seen = Wire {
            method: "POST".into(),
            path: "/".into(),
            query: decode_query(raw),
            headers,
            body: Bytes::new(),
        };
        let auth = "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=accept;host;user-agent;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature=6b0dd9eb98dbc16f33d645e5e34c2985aae2059bc4b223b54e8d01f628f62b34";
        // The golden's date is old: check everything but freshness, then that.
        assert_eq!(
            verify_v3(&seen, auth, &secrets, false),
            Ok(Verified {
                scheme: SignatureScheme::V3,
                key_id: "YourAccessKeyId".into(),
                nonce: Some("3156853299f313e23d1673dc12e1703d".to_string())
            })
        );
        let err = verify_v3(&seen, auth, &secrets, true).expect_err("stale");
        assert!(
            matches!(&err, Refusal::Stale(t) if t.contains("15 minutes")),
            "{err:?}"
        );
        assert!(matches!(
            verify_v3(&seen, auth, &|_: &str| None, false),
            Err(Refusal::UnknownKey(_))
        ));
        let tampered = auth.replace("Signature=6b", "Signature=7b");
        assert!(matches!(
            verify_v3(&seen, &tampered, &secrets, false),
            Err(Refusal::Mismatch(_))
        ));
        assert_eq!(parse_date("2023-10-26T10:22:32Z"), Some(1_698_315_752));
        assert_eq!(unescape("ok+note%20x"), "ok note x");
    }
}
