//! Alibaba Cloud signature V3, `ACS3-HMAC-SHA256`.
//!
//! ```text
//! CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQueryString \n
//!                    CanonicalHeaders \n SignedHeaders \n HashedRequestPayload
//! StringToSign     = "ACS3-HMAC-SHA256\n" + hex(sha256(CanonicalRequest))
//! Signature        = hex(hmac_sha256(AccessKeySecret, StringToSign))
//! Authorization    = ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<names>,Signature=<sig>
//! ```
//!
//! The functions sign every header they are given; the client passes
//! `host`, `content-type` (when present) and all `x-acs-*` headers, as the
//! Java and Go SDKs do (see [`is_signed_header`]).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::encode::{canonical_query, percent_encode};

/// The algorithm name.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// SHA-256 of the empty body, in lowercase hex.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a V3 signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// HTTP method, as sent (`POST`).
    pub method: &'a str,
    /// The path; empty means `/`. RPC calls always use `/`.
    pub path: &'a str,
    /// Query parameters, unencoded.
    pub query: &'a [(String, String)],
    /// The headers to sign, unencoded; names in any case.
    pub headers: &'a [(String, String)],
    /// Lowercase hex SHA-256 of the body (`x-acs-content-sha256`).
    pub payload_sha256: &'a str,
}

/// Whether the client signs a header of this (lowercase) name.
pub fn is_signed_header(name: &str) -> bool {
    name == "host" || name == "content-type" || name.starts_with("x-acs-")
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The canonical URI: `/` for an empty path, else each segment encoded.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Canonical headers (`name:value\n` each) and the signed-header list.
/// Names are lowercased; values are trimmed; repeated names are merged with
/// their values sorted and comma-joined.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut merged: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, value) in headers {
        merged
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.trim().to_string());
    }
    let mut canonical = String::new();
    for (name, values) in &mut merged {
        values.sort();
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    let signed = merged.keys().cloned().collect::<Vec<_>>().join(";");
    (canonical, signed)
}

/// The canonical request and the signed-header list.
pub fn canonical_request(input: &SignInput<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(input.headers);
    let request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        canonical_uri(input.path),
        canonical_query(input.query),
        headers,
        signed,
        input.payload_sha256
    );
    (request, signed)
}

/// The string to sign for a canonical request.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The `Authorization` header value.
pub fn authorization(input: &SignInput<'_>, access_key_id: &str, secret: &str) -> String {
    let (request, signed) = canonical_request(input);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(string_to_sign(&request).as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    format!("{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// V3-A, the "fixed parameter values" example of Alibaba's V3 doc.
    #[test]
    fn reproduces_the_doc_vector() {
        let query = pairs(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = pairs(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-content-sha256", EMPTY_PAYLOAD_SHA256),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2014-05-26"),
        ]);
        let input = SignInput {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        let (request, _) = canonical_request(&input);
        assert_eq!(
            string_to_sign(&request),
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            authorization(&input, "YourAccessKeyId", "YourAccessKeySecret"),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    fn sdk_unit_input<'a>(
        method: &'a str,
        query: &'a [(String, String)],
        headers: &'a [(String, String)],
    ) -> SignInput<'a> {
        SignInput {
            method,
            path: "",
            query,
            headers,
            payload_sha256: "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23",
        }
    }

    /// V3-B (Python SDK unit test) and V3-C (Go SDK unit test, empty method).
    #[test]
    fn reproduces_the_sdk_unit_vectors() {
        let query = pairs(&[("test", "ok"), ("empty", "")]);
        let headers = pairs(&[("x-acs-test", "http"), ("x-acs-TEST", "https")]);
        let input = sdk_unit_input("GET", &query, &headers);
        assert_eq!(
            canonical_request(&input).0,
            "GET\n/\nempty=&test=ok\nx-acs-test:http,https\n\nx-acs-test\n55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23"
        );
        assert_eq!(
            authorization(&input, "acesskey", "secret"),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1"
        );
        let input = sdk_unit_input("", &query, &headers);
        assert_eq!(
            authorization(&input, "acesskey", "secret"),
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=4ab59fffe3c5738ff8a2729f90cc04fe18b02a4b15b2102cbaf92f9ff3df2ea3"
        );
    }

    /// The SignalResource golden captured from the official SDK (STS, the SDK
    /// signs `accept` and `user-agent` too).
    #[test]
    fn reproduces_the_signal_resource_golden() {
        let query = pairs(&[
            ("ClientToken", "123e4567-e89b-12d3-a456-426655440000"),
            ("LogicalResourceId", "WebServer"),
            ("RegionId", "cn-hangzhou"),
            ("StackId", "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff"),
            ("Status", "SUCCESS"),
            ("UniqueId", "27c7347b-352a-4377-accf-63d361c1ffff"),
        ]);
        let headers = pairs(&[
            ("host", "ros.aliyuncs.com"),
            ("x-acs-version", "2019-09-10"),
            ("x-acs-action", "SignalResource"),
            ("user-agent", "stackhook-test"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("accept", "application/json"),
            ("x-acs-content-sha256", EMPTY_PAYLOAD_SHA256),
            ("x-acs-credentials-provider", "static_sts"),
            ("x-acs-accesskey-id", "YourAccessKeyId"),
            ("x-acs-security-token", "YourSecurityToken"),
        ]);
        let input = SignInput {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        assert!(
            authorization(&input, "YourAccessKeyId", "YourAccessKeySecret").ends_with(
                "Signature=6b0dd9eb98dbc16f33d645e5e34c2985aae2059bc4b223b54e8d01f628f62b34"
            )
        );
    }

    /// The NotifyExecution golden captured from the official SDK.
    #[test]
    fn reproduces_the_notify_execution_golden() {
        let query = pairs(&[
            ("ExecutionId", "exec-79c321c11003a97c"),
            ("NotifyNote", "approved by stackhook"),
            ("NotifyType", "Approve"),
            ("RegionId", "cn-hangzhou"),
        ]);
        let headers = pairs(&[
            ("accept", "application/json"),
            ("host", "oos.cn-hangzhou.aliyuncs.com"),
            ("user-agent", "stackhook-test"),
            ("x-acs-action", "NotifyExecution"),
            ("x-acs-content-sha256", EMPTY_PAYLOAD_SHA256),
            ("x-acs-credentials-provider", "static_ak"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2019-06-01"),
        ]);
        let input = SignInput {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        };
        assert!(
            authorization(&input, "YourAccessKeyId", "YourAccessKeySecret").ends_with(
                "Signature=1171a1c3f98762ee02e6fde641903900b4dc6a4192c38a3a652043ca90cce87c"
            )
        );
    }

    #[test]
    fn encodes_paths_and_hashes() {
        assert_eq!(canonical_uri("/path/ test"), "/path/%20test");
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(sha256_hex(b""), EMPTY_PAYLOAD_SHA256);
    }
}
