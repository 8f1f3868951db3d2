//! Which API a request is for, the checks of its parameters, and the
//! services' answers.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::Service;
use super::reply::{self, Kind, Rendered, Reply};
use super::verify::{Refusal, Wire};

/// The parameters [`RecordedCall::summary`](super::RecordedCall::summary)
/// shows, in order.
pub(super) const KEY_PARAMS: &[&str] = &[
    "StackId",
    "LogicalResourceId",
    "Status",
    "UniqueId",
    "OperationId",
    "ExecutionId",
    "NotifyType",
    "stack_name",
    "marker",
];

const ROS_VERSION: &str = "2019-09-10";
const OOS_VERSION: &str = "2019-06-01";

/// RFS's documented code for missing parameters.
const RFS_MISSING: &str = "RF.10011001";
/// Not a documented code (the spec lists only `RF.10011001`): the
/// emulator's choice for a parameter present but invalid.
const RFS_INVALID: &str = "RF.10011002";

const SIGNAL_STATUSES: &[&str] = &["SUCCESS", "FAILURE", "WARNING"];
const NOTIFY_TYPES: &[&str] = &[
    "ExecuteTask",
    "CancelTask",
    "CompleteExecution",
    "Approve",
    "Reject",
    "RetryTask",
    "SkipTask",
];

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// An Alibaba RPC call (`POST /`, or anything with `x-acs-action` or
    /// `Action`).
    Alibaba {
        service: Service,
        action: String,
        version: String,
    },
    /// A path under `/v1/`.
    Rfs {
        /// Empty when the path and method are not an RFS action served.
        action: &'static str,
        project_id: String,
        stack_name: String,
    },
    /// Anything else.
    Unknown,
}

impl Route {
    pub(super) fn of(wire: &Wire) -> Route {
        let action = wire.header("x-acs-action").or_else(|| wire.param("Action"));
        if action.is_some() || wire.path == "/" {
            let action = action.unwrap_or("").to_string();
            let version = wire
                .header("x-acs-version")
                .or_else(|| wire.param("Version"))
                .unwrap_or("")
                .to_string();
            let service = match action.as_str() {
                "SignalResource" | "StopStackGroupOperation" => Service::Ros,
                "NotifyExecution" => Service::Oos,
                _ => match version.as_str() {
                    ROS_VERSION => Service::Ros,
                    OOS_VERSION => Service::Oos,
                    _ => Service::Unknown,
                },
            };
            return Route::Alibaba {
                service,
                action,
                version,
            };
        }
        if let Some(rest) = wire.path.strip_prefix("/v1/") {
            let segments: Vec<String> = rest
                .trim_end_matches('/')
                .split('/')
                .map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .collect();
            let (action, project_id, stack_name) = match (wire.method.as_str(), segments.as_slice())
            {
                ("GET", [p, stacks, s, plans])
                    if stacks == "stacks" && plans == "execution-plans" =>
                {
                    ("ListExecutionPlans", p, s)
                }
                ("POST", [p, stacks, s, rollbacks])
                    if stacks == "stacks" && rollbacks == "rollbacks" =>
                {
                    ("ContinueRollbackStack", p, s)
                }
                ("PATCH", [p, stacks, s]) if stacks == "stacks" => ("UpdateStack", p, s),
                (_, [p, stacks, s, ..]) if stacks == "stacks" => ("", p, s),
                _ => {
                    return Route::Rfs {
                        action: "",
                        project_id: segments.first().cloned().unwrap_or_default(),
                        stack_name: String::new(),
                    };
                }
            };
            return Route::Rfs {
                action,
                project_id: project_id.clone(),
                stack_name: stack_name.clone(),
            };
        }
        Route::Unknown
    }

    pub(super) fn service(&self) -> Service {
        match self {
            Route::Alibaba { service, .. } => *service,
            Route::Rfs { .. } => Service::Rfs,
            Route::Unknown => Service::Unknown,
        }
    }

    pub(super) fn action(&self) -> &str {
        match self {
            Route::Alibaba { action, .. } => action,
            Route::Rfs { action, .. } => action,
            Route::Unknown => "",
        }
    }

