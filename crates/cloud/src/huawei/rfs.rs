//! Huawei Cloud RFS (Resource Formation Service, v1): `ListExecutionPlans`,
//! `ContinueRollbackStack` and `UpdateStack`.
//!
//! The endpoint is `https://rfs.<region>.myhuaweicloud.com`, except
//! `eu-west-101` (`https://aos.myhuaweicloud.eu`). Every call carries a fresh
//! `Client-Request-Id` (a UUID, kept across the retries of one call),
//! `X-Project-Id` and `Content-Type: application/json`, signed with
//! `SDK-HMAC-SHA256`. Error bodies (`error_code`, `error_msg`, `details`)
//! become [`ApiError`]s with the `X-Request-Id` header as request id; 429,
//! 5xx and transport errors are retried.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api_error::ApiError;
use crate::clock;
use crate::credentials::{HUAWEI_PROJECT_ID, HuaweiCredentials};
use crate::encode::{canonical_query, percent_encode};
use crate::error::{Error, Result};
use crate::huawei::signer;
use crate::retry::RetryPolicy;
use crate::transport::{self, Verdict};
use crate::validate;

const SERVICE: &str = "RFS";

/// The most pages [`RfsClient::list_all_execution_plans`] follows, so a
/// misbehaving `next_marker` cannot loop forever (at 1000 plans a page).
pub const MAX_PAGES: usize = 100;

/// The RFS host for a region.
pub fn endpoint_for_region(region: &str) -> String {
    match region {
        "eu-west-101" => "https://aos.myhuaweicloud.eu".to_string(),
        _ => format!("https://rfs.{region}.myhuaweicloud.com"),
    }
}

/// An agency RFS uses for a provider: exactly one of `agency_name` and
/// `agency_urn` (the URN is recommended for trust agencies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Agency {
    /// The provider, e.g. `huaweicloud`.
    pub provider_name: String,
    /// The agency's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_name: Option<String>,
    /// The agency's URN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_urn: Option<String>,
}

impl Agency {
    /// An agency from its parts ([`UpdateStackRequest::validate`] checks
    /// that exactly one reference is given).
    pub fn new(
        provider_name: impl Into<String>,
        agency_name: Option<String>,
        agency_urn: Option<String>,
    ) -> Self {
        Agency {
            provider_name: provider_name.into(),
            agency_name,
            agency_urn,
        }
    }
    /// An agency given by name.
    pub fn by_name(provider_name: impl Into<String>, agency_name: impl Into<String>) -> Self {
        Agency {
            provider_name: provider_name.into(),
            agency_name: Some(agency_name.into()),
            agency_urn: None,
        }
    }
    /// An agency given by URN.
    pub fn by_urn(provider_name: impl Into<String>, agency_urn: impl Into<String>) -> Self {
        Agency {
            provider_name: provider_name.into(),
            agency_name: None,
            agency_urn: Some(agency_urn.into()),
        }
    }
}

/// One execution plan, as `ListExecutionPlans` summarises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct ExecutionPlan {
    /// The stack's name.
    pub stack_name: Option<String>,
    /// The stack's id.
    pub stack_id: Option<String>,
    /// The plan's id.
    pub execution_plan_id: Option<String>,
    /// The plan's name.
    pub execution_plan_name: Option<String>,
    /// The plan's description.
    pub description: Option<String>,
    /// `CREATION_IN_PROGRESS`, `CREATION_FAILED`, `AVAILABLE`,
    /// `APPLY_IN_PROGRESS` or `APPLIED`.
    pub status: Option<String>,
    /// Why creation failed.
    pub status_message: Option<String>,
    /// RFC 3339 UTC.
    pub create_time: Option<String>,
    /// RFC 3339 UTC.
    pub apply_time: Option<String>,
}

/// Pagination markers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct PageInfo {
    /// Pass as `marker` for the next page; absent on the last page.
    pub next_marker: Option<String>,
    /// The previous page's marker.
    pub previous_marker: Option<String>,
    /// Items on this page.
    pub current_count: Option<u64>,
}

/// `ListExecutionPlans`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListExecutionPlansRequest {
    /// 1–128 characters: a letter, then letters, digits, `_` and `-`.
    pub stack_name: String,
    /// Guard: fail unless the stack with that name has this id (UUID).
    pub stack_id: Option<String>,
    /// The previous page's `next_marker` (1–512 characters).
    pub marker: Option<String>,
    /// Page size, 10–1000 (default 1000).
    pub limit: Option<u32>,
}

