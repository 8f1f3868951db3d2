//! The SignKey signature readings, pinned against values computed with
//! Python's standard library, and property tests for the verifier.
//!
//! Every expected value below was produced by this script (python3, stdlib
//! only), which mirrors `SignatureScheme::sign` for each reading:
//!
//! ```python
//! import json, hashlib, hmac, base64, itertools
//! body = {"RequestType": "Create", "RequestId": "req-1", "ResponseURL": "https://ros.aliyuncs.com/cb?Sig=x",
//!         "ResourceType": "Custom::Echo", "LogicalResourceId": "Echo", "StackId": "stack-1",
//!         "ResourceProperties": {"Name": "caf\u00e9 \U0001F600", "Count": 3, "Ratio": 0.5, "On": True,
//!                                "Tags": ["b", "a"], "Nil": None, "Quote": "a\"b\\c\n"},
//!         "Signature": {"Date": "2024-05-06T07:08:09Z", "Value": "ignored"}}
//! key, date, url = "s3cr3t-sign-key", "2024-05-06T07:08:09Z", "https://provider.example.com/"
//! headers = {"X-B": "2", "X-A": "1"}
//! data = {k: v for k, v in body.items() if k != "Signature"}
//! for digest, md5k, js, hdr in itertools.product(["hmac-sha1", "sha1"], ["hex", "base64"],
//!                                                ["python", "compact"], ["block", "lines"]):
//!   for hs in [{}, headers]:
//!     seps = (", ", ": ") if js == "python" else (",", ":")
//!     text = json.dumps(data, sort_keys=True, ensure_ascii=True, separators=seps)
//!     m = hashlib.md5(text.encode("utf-8"))
//!     md5 = m.hexdigest() if md5k == "hex" else base64.b64encode(m.digest()).decode()
//!     hl = ["%s:%s" % (k, v) for k, v in sorted(hs.items())]
//!     lines = (["POST", "application/json", md5, date, "\n".join(hl), url] if hdr == "block"
//!              else ["POST", "application/json", md5, date] + hl + [url])
//!     sts = "\n".join(lines)
//!     v = (hmac.new(key.encode(), sts.encode(), hashlib.sha1).hexdigest() if digest == "hmac-sha1"
//!          else hashlib.sha1((sts + "\n" + key).encode()).hexdigest())
//!     print(digest, md5k, js, hdr, bool(hs), v)
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{Value, json};
use stackhook::security::signature::{
    JsonStyle, Reading, SignatureError, SignatureScheme, Verifier, canonical_json, format_date,
    parse_date,
};

const KEY: &str = "s3cr3t-sign-key";
const DATE: &str = "2024-05-06T07:08:09Z";
const URL: &str = "https://provider.example.com/";