    pub(super) fn path_params(&self) -> Vec<(String, String)> {
        match self {
            Route::Rfs {
                project_id,
                stack_name,
                ..
            } => [("project_id", project_id), ("stack_name", stack_name)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The key id the request claims, whether or not it verified.
    pub(super) fn claimed_key(&self, wire: &Wire) -> Option<String> {
        let auth = wire.header("authorization");
        let from_auth = |prefix: &str, field: &str, separator: &str| {
            auth?
                .strip_prefix(prefix)?
                .split(separator)
                .find_map(|part| part.trim().strip_prefix(field))
                .map(str::to_string)
        };
        match self {
            Route::Alibaba { .. } => from_auth("ACS3-HMAC-SHA256 ", "Credential=", ",")
                .or_else(|| wire.param("AccessKeyId").map(str::to_string)),
            Route::Rfs { .. } => from_auth("SDK-HMAC-SHA256 ", "Access=", ","),
            Route::Unknown => None,
        }
    }

    /// The STS token sent: `x-acs-security-token`, V2's `SecurityToken`,
    /// or Huawei's `X-Security-Token`.
    pub(super) fn security_token(&self, wire: &Wire) -> Option<String> {
        let token = match self {
            Route::Alibaba { .. } => wire
                .header("x-acs-security-token")
                .or_else(|| wire.param("SecurityToken")),
            Route::Rfs { .. } => wire.header("x-security-token"),
            Route::Unknown => None,
        };
        token.map(str::to_string)
    }

    /// The service's answer to a signature that did not verify.
    pub(super) fn refusal(&self, refusal: &Refusal) -> Reply {
        match self {
            Route::Rfs { .. } => Reply::new(Kind::RfsError {
                status: 401,
                code: "APIGW.0301".into(),
                message: format!(
                    "Incorrect IAM authentication information: {}",
                    refusal.detail()
                ),
            }),
            _ => {
                let (status, code, message) = match refusal {
                    Refusal::UnknownKey(_) => (
                        400,
                        "InvalidAccessKeyId.NotFound",
                        "Specified access key is not found.",
                    ),
                    Refusal::Stale(_) => (
                        400,
                        "InvalidTimeStamp.Expired",
                        "Specified time stamp or date value is expired.",
                    ),
                    Refusal::Incomplete(_) => (
                        400,
                        "IncompleteSignature",
                        "The request signature does not conform to Aliyun standards.",
                    ),
                    Refusal::Mismatch(_) => (
                        403,
                        "SignatureDoesNotMatch",
                        "Specified signature is not matched with our calculation.",
                    ),
                    // ⚠️ The name is not confirmed by the docs (spec §1.5).
                    Refusal::NonceUsed(_) => (
                        400,
                        "SignatureNonceUsed",
                        "Specified signature nonce was used already.",
                    ),
                };
                Reply::alibaba_error(status, code, format!("{message} ({})", refusal.detail()))
            }
        }
    }

    /// The answer to a body over the limit.
    pub(super) fn too_large(&self) -> Reply {
        match self {
            Route::Rfs { .. } => {
                Reply::rfs_error(413, RFS_INVALID, "The request body is too large.")
            }
            _ => Reply::alibaba_error(
                413,
                "RequestLimitExceeded",
                "The request body is too large.",
            ),
        }
    }

    /// The built-in answer: a parameter error, or success.
    pub(super) fn answer(&self, wire: &Wire) -> Reply {
        let problem = match self {
            Route::Alibaba {
                service,
                action,
                version,
            } => check_alibaba(*service, action, version, wire),
            Route::Rfs {
                action,
                project_id,
                stack_name,
            } => check_rfs(action, project_id, stack_name, wire),
            Route::Unknown => Err(Reply::json(
                404,
                json!({
                    "Code": "NotFound",
                    "Message": "the API emulator serves POST / (ROS, OOS) and /v1/{project_id}/stacks/… (RFS)",
                })
                .to_string(),
            )),
        };
        problem.err().unwrap_or_else(Reply::success)
    }

    /// The service's success answer.
    /// `reply` rendered for this call; `None` to drop the connection.
    pub(super) fn render(
        &self,
        reply: &Reply,
        wire: &Wire,
        plans: &HashMap<String, Vec<Value>>,
    ) -> Option<Rendered> {
        reply.render(wire, self.service(), || self.success(wire, plans))
    }

    pub(super) fn success(&self, wire: &Wire, plans: &HashMap<String, Vec<Value>>) -> Rendered {
        match self {
            Route::Rfs {
                action, stack_name, ..
            } => {
                let request_id = reply::huawei_request_id();
                let (status, body) = match *action {
                    "ListExecutionPlans" => (200, list_plans(stack_name, wire, plans)),
                    "ContinueRollbackStack" => (
                        202,
                        json!({"deployment_id": uuid::Uuid::new_v4().to_string()}).to_string(),
                    ),
                    _ => (200, String::new()),
                };
                let mut headers = vec![("x-request-id".to_string(), request_id.clone())];
                if !body.is_empty() {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                Rendered {
                    status,
                    headers,
                    body,
                    request_id: Some(request_id),
                    error_code: None,
                }
            }
            _ => reply::alibaba_success(self.action(), wire),
        }
    }
}

fn missing(name: &str) -> Reply {
    Reply::alibaba_error(
        400,
        "MissingParameter",
        format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ),
    )
}

fn invalid(name: &str, reason: &str) -> Reply {
    Reply::alibaba_error(
        400,
        "InvalidParameter",
        format!("The specified parameter {name} is invalid, {reason}."),
    )
}

fn required<'a>(wire: &'a Wire, name: &str) -> Result<&'a str, Reply> {
    match wire.param(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(missing(name)),
    }
}

fn check_alibaba(service: Service, action: &str, version: &str, wire: &Wire) -> Result<(), Reply> {
    let expected = match service {
        Service::Ros => ROS_VERSION,
        Service::Oos => OOS_VERSION,
        _ => "",
    };
    if action.is_empty() {
        return Err(missing("Action"));
    }
    if !expected.is_empty() && version != expected {
        return Err(Reply::alibaba_error(
            400,
            "InvalidVersion",
            format!(
                "Specified parameter Version is not valid: {service} is API {expected}, not {version:?}."
            ),
        ));
    }
    match action {
        "SignalResource" => {
            for name in ["RegionId", "StackId", "LogicalResourceId"] {
                required(wire, name)?;
            }
            let status = required(wire, "Status")?;
            if !SIGNAL_STATUSES.contains(&status) {
                return Err(invalid("Status", "it must be SUCCESS, FAILURE or WARNING"));
            }
            let unique_id = required(wire, "UniqueId")?;
            if unique_id.chars().count() > 64 {
                return Err(invalid("UniqueId", "it must be 1 to 64 characters"));
            }
            if let Some(token) = wire.param("ClientToken") {
                let ok = (1..=64).contains(&token.len())
                    && token
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !ok {
                    return Err(invalid(
                        "ClientToken",
                        "it must be at most 64 letters, digits, '-' and '_'",
                    ));
                }
            }
            Ok(())
        }
        "StopStackGroupOperation" => {
            required(wire, "RegionId")?;
            required(wire, "OperationId")?;
            Ok(())
        }
        "NotifyExecution" => {
            required(wire, "ExecutionId")?;
            let kind = required(wire, "NotifyType")?;
            if !NOTIFY_TYPES.contains(&kind) {
                return Err(invalid(
                    "NotifyType",
                    &format!("it must be one of {}", NOTIFY_TYPES.join(", ")),
                ));
            }
            if let Some(text) = wire.param("Parameters") {
                if !matches!(serde_json::from_str(text), Ok(Value::Object(_))) {
                    return Err(invalid("Parameters", "it must be a JSON object"));
                }
            }
            if let Some(text) = wire.param("TaskExecutionIds") {
                let ok = matches!(serde_json::from_str(text), Ok(Value::Array(items)) if items.iter().all(Value::is_string));
                if !ok {
                    return Err(invalid(
                        "TaskExecutionIds",
                        "it must be a JSON array of strings",
                    ));
                }
            }
            Ok(())
        }
        _ => Err(Reply::alibaba_error(
            404,
            "InvalidAction.NotFound",
            format!("Specified api is not found, please check your url and method: {action}."),
        )),
    }
}

fn rfs_missing(what: &str) -> Reply {
    Reply::rfs_error(
        400,
        RFS_MISSING,
        format!("Missing required parameter(s): {what}."),
    )
}

fn rfs_invalid(what: &str, reason: &str) -> Reply {
    Reply::rfs_error(
        400,
        RFS_INVALID,
        format!("Invalid parameter {what}: {reason}."),
    )
}

fn check_stack_id(value: Option<&str>) -> Result<(), Reply> {
    match value {
        Some(id) if id.len() != 36 => {
            Err(rfs_invalid("stack_id", "it must be a 36-character UUID"))
        }
        _ => Ok(()),
    }
}

fn check_rfs(action: &str, project_id: &str, stack_name: &str, wire: &Wire) -> Result<(), Reply> {
    if action.is_empty() {
        return Err(Reply::rfs_error(
            404,
            "APIGW.0101",
            format!(
                "The API does not exist or has not been published in the environment: {} {}",
                wire.method, wire.path
            ),
        ));
    }
    if !(3..=64).contains(&project_id.chars().count()) {
        return Err(rfs_invalid("project_id", "it must be 3 to 64 characters"));
    }
    let name_ok = (1..=128).contains(&stack_name.chars().count())
        && stack_name.chars().next().is_some_and(char::is_alphabetic)
        && stack_name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(rfs_invalid(
            "stack_name",
            "it must start with a letter, then letters, digits, '_' and '-' (1 to 128)",
        ));
    }
    match action {
        "ListExecutionPlans" => {
            check_stack_id(wire.param("stack_id"))?;
            if let Some(limit) = wire.param("limit") {
                if !limit.parse::<u32>().is_ok_and(|l| (10..=1000).contains(&l)) {
                    return Err(rfs_invalid("limit", "it must be 10 to 1000"));
                }
            }
            if let Some(marker) = wire.param("marker") {
                if !(1..=512).contains(&marker.len()) {
                    return Err(rfs_invalid("marker", "it must be 1 to 512 characters"));
                }
            }
            Ok(())
        }
        "ContinueRollbackStack" => {
            if wire.body.is_empty() {
                return Ok(());
            }
            let body = json_object(wire)?;
            check_stack_id(body.get("stack_id").and_then(Value::as_str))
        }
        _ => {
            let body = json_object(wire)?;
            check_stack_id(body.get("stack_id").and_then(Value::as_str))?;
            if let Some(description) = body.get("description") {
                if description
                    .as_str()
                    .is_none_or(|d| d.chars().count() > 1024)
                {
                    return Err(rfs_invalid(
                        "description",
                        "it must be a string of at most 1024 characters",
                    ));
                }
            }
            for flag in ["enable_deletion_protection", "enable_auto_rollback"] {
                if body.get(flag).is_some_and(|v| !v.is_boolean()) {
                    return Err(rfs_invalid(flag, "it must be a boolean"));
                }
            }
            if let Some(agencies) = body.get("agencies") {
                let Some(agencies) = agencies.as_array() else {
                    return Err(rfs_invalid("agencies", "it must be an array"));
                };
                let mut providers = Vec::new();
                for (i, agency) in agencies.iter().enumerate() {
                    let Some(provider) = agency.get("provider_name").and_then(Value::as_str) else {
                        return Err(rfs_missing(&format!("agencies[{i}].provider_name")));
                    };
                    if providers.contains(&provider) {
                        return Err(rfs_invalid(
                            &format!("agencies[{i}].provider_name"),
                            "it appears more than once",
                        ));
                    }
                    providers.push(provider);
                    let name = agency.get("agency_name").is_some();
                    let urn = agency.get("agency_urn").is_some();
                    if name == urn {
                        return Err(rfs_invalid(
                            &format!("agencies[{i}]"),
                            "it needs exactly one of agency_name and agency_urn",
                        ));
                    }
                }
            }
            Ok(())
        }
    }
}

