//! Property tests for the request parser and the body redactor: arbitrary
//! bytes and arbitrary JSON never panic; valid requests round-trip; the
//! redacted rendering never shows a callback query.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use stackhook::Request;
use stackhook::security::limits::json_too_deep;
use stackhook::security::redact::body_for_log;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_request() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("Create"), Just("Update"), Just("Delete")],
        "[A-Za-z0-9-]{1,36}",
        "[A-Za-z0-9:_@-]{1,68}",
        "[A-Za-z0-9]{1,30}",
        "[a-f0-9-]{1,36}",
        "[A-Za-z0-9=&_-]{1,40}",
        prop::collection::btree_map("[A-Za-z]{1,10}", arb_json(), 0..5),
    )
        .prop_map(|(kind, request_id, resource_type, logical, stack, query, props)| {
            json!({
                "RequestType": kind,
                "RequestId": request_id,
                "ResponseURL": format!("https://ros.aliyuncs.com/cb?Signature=QSECRET{query}"),
                "IntranetResponseURL": format!("https://ros-vpc.aliyuncs.com/cb?Signature=QSECRET{query}"),
                "ResourceType": resource_type,
                "LogicalResourceId": logical,
                "PhysicalResourceId": "phys-1",
                "StackId": stack,
                "StackName": "s",
                "ResourceOwnerId": "1",
                "CallerId": "2",
                "RegionId": "cn-hangzhou",
                "ResourceProperties": Value::Object(props.into_iter().collect::<Map<_, _>>()),
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::from_slice(&bytes);
        let _ = body_for_log(&bytes, &["Password".to_string()]);
        let _ = json_too_deep(&bytes, 8);
    }

    #[test]
    fn arbitrary_json_never_panics(value in arb_json()) {
        let text = value.to_string();
        let _ = Request::from_slice(text.as_bytes());
        let shown = body_for_log(text.as_bytes(), &["Password".to_string()]);
        prop_assert!(!shown.is_empty());
    }

    #[test]
    fn valid_requests_round_trip(body in arb_request()) {
        let text = body.to_string();
        let request = Request::from_slice(text.as_bytes()).expect("valid request");
        let again = Request::from_slice(request.to_json().as_bytes()).expect("round trip");
        prop_assert_eq!(&request, &again);
        // Logged, the presigned query is gone.
        let shown = body_for_log(text.as_bytes(), &[]);
        prop_assert!(shown.contains("/cb?…"));
        prop_assert!(!shown.contains("QSECRET"));
    }

    #[test]
    fn depth_scanner_agrees_with_nesting(depth in 1usize..200) {
        let body = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        prop_assert_eq!(json_too_deep(body.as_bytes(), 64), depth > 64);
    }
}
