//! Verifying the `Signature` ROS adds when `HttpConfig.SignKey` is set.
//!
//! ROS documents the scheme only loosely (spec §4.3): it adds
//! `"Signature": {"Date": "yyyy-MM-ddTHH:mm:ssZ", "Value": "<40 hex>"}` to the
//! body, and the value is a SHA1 "calculated" over these lines joined by `\n`:
//!
//! 1. `POST`
//! 2. the content type (`HttpConfig.ContentType`, default `application/json`)
//! 3. the MD5 of the body without `Signature`, as JSON with sorted keys and
//!    ASCII escapes
//! 4. the Signature's `Date`
//! 5. the `HttpConfig.Headers`, one `key:value` per header, sorted by key
//! 6. the URL of the ServiceToken (`https://abc.com` for `web:https://abc.com`)
//!
//! **What is not confirmed**, and therefore a [`Reading`] you can change:
//! whether "sha1" means HMAC-SHA1 keyed with the SignKey or a plain SHA1 over
//! a text that includes the key ([`DigestKind`]); whether the MD5 is hex or
//! base64 ([`Md5Encoding`]); the JSON separators ([`JsonStyle`]; Python's
//! `json.dumps(sort_keys=True, ensure_ascii=True)` defaults `", "` and `": "`
//! are the likely choice, ROS being written in Python); and whether no headers
//! make an empty line 5 or no line at all ([`HeaderLines`]). The default,
//! [`Reading::default`], is the most likely one: HMAC-SHA1, hex MD5, Python's
//! default separators, an empty line 5. No real ROS request has been checked
//! against it yet: if verification fails for genuine ROS traffic, try the
//! other readings (`--sign-reading`) before turning verification off.
//!
//! Verification also refuses a `Date` more than the allowed skew away from
//! now, and a `Value` already seen within that window (a replay). The memory
//! of seen values is bounded; when it is full, the oldest entry goes first.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use md5::Md5;
use serde_json::Value;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::sensitive::Sensitive;

/// Default tolerance between the Signature's `Date` and the local clock.
/// Five minutes, as common request-signing schemes use: wide enough for
/// ordinary clock drift and ROS's own queueing, short enough that a captured
/// request soon goes stale.
pub const DEFAULT_SIGN_SKEW: Duration = Duration::from_secs(300);

/// Default number of signature values remembered for replay detection. ROS
/// sends a handful of requests per stack operation; ten thousand within the
/// skew window is far above any real rate and costs under 1 MiB.
pub const DEFAULT_REPLAY_CAPACITY: usize = 10_000;

/// The content type line when none is configured.
pub const DEFAULT_SIGN_CONTENT_TYPE: &str = "application/json";

/// How the digest is computed from the string to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestKind {
    /// `hex(HMAC-SHA1(key = SignKey, message = string to sign))`.
    #[default]
    HmacSha1,
    /// `hex(SHA1(string to sign + "\n" + SignKey))`: a plain SHA1 with the
    /// key as a seventh line.
    Sha1KeyLast,
}

/// How line 3's MD5 is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Md5Encoding {
    /// 32 lowercase hex digits.
    #[default]
    Hex,
    /// Standard base64 of the 16 bytes (as HTTP's `Content-MD5`).
    Base64,
}

/// The JSON text the MD5 is taken over. Both sort keys and escape every
/// character outside printable ASCII as `\uXXXX`, as Python's
/// `json.dumps(..., sort_keys=True, ensure_ascii=True)` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsonStyle {
    /// Python's default separators: `", "` and `": "`.
    #[default]
    Python,
    /// Compact separators: `","` and `":"`.
    Compact,
}

/// What line 5 looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderLines {
    /// The headers joined by `\n` make one element: an empty line when
    /// there are none, so there are always six lines.
    #[default]
    Block,
    /// One line per header and no line at all when there are none.
    Lines,
}

/// One reading of ROS's loosely documented signature scheme.
///
/// Written as `digest/md5/json/headers`, for example the default
/// `hmac-sha1/hex/python/block` or `sha1/base64/compact/lines`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// HMAC or plain SHA1.
    pub digest: DigestKind,
    /// Hex or base64 MD5.
    pub md5: Md5Encoding,
    /// JSON separators.
    pub json: JsonStyle,
    /// The header line(s).
    pub headers: HeaderLines,
}

