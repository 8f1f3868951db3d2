//! The answer a provider sends back to ROS, and the limits it must respect.
//!
//! ROS takes at most [`MAX_BODY_BYTES`] per callback body and
//! [`MAX_PHYSICAL_ID_BYTES`] per physical id (spec §2). [`Response::to_body`]
//! is the one place that turns a response into bytes, and it never produces a
//! body ROS would reject: a Reason is cleaned and cut keeping head and tail,
//! and Data that would overflow the body turns the answer into FAILED with a
//! reason that says so.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json_text::push_string;
use crate::request::Request;

/// ROS's limit on the whole callback body, in bytes.
pub const MAX_BODY_BYTES: usize = 4096;

/// ROS's limit on a physical resource id, in bytes.
pub const MAX_PHYSICAL_ID_BYTES: usize = 255;

/// The `Data` map: name/value pairs readable with `Fn::GetAtt`.
pub type Data = Map<String, Value>;

/// SUCCESS or FAILED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// The operation succeeded; the stack continues.
    Success,
    /// The operation failed; `Reason` says why.
    Failed,
}

impl Status {
    /// The name as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
        }
    }
}

/// One answer to one request, with the identifiers copied from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct Response {
    /// SUCCESS or FAILED.
    pub status: Status,
    /// Why it failed (set on FAILED, optional on SUCCESS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The resource's physical id.
    pub physical_resource_id: String,
    /// Copied from the request.
    pub stack_id: String,
    /// Copied from the request.
    pub request_id: String,
    /// Copied from the request.
    pub logical_resource_id: String,
    /// Outputs, readable with `Fn::GetAtt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
}

