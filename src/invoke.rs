//! Play ROS once: send one request to a provider and catch its answer.
//!
//! A local [`CallbackSink`] takes the place of ROS's presigned URLs: the
//! request's `ResponseURL` and `IntranetResponseURL` are pointed at it before
//! the request is sent. For a `/sync` URL the answer is the HTTP reply; for
//! any other URL it is the first callback that arrives.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::response::Response;
use crate::sink::{CallbackSink, Received};

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