impl FromStr for Reading {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<String> = text
            .split('/')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        let [digest, md5, json, headers] = parts.as_slice() else {
            return Err(format!(
                "`{text}` is not DIGEST/MD5/JSON/HEADERS, such as hmac-sha1/hex/python/block"
            ));
        };
        Ok(Reading {
            digest: match digest.as_str() {
                "hmac-sha1" | "hmac" => DigestKind::HmacSha1,
                "sha1" => DigestKind::Sha1KeyLast,
                other => return Err(format!("digest `{other}` is not hmac-sha1 or sha1")),
            },
            md5: match md5.as_str() {
                "hex" => Md5Encoding::Hex,
                "base64" => Md5Encoding::Base64,
                other => return Err(format!("md5 encoding `{other}` is not hex or base64")),
            },
            json: match json.as_str() {
                "python" => JsonStyle::Python,
                "compact" => JsonStyle::Compact,
                other => return Err(format!("json style `{other}` is not python or compact")),
            },
            headers: match headers.as_str() {
                "block" => HeaderLines::Block,
                "lines" => HeaderLines::Lines,
                other => return Err(format!("header layout `{other}` is not block or lines")),
            },
        })
    }
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = match self.digest {
            DigestKind::HmacSha1 => "hmac-sha1",
            DigestKind::Sha1KeyLast => "sha1",
        };
        let md5 = match self.md5 {
            Md5Encoding::Hex => "hex",
            Md5Encoding::Base64 => "base64",
        };
        let json = match self.json {
            JsonStyle::Python => "python",
            JsonStyle::Compact => "compact",
        };
        let headers = match self.headers {
            HeaderLines::Block => "block",
            HeaderLines::Lines => "lines",
        };
        write!(f, "{digest}/{md5}/{json}/{headers}")
    }
}

/// Everything needed to compute a signature: the key and what ROS was told
/// in `HttpConfig`. `Debug` shows neither the key nor header values.
#[derive(Clone)]
pub struct SignatureScheme {
    /// `HttpConfig.SignKey`.
    pub key: Sensitive<String>,
    /// The URL part of the ServiceToken, exactly as in the template.
    pub url: String,
    /// `HttpConfig.ContentType`.
    pub content_type: String,
    /// `HttpConfig.Headers`, in any order.
    pub headers: Vec<(String, String)>,
    /// How to read the loose parts of the scheme.
    pub reading: Reading,
}

impl fmt::Debug for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureScheme")
            .field("key", &self.key)
            .field("url", &self.url)
            .field("content_type", &self.content_type)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("reading", &self.reading)
            .finish()
    }
}

impl SignatureScheme {
    /// A scheme with the default content type, no headers and the default reading.
    pub fn new(key: impl Into<String>, url: impl Into<String>) -> Self {
        SignatureScheme {
            key: Sensitive::new(key.into()),
            url: url.into(),
            content_type: DEFAULT_SIGN_CONTENT_TYPE.to_string(),
            headers: Vec::new(),
            reading: Reading::default(),
        }
    }

    /// The text that is hashed, for `data` (the body without `Signature`).
    pub fn string_to_sign(&self, data: &Value, date: &str) -> String {
        let json = canonical_json(data, self.reading.json);
        let digest = Md5::digest(json.as_bytes());
        let md5 = match self.reading.md5 {
            Md5Encoding::Hex => hex::encode(digest),
            Md5Encoding::Base64 => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(digest)
            }
        };
        let mut headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        headers.sort();
        let mut lines = vec![
            "POST".to_string(),
            self.content_type.clone(),
            md5,
            date.to_string(),
        ];
        match self.reading.headers {
            HeaderLines::Block => lines.push(headers.join("\n")),
            HeaderLines::Lines => lines.extend(headers),
        }
        lines.push(self.url.clone());
        lines.join("\n")
    }

    /// The signature value for `data` (the body without `Signature`) at `date`.
    pub fn sign(&self, data: &Value, date: &str) -> String {
        let text = self.string_to_sign(data, date);
        let key = self.key.expose().as_bytes();
        match self.reading.digest {
            DigestKind::HmacSha1 => {
                // HMAC takes keys of any length; the error arm cannot happen.
                match <Hmac<Sha1> as Mac>::new_from_slice(key) {
                    Ok(mut mac) => {
                        mac.update(text.as_bytes());
                        hex::encode(mac.finalize().into_bytes())
                    }
                    Err(_) => String::new(),
                }
            }
            DigestKind::Sha1KeyLast => {
                let mut hasher = Sha1::new();
                hasher.update(text.as_bytes());
                hasher.update(b"\n");
                hasher.update(key);
                hex::encode(hasher.finalize())
            }
        }
    }

    /// `body` with a `Signature` object added, as ROS would send it.
    pub fn signed_body(&self, body: &Value, date: &str) -> Value {
        let mut data = body.clone();
        if let Value::Object(map) = &mut data {
            map.remove("Signature");
        }
        let value = self.sign(&data, date);
        if let Value::Object(map) = &mut data {
            map.insert(
                "Signature".into(),
                serde_json::json!({"Date": date, "Value": value}),
            );
        }
        data
    }
}

