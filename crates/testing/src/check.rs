//! ROS's rules for an answer, checked one by one.

use std::fmt;

use serde_json::Value;

use stackhook::request::{Request, RequestType};
use stackhook::response::{MAX_BODY_BYTES, MAX_PHYSICAL_ID_BYTES, Response, Status};

/// A rule of the ROS protocol (or of a scenario) that the mock ROS checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// `RequestId`, `StackId` and `LogicalResourceId` are copied from the request.
    IdentifiersCopied,
    /// A successful Create reports a non-empty physical id.
    PhysicalIdPresent,
    /// A physical id is at most 255 bytes.
    PhysicalIdSize,
    /// An Update answers with the id from the request: the id never changes after Create.
    PhysicalIdStable,
    /// A Delete answers with the id it received.
    DeleteEchoesId,
    /// The whole answer body is at most 4096 bytes.
    BodySize,
    /// The answer is a JSON object with a valid `Status`.
    WellFormed,
    /// A FAILED answer says why in `Reason`.
    ReasonOnFailure,
    /// The callback carries `Content-Type: application/json` and a GMT `Date`.
    Headers,
    /// Exactly one final answer per request.
    OneAnswer,
    /// The answer arrives before ROS stops waiting (the resource's `Timeout`).
    AnswerInTime,
    /// The provider accepts a valid request with a 2xx reply.
    Reply,
    /// A redelivered request gets the same answer.
    Redelivery,
    /// The answer's status is what the lifecycle or scenario expected.
    Expectation,
}

impl Rule {
    /// A short kebab-case name, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::IdentifiersCopied => "identifiers-copied",
            Rule::PhysicalIdPresent => "physical-id-present",
            Rule::PhysicalIdSize => "physical-id-size",
            Rule::PhysicalIdStable => "physical-id-stable",
            Rule::DeleteEchoesId => "delete-echoes-id",
            Rule::BodySize => "body-size",
            Rule::WellFormed => "well-formed",
            Rule::ReasonOnFailure => "reason-on-failure",
            Rule::Headers => "headers",
            Rule::OneAnswer => "one-answer",
            Rule::AnswerInTime => "answer-in-time",
            Rule::Reply => "reply",
            Rule::Redelivery => "redelivery",
            Rule::Expectation => "expectation",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing, not a broken rule: the run still passes.
    Warning,
    /// A broken rule: the run fails.
    Error,
}

/// One thing the mock ROS noticed about an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// The rule concerned.
    pub rule: Rule,
    /// Whether it fails the run.
    pub severity: Severity,
    /// What happened, for a person.
    pub message: String,
}