/// (reading, with the two headers, expected value)
const PINNED: [(&str, bool, &str); 32] = [
    (
        "hmac-sha1/hex/python/block",
        false,
        "53227dc76b83533ac5a8999ac1ddb09487a32fca",
    ),
    (
        "hmac-sha1/hex/python/block",
        true,
        "982720d5bc2669027adb2149bbbb3982c2b232ae",
    ),
    (
        "hmac-sha1/hex/python/lines",
        false,
        "f7ec8c8e3502155ecd9d1580ec8788a59585d5b0",
    ),
    (
        "hmac-sha1/hex/python/lines",
        true,
        "982720d5bc2669027adb2149bbbb3982c2b232ae",
    ),
    (
        "hmac-sha1/hex/compact/block",
        false,
        "a39dafcee453bdf6ec91cee0e76107ca0b8f94e6",
    ),
    (
        "hmac-sha1/hex/compact/block",
        true,
        "1540e872b970457c4c5a6502651c73256cf9811a",
    ),
    (
        "hmac-sha1/hex/compact/lines",
        false,
        "474a94a9e8172258594144ccca57250e9634c540",
    ),
    (
        "hmac-sha1/hex/compact/lines",
        true,
        "1540e872b970457c4c5a6502651c73256cf9811a",
    ),
    (
        "hmac-sha1/base64/python/block",
        false,
        "b4f34292ecd004b1a709615da068b643da4d3c6e",
    ),
    (
        "hmac-sha1/base64/python/block",
        true,
        "bb5c564d1a92afd88c7569b9c5d944c2bcbdfdb2",
    ),
    (
        "hmac-sha1/base64/python/lines",
        false,
        "342cad215135e189cf0fb8581adbab7c32d6c725",
    ),
    (
        "hmac-sha1/base64/python/lines",
        true,
        "bb5c564d1a92afd88c7569b9c5d944c2bcbdfdb2",
    ),
    (
        "hmac-sha1/base64/compact/block",
        false,
        "3146d5aa8357c1b2418ea26762031c4a7937f140",
    ),
    (
        "hmac-sha1/base64/compact/block",
        true,
        "a986bf1e32ec7f62f7d8bb3a6517af348aba9597",
    ),
    (
        "hmac-sha1/base64/compact/lines",
        false,
        "b916136678e1f5bbb7b237e9790709e5366209a3",
    ),
    (
        "hmac-sha1/base64/compact/lines",
        true,
        "a986bf1e32ec7f62f7d8bb3a6517af348aba9597",
    ),
    (
        "sha1/hex/python/block",
        false,
        "036462ee4661f3c2eaac31f9ee971d10ebe48057",
    ),
    (
        "sha1/hex/python/block",
        true,
        "583962436a720a55664e6882a54c4122c4fd9b08",
    ),
    (
        "sha1/hex/python/lines",
        false,
        "c51b686ae2b35f1c6ef6e34bb3739c64e84aee4c",
    ),
    (
        "sha1/hex/python/lines",
        true,
        "583962436a720a55664e6882a54c4122c4fd9b08",
    ),
    (
        "sha1/hex/compact/block",
        false,
        "610750296280a00c233a8ee16d5ad86db8244940",
    ),
    (
        "sha1/hex/compact/block",
        true,
        "f86638c7f730b7bf6c63fa6ccec87dd531549682",
    ),
    (
        "sha1/hex/compact/lines",
        false,
        "62c9c518d27d61fe2b10442d98f639a459116207",
    ),
    (
        "sha1/hex/compact/lines",
        true,
        "f86638c7f730b7bf6c63fa6ccec87dd531549682",
    ),
    (
        "sha1/base64/python/block",
        false,
        "ef4065618aca6fbed47eabae9f54d7d64c132680",
    ),
    (
        "sha1/base64/python/block",
        true,
        "427fb337e25fddee3838e89a79b061c59d79b2ab",
    ),
    (
        "sha1/base64/python/lines",
        false,
        "3f8dd92234e70c6d627a89a4c2891e15bf68d220",
    ),
    (
        "sha1/base64/python/lines",
        true,
        "427fb337e25fddee3838e89a79b061c59d79b2ab",
    ),
    (
        "sha1/base64/compact/block",
        false,
        "96df4b3c14a58b9dbdfabb1e1d0c2ae3bb5ee963",
    ),
    (
        "sha1/base64/compact/block",
        true,
        "99b3dbcb69261182e771080eebb99e791f911407",
    ),
    (
        "sha1/base64/compact/lines",
        false,
        "ff35d6738ecf30d1e3a07e053347d44d9a96c682",
    ),
    (
        "sha1/base64/compact/lines",
        true,
        "99b3dbcb69261182e771080eebb99e791f911407",
    ),
];

fn body() -> Value {
    json!({"RequestType": "Create", "RequestId": "req-1", "ResponseURL": "https://ros.aliyuncs.com/cb?Sig=x",
           "ResourceType": "Custom::Echo", "LogicalResourceId": "Echo", "StackId": "stack-1",
           "ResourceProperties": {"Name": "caf\u{e9} \u{1F600}", "Count": 3, "Ratio": 0.5, "On": true,
                                  "Tags": ["b", "a"], "Nil": null, "Quote": "a\"b\\c\n"},
           "Signature": {"Date": DATE, "Value": "ignored"}})
}

fn scheme(reading: Reading, headers: bool) -> SignatureScheme {
    let mut scheme = SignatureScheme::new(KEY, URL);
    scheme.reading = reading;
    if headers {
        scheme.headers = vec![("X-B".into(), "2".into()), ("X-A".into(), "1".into())];
    }
    scheme
}

fn at(date: &str) -> SystemTime {
    UNIX_EPOCH
        + Duration::from_secs(u64::try_from(parse_date(date).expect("date")).expect("after 1970"))
}

#[test]
fn every_reading_matches_python() {
    let mut data = body();
    data.as_object_mut().expect("object").remove("Signature");
    for (reading, headers, expected) in PINNED {
        let reading: Reading = reading.parse().expect("reading");
        assert_eq!(
            scheme(reading, headers).sign(&data, DATE),
            expected,
            "{reading} headers={headers}"
        );
    }
}

#[test]
fn the_default_reading_is_hmac_hex_python_block() {
    assert_eq!(Reading::default().to_string(), "hmac-sha1/hex/python/block");
}