/// Why a signature was refused. The reasons name no secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The body has no `Signature` object.
    Missing,
    /// `Signature` is not `{"Date": string, "Value": string}`, or the body is
    /// not a JSON object.
    Malformed,
    /// `Date` is not `yyyy-MM-ddTHH:mm:ssZ`.
    BadDate,
    /// `Date` is further from now than the allowed skew.
    Stale,
    /// The value does not match the body.
    Mismatch,
    /// The same value was already accepted within the window.
    Replayed,
}

impl SignatureError {
    /// A short reason for the 401 body.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing signature: the body has no Signature object",
            SignatureError::Malformed => "malformed signature: expected Signature {Date, Value}",
            SignatureError::BadDate => "malformed signature date: expected yyyy-MM-ddTHH:mm:ssZ",
            SignatureError::Stale => "stale signature: its Date is outside the allowed clock skew",
            SignatureError::Mismatch => "signature does not match the request",
            SignatureError::Replayed => "replayed signature: this request was already received",
        }
    }
}

/// Verifies signed requests and remembers accepted values.
#[derive(Debug)]
pub struct Verifier {
    scheme: SignatureScheme,
    skew: Duration,
    seen: Mutex<ReplayCache>,
}

impl Verifier {
    /// A verifier for `scheme` with a skew window and a replay memory bound.
    pub fn new(scheme: SignatureScheme, skew: Duration, replay_capacity: usize) -> Self {
        Verifier {
            scheme,
            skew,
            seen: Mutex::new(ReplayCache::new(replay_capacity)),
        }
    }

    /// The scheme this verifier checks against.
    pub fn scheme(&self) -> &SignatureScheme {
        &self.scheme
    }

    /// Check the `Signature` of a parsed body at time `now`.
    ///
    /// # Errors
    /// A [`SignatureError`] saying what is wrong. A value is remembered only
    /// when everything else checks out, so forgeries cannot fill the memory.
    pub fn verify(&self, body: &Value, now: SystemTime) -> Result<(), SignatureError> {
        let Value::Object(map) = body else {
            return Err(SignatureError::Malformed);
        };
        let signature = map.get("Signature").ok_or(SignatureError::Missing)?;
        let (Some(Value::String(date)), Some(Value::String(value))) =
            (signature.get("Date"), signature.get("Value"))
        else {
            return Err(SignatureError::Malformed);
        };
        let signed_at = parse_date(date).ok_or(SignatureError::BadDate)?;
        let now_s = unix_seconds(now);
        if now_s.abs_diff(signed_at) > self.skew.as_secs() {
            return Err(SignatureError::Stale);
        }
        let mut data = map.clone();
        data.remove("Signature");
        let expected = self.scheme.sign(&Value::Object(data), date);
        let given = value.trim().to_ascii_lowercase();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(SignatureError::Mismatch);
        }
        // Remember it until it can no longer pass the skew check.
        let forget_at =
            signed_at.saturating_add(i64::try_from(self.skew.as_secs()).unwrap_or(i64::MAX));
        let mut seen = crate::sync::lock(&self.seen);
        if seen.check_and_insert(given, now_s, forget_at) {
            Ok(())
        } else {
            Err(SignatureError::Replayed)
        }
    }
}

