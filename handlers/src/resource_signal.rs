//! `Custom::ResourceSignal`: call ROS `SignalResource` as a stack step.
//!
//! On Create and Update it sends one signal (SUCCESS by default) to a
//! resource, typically an `ALIYUN::ROS::WaitConditionHandle` that a
//! `WaitCondition` waits on; on Delete it does nothing. The provider's own
//! credentials sign the call (`ALIBABA_CLOUD_ACCESS_KEY_ID`,
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional `ALIBABA_CLOUD_SECURITY_TOKEN`,
//! read on every request), so the provider's RAM role needs
//! `ros:SignalResource`.
//!
//! | property | default | meaning |
//! |---|---|---|
//! | `LogicalResourceId` | required | the resource to signal |
//! | `StackId` | this stack | the stack holding it |
//! | `RegionId` | this stack's region | the stack's region |
//! | `Status` | `SUCCESS` | `SUCCESS`, `FAILURE` or `WARNING` |
//! | `UniqueId` | this request's id | 1–64 characters, distinct per signal |
//! | `ClientToken` | derived | idempotency token, ≤ 64 of `[A-Za-z0-9_-]` |
//!
//! Data: `RequestId` (ROS's) and `UniqueId` (the one sent).
//!
//! ```yaml
//! ReadyHandle:
//!   Type: ALIYUN::ROS::WaitConditionHandle
//! Ready:
//!   Type: ALIYUN::ROS::WaitCondition
//!   Properties:
//!     Handle: { Ref: ReadyHandle }
//!     Timeout: 1800
//! SignalReady:
//!   Type: Custom::ResourceSignal
//!   DependsOn: AppServer
//!   Properties:
//!     ServiceToken: acs:fc:cn-hangzhou:123456789:services/stackhook.LATEST/functions/provider
//!     Parameters:
//!       LogicalResourceId: ReadyHandle
//!       Status: SUCCESS
//! ```
//!
//! The endpoint (default `ros.aliyuncs.com`) is handler configuration, not
//! a property: a template must not be able to send the provider's signed
//! requests, and its STS token, to a host of its choosing.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, RequestContext, UpdateRequest, Updated,
};
use stackhook_cloud::ros::{RosClient, SignalResourceRequest, SignalStatus};
use stackhook_cloud::{Error, Result};

/// The properties of a `Custom::ResourceSignal`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ResourceSignalProperties {
    /// The resource to signal.
    pub logical_resource_id: String,
    /// The stack holding it; this stack when unset.
    #[serde(default)]
    pub stack_id: Option<String>,
    /// The stack's region; this stack's region when unset.
    #[serde(default)]
    pub region_id: Option<String>,
    /// `SUCCESS` (default), `FAILURE` or `WARNING`.
    #[serde(default)]
    pub status: Option<String>,
    /// Distinct per signal; this request's id when unset.
    #[serde(default)]
    pub unique_id: Option<String>,
    /// Idempotency token; derived when unset.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// Sends ROS `SignalResource` on Create and Update.
#[derive(Debug, Clone, Default)]
pub struct ResourceSignal {
    access: super::CloudAccess,
}

impl ResourceSignal {
    /// The resource type `stackhook serve` routes to this handler.
    pub const RESOURCE_TYPE: &'static str = "Custom::ResourceSignal";

    /// A handler reading credentials from the process environment.
    pub fn new() -> Self {
        ResourceSignal::default()
    }
    cloud_access_builders!();

    /// The request this handler sends for `properties` in `context`.
    ///
    /// # Errors
    /// [`Error::Validation`] for an invalid property.
    pub fn request_for(
        properties: &ResourceSignalProperties,
        context: &RequestContext,
    ) -> Result<SignalResourceRequest> {
        let status = match &properties.status {
            Some(text) => text.parse()?,
            None => SignalStatus::Success,
        };
        let unique_id = properties
            .unique_id
            .clone()
            .unwrap_or_else(|| default_unique_id(context.request_id()));
        let mut request = SignalResourceRequest::new(
            properties
                .region_id
                .clone()
                .unwrap_or_else(|| context.region_id().to_string()),
            properties
                .stack_id
                .clone()
                .unwrap_or_else(|| context.stack_id().to_string()),
            properties.logical_resource_id.clone(),
            unique_id,
            status,
        );
        request.client_token = properties.client_token.clone();
        request.validate()?;
        Ok(request)
    }

