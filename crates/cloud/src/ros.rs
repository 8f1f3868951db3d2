//! Alibaba Cloud ROS (API `2019-09-10`): `SignalResource`,
//! `StopStackGroupOperation`, and the WaitConditionHandle signed-URL signal.
//!
//! ROS endpoints do not depend on the region but on the account's site:
//! `ros.aliyuncs.com` (China site, the default), `ros-intl.aliyuncs.com`
//! (international site), and `ros.vpc-proxy.aliyuncs.com` /
//! `ros-intl.vpc-proxy.aliyuncs.com` from inside a VPC. See [`RosEndpoint`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::acs::{RpcClient, RpcResponse, SignatureVersion};
use crate::credentials::AlibabaCredentials;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::transport::{self, Verdict};
use crate::validate;

/// The ROS API version.
pub const API_VERSION: &str = "2019-09-10";

/// The documented ROS endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RosEndpoint {
    /// `ros.aliyuncs.com`, China-site accounts.
    #[default]
    China,
    /// `ros-intl.aliyuncs.com`, international-site accounts.
    International,
    /// `ros.vpc-proxy.aliyuncs.com`.
    ChinaVpc,
    /// `ros-intl.vpc-proxy.aliyuncs.com`.
    InternationalVpc,
}

impl RosEndpoint {
    /// The host name.
    pub fn host(self) -> &'static str {
        match self {
            RosEndpoint::China => "ros.aliyuncs.com",
            RosEndpoint::International => "ros-intl.aliyuncs.com",
            RosEndpoint::ChinaVpc => "ros.vpc-proxy.aliyuncs.com",
            RosEndpoint::InternationalVpc => "ros-intl.vpc-proxy.aliyuncs.com",
        }
    }
}

/// The status a signal reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignalStatus {
    /// The resource is ready.
    Success,
    /// The resource failed; the stack operation fails.
    Failure,
    /// A warning; if every signal is a warning, the stack operation fails too.
    Warning,
}

impl SignalStatus {
    /// `SUCCESS`, `FAILURE` or `WARNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalStatus::Success => "SUCCESS",
            SignalStatus::Failure => "FAILURE",
            SignalStatus::Warning => "WARNING",
        }
    }
}

impl fmt::Display for SignalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SignalStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SUCCESS" => Ok(SignalStatus::Success),
            "FAILURE" => Ok(SignalStatus::Failure),
            "WARNING" => Ok(SignalStatus::Warning),
            _ => Err(Error::validation(
                "Status",
                format!("must be SUCCESS, FAILURE or WARNING, not {s:?}"),
            )),
        }
    }
}

/// `SignalResource`: send a signal to a resource in a stack (a
/// `ALIYUN::ROS::WaitConditionHandle`, typically).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalResourceRequest {
    /// Region of the stack, e.g. `cn-hangzhou`.
    pub region_id: String,
    /// The stack id.
    pub stack_id: String,
    /// The resource's name in the template.
    pub logical_resource_id: String,
    /// 1–64 characters, distinct per signal to the same resource.
    pub unique_id: String,
    /// `SUCCESS`, `FAILURE` or `WARNING`.
    pub status: SignalStatus,
    /// Idempotency token, up to 64 letters, digits, `-` and `_`. When unset,
    /// one is derived from the other fields so retries stay idempotent.
    pub client_token: Option<String>,
}

impl SignalResourceRequest {
    /// A request with no explicit client token.
    pub fn new(
        region_id: impl Into<String>,
        stack_id: impl Into<String>,
        logical_resource_id: impl Into<String>,
        unique_id: impl Into<String>,
        status: SignalStatus,
    ) -> Self {
        SignalResourceRequest {
            region_id: region_id.into(),
            stack_id: stack_id.into(),
            logical_resource_id: logical_resource_id.into(),
            unique_id: unique_id.into(),
            status,
            client_token: None,
        }
    }

    /// Set the idempotency token.
    #[must_use]
    pub fn with_client_token(mut self, token: impl Into<String>) -> Self {
        self.client_token = Some(token.into());
        self
    }

    /// Check every documented constraint.
    ///
    /// # Errors
    /// [`Error::Validation`] naming the first field at fault.
    pub fn validate(&self) -> Result<()> {
        validate::required("RegionId", &self.region_id)?;
        validate::required("StackId", &self.stack_id)?;
        validate::required("LogicalResourceId", &self.logical_resource_id)?;
        validate::length("UniqueId", &self.unique_id, 1, 64)?;
        if let Some(token) = &self.client_token {
            validate_client_token(token)?;
        }
        Ok(())
    }