/// Accepted signature values until they expire; bounded.
#[derive(Debug)]
struct ReplayCache {
    capacity: usize,
    expiry: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl ReplayCache {
    fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity: capacity.max(1),
            expiry: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// `false` when `value` is remembered and not expired; otherwise
    /// remember it until `forget_at` and return `true`.
    fn check_and_insert(&mut self, value: String, now: i64, forget_at: i64) -> bool {
        // Drop expired entries from the front (insertion order is close to
        // expiry order; stragglers are dropped when they reach the front).
        while let Some(&(at, _)) = self.order.front() {
            if at >= now && self.order.len() < self.capacity {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                if self.expiry.get(&old).is_some_and(|e| *e <= at) {
                    self.expiry.remove(&old);
                }
            }
        }
        if self.expiry.get(&value).is_some_and(|e| *e >= now) {
            return false;
        }
        self.expiry.insert(value.clone(), forget_at);
        self.order.push_back((forget_at, value));
        true
    }
}

/// Seconds since the Unix epoch; negative before it.
fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Parse ROS's Signature date, `yyyy-MM-ddTHH:mm:ssZ`, into Unix seconds.
pub fn parse_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Format a time as ROS's Signature date, `yyyy-MM-ddTHH:mm:ssZ`.
pub fn format_date(time: SystemTime) -> String {
    let secs = unix_seconds(time);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `value` as Python's `json.dumps(value, sort_keys=True, ensure_ascii=True)`
/// writes it, with the separators of `style`.
pub fn canonical_json(value: &Value, style: JsonStyle) -> String {
    let mut out = String::new();
    write_json(&mut out, value, style);
    out
}

fn write_json(out: &mut String, value: &Value, style: JsonStyle) {
    let (item_sep, key_sep) = match style {
        JsonStyle::Python => (", ", ": "),
        JsonStyle::Compact => (",", ":"),
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else if let Some(f) = n.as_f64() {
                out.push_str(&python_float(f));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                write_json(out, item, style);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                write_string(out, key);
                out.push_str(key_sep);
                write_json(out, item, style);
            }
            out.push('}');
        }
    }
}

/// A JSON string with Python's `ensure_ascii` escapes: everything outside
/// `' '..='~'` becomes `\uXXXX` (lowercase hex, surrogate pairs above U+FFFF).
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it: the shortest round-trip digits,
/// fixed notation for exponents -4..16, else `d.ddde+XX`.
fn python_float(f: f64) -> String {
    // Rust's `{:e}` gives the shortest round-trip digits too: `1.5e-5`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        let body = if exp >= 0 {
            let int_len = usize::try_from(exp).unwrap_or(0) + 1;
            if digits.len() <= int_len {
                format!("{digits:0<int_len$}.0")
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            let zeros = usize::try_from(-exp - 1).unwrap_or(0);
            format!("0.{}{digits}", "0".repeat(zeros))
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59Z",
            "2038-01-19T03:14:08Z",
        ] {
            let secs = parse_date(text).expect("valid date");
            assert_eq!(
                format_date(UNIX_EPOCH + Duration::from_secs(secs as u64)),
                text
            );
        }
        assert_eq!(parse_date("2024-05-06T07:08:09Z"), Some(1_714_979_289));
        for bad in [
            "2024-05-06 07:08:09Z",
            "2024-13-06T07:08:09Z",
            "2024-05-06T07:08:09",
            "+024-05-06T07:08:09Z",
            "2024-05-06T07:08:09Zx",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn floats_print_like_python_repr() {
        // Expected values: python3 -c 'print(repr(x))'.
        for (f, py) in [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (-2.25, "-2.25"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789012345.6, "123456789012345.6"),
            (1.2345e300, "1.2345e+300"),
            (100.0, "100.0"),
        ] {
            assert_eq!(python_float(f), py, "{f}");
        }
    }

    #[test]
    fn canonical_json_matches_python() {
        // python3 -c 'import json; print(json.dumps({"b": ["\u00e9", 1.5, None], "a": {"\x7f": True}}, sort_keys=True, ensure_ascii=True))'
        let value = serde_json::json!({"b": ["é", 1.5, null], "a": {"\u{7f}": true}});
        assert_eq!(
            canonical_json(&value, JsonStyle::Python),
            r#"{"a": {"\u007f": true}, "b": ["\u00e9", 1.5, null]}"#
        );
        assert_eq!(
            canonical_json(&value, JsonStyle::Compact),
            r#"{"a":{"\u007f":true},"b":["\u00e9",1.5,null]}"#
        );
    }

    #[test]
    fn readings_parse_and_print() {
        assert_eq!(Reading::default().to_string(), "hmac-sha1/hex/python/block");
        let r: Reading = "sha1/base64/compact/lines".parse().expect("valid");
        assert_eq!(r.to_string(), "sha1/base64/compact/lines");
        assert!("sha256/hex/python/block".parse::<Reading>().is_err());
        assert!("hmac-sha1/hex".parse::<Reading>().is_err());
    }

    #[test]
    fn replay_memory_is_bounded() {
        let mut cache = ReplayCache::new(2);
        assert!(cache.check_and_insert("a".into(), 0, 100));
        assert!(!cache.check_and_insert("a".into(), 1, 100));
        assert!(cache.check_and_insert("b".into(), 1, 100));
        assert!(cache.check_and_insert("c".into(), 1, 100));
        assert!(cache.expiry.len() <= 2);
        // Expired values are forgotten.
        assert!(cache.check_and_insert("c".into(), 101, 200));
    }
}