impl ListExecutionPlansRequest {
    /// A request for a stack's plans.
    pub fn new(stack_name: impl Into<String>) -> Self {
        ListExecutionPlansRequest {
            stack_name: stack_name.into(),
            stack_id: None,
            marker: None,
            limit: None,
        }
    }
    /// Set the stack-id guard.
    #[must_use]
    pub fn with_stack_id(mut self, stack_id: impl Into<String>) -> Self {
        self.stack_id = Some(stack_id.into());
        self
    }
    /// Set the page marker.
    #[must_use]
    pub fn with_marker(mut self, marker: impl Into<String>) -> Self {
        self.marker = Some(marker.into());
        self
    }
    /// Set the page size.
    #[must_use]
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Check every documented constraint.
    ///
    /// # Errors
    /// [`Error::Validation`] naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        validate_stack(&self.stack_name, self.stack_id.as_deref())?;
        if let Some(marker) = &self.marker {
            validate::length("marker", marker, 1, 512)?;
        }
        if let Some(limit) = self.limit {
            if !(10..=1000).contains(&limit) {
                return Err(Error::validation(
                    "limit",
                    format!("must be between 10 and 1000, not {limit}"),
                ));
            }
        }
        Ok(())
    }
}

/// The answer of `ListExecutionPlans`, newest plan first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub struct ListExecutionPlansResponse {
    /// The plans.
    #[serde(default)]
    pub execution_plans: Vec<ExecutionPlan>,
    /// Pagination, when the region supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_info: Option<PageInfo>,
    /// The `X-Request-Id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `ContinueRollbackStack`: retry a failed auto-rollback (stack in
/// `ROLLBACK_FAILED`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContinueRollbackStackRequest {
    /// The stack's name.
    pub stack_name: String,
    /// Guard: the stack's id.
    pub stack_id: Option<String>,
}

impl ContinueRollbackStackRequest {
    /// A request.
    pub fn new(stack_name: impl Into<String>) -> Self {
        ContinueRollbackStackRequest {
            stack_name: stack_name.into(),
            stack_id: None,
        }
    }
    /// Set the stack-id guard.
    #[must_use]
    pub fn with_stack_id(mut self, stack_id: impl Into<String>) -> Self {
        self.stack_id = Some(stack_id.into());
        self
    }
    /// Check every documented constraint.
    ///
    /// # Errors
    /// [`Error::Validation`] naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        validate_stack(&self.stack_name, self.stack_id.as_deref())
    }
}

/// The answer of `ContinueRollbackStack` (HTTP 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContinueRollbackStackResponse {
    /// The deployment the rollback runs as.
    pub deployment_id: String,
    /// The `X-Request-Id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `UpdateStack`: change a stack's settings. Fields left unset are not
/// touched; fields set replace the old value entirely (agencies included:
/// read, merge, then send the merged list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UpdateStackRequest {
    /// The stack's name (in the path, not the body).
    #[serde(skip)]
    pub stack_name: String,
    /// Guard: the stack's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<String>,
    /// 0–1024 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Deletion protection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_deletion_protection: Option<bool>,
    /// Automatic rollback on failed deployments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_auto_rollback: Option<bool>,
    /// The agencies, replacing the current list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agencies: Option<Vec<Agency>>,
}

impl UpdateStackRequest {
    /// A request that changes nothing yet.
    pub fn new(stack_name: impl Into<String>) -> Self {
        UpdateStackRequest {
            stack_name: stack_name.into(),
            stack_id: None,
            description: None,
            enable_deletion_protection: None,
            enable_auto_rollback: None,
            agencies: None,
        }
    }
    /// Set the stack-id guard.
    #[must_use]
    pub fn with_stack_id(mut self, stack_id: impl Into<String>) -> Self {
        self.stack_id = Some(stack_id.into());
        self
    }
    /// Set the description.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
    /// Switch deletion protection.
    #[must_use]
    pub fn with_deletion_protection(mut self, on: bool) -> Self {
        self.enable_deletion_protection = Some(on);
        self
    }
    /// Switch automatic rollback.
    #[must_use]
    pub fn with_auto_rollback(mut self, on: bool) -> Self {
        self.enable_auto_rollback = Some(on);
        self
    }
    /// Replace the agencies.
    #[must_use]
    pub fn with_agencies(mut self, agencies: Vec<Agency>) -> Self {
        self.agencies = Some(agencies);
        self
    }

