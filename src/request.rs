//! The request ROS sends to a provider: Create, Update or Delete.
//!
//! Field names follow the ROS documentation exactly (spec §1). Unknown fields,
//! such as the `Signature` object ROS adds when `HttpConfig.SignKey` is set,
//! are tolerated. Account ids may arrive as strings or numbers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Which operation ROS asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestType {
    /// The resource is being created.
    Create,
    /// The resource's properties changed.
    Update,
    /// The resource is being deleted.
    Delete,
}

impl RequestType {
    /// The name as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Create => "Create",
            RequestType::Update => "Update",
            RequestType::Delete => "Delete",
        }
    }
}

impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A presigned callback URL.
///
/// The query string is a bearer credential: anyone holding it can answer for
/// the resource. `Debug` and `Display` therefore print the URL without its
/// query; [`CallbackUrl::expose`] gives the full text to the one place that
/// sends to it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallbackUrl(String);

impl CallbackUrl {
    /// Wrap a URL.
    pub fn new(url: impl Into<String>) -> Self {
        CallbackUrl(url.into())
    }

    /// The full URL, query included. Never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its query string and fragment replaced by `?…`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackUrl({})", self.redacted())
    }
}

impl fmt::Display for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Which of the request's two callback URLs (an attempt went to, or the
/// callback guard approved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `ResponseURL`.
    Public,
    /// `IntranetResponseURL`.
    Intranet,
}

impl Target {
    /// `public` or `intranet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Public => "public",
            Target::Intranet => "intranet",
        }
    }
}

