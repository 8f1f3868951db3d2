//! Huawei Cloud AK/SK signing, `SDK-HMAC-SHA256` (the APIG signer).
//!
//! ```text
//! CanonicalRequest = METHOD \n CanonicalURI/ \n CanonicalQueryString \n
//!                    CanonicalHeaders \n SignedHeaders \n hex(sha256(body))
//! StringToSign     = "SDK-HMAC-SHA256\n" + X-Sdk-Date + "\n" + hex(sha256(CanonicalRequest))
//! Signature        = hex(hmac_sha256(SK, StringToSign))
//! Authorization    = SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<names>, Signature=<sig>
//! ```
//!
//! The canonical URI gets a trailing `/` for signing only; the URL sent keeps
//! its own form. Header names containing `_` are never signed, as in the
//! official SDKs. The client signs `host`, `x-sdk-date`, `content-type`,
//! `client-request-id`, `x-project-id` and `x-security-token`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::encode::{canonical_query, percent_decode, percent_encode};

/// The algorithm name.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// What a Huawei signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// HTTP method (`GET`).
    pub method: &'a str,
    /// The URL path, as sent.
    pub path: &'a str,
    /// Query parameters, unencoded; a repeated key may appear several times.
    pub query: &'a [(String, String)],
    /// The headers to sign (names containing `_` are skipped); must include
    /// `X-Sdk-Date`.
    pub headers: &'a [(String, String)],
    /// The exact body bytes.
    pub body: &'a [u8],
    /// The `X-Sdk-Date` value, `YYYYMMDDTHHMMSSZ`.
    pub sdk_date: &'a str,
}

fn canonical_uri(path: &str) -> String {
    let mut uri = path
        .split('/')
        .map(|segment| percent_encode(&percent_decode(segment, false)))
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The canonical request and the signed-header list.
pub fn canonical_request(input: &SignInput<'_>) -> (String, String) {
    let mut headers: Vec<(String, &str)> = input
        .headers
        .iter()
        .filter(|(name, _)| !name.contains('_'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        canonical_uri(input.path),
        canonical_query(input.query),
        canonical_headers,
        signed,
        hex::encode(Sha256::digest(input.body))
    );
    (request, signed)
}

/// The string to sign for a canonical request.
pub fn string_to_sign(canonical_request: &str, sdk_date: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The `Authorization` header value.
pub fn authorization(input: &SignInput<'_>, ak: &str, sk: &str) -> String {
    let (request, signed) = canonical_request(input);
    let mut mac = Hmac::<Sha256>::new_from_slice(sk.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(string_to_sign(&request, input.sdk_date).as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    format!("{ALGORITHM} Access={ak}, SignedHeaders={signed}, Signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const GUIDE_AK: &str = "QTWAOYTTINDUT2QVKYUC";
    const GUIDE_SK: &str = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc";

    /// H-A, the signing guide's VPC-list example.
    #[test]
    fn reproduces_the_guide_vector() {
        let query = pairs(&[
            ("limit", "2"),
            ("marker", "13551d6b-755d-4757-b956-536f674975c0"),
        ]);
        let headers = pairs(&[
            ("Content-Type", "application/json"),
            ("Host", "service.region.example.com"),
            ("X-Sdk-Date", "20191115T033655Z"),
        ]);
        let input = SignInput {
            method: "GET",
            path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
            query: &query,
            headers: &headers,
            body: b"",
            sdk_date: "20191115T033655Z",
        };
        let (request, _) = canonical_request(&input);
        assert_eq!(
            request,
            "GET\n/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\nlimit=2&marker=13551d6b-755d-4757-b956-536f674975c0\ncontent-type:application/json\nhost:service.region.example.com\nx-sdk-date:20191115T033655Z\n\ncontent-type;host;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign(&request, input.sdk_date),
            "SDK-HMAC-SHA256\n20191115T033655Z\nb25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
        );
        assert_eq!(
            authorization(&input, GUIDE_AK, GUIDE_SK),
            "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
    }

    /// H-B and H-C, the Python core SDK tests (underscore header unsigned).
    #[test]
    fn reproduces_the_python_sdk_vectors() {
        let query = pairs(&[("size", "1")]);
        let headers = pairs(&[
            ("Host", "service.endpoint.myhuaweicloud.com"),
            ("X-Sdk-Date", "20200608T023900Z"),
            ("TEST_UNDERSCORE", "TEST_VALUE"),
        ]);
        let mut input = SignInput {
            method: "GET",
            path: "/resources",
            query: &query,
            headers: &headers,
            body: b"",
            sdk_date: "20200608T023900Z",
        };
        assert_eq!(
            authorization(&input, "AccessKey", "SecretKey"),
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-sdk-date, Signature=cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842"
        );
        input.method = "POST";
        input.body = br#"{"name":"test","id":1}"#;
        assert!(authorization(&input, "AccessKey", "SecretKey").ends_with(
            "Signature=436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f"
        ));
    }

    /// H-D and H-E, the Go core SDK tests (host and content-type unsigned).
    #[test]
    fn reproduces_the_go_sdk_vectors() {
        let headers = pairs(&[
            ("X-Sdk-Date", "20060102T150405Z"),
            ("TEST_UNDERSCORE", "TEST_VALUE"),
        ]);
        let query = pairs(&[("limit", "1")]);
        let input = SignInput {
            method: "GET",
            path: "/path",
            query: &query,
            headers: &headers,
            body: b"",
            sdk_date: "20060102T150405Z",
        };
        assert_eq!(
            authorization(&input, "AccessKey", "SecretKey"),
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"
        );
        let query = pairs(&[("key", "value")]);
        let input = SignInput {
            method: "POST",
            query: &query,
            body: b"{\"Name\":\"test\",\"Id\":1}\n",
            ..input
        };
        assert!(authorization(&input, "AccessKey", "SecretKey").ends_with(
            "Signature=cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59"
        ));
    }

    fn rfs_headers() -> Vec<(String, String)> {
        pairs(&[
            ("Client-Request-Id", "6f1b8d1e-2c1a-4b8e-9a6e-3f2d1c0b9a87"),
            ("Content-Type", "application/json"),
            ("Host", "rfs.cn-north-4.myhuaweicloud.com"),
            ("X-Project-Id", "77b6a44cba5143ab91d13ab9a8ff44fd"),
            ("X-Sdk-Date", "20191115T033655Z"),
        ])
    }

    /// The ListExecutionPlans and UpdateStack goldens from the official SDK.
    #[test]
    fn reproduces_the_rfs_goldens() {
        let headers = rfs_headers();
        let input = SignInput {
            method: "GET",
            path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/stacks/my-stack/execution-plans",
            query: &[],
            headers: &headers,
            body: b"",
            sdk_date: "20191115T033655Z",
        };
        assert_eq!(
            authorization(&input, GUIDE_AK, GUIDE_SK),
            "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=client-request-id;content-type;host;x-project-id;x-sdk-date, Signature=b65201839c762da428029ee4e7424739e47502925da92ef772b8f55805a2e4ca"
        );
        let input = SignInput {
            method: "PATCH",
            path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/stacks/my-stack",
            body: br#"{"enable_auto_rollback": true, "agencies": [{"provider_name": "huaweicloud", "agency_name": "rf_admin_trust"}]}"#,
            ..input
        };
        assert!(authorization(&input, GUIDE_AK, GUIDE_SK).ends_with(
            "Signature=0ade547d90ab00a86791f3618a7350d115a090ff07b7b2b934786e40dff45b7a"
        ));
    }
}