    /// Whether any setting would change.
    pub fn changes_anything(&self) -> bool {
        self.description.is_some()
            || self.enable_deletion_protection.is_some()
            || self.enable_auto_rollback.is_some()
            || self.agencies.is_some()
    }

    /// Check every documented constraint.
    ///
    /// # Errors
    /// [`Error::Validation`] naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        validate_stack(&self.stack_name, self.stack_id.as_deref())?;
        if !self.changes_anything() {
            return Err(Error::validation(
                "UpdateStack",
                "set at least one of description, enable_deletion_protection, enable_auto_rollback and agencies",
            ));
        }
        if let Some(description) = &self.description {
            validate::length("description", description, 0, 1024)?;
        }
        for (i, agency) in self.agencies.iter().flatten().enumerate() {
            let field = format!("agencies[{i}]");
            validate::required(&format!("{field}.provider_name"), &agency.provider_name)?;
            match (&agency.agency_name, &agency.agency_urn) {
                (Some(name), None) => validate::required(&format!("{field}.agency_name"), name)?,
                (None, Some(urn)) => validate::required(&format!("{field}.agency_urn"), urn)?,
                _ => {
                    return Err(Error::validation(
                        field,
                        "needs exactly one of agency_name and agency_urn",
                    ));
                }
            }
            let agencies = self.agencies.iter().flatten();
            if agencies
                .take(i)
                .any(|other| other.provider_name == agency.provider_name)
            {
                return Err(Error::validation(
                    format!("{field}.provider_name"),
                    format!("{:?} appears more than once", agency.provider_name),
                ));
            }
        }
        Ok(())
    }
}

/// The answer of `UpdateStack`: no body, only the request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UpdateStackResponse {
    /// The HTTP status (200 or 204).
    pub http_status: u16,
    /// The `X-Request-Id` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn validate_stack(stack_name: &str, stack_id: Option<&str>) -> Result<()> {
    validate::length("stack_name", stack_name, 1, 128)?;
    let first_ok = stack_name.chars().next().is_some_and(char::is_alphabetic);
    if !first_ok {
        return Err(Error::validation("stack_name", "must start with a letter"));
    }
    validate::chars(
        "stack_name",
        stack_name,
        |c| c.is_alphanumeric() || c == '_' || c == '-',
        "letters, digits, '_' and '-'",
    )?;
    if let Some(id) = stack_id {
        validate::uuid("stack_id", id)?;
    }
    Ok(())
}

/// An RFS client for one region and project.
#[derive(Debug, Clone)]
pub struct RfsClient {
    endpoint: Url,
    credentials: HuaweiCredentials,
    project_id: String,
    retry: RetryPolicy,
    timeout: Duration,
    http: Option<reqwest::Client>,
}