/// Strip the query string, fragment and any user info from a URL for logging.
pub fn redact_url(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let (base, rest) = url.split_at(cut);
    let base = match base.find("://") {
        Some(scheme_end) => {
            let after = &base[scheme_end + 3..];
            let authority_end = after.find('/').unwrap_or(after.len());
            match after[..authority_end].rfind('@') {
                Some(at) => format!("{}://…@{}", &base[..scheme_end], &after[at + 1..]),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if rest.is_empty() {
        base
    } else {
        format!("{base}?…")
    }
}

/// One Create, Update or Delete request, exactly as ROS sends it.
///
/// Every identifier is a string on the wire. `ResourceProperties` is the
/// template's `Properties.Parameters` map, `OldResourceProperties` its previous
/// value on Update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct Request {
    /// Create, Update or Delete.
    pub request_type: RequestType,
    /// Unique id of this request; copied into the response.
    pub request_id: String,
    /// Presigned public callback URL.
    #[serde(
        rename = "ResponseURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub response_url: Option<CallbackUrl>,
    /// Presigned internal-network callback URL. `InnerResponseURL` is accepted
    /// as an alias, because one ROS page spells it that way.
    #[serde(
        rename = "IntranetResponseURL",
        alias = "InnerResponseURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub intranet_response_url: Option<CallbackUrl>,
    /// `Custom::Xxx` or `ALIYUN::ROS::CustomResource`.
    pub resource_type: String,
    /// The resource's name in the template; copied into the response.
    pub logical_resource_id: String,
    /// The id returned by an earlier Create; present on Update and Delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_resource_id: Option<String>,
    /// The stack's id (a UUID); copied into the response.
    pub stack_id: String,
    /// The stack's name.
    #[serde(default, deserialize_with = "lenient_string")]
    pub stack_name: String,
    /// The account that owns the stack.
    #[serde(default, deserialize_with = "lenient_string")]
    pub resource_owner_id: String,
    /// The account or RAM user that ran the stack operation.
    #[serde(default, deserialize_with = "lenient_string")]
    pub caller_id: String,
    /// The stack's region.
    #[serde(default, deserialize_with = "lenient_string")]
    pub region_id: String,
    /// The template's `Parameters` map (`null` reads as empty).
    #[serde(default, deserialize_with = "map_or_null")]
    pub resource_properties: Map<String, Value>,
    /// The previous `Parameters` map, on Update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_resource_properties: Option<Map<String, Value>>,
}

impl Request {
    /// Parse a request body.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming what is wrong: not JSON, not an
    /// object, a missing or mistyped field, or an id that is empty.
    pub fn from_slice(body: &[u8]) -> Result<Request> {
        // Fast path: a JSON object straight into the struct, one parse and
        // no intermediate `Value` (most of a request's allocations). Any
        // failure (duplicate keys included, which `Value` would settle by
        // taking the last) falls through to the careful path below, so
        // results and error messages are unchanged.
        let object = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        // Parsed from text checked as UTF-8 once, whole and a vector at a
        // time, rather than from bytes, where each string is checked apart.
        if object
            && let Ok(text) = std::str::from_utf8(body)
            && let Ok(request) = serde_json::from_str::<Request>(text)
        {
            return request.finish();
        }
        // Through `Value`: a derived struct would also accept a JSON array
        // (field by position) and say "unknown variant" about it, and a type
        // error would not name the field it is about.
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Error::InvalidRequest(describe_json_error(&e)))?;
        if !value.is_object() {
            return Err(Error::InvalidRequest(format!(
                "body is {}, not a JSON object",
                json_kind(&value)
            )));
        }
        let request: Request = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let problem = e.into_inner();
            Error::InvalidRequest(if path == "." {
                format!("body is not a ROS custom-resource request: {problem}")
            } else {
                format!("body is not a ROS custom-resource request: field `{path}`: {problem}")
            })
        })?;
        request.finish()
    }

    /// Normalise and validate a freshly parsed request.
    fn finish(mut self) -> Result<Request> {
        // A blank URL is no URL: nothing could ever be delivered to it.
        for url in [&mut self.response_url, &mut self.intranet_response_url] {
            if url.as_ref().is_some_and(|u| u.expose().trim().is_empty()) {
                *url = None;
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Build a request by hand, mainly for tests and tools. The properties
    /// start empty and the callback URLs absent.
    pub fn new(
        request_type: RequestType,
        resource_type: impl Into<String>,
        logical_resource_id: impl Into<String>,
        stack_id: impl Into<String>,
        request_id: impl Into<String>,
    ) -> Self {
        Request {
            request_type,
            request_id: request_id.into(),
            response_url: None,
            intranet_response_url: None,
            resource_type: resource_type.into(),
            logical_resource_id: logical_resource_id.into(),
            physical_resource_id: None,
            stack_id: stack_id.into(),
            stack_name: String::new(),
            resource_owner_id: String::new(),
            caller_id: String::new(),
            region_id: String::new(),
            resource_properties: Map::new(),
            old_resource_properties: None,
        }
    }

    /// Check the fields that must not be empty.
    fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("RequestId", &self.request_id),
            ("ResourceType", &self.resource_type),
            ("LogicalResourceId", &self.logical_resource_id),
            ("StackId", &self.stack_id),
        ] {
            if value.trim().is_empty() {
                return Err(Error::InvalidRequest(format!("field `{name}` is empty")));
            }
        }
        Ok(())
    }

    /// Whether the request carries at least one callback URL.
    pub fn has_callback(&self) -> bool {
        self.response_url.is_some() || self.intranet_response_url.is_some()
    }

    /// The request as JSON text, for tools that send it.
    pub fn to_json(&self) -> String {
        // A `Request` only holds strings and JSON values, so this cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The identifiers and callback URLs of a body that did not parse as a full
/// [`Request`], so a FAILED answer can still reach ROS.
///
/// Every field is optional and leniently typed; [`Salvage::answerable`]
/// says whether there is enough to answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Salvage {
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub(crate) request_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub(crate) request_id: Option<String>,
    #[serde(
        rename = "ResponseURL",
        default,
        deserialize_with = "lenient_opt_string"
    )]
    pub(crate) response_url: Option<String>,
    #[serde(
        rename = "IntranetResponseURL",
        alias = "InnerResponseURL",
        default,
        deserialize_with = "lenient_opt_string"
    )]
    pub(crate) intranet_response_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub(crate) resource_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub(crate) logical_resource_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub(crate) physical_resource_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub(crate) stack_id: Option<String>,
}

impl Salvage {
    /// Pull what can be pulled out of a body that is JSON but not a valid request.
    pub(crate) fn from_slice(body: &[u8]) -> Option<Salvage> {
        // Only an object: a derived struct would read an array by position.
        if body.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        serde_json::from_slice::<Salvage>(body).ok()
    }

    /// The callback URLs and the three identifiers ROS matches an answer on.
    pub(crate) fn answerable(&self) -> bool {
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        (present(&self.response_url) || present(&self.intranet_response_url))
            && present(&self.request_id)
            && present(&self.logical_resource_id)
            && present(&self.stack_id)
    }
}