    async fn signal(
        &self,
        properties: &ResourceSignalProperties,
        context: &RequestContext,
    ) -> Result<(String, String)> {
        let request = Self::request_for(properties, context)?;
        let mut client =
            RosClient::new(self.access.env.alibaba_for(context)?).with_retry(self.access.retry);
        if let Some(endpoint) = &self.access.endpoint {
            client = client.with_endpoint(endpoint)?;
        }
        let answer = client.signal_resource(&request).await?;
        Ok((answer.request_id, request.unique_id))
    }
}

/// ROS request ids are UUIDs; anything longer than 64 is hashed down.
fn default_unique_id(request_id: &str) -> String {
    if (1..=64).contains(&request_id.chars().count()) {
        request_id.to_string()
    } else {
        hex::encode(Sha256::digest(request_id.as_bytes()))
    }
}

impl Handler for ResourceSignal {
    type Properties = ResourceSignalProperties;
    type Error = Error;

    async fn create(&self, request: CreateRequest<Self::Properties>) -> Result<Created> {
        let (request_id, unique_id) = self.signal(&request.properties, &request.context).await?;
        Ok(Created::new()
            .with_data("RequestId", request_id)
            .with_data("UniqueId", unique_id))
    }

    async fn update(&self, request: UpdateRequest<Self::Properties>) -> Result<Updated> {
        let (request_id, unique_id) = self.signal(&request.properties, &request.context).await?;
        Ok(Updated::new()
            .with_data("RequestId", request_id)
            .with_data("UniqueId", unique_id))
    }

    async fn delete(&self, _request: DeleteRequest<Self::Properties>) -> Result<Deleted> {
        // A signal cannot be taken back; nothing exists to delete.
        Ok(Deleted::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackhook::request::{Request, RequestType};

    fn context() -> RequestContext {
        let mut request = Request::new(
            RequestType::Create,
            ResourceSignal::RESOURCE_TYPE,
            "SignalReady",
            "stack-1",
            "req-1",
        );
        request.region_id = "cn-beijing".into();
        RequestContext::new(&request, tokio::time::Instant::now())
    }

    #[test]
    fn defaults_come_from_the_request() {
        let p: ResourceSignalProperties =
            serde_json::from_str(r#"{"LogicalResourceId": "ReadyHandle"}"#).expect("valid");
        let r = ResourceSignal::request_for(&p, &context()).expect("valid");
        assert_eq!(
            (
                r.stack_id.as_str(),
                r.region_id.as_str(),
                r.unique_id.as_str()
            ),
            ("stack-1", "cn-beijing", "req-1")
        );
        assert_eq!(r.status, SignalStatus::Success);
    }

    #[test]
    fn invalid_properties_name_the_field() {
        let p: ResourceSignalProperties =
            serde_json::from_str(r#"{"LogicalResourceId": "H", "Status": "DONE"}"#).expect("valid");
        let e = ResourceSignal::request_for(&p, &context()).expect_err("bad status");
        assert!(e.to_string().contains("Status"), "{e}");
        assert_eq!(default_unique_id(&"x".repeat(80)).len(), 64);
    }

    #[tokio::test]
    async fn missing_credentials_fail_naming_the_variable() {
        let p: ResourceSignalProperties =
            serde_json::from_str(r#"{"LogicalResourceId": "H"}"#).expect("valid");
        let handler = ResourceSignal::new()
            .with_env(stackhook_cloud::EnvLookup::from_pairs::<&str, &str>([]));
        let e = handler
            .create(CreateRequest::new(p, context()))
            .await
            .expect_err("no credentials");
        assert!(e.to_string().contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{e}");
    }
}
