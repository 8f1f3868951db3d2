//! SMQ's V2 request signature: `Authorization: MNS AccessKeyId:Signature`.
//!
//! ```text
//! Signature = base64(HMAC-SHA1(secret,
//!     VERB + "\n" + Content-MD5 + "\n" + Content-Type + "\n" + Date + "\n"
//!     + CanonicalizedMNSHeaders + CanonicalizedResource))
//! ```
//!
//! - A missing Content-MD5 or Content-Type is an empty line.
//! - CanonicalizedMNSHeaders: every `x-mns-*` header, lower-cased, sorted,
//!   each written `name:value\n`.
//! - CanonicalizedResource: the path and query **exactly as sent**. A receipt
//!   handle (which holds `+`, `/` and `=`) is escaped in the query and signed
//!   in that escaped form, as the Go SDK does.
//! - The STS token travels in `security-token`, which has no `x-mns-` prefix
//!   and so is not signed (the Go, Python and Java SDKs all do this).
//! - Content-MD5 is `base64(hex(md5(body)))`, not RFC 1864's
//!   `base64(md5(body))`: every SDK sends it that way.
//!
//! The same string-to-sign, with RSA-SHA1 instead of HMAC, signs a topic
//! push; see [`crate::push`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HeaderName, HeaderValue};
use md5::{Digest, Md5};
use sha1::Sha1;

use crate::credentials::Credentials;

/// The API version every request names.
pub const API_VERSION: &str = "2015-06-06";
/// The header that names it.
pub const VERSION_HEADER: &str = "x-mns-version";
/// The header that carries an STS token (unsigned).
pub const SECURITY_TOKEN_HEADER: &str = "security-token";
/// The content type the Python and Java SDKs send.
pub const XML_CONTENT_TYPE: &str = "text/xml;charset=UTF-8";
/// The Content-MD5 header (not among `http`'s constants).
pub const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");
/// The prefix of the signed headers.
pub const MNS_HEADER_PREFIX: &str = "x-mns-";
/// The scheme word in `Authorization`.
pub const AUTHORIZATION_SCHEME: &str = "MNS";

type HmacSha1 = Hmac<Sha1>;

/// The string-to-sign of a request: method, then `Content-MD5`,
/// `Content-Type` and `Date` from `headers` (empty when absent), then the
/// sorted `x-mns-*` headers, then `resource` (path and query as sent).
pub fn string_to_sign(method: &str, headers: &HeaderMap, resource: &str) -> String {
    let mut out = String::with_capacity(128 + resource.len());
    out.push_str(method);
    out.push('\n');
    for name in [CONTENT_MD5, CONTENT_TYPE, DATE] {
        if let Some(value) = headers.get(&name) {
            out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        out.push('\n');
    }
    let mut mns: Vec<(&str, std::borrow::Cow<'_, str>)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(MNS_HEADER_PREFIX))
        .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes())))
        .collect();
    // HeaderMap names are lower-case already; a repeated header keeps its
    // first value, as Go's `Header.Get` does.
    mns.sort_by(|a, b| a.0.cmp(b.0));
    mns.dedup_by(|later, earlier| later.0 == earlier.0);
    for (name, value) in mns {
        out.push_str(name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out.push_str(resource);
    out
}

/// `base64(HMAC-SHA1(secret, string_to_sign))`.
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    STANDARD.encode(mac(secret, string_to_sign).finalize().into_bytes())
}

/// Whether `signature` (base64) is `sign(secret, string_to_sign)`, compared
/// in constant time.
pub fn verify(secret: &str, string_to_sign: &str, signature: &str) -> bool {
    let Ok(raw) = STANDARD.decode(signature) else {
        return false;
    };
    mac(secret, string_to_sign).verify_slice(&raw).is_ok()
}

fn mac(secret: &str, string_to_sign: &str) -> HmacSha1 {
    // HMAC accepts a key of any length, so this cannot fail.
    let mut mac = <HmacSha1 as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(string_to_sign.as_bytes());
    mac
}

/// The `Authorization` value: `MNS <AccessKeyId>:<Signature>`.
pub fn authorization(access_key_id: &str, signature: &str) -> String {
    format!("{AUTHORIZATION_SCHEME} {access_key_id}:{signature}")
}

/// Split an `Authorization` value into access key id and signature.
pub fn parse_authorization(value: &str) -> Option<(&str, &str)> {
    let rest = value
        .strip_prefix(AUTHORIZATION_SCHEME)?
        .strip_prefix(' ')?;
    let (id, signature) = rest.split_once(':')?;
    (!id.is_empty() && !signature.is_empty()).then_some((id, signature))
}

