//! Making request bodies safe to log.
//!
//! Raw bodies are only logged at TRACE, and only through [`body_for_log`]:
//! callback URLs lose their query (the presigned credential), the
//! `Signature` value is replaced, and properties whose names are configured
//! as sensitive are replaced wherever they appear in `ResourceProperties`,
//! `OldResourceProperties` or `Data`.

use serde_json::Value;

use super::sensitive::PLACEHOLDER;
use crate::request::redact_url;

/// The top-level fields that hold presigned callback URLs.
const URL_FIELDS: [&str; 3] = ["ResponseURL", "IntranetResponseURL", "InnerResponseURL"];

/// The top-level fields whose contents are user properties or answer data.
const PROPERTY_FIELDS: [&str; 3] = ["ResourceProperties", "OldResourceProperties", "Data"];

/// A loggable rendering of a request (or response) body.
///
/// Bodies that are not JSON are described by their size only: they cannot be
/// redacted field by field, so none of their text is shown.
pub fn body_for_log(body: &[u8], sensitive: &[String]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redact_value(&mut value, sensitive);
            value.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON: not shown>", body.len()),
    }
}

/// Redact a parsed body in place; see [`body_for_log`].
pub fn redact_value(value: &mut Value, sensitive: &[String]) {
    let Value::Object(map) = value else { return };
    for field in URL_FIELDS {
        if let Some(Value::String(url)) = map.get_mut(field) {
            *url = redact_url(url);
        }
    }
    if let Some(signature) = map.get_mut("Signature") {
        match signature {
            Value::Object(sig) => {
                if let Some(v) = sig.get_mut("Value") {
                    *v = Value::String(PLACEHOLDER.into());
                }
            }
            other => *other = Value::String(PLACEHOLDER.into()),
        }
    }
    if sensitive.is_empty() {
        return;
    }
    for field in PROPERTY_FIELDS {
        if let Some(properties) = map.get_mut(field) {
            redact_names(properties, sensitive);
        }
    }
}

/// Replace the value of every key named in `sensitive`, at any depth.
fn redact_names(value: &mut Value, sensitive: &[String]) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if sensitive.iter().any(|s| s == key) {
                    *inner = Value::String(PLACEHOLDER.into());
                } else {
                    redact_names(inner, sensitive);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_names(v, sensitive)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_signatures_and_named_properties_are_hidden() {
        let body = br#"{"ResponseURL":"https://ros.aliyuncs.com/cb?Signature=q1","IntranetResponseURL":"https://ros-vpc.aliyuncs.com/cb?Signature=q2",
            "Signature":{"Date":"2024-01-01T00:00:00Z","Value":"abcdef"},
            "ResourceProperties":{"Password":"p1","Nested":[{"Password":"p2"}],"Name":"visible"},
            "OldResourceProperties":{"Password":"p3"}}"#;
        let shown = body_for_log(body, &["Password".to_string()]);
        for secret in ["q1", "q2", "abcdef", "p1", "p2", "p3"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("visible"));
        assert!(shown.contains("https://ros.aliyuncs.com/cb?…"));
    }

    #[test]
    fn non_json_is_not_shown() {
        let shown = body_for_log(b"token=abc&ResponseURL=http://x?y", &[]);
        assert_eq!(shown, "<32 bytes, not JSON: not shown>");
    }
}