/// Turn a serde_json error into a message for a person: what and where.
fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof => format!("body is not valid JSON ({error})"),
        Category::Data => format!("body is not a ROS custom-resource request: {error}"),
        Category::Io => format!("body could not be read: {error}"),
    }
}

/// Accept a string, a number or a boolean as a string; `null` becomes empty.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(lenient_opt_string(deserializer)?.unwrap_or_default())
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_any(LenientString)
}

/// A string, or a number or boolean as its JSON text; `null` as none.
/// Visited directly rather than through a `Value`: four of a request's
/// fields are read this way.
struct LenientString;

impl LenientString {
    fn refuse<E: serde::de::Error>(kind: &str) -> Result<Option<String>, E> {
        Err(E::custom(format!("expected a string, found {kind}")))
    }
}

impl<'de> serde::de::Visitor<'de> for LenientString {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number or a boolean")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Some(text))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Some(n.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Some(n.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
        // As serde_json prints a number (`1.5e+20`), as the number's own
        // text would be if it were kept as a `Value`. JSON has no NaN or
        // infinity, so the fallback is never taken.
        Ok(Some(
            serde_json::Number::from_f64(n).map_or_else(|| n.to_string(), |n| n.to_string()),
        ))
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Some(b.to_string()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Self::refuse("an array")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Self::refuse("an object")
    }
}