    /// The token sent: the explicit one, or 64 hex characters of SHA-256
    /// over the stack, resource, unique id and status.
    pub fn effective_client_token(&self) -> String {
        if let Some(token) = &self.client_token {
            return token.clone();
        }
        let mut hash = Sha256::new();
        for part in [
            "stackhook/signal-resource/v1",
            &self.stack_id,
            &self.logical_resource_id,
            &self.unique_id,
            self.status.as_str(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hex::encode(hash.finalize())
    }

    fn params(&self) -> Vec<(String, String)> {
        vec![
            ("RegionId".into(), self.region_id.clone()),
            ("StackId".into(), self.stack_id.clone()),
            ("LogicalResourceId".into(), self.logical_resource_id.clone()),
            ("UniqueId".into(), self.unique_id.clone()),
            ("Status".into(), self.status.as_str().into()),
            ("ClientToken".into(), self.effective_client_token()),
        ]
    }
}

fn validate_client_token(token: &str) -> Result<()> {
    validate::length("ClientToken", token, 1, 64)?;
    validate::chars(
        "ClientToken",
        token,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        "letters, digits, '-' and '_'",
    )
}

/// `StopStackGroupOperation`: stop an ongoing stack-group operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StopStackGroupOperationRequest {
    /// Region of the stack group.
    pub region_id: String,
    /// The operation, from `ListStackGroupOperations`.
    pub operation_id: String,
}

impl StopStackGroupOperationRequest {
    /// A request.
    pub fn new(region_id: impl Into<String>, operation_id: impl Into<String>) -> Self {
        StopStackGroupOperationRequest {
            region_id: region_id.into(),
            operation_id: operation_id.into(),
        }
    }

    /// Check every documented constraint.
    ///
    /// # Errors
    /// [`Error::Validation`] naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        validate::required("RegionId", &self.region_id)?;
        validate::required("OperationId", &self.operation_id)
    }
}

/// The answer of a ROS call: its request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct RosResponse {
    /// ROS's `RequestId`.
    pub request_id: String,
}

impl From<RpcResponse> for RosResponse {
    fn from(response: RpcResponse) -> Self {
        RosResponse {
            request_id: response.request_id,
        }
    }
}

/// A ROS client.
#[derive(Debug, Clone)]
pub struct RosClient {
    rpc: RpcClient,
}

impl RosClient {
    /// A client for `ros.aliyuncs.com`, signing with V3.
    pub fn new(credentials: AlibabaCredentials) -> Self {
        Self::for_endpoint(RosEndpoint::China, credentials)
    }

    /// A client for one of the documented endpoints.
    pub fn for_endpoint(endpoint: RosEndpoint, credentials: AlibabaCredentials) -> Self {
        let url = reqwest::Url::parse(&format!("https://{}/", endpoint.host()))
            .unwrap_or_else(|_| unreachable!("the documented hosts are valid"));
        RosClient {
            rpc: RpcClient::new("ROS", API_VERSION, url, credentials),
        }
    }

    /// Send to another endpoint: a host or an `http(s)://` URL.
    ///
    /// # Errors
    /// [`Error::Validation`] when it is not a usable URL.
    pub fn with_endpoint(self, endpoint: &str) -> Result<Self> {
        Ok(RosClient {
            rpc: self.rpc.with_endpoint(endpoint)?,
        })
    }

    /// Sign with V2 (HMAC-SHA1) instead of V3.
    #[must_use]
    pub fn with_signature_version(self, version: SignatureVersion) -> Self {
        RosClient {
            rpc: self.rpc.with_signature_version(version),
        }
    }

    /// Retry with this policy.
    #[must_use]
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        RosClient {
            rpc: self.rpc.with_retry(retry),
        }
    }

    /// Give each attempt this long.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        RosClient {
            rpc: self.rpc.with_timeout(timeout),
        }
    }

    /// The underlying RPC client.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// Send a signal to a resource.
    ///
    /// # Errors
    /// [`Error::Validation`] before sending; [`Error::Api`] (for example
    /// `ResourceNotAvailable`) or [`Error::Transport`] after.
    pub async fn signal_resource(&self, request: &SignalResourceRequest) -> Result<RosResponse> {
        request.validate()?;
        Ok(self
            .rpc
            .call("SignalResource", &request.params())
            .await?
            .into())
    }

    /// Stop a stack-group operation. A missing operation is an
    /// [`Error::Api`] whose [`ApiError::is_stack_group_operation_not_found`](crate::ApiError::is_stack_group_operation_not_found)
    /// is true.
    ///
    /// # Errors
    /// As [`signal_resource`](Self::signal_resource).
    pub async fn stop_stack_group_operation(
        &self,
        request: &StopStackGroupOperationRequest,
    ) -> Result<RosResponse> {
        request.validate()?;
        let params = vec![
            ("RegionId".into(), request.region_id.clone()),
            ("OperationId".into(), request.operation_id.clone()),
        ];
        Ok(self
            .rpc
            .call("StopStackGroupOperation", &params)
            .await?
            .into())
    }
}

