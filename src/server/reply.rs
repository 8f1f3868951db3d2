//! Building HTTP replies.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;

use crate::response::Response;

/// A JSON reply with `status`.
pub(crate) fn json_reply(
    status: StatusCode,
    body: serde_json::Value,
) -> hyper::Response<Full<Bytes>> {
    bytes_reply(status, Bytes::from(body.to_string()))
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