impl RfsClient {
    /// A client for `region`, with the credentials' project id.
    ///
    /// # Errors
    /// [`Error::Credentials`] when no project id is known
    /// (`HUAWEICLOUD_SDK_PROJECT_ID`); [`Error::Validation`] for a bad
    /// region or project id.
    pub fn new(credentials: HuaweiCredentials, region: &str) -> Result<Self> {
        validate::length("region", region, 1, 64)?;
        validate::chars(
            "region",
            region,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
            "lowercase letters, digits and '-' (e.g. cn-north-4)",
        )?;
        let project_id = credentials
            .project_id()
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Credentials(format!(
                    "no project id: set environment variable {HUAWEI_PROJECT_ID}"
                ))
            })?;
        validate_project(&project_id)?;
        Ok(RfsClient {
            endpoint: transport::parse_endpoint(&endpoint_for_region(region))?,
            credentials,
            project_id,
            retry: RetryPolicy::default(),
            timeout: transport::DEFAULT_TIMEOUT,
            http: None,
        })
    }

    /// Use another project id.
    ///
    /// # Errors
    /// [`Error::Validation`] when it is not 3–64 characters.
    pub fn with_project_id(mut self, project_id: impl Into<String>) -> Result<Self> {
        let project_id = project_id.into();
        validate_project(&project_id)?;
        self.project_id = project_id;
        Ok(self)
    }

    /// Send to another endpoint: a host or an `http(s)://` URL.
    ///
    /// # Errors
    /// [`Error::Validation`] when it is not a usable URL.
    pub fn with_endpoint(mut self, endpoint: &str) -> Result<Self> {
        self.endpoint = transport::parse_endpoint(endpoint)?;
        Ok(self)
    }

    /// Retry with this policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Give each attempt this long.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint calls go to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// One page of a stack's execution plans, newest first.
    ///
    /// # Errors
    /// [`Error::Validation`] before sending; [`Error::Api`] (404 when the
    /// stack does not exist) or [`Error::Transport`] after.
    pub async fn list_execution_plans(
        &self,
        request: &ListExecutionPlansRequest,
    ) -> Result<ListExecutionPlansResponse> {
        request.validate()?;
        let mut query = Vec::new();
        if let Some(id) = &request.stack_id {
            query.push(("stack_id".to_string(), id.clone()));
        }
        if let Some(marker) = &request.marker {
            query.push(("marker".to_string(), marker.clone()));
        }
        if let Some(limit) = request.limit {
            query.push(("limit".to_string(), limit.to_string()));
        }
        let path = self.path(&[&request.stack_name, "execution-plans"]);
        self.send(
            "ListExecutionPlans",
            Method::GET,
            &path,
            &query,
            None,
            |status, request_id, body| {
                if status != 200 {
                    return None;
                }
                let mut response: ListExecutionPlansResponse = serde_json::from_slice(body).ok()?;
                let is_object = serde_json::from_slice::<Value>(body).ok()?.is_object();
                response.request_id = request_id;
                is_object.then_some(response)
            },
        )
        .await
    }

    /// Every execution plan of a stack, following `next_marker` (at most
    /// [`MAX_PAGES`] pages).
    ///
    /// # Errors
    /// As [`list_execution_plans`](Self::list_execution_plans).
    pub async fn list_all_execution_plans(
        &self,
        stack_name: &str,
        stack_id: Option<&str>,
    ) -> Result<Vec<ExecutionPlan>> {
        let mut request = ListExecutionPlansRequest::new(stack_name);
        request.stack_id = stack_id.map(str::to_string);
        let mut plans = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.list_execution_plans(&request).await?;
            plans.extend(page.execution_plans);
            match page.page_info.and_then(|p| p.next_marker) {
                Some(marker) if !marker.is_empty() && request.marker.as_ref() != Some(&marker) => {
                    request.marker = Some(marker);
                }
                _ => return Ok(plans),
            }
        }
        Ok(plans)
    }

    /// Retry a failed auto-rollback; RFS answers 202 with a deployment id.
    ///
    /// # Errors
    /// As [`list_execution_plans`](Self::list_execution_plans).
    pub async fn continue_rollback_stack(
        &self,
        request: &ContinueRollbackStackRequest,
    ) -> Result<ContinueRollbackStackResponse> {
        request.validate()?;
        let mut body = serde_json::Map::new();
        if let Some(id) = &request.stack_id {
            body.insert("stack_id".into(), Value::from(id.clone()));
        }
        let body = Value::Object(body).to_string().into_bytes();
        let path = self.path(&[&request.stack_name, "rollbacks"]);
        self.send(
            "ContinueRollbackStack",
            Method::POST,
            &path,
            &[],
            Some(body),
            |status, request_id, body| {
                if !(200..300).contains(&status) {
                    return None;
                }
                let mut response: ContinueRollbackStackResponse =
                    serde_json::from_slice(body).ok()?;
                response.request_id = request_id;
                (!response.deployment_id.is_empty()).then_some(response)
            },
        )
        .await
    }

    /// Change a stack's settings.
    ///
    /// # Errors
    /// As [`list_execution_plans`](Self::list_execution_plans).
    pub async fn update_stack(&self, request: &UpdateStackRequest) -> Result<UpdateStackResponse> {
        request.validate()?;
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::validation("UpdateStack", e.to_string()))?;
        let path = self.path(&[&request.stack_name]);
        self.send(
            "UpdateStack",
            Method::PATCH,
            &path,
            &[],
            Some(body),
            |status, request_id, _| {
                Some(UpdateStackResponse {
                    http_status: status,
                    request_id,
                })
            },
        )
        .await
    }

    /// `/v1/{project_id}/stacks/{segments…}`, each segment encoded.
    fn path(&self, segments: &[&str]) -> String {
        let mut path = format!("/v1/{}/stacks", percent_encode(&self.project_id));
        for segment in segments {
            path.push('/');
            path.push_str(&percent_encode(segment));
        }
        path
    }

    /// Sign and send, retrying 429, 5xx and transport errors. `parse` turns
    /// a 2xx answer into the result, or `None` when it is malformed.
    async fn send<T>(
        &self,
        action: &'static str,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
        parse: impl Fn(u16, Option<String>, &[u8]) -> Option<T>,
    ) -> Result<T> {
        let client = match &self.http {
            Some(client) => client.clone(),
            None => transport::shared_client()?,
        };
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let body = body.unwrap_or_default();
        transport::attempts(
            SERVICE,
            action,
            &self.retry,
            self.timeout,
            || {
                let (url, headers) = self.sign(
                    &method,
                    path,
                    query,
                    &body,
                    &client_request_id,
                    SystemTime::now(),
                )?;
                Ok(client
                    .request(method.clone(), url)
                    .headers(headers)
                    .body(body.clone()))
            },
            |reply| {
                let request_id = reply
                    .headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if (200..300).contains(&reply.status) {
                    return match parse(reply.status, request_id, &reply.body) {
                        Some(value) => Verdict::Done(value),
                        None => Verdict::Fail(Error::Transport {
                            service: SERVICE,
                            message: format!(
                                "{action}: malformed answer (HTTP {}): {}",
                                reply.status,
                                transport::excerpt(&reply.body)
                            ),
                        }),
                    };
                }
                let mut error = parse_error(reply.status, &reply.body);
                if request_id.is_some() {
                    error.request_id = request_id;
                }
                if let Some(token) = self.credentials.security_token() {
                    error.redact(token);
                }
                let retryable = reply.status == 429 || reply.status >= 500;
                let error = Error::Api(Box::new(error));
                if retryable {
                    Verdict::Retry {
                        error,
                        time_left: None,
                    }
                } else {
                    Verdict::Fail(error)
                }
            },
        )
        .await
    }

    /// The URL and signed headers of one attempt at `now`.
    fn sign(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
        client_request_id: &str,
        now: SystemTime,
    ) -> Result<(Url, HeaderMap)> {
        let mut url = self.endpoint.clone();
        url.set_path(path);
        let canonical = canonical_query(query);
        url.set_query((!canonical.is_empty()).then_some(canonical.as_str()));
        let date = clock::sdk_date(now);
        let mut signed: Vec<(String, String)> = vec![
            ("host".into(), transport::host_header(&self.endpoint)),
            ("x-sdk-date".into(), date.clone()),
            ("content-type".into(), "application/json".into()),
            ("client-request-id".into(), client_request_id.into()),
            ("x-project-id".into(), self.project_id.clone()),
        ];
        if let Some(token) = self.credentials.security_token() {
            signed.push(("x-security-token".into(), token.into()));
        }
        let authorization = signer::authorization(
            &signer::SignInput {
                method: method.as_str(),
                path,
                query,
                headers: &signed,
                body,
                sdk_date: &date,
            },
            self.credentials.ak(),
            self.credentials.sk(),
        );
        signed.push(("authorization".into(), authorization));
        let mut headers = HeaderMap::new();
        for (name, value) in signed {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| Error::Credentials(format!("{name} is not a header name")))?;
            // Keys and tokens are the only free-form values; never echo them.
            let value = HeaderValue::try_from(value).map_err(|_| {
                Error::Credentials(format!(
                    "the value for header {name} has invalid characters"
                ))
            })?;
            headers.insert(name, value);
        }
        Ok((url, headers))
    }
}

