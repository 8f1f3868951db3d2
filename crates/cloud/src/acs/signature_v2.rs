//! Alibaba Cloud RPC signature V2, HMAC-SHA1 (`SignatureVersion=1.0`).
//!
//! ```text
//! StringToSign = METHOD + "&%2F&" + encode(CanonicalizedQueryString)
//! Signature    = base64(hmac_sha1(AccessKeySecret + "&", StringToSign))
//! ```
//!
//! The canonicalized query covers every common and business parameter except
//! `Signature`, sorted and RFC 3986-encoded. Alibaba recommends V3; V2 stays
//! available for gateways and accounts that still need it.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::encode::{canonical_query, percent_encode};

/// The string to sign for `params` (all of them but `Signature`).
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// The `Signature` parameter value (before URL encoding).
pub fn signature(method: &str, params: &[(String, String)], secret: &str) -> String {
    let key = format!("{secret}&");
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(string_to_sign(method, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// V2-A, the "fixed parameter values" example of Alibaba's V2 doc.
    #[test]
    fn reproduces_the_doc_vector() {
        let params = pairs(&[
            ("Action", "DescribeDedicatedHosts"),
            ("Version", "2014-05-26"),
            ("Format", "JSON"),
            ("AccessKeyId", "testid"),
            ("SignatureNonce", "edb2b34af0af9a6d14deaf7c1a5315eb"),
            ("Timestamp", "2023-03-13T08:34:30Z"),
            ("RegionId", "cn-beijing"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
        ]);
        assert_eq!(
            string_to_sign("GET", &params),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeDedicatedHosts%26Format%3DJSON%26RegionId%3Dcn-beijing%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3Dedb2b34af0af9a6d14deaf7c1a5315eb%26SignatureVersion%3D1.0%26Timestamp%3D2023-03-13T08%253A34%253A30Z%26Version%3D2014-05-26"
        );
        assert_eq!(
            signature("GET", &params, "testsecret"),
            "9NaGiOspFP5UPcwX8Iwt2YJXXuk="
        );
        assert_eq!(
            signature("POST", &params, "testsecret"),
            "ZvQ9xGiFnquSJRvj+WE6kdSpTwU="
        );
    }

    /// V2-B, the classic ECS DescribeRegions example.
    #[test]
    fn reproduces_the_legacy_vector() {
        let params = pairs(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            signature("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    /// V2-C, the Python and Go SDK unit tests.
    #[test]
    fn reproduces_the_sdk_unit_vectors() {
        let params = pairs(&[("query", "test"), ("body", "test")]);
        assert_eq!(
            string_to_sign("GET", &params),
            "GET&%2F&body%3Dtest%26query%3Dtest"
        );
        assert_eq!(
            signature("GET", &params, "secret"),
            "XlUyV4sXjOuX5FnjUz9IF9tm5rU="
        );
        let params = pairs(&[("test", "ok")]);
        assert_eq!(string_to_sign("", &params), "&%2F&test%3Dok");
        assert_eq!(
            signature("", &params, "accessKeySecret"),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
    }

    /// The StopStackGroupOperation golden captured from the official SDK.
    #[test]
    fn reproduces_the_stop_operation_golden() {
        let params = pairs(&[
            ("Action", "StopStackGroupOperation"),
            ("Format", "json"),
            ("Version", "2019-09-10"),
            ("Timestamp", "2023-10-26T10:22:32Z"),
            ("SignatureNonce", "3156853299f313e23d1673dc12e1703d"),
            ("OperationId", "6da106ca-1784-4a6f-a7e1-e723863dffff"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", "testid"),
        ]);
        assert_eq!(
            string_to_sign("POST", &params),
            "POST&%2F&AccessKeyId%3Dtestid%26Action%3DStopStackGroupOperation%26Format%3Djson%26OperationId%3D6da106ca-1784-4a6f-a7e1-e723863dffff%26RegionId%3Dcn-hangzhou%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3156853299f313e23d1673dc12e1703d%26SignatureVersion%3D1.0%26Timestamp%3D2023-10-26T10%253A22%253A32Z%26Version%3D2019-09-10"
        );
        assert_eq!(
            signature("POST", &params, "testsecret"),
            "he3YiuTOv626rb0kaNuadgQ2IK0="
        );
    }
}
