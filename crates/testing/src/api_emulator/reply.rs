//! Scripted answers, and rendering any answer to HTTP.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;

use super::Service;
use super::verify::Wire;

/// An answer the emulator gives: built in, or scripted with
/// [`ApiEmulator::answer_next`](super::ApiEmulator::answer_next).
///
/// The error constructors render at answer time, in the format of the
/// service called, with a fresh request id (recorded in
/// [`RecordedCall::request_id`](super::RecordedCall::request_id)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    kind: Kind,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// `{"RequestId": …}` (or the RFS success of the route).
    Success,
    /// An Alibaba error body: `RequestId`, `HostId`, `Code`, `Message`,
    /// `Recommend`. `{OperationId}` in the message is filled from the call.
    AlibabaError {
        status: u16,
        code: String,
        message: String,
    },
    /// An RFS error body: `error_code`, `error_msg`.
    RfsError {
        status: u16,
        code: String,
        message: String,
    },
    /// Exactly this status and body.
    Raw { status: u16, body: String },
    /// Close the connection without answering.
    Drop,
}

impl Reply {
    pub(super) fn new(kind: Kind) -> Reply {
        Reply {
            kind,
            headers: Vec::new(),
        }
    }

    /// The service's success answer for the call (as when nothing is
    /// scripted; useful in a sequence).
    pub fn success() -> Reply {
        Reply::new(Kind::Success)
    }

    /// An Alibaba (ROS, OOS) error: `{"RequestId", "HostId", "Code",
    /// "Message", "Recommend"}` with `status`, or XML `<Error>` when a V2
    /// call did not ask for JSON.
    pub fn alibaba_error(
        status: u16,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Reply {
        Reply::new(Kind::AlibabaError {
            status,
            code: code.into(),
            message: message.into(),
        })
    }

    /// `Throttling.User` (400) with an `x-ratelimit-user-api` header whose
    /// `TimeLeft` is `time_left` in milliseconds, as the gateway sends it.
    pub fn throttling_user(time_left: Duration) -> Reply {
        let ms = time_left.as_millis();
        Reply::alibaba_error(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )
        .with_header(
            "x-ratelimit-user-api",
            format!("Limit:1,Remain:0,TimeLeft:{ms},Reset:{ms}"),
        )
    }

    /// ROS `StackGroupOperationNotFound` (404), naming the call's
    /// `OperationId`.
    pub fn stack_group_operation_not_found() -> Reply {
        Reply::alibaba_error(
            404,
            "StackGroupOperationNotFound",
            "The StackGroupOperation ({OperationId}) could not be found.",
        )
    }

    /// `ServiceUnavailable` (503), retried by the clients.
    pub fn service_unavailable() -> Reply {
        Reply::alibaba_error(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        )
    }

    /// An RFS error: `{"error_code", "error_msg"}` with `status` and an
    /// `X-Request-Id` header, e.g. `rfs_error(409, "RF.10091001", "…")`.
    pub fn rfs_error(status: u16, code: impl Into<String>, message: impl Into<String>) -> Reply {
        Reply::new(Kind::RfsError {
            status,
            code: code.into(),
            message: message.into(),
        })
    }

    /// A JSON body, verbatim, with `Content-Type: application/json`.
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::raw(status, body).with_header("content-type", "application/json")
    }

    /// Exactly this status and body (add headers with
    /// [`with_header`](Self::with_header)), for malformed answers.
    pub fn raw(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(Kind::Raw {
            status,
            body: body.into(),
        })
    }

    /// Close the connection without answering (a transport failure).
    pub fn drop_connection() -> Reply {
        Reply::new(Kind::Drop)
    }

    /// Add a header, replacing one of the same name.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        let name = name.into().to_ascii_lowercase();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    /// Render for a call to `service`, whose success answer `success`
    /// builds; `None` to drop the connection.
    pub(super) fn render(
        &self,
        wire: &Wire,
        service: Service,
        success: impl FnOnce() -> Rendered,
    ) -> Option<Rendered> {
        let mut rendered = match &self.kind {
            Kind::Drop => return None,
            Kind::Success => success(),
            Kind::AlibabaError {
                status,
                code,
                message,
            } => alibaba_error(service, wire, *status, code, message),
            Kind::RfsError {
                status,
                code,
                message,
            } => rfs_error(*status, code, message),
            Kind::Raw { status, body } => Rendered {
                status: *status,
                headers: Vec::new(),
                body: body.clone(),
                request_id: None,
                error_code: None,
            },
        };
        for (name, value) in &self.headers {
            rendered.headers.retain(|(n, _)| n != name);
            rendered.headers.push((name.clone(), value.clone()));
        }
        Some(rendered)
    }
}

/// An answer ready to send.
#[derive(Debug)]
pub(super) struct Rendered {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: String,
    pub(super) request_id: Option<String>,
    pub(super) error_code: Option<String>,
}