/// The JSON a WaitConditionHandle's signed URL takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WaitConditionSignal {
    /// `SUCCESS`, `FAILURE` or `WARNING`.
    pub status: SignalStatus,
    /// The signal's id: the same id overwrites an earlier signal; without
    /// one, ROS numbers signals 1, 2, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Shown in the stack's events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Data for the WaitCondition's `Data` attribute. Not confirmed by the
    /// docs; sent only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl WaitConditionSignal {
    /// A signal with only a status.
    pub fn new(status: SignalStatus) -> Self {
        WaitConditionSignal {
            status,
            id: None,
            reason: None,
            data: None,
        }
    }
    /// Set the id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// Set the reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    /// Set the data (unconfirmed field, see [`WaitConditionSignal::data`]).
    #[must_use]
    pub fn with_data(mut self, data: impl Into<String>) -> Self {
        self.data = Some(data.into());
        self
    }
}

/// Signal a WaitConditionHandle through its presigned URL (its `URL` output,
/// with the `Headers` output as `headers`). The URL carries its own
/// signature, so no credentials are needed; it is never logged.
/// 5xx answers and transport errors are retried.
///
/// # Errors
/// [`Error::Validation`] for a bad URL, header or id; [`Error::Api`] for an
/// error answer; [`Error::Transport`] when unreachable.
pub async fn signal_wait_condition(
    url: &str,
    headers: &[(String, String)],
    signal: &WaitConditionSignal,
    retry: &RetryPolicy,
) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::validation("url", format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::validation(
            "url",
            "must be an http:// or https:// URL",
        ));
    }
    if let Some(id) = &signal.id {
        validate::required("id", id)?;
    }
    let mut header_map = http::HeaderMap::new();
    for (name, value) in headers {
        let name = http::HeaderName::try_from(name.as_str())
            .map_err(|_| Error::validation("headers", format!("{name:?} is not a header name")))?;
        let value = http::HeaderValue::try_from(value.as_str())
            .map_err(|_| Error::validation("headers", format!("bad value for {name}")))?;
        header_map.insert(name, value);
    }
    let body =
        serde_json::to_vec(signal).map_err(|e| Error::validation("signal", e.to_string()))?;
    let client = transport::shared_client()?;
    const SERVICE: &str = "ROS WaitConditionHandle";
    transport::attempts(
        SERVICE,
        "signal",
        retry,
        transport::DEFAULT_TIMEOUT,
        || {
            Ok(client
                .post(parsed.clone())
                .headers(header_map.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone()))
        },
        |reply| {
            if (200..300).contains(&reply.status) {
                return Verdict::Done(());
            }
            let error = crate::acs::rpc_client::parse_error(SERVICE, reply.status, &reply.body);
            let retry = reply.status >= 500 || reply.status == 429;
            let error = Error::Api(Box::new(error));
            if retry {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn signal() -> SignalResourceRequest {
        SignalResourceRequest::new(
            "cn-hangzhou",
            "s-1",
            "WebServer",
            "u-1",
            SignalStatus::Success,
        )
    }

    #[test]
    fn unique_id_length_is_checked() {
        let mut r = signal();
        r.unique_id = String::new();
        assert!(r.validate().is_err());
        r.unique_id = "x".repeat(64);
        assert!(r.validate().is_ok());
        r.unique_id = "x".repeat(65);
        let e = r.validate().expect_err("too long");
        assert!(e.to_string().contains("UniqueId"), "{e}");
    }

    #[test]
    fn client_token_charset_is_checked() {
        let e = signal()
            .with_client_token("has space")
            .validate()
            .expect_err("space");
        assert!(e.to_string().contains("ClientToken"), "{e}");
        assert!(signal().with_client_token("a-b_C9").validate().is_ok());
        assert!(
            signal()
                .with_client_token("x".repeat(65))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn derived_client_token_is_stable_and_valid() {
        let token = signal().effective_client_token();
        assert_eq!(token, signal().effective_client_token());
        assert!(validate_client_token(&token).is_ok());
        let mut other = signal();
        other.status = SignalStatus::Failure;
        assert_ne!(token, other.effective_client_token());
        assert_eq!(
            signal().with_client_token("t").effective_client_token(),
            "t"
        );
    }

    #[test]
    fn statuses_parse_and_print() {
        assert_eq!(
            "failure".parse::<SignalStatus>().ok(),
            Some(SignalStatus::Failure)
        );
        assert!("DONE".parse::<SignalStatus>().is_err());
        assert_eq!(SignalStatus::Warning.to_string(), "WARNING");
    }

    #[test]
    fn wait_condition_body_leaves_out_unset_fields() {
        let body = serde_json::to_string(
            &WaitConditionSignal::new(SignalStatus::Success).with_reason("ok"),
        )
        .expect("serializes");
        assert_eq!(body, r#"{"status":"SUCCESS","reason":"ok"}"#);
    }
}
