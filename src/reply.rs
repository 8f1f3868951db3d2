//! Building HTTP replies.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;

use crate::json_text::push_string;
use crate::response::Response;

/// A JSON reply with `status`.
pub(crate) fn json_reply(
    status: StatusCode,
    body: serde_json::Value,
) -> hyper::Response<Full<Bytes>> {
    bytes_reply(status, Bytes::from(body.to_string()))
}

/// The acknowledgement of an async request: `{"accepted":true,...}`.
///
/// Written directly, not with `json!` (a map per request) or a derived
/// serializer (which escapes every field name).
pub(crate) fn acknowledgement(request_id: &str, duplicate: bool) -> hyper::Response<Full<Bytes>> {
    let head: &[u8] = if duplicate {
        br#"{"accepted":true,"duplicate":true,"requestId":"#
    } else {
        br#"{"accepted":true,"requestId":"#
    };
    let mut body = Vec::with_capacity(head.len() + request_id.len() + 3);
    body.extend_from_slice(head);
    push_string(&mut body, request_id);
    body.push(b'}');
    bytes_reply(StatusCode::OK, Bytes::from(body))
}

/// A reply carrying a ROS answer, within ROS's limits.
pub(crate) fn answer(status: StatusCode, response: &Response) -> hyper::Response<Full<Bytes>> {
    bytes_reply(status, Bytes::from(response.to_body()))
}

fn bytes_reply(status: StatusCode, body: Bytes) -> hyper::Response<Full<Bytes>> {
    let mut reply = hyper::Response::new(Full::new(body));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body_of(reply: hyper::Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = reply.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn acknowledgements_name_the_request_and_flag_duplicates() {
        let first = acknowledgement("req-\"1", false);
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(
            body_of(first).await,
            serde_json::json!({"accepted": true, "requestId": "req-\"1"})
        );
        assert_eq!(
            body_of(acknowledgement("r2", true)).await,
            serde_json::json!({"accepted": true, "duplicate": true, "requestId": "r2"})
        );
    }
}