impl Rendered {
    pub(super) fn into_response(self) -> hyper::Response<Full<Bytes>> {
        let mut response = hyper::Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            // A scripted header that is not valid HTTP is skipped, not fatal.
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::try_from(name),
                http::HeaderValue::try_from(value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// A request id in Alibaba's format: an upper-case UUID.
pub(super) fn alibaba_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

/// A request id in Huawei's format: 32 lower-case hex digits.
pub(super) fn huawei_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `{"RequestId": …}`, or its XML form.
pub(super) fn alibaba_success(action: &str, wire: &Wire) -> Rendered {
    let request_id = alibaba_request_id();
    let (content_type, body) = if wants_xml(wire) {
        (
            "text/xml;charset=utf-8",
            format!(
                "<?xml version='1.0' encoding='UTF-8'?><{action}Response><RequestId>{request_id}</RequestId></{action}Response>",
                action = xml_escape(action)
            ),
        )
    } else {
        (
            "application/json;charset=utf-8",
            json!({ "RequestId": request_id }).to_string(),
        )
    };
    Rendered {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body,
        request_id: Some(request_id),
        error_code: None,
    }
}

pub(super) fn alibaba_error(
    service: Service,
    wire: &Wire,
    status: u16,
    code: &str,
    message: &str,
) -> Rendered {
    let request_id = alibaba_request_id();
    let message = match wire.param("OperationId") {
        Some(id) => message.replace("{OperationId}", id),
        None => message.to_string(),
    };
    let host = wire
        .header("host")
        .unwrap_or("ros.aliyuncs.com")
        .to_string();
    let (content_type, body) = if wants_xml(wire) {
        (
            "text/xml;charset=utf-8",
            format!(
                "<?xml version='1.0' encoding='UTF-8'?><Error><RequestId>{request_id}</RequestId><HostId>{}</HostId><Code>{}</Code><Message>{}</Message></Error>",
                xml_escape(&host),
                xml_escape(code),
                xml_escape(&message)
            ),
        )
    } else {
        (
            "application/json;charset=utf-8",
            json!({
                "RequestId": request_id,
                "HostId": host,
                "Code": code,
                "Message": message,
                "Recommend": format!(
                    "https://api.aliyun.com/troubleshoot?q={code}&product={}&requestId={request_id}",
                    service
                ),
            })
            .to_string(),
        )
    };
    Rendered {
        status,
        headers: vec![("content-type".into(), content_type.into())],
        body,
        request_id: Some(request_id),
        error_code: Some(code.to_string()),
    }
}

pub(super) fn rfs_error(status: u16, code: &str, message: &str) -> Rendered {
    let request_id = huawei_request_id();
    Rendered {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-request-id".into(), request_id.clone()),
        ],
        body: json!({"error_code": code, "error_msg": message}).to_string(),
        request_id: Some(request_id),
        error_code: Some(code.to_string()),
    }
}

/// A V2 call gets XML unless it asks for `Format=JSON` (V2's default is
/// XML); V3 calls get JSON.
fn wants_xml(wire: &Wire) -> bool {
    wire.header("authorization").is_none()
        && wire.param("Signature").is_some()
        && !wire
            .param("Format")
            .is_some_and(|f| f.eq_ignore_ascii_case("json"))
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::actions::Route;
    use super::*;

    fn v2_wire(format: Option<&str>) -> Wire {
        let mut query = vec![
            ("Action".to_string(), "SignalResource".to_string()),
            ("Signature".to_string(), "x".to_string()),
            ("OperationId".to_string(), "op-7".to_string()),
        ];
        if let Some(format) = format {
            query.push(("Format".to_string(), format.to_string()));
        }
        Wire {
            method: "POST".into(),
            path: "/".into(),
            query,
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn v2_without_format_json_gets_xml() {
        let plans = HashMap::new();
        let wire = v2_wire(None);
        let route = Route::of(&wire);
        let ok = route.render(&Reply::success(), &wire, &plans);
        let ok = ok.map(|r| r.body).unwrap_or_default();
        assert!(ok.contains("<SignalResourceResponse><RequestId>"), "{ok}");
        let error = route
            .render(&Reply::stack_group_operation_not_found(), &wire, &plans)
            .map(|r| r.body)
            .unwrap_or_default();
        assert!(
            error.contains("<Code>StackGroupOperationNotFound</Code>") && error.contains("(op-7)"),
            "{error}"
        );
        let wire = v2_wire(Some("json"));
        let json = route
            .render(&Reply::success(), &wire, &plans)
            .map(|r| r.body)
            .unwrap_or_default();
        assert!(json.starts_with("{\"RequestId\":"), "{json}");
    }

    #[test]
    fn scripted_headers_replace_the_built_in_ones() {
        let wire = v2_wire(Some("JSON"));
        let route = Route::of(&wire);
        let rendered = route.render(
            &Reply::alibaba_error(400, "X", "y").with_header("Content-Type", "text/plain"),
            &wire,
            &HashMap::new(),
        );
        let headers = rendered.map(|r| r.headers).unwrap_or_default();
        let types: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n == "content-type")
            .collect();
        assert_eq!(
            types,
            [&("content-type".to_string(), "text/plain".to_string())]
        );
        assert!(
            route
                .render(&Reply::drop_connection(), &wire, &HashMap::new())
                .is_none()
        );
    }
}