#[test]
fn canonical_json_matches_python_json_dumps() {
    let mut data = body();
    data.as_object_mut().expect("object").remove("Signature");
    // python3: json.dumps(data, sort_keys=True, ensure_ascii=True)
    assert_eq!(
        canonical_json(&data, JsonStyle::Python),
        r#"{"LogicalResourceId": "Echo", "RequestId": "req-1", "RequestType": "Create", "ResourceProperties": {"Count": 3, "Name": "caf\u00e9 \ud83d\ude00", "Nil": null, "On": true, "Quote": "a\"b\\c\n", "Ratio": 0.5, "Tags": ["b", "a"]}, "ResourceType": "Custom::Echo", "ResponseURL": "https://ros.aliyuncs.com/cb?Sig=x", "StackId": "stack-1"}"#
    );
}

#[test]
fn verifier_accepts_each_reading_it_is_configured_for() {
    for (reading, headers, expected) in PINNED {
        let reading: Reading = reading.parse().expect("reading");
        let verifier = Verifier::new(scheme(reading, headers), Duration::from_secs(300), 16);
        let mut signed = body();
        signed["Signature"]["Value"] = expected.into();
        assert_eq!(verifier.verify(&signed, at(DATE)), Ok(()), "{reading}");
        assert_eq!(
            verifier.verify(&signed, at(DATE)),
            Err(SignatureError::Replayed)
        );
        // Upper-case hex is the same value.
        let other = Verifier::new(scheme(reading, headers), Duration::from_secs(300), 16);
        signed["Signature"]["Value"] = expected.to_uppercase().into();
        assert_eq!(other.verify(&signed, at(DATE)), Ok(()));
    }
}

#[test]
fn verifier_refuses_stale_and_future_dates_at_the_edge() {
    let s = scheme(Reading::default(), false);
    let signed = s.signed_body(&body(), DATE);
    let skew = Duration::from_secs(300);
    let fresh = || Verifier::new(s.clone(), skew, 16);
    assert_eq!(fresh().verify(&signed, at(DATE) + skew), Ok(()));
    assert_eq!(fresh().verify(&signed, at(DATE) - skew), Ok(()));
    let late = at(DATE) + skew + Duration::from_secs(1);
    assert_eq!(fresh().verify(&signed, late), Err(SignatureError::Stale));
    let early = at(DATE) - skew - Duration::from_secs(1);
    assert_eq!(fresh().verify(&signed, early), Err(SignatureError::Stale));
}

#[test]
fn replay_memory_stays_bounded() {
    let s = scheme(Reading::default(), false);
    let verifier = Verifier::new(s.clone(), Duration::from_secs(300), 8);
    for i in 0..100 {
        let mut b = body();
        b["RequestId"] = format!("req-{i}").into();
        let signed = s.signed_body(&b, DATE);
        assert_eq!(verifier.verify(&signed, at(DATE)), Ok(()));
    }
    // The latest is still remembered.
    let mut b = body();
    b["RequestId"] = "req-99".into();
    assert_eq!(
        verifier.verify(&s.signed_body(&b, DATE), at(DATE)),
        Err(SignatureError::Replayed)
    );
}

/// Any JSON value, a few levels deep.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn verifier_never_panics_on_arbitrary_json(value in arb_json()) {
        let verifier = Verifier::new(scheme(Reading::default(), false), Duration::from_secs(300), 16);
        let _ = verifier.verify(&value, SystemTime::now());
        let mut with_sig = json!({"Signature": value.clone()});
        let _ = verifier.verify(&with_sig, SystemTime::now());
        with_sig["Signature"] = json!({"Date": DATE, "Value": value.to_string()});
        prop_assert!(verifier.verify(&with_sig, at(DATE)).is_err());
    }

    #[test]
    fn signed_bodies_round_trip(props in arb_json(), secs in 0u64..4_102_444_800) {
        let date = format_date(UNIX_EPOCH + Duration::from_secs(secs));
        prop_assert_eq!(parse_date(&date), Some(i64::try_from(secs).unwrap_or(i64::MAX)));
        let mut b = body();
        b["ResourceProperties"] = props;
        let s = scheme(Reading::default(), true);
        // Through the wire and back: text, then parsed again.
        let text = s.signed_body(&b, &date).to_string();
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        let verifier = Verifier::new(s, Duration::from_secs(300), 16);
        prop_assert_eq!(verifier.verify(&parsed, at(&date)), Ok(()));
    }

    #[test]
    fn canonical_json_is_ascii_and_parses_back(value in arb_json()) {
        for style in [JsonStyle::Python, JsonStyle::Compact] {
            let text = canonical_json(&value, style);
            prop_assert!(text.is_ascii());
            let back: Value = serde_json::from_str(&text).expect("valid JSON");
            prop_assert_eq!(&back, &value);
        }
    }

    #[test]
    fn date_parser_never_panics(text in ".{0,40}") {
        let _ = parse_date(&text);
    }
}
