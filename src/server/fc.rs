//! The Function Compute custom-runtime and custom-container contract (spec §6).
//!
//! An event invocation arrives as `POST /invoke` with the raw event (the ROS
//! request) as an `application/octet-stream` body. The function runs the
//! handler and delivers the answer to the callback before it replies, because
//! FC may freeze the instance as soon as the reply is sent. The callback is
//! the only channel ROS reads; the reply is for FC's own records:
//!
//! - 200 with the answer as the body when the answer was delivered, SUCCESS
//!   or FAILED alike (a 404 would make FC retry a delivered answer);
//! - 404 with `x-fc-status: 404` and `{"errorMessage": …}` when the event is
//!   not a valid request, when the callback guard refuses every callback URL
//!   (the handler does not run), or when the answer could not be delivered.
//!
//! `FC Invoke Start RequestId:` and `FC Invoke End RequestId:` lines go to
//! stdout, as FC's log tooling expects.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::json;
use tracing::Instrument;

use super::{json_reply, read_body, reject, reply};
use crate::dispatch::Extras;
use crate::handler::FcCredentials;
use crate::runtime::{Intake, Runtime};

/// FC's request-id header.
const FC_REQUEST_ID: &str = "x-fc-request-id";
/// The function's timeout in seconds, where FC sends it.
const FC_FUNCTION_TIMEOUT: &str = "x-fc-function-timeout";
/// FC's failure marker header.
const FC_STATUS: &str = "x-fc-status";

fn fc_request_id(head: &Parts) -> String {
    head.headers
        .get(FC_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

/// FC's log lines go to stdout, whole, even when other tasks print.
fn fc_log(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Mark a reply as failed for FC.
fn failed(mut reply: hyper::Response<Full<Bytes>>) -> hyper::Response<Full<Bytes>> {
    *reply.status_mut() = StatusCode::NOT_FOUND;
    reply
        .headers_mut()
        .insert(FC_STATUS, HeaderValue::from_static("404"));
    reply
}

/// `POST /invoke`: one event invocation.
pub(super) async fn invoke(
    runtime: &Arc<Runtime>,
    head: &Parts,
    body: Incoming,
    ip: IpAddr,
) -> hyper::Response<Full<Bytes>> {
    let fc_id = fc_request_id(head);
    let fc_timeout = head
        .headers
        .get(FC_FUNCTION_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    // The function role's temporary credentials, for handlers that call
    // Alibaba Cloud APIs; held in memory for this invocation only.
    let extras = Extras {
        fc_credentials: FcCredentials::from_headers(&head.headers).map(std::sync::Arc::new),
    };
    fc_log(&format!("FC Invoke Start RequestId: {fc_id}"));
    let reply = match read_body(runtime, head, body, ip).await {
        Err(reply) => failed(as_fc_error(reply).await),
        Ok(body) => match Intake::parse(&body) {
            Intake::Request(request) => 'invoke: {
                let span = Runtime::span(&request);
                let guarded = span.in_scope(|| {
                    runtime
                        .security
                        .check_callbacks(runtime.delivery.targets(&request))
                });
                if let Err(refusal) = guarded {
                    break 'invoke failed(as_fc_error(refusal.into_reply()).await);
                }
                let mut total = runtime.config.timeout_for(&request.resource_type);
                if let Some(cap) = fc_timeout {
                    total = total.min(cap);
                }
                match runtime
                    .answer_invocation(&request, total, extras)
                    .instrument(span)
                    .await
                {
                    Ok((response, Ok(()))) => reply::answer(StatusCode::OK, &response),
                    Ok((response, Err(problem))) => failed(json_reply(
                        StatusCode::NOT_FOUND,
                        json!({
                            "errorMessage": format!("the answer was not delivered (it stays in the outbox): {problem}"),
                            "status": response.status.as_str(),
                        }),
                    )),
                    Err(error) => failed(json_reply(
                        StatusCode::NOT_FOUND,
                        json!({"errorMessage": format!("the request could not be recorded: {error}")}),
                    )),
                }
            }
            intake => failed(as_fc_error(reject(runtime, intake, true).await).await),
        },
    };
    fc_log(&format!("FC Invoke End RequestId: {fc_id}"));
    reply
}

/// Rename a JSON error reply's `error` to `errorMessage`, FC's convention for
/// a failed invocation's body, keeping its other fields and headers.
async fn as_fc_error(reply: hyper::Response<Full<Bytes>>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = reply.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            if let Some(message) = map.remove("error") {
                map.insert("errorMessage".into(), message);
            }
            Bytes::from(serde_json::Value::Object(map).to_string())
        }
        _ => bytes,
    };
    hyper::Response::from_parts(parts, Full::new(body))
}

/// `POST /initialize`: FC's initializer hook. Nothing to prepare.
pub(super) fn initialize(head: &Parts) -> hyper::Response<Full<Bytes>> {
    let fc_id = fc_request_id(head);
    fc_log(&format!("FC Initialize Start RequestId: {fc_id}"));
    fc_log(&format!("FC Initialize End RequestId: {fc_id}"));
    json_reply(StatusCode::OK, json!({"initialized": true}))
}

/// `GET /pre-stop`: FC's pre-stop hook.
pub(super) fn pre_stop(head: &Parts) -> hyper::Response<Full<Bytes>> {
    let fc_id = fc_request_id(head);
    fc_log(&format!("FC PreStop Start RequestId: {fc_id}"));
    fc_log(&format!("FC PreStop End RequestId: {fc_id}"));
    json_reply(StatusCode::OK, json!({"stopping": true}))
}
