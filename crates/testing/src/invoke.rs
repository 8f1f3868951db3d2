//! Play ROS once: send one request to a provider and catch its answer.
//!
//! A local [`CallbackSink`] takes the place of ROS's presigned URLs: the
//! request's `ResponseURL` and `IntranetResponseURL` are pointed at it before
//! the request is sent. For a `/sync` URL the answer is the HTTP reply; for
//! any other URL it is the first callback that arrives.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use stackhook::error::{Error, Result};
use stackhook::response::Response;
use stackhook::sink::{CallbackSink, Received};

/// What came back from one invocation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Invocation {
    /// The provider's HTTP status for the request itself.
    pub reply_status: u16,
    /// The provider's reply body.
    pub reply_body: Bytes,
    /// The answer ROS would see, if one arrived in time.
    pub answer: Option<Response>,
    /// Every callback the sink received.
    pub callbacks: Vec<Received>,
    /// Whether the answer came in the reply (sync mode) rather than a callback.
    pub sync: bool,
}

/// Point a request body's callback URLs at `sink`. Bodies that are not JSON
/// objects are sent as they are.
pub fn redirect_callbacks(body: &mut Value, sink: &CallbackSink) {
    if let Value::Object(map) = body {
        map.insert("ResponseURL".into(), Value::String(sink.url("/public")));
        let intranet_key = if map.contains_key("InnerResponseURL") {
            "InnerResponseURL"
        } else {
            "IntranetResponseURL"
        };
        map.insert(intranet_key.into(), Value::String(sink.url("/intranet")));
    }
}

/// Changes to a request file before it is sent, for quick manual checks.
///
/// ```
/// use serde_json::json;
/// use stackhook::RequestType;
/// use stackhook_testing::invoke::Overrides;
///
/// let mut body = json!({"RequestType": "Create", "ResourceProperties": {"A": "1"}});
/// let overrides = Overrides {
///     request_type: Some(RequestType::Update),
///     physical_resource_id: Some("pid-1".into()),
///     properties: Some(r#"{"A": "2"}"#.into()),
///     ..Overrides::default()
/// };
/// overrides.apply(&mut body).unwrap();
/// assert_eq!(body["RequestType"], "Update");
/// assert_eq!(body["OldResourceProperties"], json!({"A": "1"}));
/// assert_eq!(body["ResourceProperties"], json!({"A": "2"}));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Switch the request type. Create drops `PhysicalResourceId` and
    /// `OldResourceProperties`; Delete drops `OldResourceProperties`; Update
    /// needs a physical id and, without `old_properties`, takes the request's
    /// current properties as the old ones.
    pub request_type: Option<stackhook::RequestType>,
    /// Replace `ResourceProperties`: a JSON object, or the path of a file holding one.
    pub properties: Option<String>,
    /// Set `OldResourceProperties`: a JSON object, or the path of a file holding one.
    pub old_properties: Option<String>,
    /// Set `PhysicalResourceId`.
    pub physical_resource_id: Option<String>,
}