impl Response {
    /// A SUCCESS answer to `request`.
    pub fn success(request: &Request, physical_resource_id: impl Into<String>, data: Data) -> Self {
        Response {
            status: Status::Success,
            reason: None,
            physical_resource_id: physical_resource_id.into(),
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// A FAILED answer to `request`.
    pub fn failed(
        request: &Request,
        physical_resource_id: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Response::failed_for(
            &request.request_id,
            &request.logical_resource_id,
            &request.stack_id,
            physical_resource_id,
            reason,
        )
    }

    /// A FAILED answer built from bare identifiers, for requests that did not parse.
    pub fn failed_for(
        request_id: &str,
        logical_resource_id: &str,
        stack_id: &str,
        physical_resource_id: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Response {
            status: Status::Failed,
            reason: Some(reason.into()),
            physical_resource_id: physical_resource_id.into(),
            stack_id: stack_id.to_string(),
            request_id: request_id.to_string(),
            logical_resource_id: logical_resource_id.to_string(),
            data: None,
        }
    }

    /// Parse a callback body (as a sink or a test receives it).
    ///
    /// # Errors
    /// When the body is not a response object.
    pub fn from_slice(body: &[u8]) -> serde_json::Result<Response> {
        serde_json::from_slice(body)
    }

    /// Bring the response within ROS's limits, in place.
    ///
    /// Control characters leave the Reason; a Data map that would push the
    /// body over [`MAX_BODY_BYTES`] turns the answer into FAILED; a Reason that
    /// is still too long is cut in the middle.
    pub fn enforce_limits(&mut self) {
        if let Some(reason) = self.reason.as_mut() {
            *reason = clean_reason(reason);
        }
        let size = self.encoded_len();
        if size <= MAX_BODY_BYTES {
            return;
        }
        if let Some(data) = self.data.take() {
            let data_len = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or(0);
            self.status = Status::Failed;
            self.reason = Some(format!(
                "the response Data is {data_len} bytes; with it the callback body would be \
                 {size} bytes, over ROS's limit of {MAX_BODY_BYTES} bytes. Return less Data \
                 (for example store large values elsewhere and return a reference)"
            ));
            if self.encoded_len() <= MAX_BODY_BYTES {
                return;
            }
        }
        if let Some(reason) = self.reason.take() {
            self.reason = Some(String::new());
            let fixed = self.encoded_len();
            let budget = MAX_BODY_BYTES.saturating_sub(fixed);
            self.reason = Some(truncate_middle(&reason, budget));
        }
    }

    /// The JSON body to send, within ROS's limits.
    pub fn to_body(&self) -> Vec<u8> {
        // Most answers are already within the limits: encode once, and
        // clone and cut only when they are not.
        let reason_clean = self
            .reason
            .as_deref()
            .is_none_or(|reason| clean_reason(reason) == reason);
        if reason_clean {
            let body = self.encode();
            if body.len() <= MAX_BODY_BYTES {
                return body;
            }
        }
        let mut bounded = self.clone();
        bounded.enforce_limits();
        bounded.encode()
    }

    /// What the derived serializer writes, byte for byte (a test compares
    /// them), written directly: field names as constants, and strings copied
    /// whole unless they need escapes.
    fn encode(&self) -> Vec<u8> {
        // One allocation for a typical answer (the identifiers alone are
        // about 200 bytes), rather than doubling up from serde_json's 128.
        let mut body = Vec::with_capacity(512);
        body.extend_from_slice(b"{\"Status\":\"");
        body.extend_from_slice(self.status.as_str().as_bytes());
        body.push(b'"');
        if let Some(reason) = &self.reason {
            body.extend_from_slice(b",\"Reason\":");
            push_string(&mut body, reason);
        }
        body.extend_from_slice(b",\"PhysicalResourceId\":");
        push_string(&mut body, &self.physical_resource_id);
        body.extend_from_slice(b",\"StackId\":");
        push_string(&mut body, &self.stack_id);
        body.extend_from_slice(b",\"RequestId\":");
        push_string(&mut body, &self.request_id);
        body.extend_from_slice(b",\"LogicalResourceId\":");
        push_string(&mut body, &self.logical_resource_id);
        if let Some(data) = &self.data {
            body.extend_from_slice(b",\"Data\":");
            // Only strings and JSON values inside: this cannot fail.
            if serde_json::to_writer(&mut body, data).is_err() {
                return Vec::new();
            }
        }
        body.push(b'}');
        body
    }

    fn encoded_len(&self) -> usize {
        self.encode().len()
    }
}

/// Remove control characters from a reason; line breaks and tabs become spaces.
fn clean_reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    for c in reason.chars() {
        match c {
            '\n' | '\r' | '\t' => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

/// How many bytes `c` takes inside a JSON string.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Cut `text` so that its JSON-escaped form takes at most `budget` bytes,
/// keeping the head and the tail (where the root cause usually is) around a
/// marker that says how much was cut.
pub(crate) fn truncate_middle(text: &str, budget: usize) -> String {
    let total: usize = text.chars().map(escaped_len).sum();
    if total <= budget {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    // The marker's length depends on the count it prints; reserve for the largest.
    let marker_room = format!(" […{total} bytes cut…] ").len();
    let room = budget.saturating_sub(marker_room);
    let head_room = room * 2 / 3;
    let tail_room = room - head_room;

    let mut head_end = 0;
    let mut used = 0;
    while head_end < chars.len() && used + escaped_len(chars[head_end]) <= head_room {
        used += escaped_len(chars[head_end]);
        head_end += 1;
    }
    let mut tail_start = chars.len();
    let mut tail_used = 0;
    while tail_start > head_end && tail_used + escaped_len(chars[tail_start - 1]) <= tail_room {
        tail_used += escaped_len(chars[tail_start - 1]);
        tail_start -= 1;
    }
    let cut: usize = chars[head_end..tail_start]
        .iter()
        .map(|&c| escaped_len(c))
        .sum();
    let head: String = chars[..head_end].iter().collect();
    let tail: String = chars[tail_start..].iter().collect();
    if budget < marker_room {
        return head;
    }
    format!("{head} […{cut} bytes cut…] {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestType;

    fn request() -> Request {
        Request::new(RequestType::Create, "Custom::X", "Res", "stack-1", "req-1")
    }

    proptest::proptest! {
        #[test]
        fn the_direct_encoding_is_what_serde_writes(
            ids in proptest::array::uniform4(proptest::prelude::any::<String>()),
            reason in proptest::option::of(proptest::prelude::any::<String>()),
            data in proptest::option::of(proptest::collection::btree_map(
                proptest::prelude::any::<String>(),
                proptest::prelude::any::<String>(),
                0..3,
            )),
            failed in proptest::prelude::any::<bool>(),
        ) {
            let [physical, stack, request, logical] = ids;
            let response = Response {
                status: if failed { Status::Failed } else { Status::Success },
                reason,
                physical_resource_id: physical,
                stack_id: stack,
                request_id: request,
                logical_resource_id: logical,
                data: data.map(|data| {
                    data.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
                }),
            };
            let derived = serde_json::to_vec(&response).expect("json");
            proptest::prop_assert_eq!(response.encode(), derived);
        }
    }

    #[test]
    fn success_copies_identifiers() {
        let r = Response::success(&request(), "pid", Data::new());
        let v: Value = serde_json::from_slice(&r.to_body()).expect("json");
        assert_eq!(v["Status"], "SUCCESS");
        assert_eq!(v["RequestId"], "req-1");
        assert_eq!(v["LogicalResourceId"], "Res");
        assert_eq!(v["StackId"], "stack-1");
        assert_eq!(v["PhysicalResourceId"], "pid");
        assert!(v.get("Data").is_none());
    }

    #[test]
    fn reason_loses_control_characters() {
        let r = Response::failed(&request(), "pid", "line one\nline two\u{7}\u{0}\tend");
        let back = Response::from_slice(&r.to_body()).expect("json");
        assert_eq!(back.reason.as_deref(), Some("line one line two end"));
    }

    #[test]
    fn long_reason_keeps_head_and_tail() {
        let reason = format!("HEAD{}TAIL", "x".repeat(10_000));
        let r = Response::failed(&request(), "pid", reason);
        let body = r.to_body();
        assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
        let back = Response::from_slice(&body).expect("json");
        let reason = back.reason.expect("reason");
        assert!(reason.starts_with("HEAD"), "{reason}");
        assert!(reason.ends_with("TAIL"), "{reason}");
        assert!(reason.contains("bytes cut"), "{reason}");
    }

    #[test]
    fn reason_full_of_escapes_still_fits() {
        let r = Response::failed(&request(), "pid", "\"\\".repeat(5_000));
        assert!(r.to_body().len() <= MAX_BODY_BYTES);
    }

    #[test]
    fn oversize_data_turns_into_failed() {
        let mut data = Data::new();
        data.insert("Blob".into(), Value::String("y".repeat(5_000)));
        let r = Response::success(&request(), "pid", data);
        let body = r.to_body();
        assert!(body.len() <= MAX_BODY_BYTES);
        let back = Response::from_slice(&body).expect("json");
        assert_eq!(back.status, Status::Failed);
        assert!(back.data.is_none());
        let reason = back.reason.expect("reason");
        assert!(reason.contains("4096"), "{reason}");
        assert_eq!(back.physical_resource_id, "pid");
    }

    #[test]
    fn data_that_fits_is_kept() {
        let mut data = Data::new();
        data.insert("Blob".into(), Value::String("y".repeat(3_500)));
        let back = Response::from_slice(&Response::success(&request(), "pid", data).to_body())
            .expect("json");
        assert_eq!(back.status, Status::Success);
        assert!(back.data.is_some());
    }

    #[test]
    fn truncate_middle_respects_budget_for_multibyte_text() {
        let text = "é".repeat(1_000);
        for budget in [0, 5, 40, 100, 1_999, 2_000] {
            let cut = truncate_middle(&text, budget);
            let len: usize = cut.chars().map(escaped_len).sum();
            assert!(len <= budget, "budget {budget} gave {len}");
        }
    }
}