/// A JSON object, or `null` as an empty one (a resource with no `Parameters`).
fn map_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A word for the kind of a JSON value, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = r#"{
        "RequestType": "Create",
        "RequestId": "2b3c6d1e-0000-4000-8000-000000000001",
        "ResponseURL": "https://ros-callback.example.com/cb?Signature=secret&Expires=1",
        "IntranetResponseURL": "https://ros-callback.vpc.example.com/cb?Signature=secret",
        "ResourceType": "Custom::Echo",
        "LogicalResourceId": "Echo",
        "StackId": "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff",
        "StackName": "demo",
        "ResourceOwnerId": 123456789,
        "CallerId": "123456789",
        "RegionId": "cn-hangzhou",
        "ResourceProperties": {"Length": "16"},
        "Signature": {"Date": "2024-01-01T00:00:00Z", "Value": "abc"}
    }"#;

    #[test]
    fn parses_create_and_tolerates_unknown_fields() {
        let r = Request::from_slice(CREATE.as_bytes()).expect("valid");
        assert_eq!(r.request_type, RequestType::Create);
        assert_eq!(r.resource_owner_id, "123456789");
        assert_eq!(r.resource_properties["Length"], "16");
        assert!(r.physical_resource_id.is_none());
        assert!(r.has_callback());
    }

    #[test]
    fn loosely_typed_fields_take_numbers_booleans_and_null() {
        let body = CREATE
            .replace(r#""CallerId": "123456789""#, r#""CallerId": -42"#)
            .replace(r#""StackName": "demo""#, r#""StackName": true"#)
            .replace(r#""RegionId": "cn-hangzhou""#, r#""RegionId": null"#)
            .replace(
                r#""ResourceOwnerId": 123456789"#,
                r#""ResourceOwnerId": 1.5e20"#,
            );
        let r = Request::from_slice(body.as_bytes()).expect("valid");
        assert_eq!(
            (
                r.caller_id.as_str(),
                r.stack_name.as_str(),
                r.region_id.as_str()
            ),
            ("-42", "true", "")
        );
        assert_eq!(r.resource_owner_id, "1.5e+20");
        let object = CREATE.replace(r#""StackName": "demo""#, r#""StackName": {"a": 1}"#);
        let err = Request::from_slice(object.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`StackName`") && err.contains("expected a string, found an object"),
            "{err}"
        );
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_as_invalid_json() {
        let mut body = CREATE.as_bytes().to_vec();
        let at = CREATE.find("demo").expect("stack name");
        body[at] = 0xff;
        let Err(Error::InvalidRequest(message)) = Request::from_slice(&body) else {
            panic!("a body with a byte that is not UTF-8 must be refused");
        };
        assert!(message.contains("not valid JSON"), "{message}");
        let unicode = CREATE.replace("demo", "démo-😀");
        let r = Request::from_slice(unicode.as_bytes()).expect("valid");
        assert_eq!(r.stack_name, "démo-😀");
    }

    #[test]
    fn inner_response_url_is_an_alias() {
        let body = CREATE.replace("IntranetResponseURL", "InnerResponseURL");
        let r = Request::from_slice(body.as_bytes()).expect("valid");
        assert!(r.intranet_response_url.is_some());
    }

    #[test]
    fn missing_field_is_named() {
        let body = CREATE.replace("\"StackId\"", "\"Other\"");
        let err = Request::from_slice(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("StackId"), "{err}");
    }

    #[test]
    fn empty_request_id_is_refused() {
        let body = CREATE.replace("2b3c6d1e-0000-4000-8000-000000000001", " ");
        let err = Request::from_slice(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("RequestId"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let body = CREATE.replace(r#""Echo","#, r#"["Echo"],"#);
        let err = Request::from_slice(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`LogicalResourceId`"), "{err}");
        assert!(err.contains("expected a string"), "{err}");
    }

    #[test]
    fn array_body_is_not_read_by_position() {
        let body = format!("[{CREATE}]");
        let err = Request::from_slice(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("an array, not a JSON object"), "{err}");
        assert!(Salvage::from_slice(body.as_bytes()).is_none());
    }

    #[test]
    fn blank_callback_urls_count_as_absent() {
        let body = CREATE.replace(
            "https://ros-callback.vpc.example.com/cb?Signature=secret",
            " ",
        );
        let r = Request::from_slice(body.as_bytes()).expect("valid");
        assert!(r.intranet_response_url.is_none());
        assert!(r.has_callback());
        let body = body.replace(
            "https://ros-callback.example.com/cb?Signature=secret&Expires=1",
            "",
        );
        assert!(
            !Request::from_slice(body.as_bytes())
                .expect("valid")
                .has_callback()
        );
    }

    #[test]
    fn null_properties_read_as_empty() {
        let body = CREATE.replace(r#"{"Length": "16"}"#, "null");
        let r = Request::from_slice(body.as_bytes()).expect("valid");
        assert!(r.resource_properties.is_empty());
    }

    #[test]
    fn not_json_says_so() {
        let err = Request::from_slice(b"{nope").unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn unknown_request_type_is_refused() {
        let body = CREATE.replace("\"Create\"", "\"Replace\"");
        let err = Request::from_slice(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Replace"), "{err}");
    }

    #[test]
    fn callback_url_never_prints_its_query() {
        let url = CallbackUrl::new("https://user:pw@host.example.com/path?Signature=s3cret#frag");
        assert_eq!(url.to_string(), "https://…@host.example.com/path?…");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(!format!("{url:?}").contains("pw"));
    }

    #[test]
    fn salvage_finds_identifiers_in_a_broken_request() {
        let body = CREATE.replace("\"Create\"", "\"Replace\"");
        let salvage = Salvage::from_slice(body.as_bytes()).expect("json");
        assert!(salvage.answerable());
        let no_url = r#"{"RequestId":"r","LogicalResourceId":"l","StackId":"s"}"#;
        assert!(
            !Salvage::from_slice(no_url.as_bytes())
                .expect("json")
                .answerable()
        );
    }

    #[test]
    fn round_trips() {
        let r = Request::from_slice(CREATE.as_bytes()).expect("valid");
        let again = Request::from_slice(r.to_json().as_bytes()).expect("valid");
        assert_eq!(r, again);
    }

    #[test]
    fn fast_and_careful_parses_agree() {
        let fast = Request::from_slice(CREATE.as_bytes()).expect("valid");
        let value: Value = serde_json::from_str(CREATE).expect("json");
        let careful: Request = serde_json::from_value(value).expect("valid");
        assert_eq!(fast, careful.finish().expect("valid"));
        // Duplicate keys fail the direct parse; the careful path keeps the last.
        let duplicated = CREATE.replacen(
            r#""StackName": "demo","#,
            r#""StackName": "first", "StackName": "demo","#,
            1,
        );
        assert_eq!(
            Request::from_slice(duplicated.as_bytes()).expect("valid"),
            fast
        );
        // An array is still refused as "not a JSON object".
        let error = Request::from_slice(b"  [1, 2]").expect_err("array");
        assert!(error.to_string().contains("not a JSON object"), "{error}");
    }
}