impl Overrides {
    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        self == &Overrides::default()
    }

    /// Apply the changes to a request body.
    ///
    /// # Errors
    /// [`Error::Validation`] when the body is not a JSON object, properties
    /// are neither a JSON object nor a readable file holding one, or an
    /// Update or Delete would have no physical id.
    pub fn apply(&self, body: &mut Value) -> Result<()> {
        let Value::Object(map) = body else {
            return Err(invalid("request", "the request file is not a JSON object"));
        };
        let current = map.get("ResourceProperties").cloned();
        if let Some(properties) = &self.properties {
            let value = properties_arg("--properties", properties)?;
            map.insert("ResourceProperties".into(), Value::Object(value));
        }
        if let Some(old) = &self.old_properties {
            let value = properties_arg("--old-properties", old)?;
            map.insert("OldResourceProperties".into(), Value::Object(value));
        }
        if let Some(id) = &self.physical_resource_id {
            map.insert("PhysicalResourceId".into(), Value::String(id.clone()));
        }
        if let Some(kind) = self.request_type {
            map.insert("RequestType".into(), Value::String(kind.as_str().into()));
            match kind {
                stackhook::RequestType::Create => {
                    map.remove("PhysicalResourceId");
                    map.remove("OldResourceProperties");
                }
                stackhook::RequestType::Update => {
                    if !map.contains_key("OldResourceProperties") {
                        map.insert(
                            "OldResourceProperties".into(),
                            current.unwrap_or_else(|| Value::Object(Map::new())),
                        );
                    }
                }
                stackhook::RequestType::Delete => {
                    map.remove("OldResourceProperties");
                }
            }
        }
        let kind = map.get("RequestType").and_then(Value::as_str).unwrap_or("");
        let has_id = map
            .get("PhysicalResourceId")
            .and_then(Value::as_str)
            .is_some_and(|id| !id.trim().is_empty());
        if matches!(kind, "Update" | "Delete") && !has_id && !self.is_empty() {
            return Err(invalid(
                "--physical-id",
                &format!("an {kind} needs a PhysicalResourceId: pass --physical-id ID"),
            ));
        }
        Ok(())
    }
}

fn invalid(field: &str, message: &str) -> Error {
    Error::Validation {
        field: field.into(),
        message: message.into(),
    }
}

/// A JSON object given inline (starting with `{`) or as a file path.
fn properties_arg(flag: &str, text: &str) -> Result<Map<String, Value>> {
    let trimmed = text.trim_start();
    let (json, source) = if trimmed.starts_with('{') {
        (text.to_string(), "the value".to_string())
    } else {
        let path = Path::new(text);
        let json = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                flag,
                &format!("`{text}` is neither a JSON object nor a readable file: {e}"),
            )
        })?;
        (json, path.display().to_string())
    };
    match serde_json::from_str::<Value>(&json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(invalid(
            flag,
            &format!(
                "{source} is {}, not a JSON object",
                stackhook::request::json_kind(&other)
            ),
        )),
        Err(e) => Err(invalid(flag, &format!("{source} is not valid JSON: {e}"))),
    }
}

/// Send `body` to `url` as ROS would and wait up to `wait` for the answer.
///
/// # Errors
/// [`Error::Delivery`] when the provider cannot be reached.
pub async fn invoke(body: &[u8], url: &str, wait: Duration) -> Result<Invocation> {
    let sink = CallbackSink::start()
        .await
        .map_err(|e| Error::io("starting the callback sink", e))?;
    let payload = match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redirect_callbacks(&mut value, &sink);
            Bytes::from(value.to_string())
        }
        Err(_) => Bytes::copy_from_slice(body),
    };
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let sync = path.trim_end_matches('/').ends_with("/sync");
    let content_type = if path.trim_end_matches('/').ends_with("/invoke") {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let client = reqwest::Client::builder()
        .timeout(wait)
        .build()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
    let reply = client
        .post(url)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(payload)
        .send()
        .await
        .map_err(|e| Error::Delivery(format!("could not reach the provider: {e}")))?;
    let reply_status = reply.status().as_u16();
    let reply_body = reply
        .bytes()
        .await
        .map_err(|e| Error::Delivery(format!("could not read the provider's reply: {e}")))?;

    let (answer, callbacks) = if sync {
        (Response::from_slice(&reply_body).ok(), sink.received())
    } else {
        // Only an acknowledgement (2xx) promises a later callback. A refusal
        // (4xx) delivers any FAILED answer before it replies, so whatever is
        // coming has already arrived.
        let callbacks = if (200..300).contains(&reply_status) {
            sink.wait_for(1, wait).await
        } else {
            sink.received()
        };
        (callbacks.iter().find_map(Received::response), callbacks)
    };
    Ok(Invocation {
        reply_status,
        reply_body,
        answer,
        callbacks,
        sync,
    })
}