impl Finding {
    /// A broken rule.
    pub fn error(rule: Rule, message: impl Into<String>) -> Self {
        Finding {
            rule,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// A warning.
    pub fn warning(rule: Rule, message: impl Into<String>) -> Self {
        Finding {
            rule,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    /// Whether this finding fails the run.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "violation",
            Severity::Warning => "warning",
        };
        write!(f, "{level} [{}]: {}", self.rule, self.message)
    }
}

/// Check one answer body against `request`; returns the answer when it parses.
pub(crate) fn check_answer(
    request: &Request,
    body: &[u8],
    findings: &mut Vec<Finding>,
) -> Option<Response> {
    if body.len() > MAX_BODY_BYTES {
        findings.push(Finding::error(
            Rule::BodySize,
            format!(
                "the answer body is {} bytes, over ROS's limit of {MAX_BODY_BYTES}",
                body.len()
            ),
        ));
    }
    let mut value: Value = match serde_json::from_slice(body) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => {
            findings.push(Finding::error(
                Rule::WellFormed,
                "the answer is JSON but not an object",
            ));
            return None;
        }
        Err(e) => {
            findings.push(Finding::error(
                Rule::WellFormed,
                format!("the answer is not JSON: {e}"),
            ));
            return None;
        }
    };
    // ROS makes PhysicalResourceId optional on FAILED; the Response type wants a string.
    if let Some(map) = value.as_object_mut() {
        if map.get("Status").and_then(Value::as_str) == Some("FAILED") {
            map.entry("PhysicalResourceId")
                .or_insert_with(|| Value::String(String::new()));
        }
    }
    let response: Response = match serde_json::from_value(value) {
        Ok(response) => response,
        Err(e) => {
            findings.push(Finding::error(
                Rule::WellFormed,
                format!("the answer is not a ROS response object: {e}"),
            ));
            return None;
        }
    };

    for (name, sent, got) in [
        ("RequestId", &request.request_id, &response.request_id),
        ("StackId", &request.stack_id, &response.stack_id),
        (
            "LogicalResourceId",
            &request.logical_resource_id,
            &response.logical_resource_id,
        ),
    ] {
        if sent != got {
            findings.push(Finding::error(
                Rule::IdentifiersCopied,
                format!("{name} is `{got}`, but the request sent `{sent}`"),
            ));
        }
    }

    let id = response.physical_resource_id.as_str();
    if id.len() > MAX_PHYSICAL_ID_BYTES {
        findings.push(Finding::error(
            Rule::PhysicalIdSize,
            format!(
                "the physical id is {} bytes, over ROS's limit of {MAX_PHYSICAL_ID_BYTES}",
                id.len()
            ),
        ));
    }
    match request.request_type {
        RequestType::Create => {
            if response.status == Status::Success && id.trim().is_empty() {
                findings.push(Finding::error(
                    Rule::PhysicalIdPresent,
                    "a successful Create must report a non-empty PhysicalResourceId",
                ));
            }
        }
        RequestType::Update | RequestType::Delete => {
            if let Some(sent) = request.physical_resource_id.as_deref() {
                if sent != id {
                    let (rule, what) = if request.request_type == RequestType::Update {
                        (
                            Rule::PhysicalIdStable,
                            "ROS does not allow a custom resource's id to change after Create",
                        )
                    } else {
                        (
                            Rule::DeleteEchoesId,
                            "a Delete must report the id it received",
                        )
                    };
                    findings.push(Finding::error(
                        rule,
                        format!(
                            "the {} answered with id `{id}` for `{sent}`: {what}",
                            request.request_type
                        ),
                    ));
                }
            }
        }
    }
    if response.status == Status::Failed
        && response
            .reason
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
    {
        findings.push(Finding::error(
            Rule::ReasonOnFailure,
            "a FAILED answer must say why in Reason",
        ));
    }
    Some(response)
}

/// Check the headers of a callback: JSON content type and a GMT `Date`.
pub(crate) fn check_headers(headers: &http::HeaderMap, findings: &mut Vec<Finding>) {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        findings.push(Finding::error(
            Rule::Headers,
            format!("the callback's Content-Type is `{content_type}`, not application/json"),
        ));
    }
    match headers.get(http::header::DATE).map(|v| v.to_str()) {
        Some(Ok(date)) if httpdate::parse_http_date(date).is_ok() => {}
        Some(_) => findings.push(Finding::error(
            Rule::Headers,
            "the callback's Date header is not a GMT date such as `Tue, 26 Nov 2019 08:46:44 GMT`",
        )),
        None => findings.push(Finding::error(
            Rule::Headers,
            "the callback has no Date header (ROS requires one)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: RequestType, id: Option<&str>) -> Request {
        let mut r = Request::new(kind, "Custom::X", "Res", "stack-1", "req-1");
        r.physical_resource_id = id.map(str::to_string);
        r
    }

    fn rules(request: &Request, body: &str) -> Vec<Rule> {
        let mut findings = Vec::new();
        check_answer(request, body.as_bytes(), &mut findings);
        findings.into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn good_answer_has_no_findings() {
        let body = r#"{"Status":"SUCCESS","PhysicalResourceId":"p","StackId":"stack-1","RequestId":"req-1","LogicalResourceId":"Res"}"#;
        assert!(rules(&request(RequestType::Create, None), body).is_empty());
    }

    #[test]
    fn changed_id_on_update_and_wrong_identifiers_are_caught() {
        let body = r#"{"Status":"SUCCESS","PhysicalResourceId":"new","StackId":"other","RequestId":"req-1","LogicalResourceId":"Res"}"#;
        assert_eq!(
            rules(&request(RequestType::Update, Some("old")), body),
            [Rule::IdentifiersCopied, Rule::PhysicalIdStable]
        );
    }

    #[test]
    fn failed_without_reason_or_id() {
        let body = r#"{"Status":"FAILED","StackId":"stack-1","RequestId":"req-1","LogicalResourceId":"Res"}"#;
        assert_eq!(
            rules(&request(RequestType::Create, None), body),
            [Rule::ReasonOnFailure]
        );
    }

    #[test]
    fn oversize_body_and_id() {
        let id = "x".repeat(5000);
        let body = format!(
            r#"{{"Status":"SUCCESS","PhysicalResourceId":"{id}","StackId":"stack-1","RequestId":"req-1","LogicalResourceId":"Res"}}"#
        );
        assert_eq!(
            rules(&request(RequestType::Create, None), &body),
            [Rule::BodySize, Rule::PhysicalIdSize]
        );
    }

    #[test]
    fn headers_need_json_and_date() {
        let mut findings = Vec::new();
        check_headers(&http::HeaderMap::new(), &mut findings);
        assert_eq!(findings.len(), 2);
    }
}