/// SMQ's Content-MD5: `base64(lower-hex(md5(body)))`.
pub fn content_md5(body: &[u8]) -> String {
    STANDARD.encode(hex::encode(Md5::digest(body)))
}

/// Whether a `Content-MD5` header value matches `body`. Accepts SMQ's
/// `base64(hex(md5))`, RFC 1864's `base64(md5)` and plain hex (which topic
/// pushes have been seen to carry), in any letter case for the hex.
pub fn content_md5_matches(value: &str, body: &[u8]) -> bool {
    let digest = Md5::digest(body);
    let hex_digest = hex::encode(digest);
    if value.eq_ignore_ascii_case(&hex_digest) {
        return true;
    }
    match STANDARD.decode(value.trim()) {
        Ok(raw) if raw.len() == 16 => raw.as_slice() == digest.as_slice(),
        Ok(raw) => raw.eq_ignore_ascii_case(hex_digest.as_bytes()),
        Err(_) => false,
    }
}

/// Upper-case hex MD5, the form of `MessageBodyMD5` and `MessageMD5`.
pub fn message_md5(body: &[u8]) -> String {
    hex::encode_upper(Md5::digest(body))
}

/// Sign a request in place: set `x-mns-version` (unless present),
/// `security-token` (when the credentials carry one) and `Authorization`.
/// `headers` must already hold `Date` and, for a body, `Content-MD5` and
/// `Content-Type`; `resource` is the path and query as they will be sent.
pub fn sign_request(
    credentials: &Credentials,
    method: &str,
    resource: &str,
    headers: &mut HeaderMap,
) {
    if !headers.contains_key(VERSION_HEADER) {
        headers.insert(
            HeaderName::from_static(VERSION_HEADER),
            HeaderValue::from_static(API_VERSION),
        );
    }
    if let Some(token) = credentials.security_token() {
        // A token with a byte no header may carry cannot be sent; SMQ will
        // answer with an authentication error that names the problem.
        if let Ok(value) = HeaderValue::from_str(token) {
            headers.insert(HeaderName::from_static(SECURITY_TOKEN_HEADER), value);
        }
    }
    let signature = sign(
        credentials.access_key_secret(),
        &string_to_sign(method, headers, resource),
    );
    let value = authorization(credentials.access_key_id(), &signature);
    match HeaderValue::from_str(&value) {
        Ok(mut value) => {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Err(_) => {
            // An access key id with a control character: leave the header
            // out and let SMQ answer MissingAuthorizationHeader.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn documented_vector_signs_to_the_documented_value() {
        // The "how do I obtain the signature string" page: access key
        // `TestAccessID` / `TestAccessSecret`; the page masks the end as
        // `uwx3yeWoILzgmvesW0BQSgfM****`.
        let h = headers(&[
            ("Date", "Thu, 09 Jul 2015 03:01:34 GMT"),
            ("x-mns-version", "2015-06-06"),
        ]);
        let s = string_to_sign("GET", &h, "/MyQueue");
        assert_eq!(
            s,
            "GET\n\n\nThu, 09 Jul 2015 03:01:34 GMT\nx-mns-version:2015-06-06\n/MyQueue"
        );
        let signature = sign("TestAccessSecret", &s);
        assert!(
            signature.starts_with("uwx3yeWoILzgmvesW0BQSgfM"),
            "{signature}"
        );
        assert_eq!(signature, "uwx3yeWoILzgmvesW0BQSgfM7b8=");
        assert!(verify("TestAccessSecret", &s, &signature));
    }

    #[test]
    fn queue_resource_vector_matches() {
        let h = headers(&[
            ("Date", "Thu, 09 Jul 2015 03:01:34 GMT"),
            ("x-mns-version", "2015-06-06"),
        ]);
        let s = string_to_sign("GET", &h, "/queues/MyQueue");
        assert_eq!(sign("TestAccessSecret", &s), "7dRbIEYuu1JA8vImPPmdNRE5hNg=");
    }

    #[test]
    fn vectors_from_another_client_match() {
        // Cross-checks from aliyun-mns-rs, whose client talks to the real
        // service: Content-MD5 and Content-Type are on their own lines.
        let post = headers(&[
            (
                "Content-MD5",
                "YTM5OGY1YmYxODRkY2M0YmM1NjU5OGYzYTJkMDMyZGQ=",
            ),
            ("Content-Type", "application/xml"),
            ("Date", "Thu, 02 Feb 2023 12:27:22 GMT"),
            ("x-mns-version", "2015-06-06"),
        ]);
        let s = string_to_sign("POST", &post, "/queues/market-process-log/messages");
        assert_eq!(sign("t5I8e", &s), "6nhdhorU7xdV6x+P1Tmzyi6A6KY=");

        let get = headers(&[
            ("Content-MD5", &content_md5(b"")),
            ("Content-Type", "application/xml"),
            ("Date", "Wed, 08 Feb 2023 09:36:03 GMT"),
            ("x-mns-version", "2015-06-06"),
        ]);
        let s = string_to_sign(
            "GET",
            &get,
            "/queues/market-process-log/messages?waitseconds=30",
        );
        assert_eq!(sign("t5I8e", &s), "zVO3Buq0YfEW1yLI0SXOaO6guq8=");
    }

    #[test]
    fn content_md5_is_base64_of_the_hex_digest() {
        assert_eq!(
            content_md5(b""),
            "ZDQxZDhjZDk4ZjAwYjIwNGU5ODAwOTk4ZWNmODQyN2U="
        );
        let body = b"<Message/>";
        let value = content_md5(body);
        assert!(content_md5_matches(&value, body));
        assert!(content_md5_matches(
            &hex::encode_upper(Md5::digest(body)),
            body
        ));
        assert!(content_md5_matches(
            &STANDARD.encode(Md5::digest(body)),
            body
        ));
        assert!(!content_md5_matches(&value, b"<Message>changed</Message>"));
        assert!(!content_md5_matches("not base64 at all!", body));
    }

    #[test]
    fn mns_headers_are_sorted_and_other_headers_ignored() {
        let h = headers(&[
            ("x-mns-version", "2015-06-06"),
            ("X-MNS-Date", "d"),
            ("security-token", "tok"),
            ("Host", "1.mns.cn-hangzhou.aliyuncs.com"),
            ("Content-Type", XML_CONTENT_TYPE),
            ("Date", "Thu, 09 Jul 2015 03:01:34 GMT"),
        ]);
        assert_eq!(
            string_to_sign("DELETE", &h, "/queues/q/messages?ReceiptHandle=a%2Bb"),
            "DELETE\n\ntext/xml;charset=UTF-8\nThu, 09 Jul 2015 03:01:34 GMT\nx-mns-date:d\nx-mns-version:2015-06-06\n/queues/q/messages?ReceiptHandle=a%2Bb"
        );
    }

    #[test]
    fn security_token_is_sent_but_not_signed() {
        let creds = Credentials::new("id", "secret").with_security_token("sts-token");
        let mut h = headers(&[("Date", "Thu, 09 Jul 2015 03:01:34 GMT")]);
        sign_request(&creds, "GET", "/queues/q/messages", &mut h);
        assert_eq!(h.get(SECURITY_TOKEN_HEADER).expect("token"), "sts-token");
        let auth = h.get(AUTHORIZATION).expect("auth").to_str().expect("ascii");
        let (id, signature) = parse_authorization(auth).expect("MNS id:sig");
        assert_eq!(id, "id");
        // Removing the token does not change the string-to-sign.
        let mut without = h.clone();
        without.remove(SECURITY_TOKEN_HEADER);
        assert!(verify(
            "secret",
            &string_to_sign("GET", &without, "/queues/q/messages"),
            signature
        ));
    }

    #[test]
    fn a_changed_resource_or_secret_does_not_verify() {
        let creds = Credentials::new("id", "secret");
        let mut h = headers(&[("Date", "Thu, 09 Jul 2015 03:01:34 GMT")]);
        sign_request(
            &creds,
            "DELETE",
            "/queues/q/messages?ReceiptHandle=a%2Bb",
            &mut h,
        );
        let auth = h.get(AUTHORIZATION).expect("auth").to_str().expect("ascii");
        let (_, signature) = parse_authorization(auth).expect("MNS id:sig");
        let signed = string_to_sign("DELETE", &h, "/queues/q/messages?ReceiptHandle=a%2Bb");
        assert!(verify("secret", &signed, signature));
        // The unescaped handle is a different resource.
        assert!(!verify(
            "secret",
            &string_to_sign("DELETE", &h, "/queues/q/messages?ReceiptHandle=a+b"),
            signature
        ));
        assert!(!verify("other", &signed, signature));
        assert!(!verify("secret", &signed, "bm90IGl0"));
    }

    #[test]
    fn authorization_parses_only_the_mns_scheme() {
        assert_eq!(parse_authorization("MNS id:c2ln"), Some(("id", "c2ln")));
        assert_eq!(parse_authorization("MNS4-HMAC-SHA256 Credential=x"), None);
        assert_eq!(parse_authorization("MNS :sig"), None);
        assert_eq!(parse_authorization("MNS id"), None);
    }
}