fn validate_project(project_id: &str) -> Result<()> {
    validate::length("project_id", project_id, 3, 64)?;
    validate::chars(
        "project_id",
        project_id,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        "letters, digits, '-' and '_'",
    )
}

/// Read a Huawei error body (`error_code`/`error_msg`, then
/// `errorCode`/`errorMsg`, then `code`/`message`) into an [`ApiError`].
fn parse_error(status: u16, body: &[u8]) -> ApiError {
    let mut error = ApiError::new(SERVICE, status, "", "");
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        error.message = transport::excerpt(body);
        return error;
    };
    let text = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| map.get(*n).and_then(Value::as_str))
            .map(str::to_string)
    };
    error.code = text(&["error_code", "errorCode", "code"]).unwrap_or_default();
    error.message = text(&["error_msg", "errorMsg", "message"]).unwrap_or_default();
    error.request_id = text(&["request_id"]);
    if let Some(Value::Array(details)) = map.get("details") {
        error.details = details
            .iter()
            .map(|d| {
                let get = |k: &str| {
                    d.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                (get("error_code"), get("error_msg"))
            })
            .collect();
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> RfsClient {
        RfsClient::new(
            HuaweiCredentials::new(
                "QTWAOYTTINDUT2QVKYUC",
                "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
            )
            .with_project_id("77b6a44cba5143ab91d13ab9a8ff44fd"),
            "cn-north-4",
        )
        .expect("valid")
    }

    #[test]
    fn signs_like_the_sdk_golden() {
        let c = client();
        let path = c.path(&["my-stack", "execution-plans"]);
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_573_789_015);
        let (url, headers) = c
            .sign(
                &Method::GET,
                &path,
                &[],
                b"",
                "6f1b8d1e-2c1a-4b8e-9a6e-3f2d1c0b9a87",
                now,
            )
            .expect("signs");
        assert_eq!(
            url.as_str(),
            "https://rfs.cn-north-4.myhuaweicloud.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/stacks/my-stack/execution-plans"
        );
        assert_eq!(
            headers["authorization"],
            "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=client-request-id;content-type;host;x-project-id;x-sdk-date, Signature=b65201839c762da428029ee4e7424739e47502925da92ef772b8f55805a2e4ca"
        );
    }

    #[test]
    fn update_body_has_only_set_fields() {
        let r = UpdateStackRequest::new("my-stack")
            .with_auto_rollback(true)
            .with_agencies(vec![Agency::by_name("huaweicloud", "rf_admin_trust")]);
        assert_eq!(
            serde_json::to_string(&r).expect("serializes"),
            r#"{"enable_auto_rollback":true,"agencies":[{"provider_name":"huaweicloud","agency_name":"rf_admin_trust"}]}"#
        );
    }

    #[test]
    fn agencies_need_exactly_one_reference() {
        let both = Agency {
            provider_name: "huaweicloud".into(),
            agency_name: Some("a".into()),
            agency_urn: Some("u".into()),
        };
        let neither = Agency {
            provider_name: "huaweicloud".into(),
            agency_name: None,
            agency_urn: None,
        };
        for agency in [both, neither] {
            let e = UpdateStackRequest::new("s")
                .with_agencies(vec![agency])
                .validate()
                .expect_err("invalid");
            assert!(e.to_string().contains("agencies[0]"), "{e}");
        }
        let e = UpdateStackRequest::new("s")
            .with_agencies(vec![Agency::by_name("p", "a"), Agency::by_urn("p", "u")])
            .validate()
            .expect_err("duplicate");
        assert!(e.to_string().contains("agencies[1].provider_name"), "{e}");
    }

    #[test]
    fn stack_and_paging_constraints() {
        assert!(ListExecutionPlansRequest::new("9lives").validate().is_err());
        assert!(
            ListExecutionPlansRequest::new("my stack")
                .validate()
                .is_err()
        );
        assert!(ListExecutionPlansRequest::new("栈-1").validate().is_ok());
        assert!(
            ListExecutionPlansRequest::new("s".repeat(129))
                .validate()
                .is_err()
        );
        assert!(
            ListExecutionPlansRequest::new("s")
                .with_limit(9)
                .validate()
                .is_err()
        );
        assert!(
            ListExecutionPlansRequest::new("s")
                .with_limit(1000)
                .validate()
                .is_ok()
        );
        let e = ListExecutionPlansRequest::new("s")
            .with_stack_id("nope")
            .validate()
            .expect_err("not a uuid");
        assert!(e.to_string().contains("stack_id"));
        assert!(UpdateStackRequest::new("s").validate().is_err());
        assert!(
            UpdateStackRequest::new("s")
                .with_description("d".repeat(1025))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn reads_error_bodies() {
        let e = parse_error(
            400,
            br#"{"error_code":"RF.10011001","error_msg":"Missing required parameter(s).","details":[{"error_code":"x","error_msg":"y"}]}"#,
        );
        assert_eq!(e.code, "RF.10011001");
        assert_eq!(e.details, vec![("x".to_string(), "y".to_string())]);
        let e = parse_error(401, br#"{"error_msg":"verify aksk signature fail","error_code":"APIGW.0301","request_id":"r"}"#);
        assert_eq!(e.request_id.as_deref(), Some("r"));
        assert_eq!(e.kind(), crate::ApiErrorKind::Authentication);
    }

    #[test]
    fn needs_a_project_id() {
        let e = RfsClient::new(HuaweiCredentials::new("a", "b"), "cn-north-4").expect_err("none");
        assert!(e.to_string().contains(HUAWEI_PROJECT_ID));
        assert_eq!(
            endpoint_for_region("eu-west-101"),
            "https://aos.myhuaweicloud.eu"
        );
    }
}