fn json_object(wire: &Wire) -> Result<serde_json::Map<String, Value>, Reply> {
    match serde_json::from_slice(&wire.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(rfs_invalid("body", "it must be a JSON object")),
    }
}

/// One page of a stack's plans: `limit` per page (default 1000), `marker`
/// the offset the previous page's `next_marker` gave.
fn list_plans(stack_name: &str, wire: &Wire, plans: &HashMap<String, Vec<Value>>) -> String {
    let default;
    let all = match plans.get(stack_name) {
        Some(list) => list,
        None => {
            default = vec![json!({
                "stack_name": stack_name,
                "stack_id": wire.param("stack_id").unwrap_or("4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff"),
                "execution_plan_id": "0c2f3a9e-1111-4111-8111-111111111111",
                "execution_plan_name": "plan-1",
                "description": "emulated by stackhook",
                "status": "AVAILABLE",
                "create_time": "2024-01-01T00:00:00Z",
            })];
            &default
        }
    };
    let limit = wire
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000);
    let start = wire
        .param("marker")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(0)
        .min(all.len());
    let end = (start + limit).min(all.len());
    let page = &all[start..end];
    let mut page_info = json!({"current_count": page.len()});
    if end < all.len() {
        page_info["next_marker"] = Value::from(end.to_string());
    }
    if start > 0 {
        page_info["previous_marker"] = Value::from(start.saturating_sub(limit).to_string());
    }
    json!({"execution_plans": page, "page_info": page_info}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(method: &str, path: &str, query: &[(&str, &str)], body: &str) -> Wire {
        Wire {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    fn rfs_code(wire: &Wire) -> Option<String> {
        let route = Route::of(wire);
        let reply = route.answer(wire);
        route
            .render(&reply, wire, &HashMap::new())
            .and_then(|r| r.error_code)
    }

    #[test]
    fn rfs_paths_route_to_their_actions() {
        let cases = [
            (
                "GET",
                "/v1/p12/stacks/s/execution-plans",
                "ListExecutionPlans",
            ),
            (
                "POST",
                "/v1/p12/stacks/s/rollbacks",
                "ContinueRollbackStack",
            ),
            ("PATCH", "/v1/p12/stacks/s", "UpdateStack"),
            ("DELETE", "/v1/p12/stacks/s", ""),
        ];
        for (method, path, action) in cases {
            let route = Route::of(&wire(method, path, &[], ""));
            assert_eq!(route.action(), action, "{method} {path}");
            assert_eq!(route.service(), Service::Rfs);
        }
        assert_eq!(
            rfs_code(&wire("DELETE", "/v1/p12/stacks/s", &[], "")).as_deref(),
            Some("APIGW.0101")
        );
        assert_eq!(Route::of(&wire("POST", "/handle", &[], "")), Route::Unknown);
    }

    #[test]
    fn rfs_parameters_are_checked() {
        let plans = "/v1/p12/stacks/my-stack/execution-plans";
        assert_eq!(rfs_code(&wire("GET", plans, &[("limit", "10")], "")), None);
        for query in [("limit", "5"), ("limit", "x"), ("stack_id", "short")] {
            assert_eq!(
                rfs_code(&wire("GET", plans, &[query], "")).as_deref(),
                Some(RFS_INVALID),
                "{query:?}"
            );
        }
        let bad_name = "/v1/p12/stacks/1-stack/execution-plans";
        assert_eq!(
            rfs_code(&wire("GET", bad_name, &[], "")).as_deref(),
            Some(RFS_INVALID)
        );
        let update = "/v1/p12/stacks/my-stack";
        for body in [
            r#"{"agencies":[{"provider_name":"huaweicloud","agency_name":"a","agency_urn":"u"}]}"#,
            r#"{"agencies":[{"provider_name":"h","agency_name":"a"},{"provider_name":"h","agency_urn":"u"}]}"#,
            r#"{"enable_auto_rollback":"yes"}"#,
            "[]",
        ] {
            assert_eq!(
                rfs_code(&wire("PATCH", update, &[], body)).as_deref(),
                Some(RFS_INVALID),
                "{body}"
            );
        }
        assert_eq!(
            rfs_code(&wire(
                "PATCH",
                update,
                &[],
                r#"{"agencies":[{"agency_name":"a"}]}"#
            ))
            .as_deref(),
            Some(RFS_MISSING)
        );
        assert_eq!(
            rfs_code(&wire(
                "PATCH",
                update,
                &[],
                r#"{"enable_auto_rollback":true,"agencies":[{"provider_name":"huaweicloud","agency_name":"rf_admin_trust"}]}"#
            )),
            None
        );
    }

    #[test]
    fn list_plans_pages_by_limit_and_marker() {
        let mut plans = HashMap::new();
        plans.insert(
            "s".to_string(),
            (0..12).map(|i| json!({"execution_plan_name": i})).collect(),
        );
        let page: Value = serde_json::from_str(&list_plans(
            "s",
            &wire("GET", "/", &[("limit", "10")], ""),
            &plans,
        ))
        .unwrap_or_default();
        assert_eq!(page["execution_plans"].as_array().map(Vec::len), Some(10));
        assert_eq!(page["page_info"]["next_marker"], "10");
        let page: Value = serde_json::from_str(&list_plans(
            "s",
            &wire("GET", "/", &[("limit", "10"), ("marker", "10")], ""),
            &plans,
        ))
        .unwrap_or_default();
        assert_eq!(page["page_info"]["current_count"], 2);
        assert!(page["page_info"].get("next_marker").is_none());
    }
}
