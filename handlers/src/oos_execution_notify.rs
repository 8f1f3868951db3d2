//! `Custom::OosExecutionNotify`: call OOS `NotifyExecution` as a stack step.
//!
//! Approve, reject or resume an OOS execution that waits for it, for
//! example an approval task in a release runbook that should go ahead once
//! the stack has reached this point. Runs on Create and Update (ROS sends an
//! Update only when a property changed); does nothing on Delete. Signed with
//! the provider's credentials (`ALIBABA_CLOUD_ACCESS_KEY_ID`,
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional `ALIBABA_CLOUD_SECURITY_TOKEN`,
//! read on every request); the provider's RAM role needs
//! `oos:NotifyExecution`.
//!
//! | property | default | meaning |
//! |---|---|---|
//! | `ExecutionId` | required | the waiting execution |
//! | `NotifyType` | required | `Approve`, `Reject`, `ExecuteTask`, `CancelTask`, `CompleteExecution`, `RetryTask`, `SkipTask` |
//! | `RegionId` | this stack's region | the execution's region (and endpoint `oos.<region>.aliyuncs.com`) |
//! | `NotifyNote` | none | a note |
//! | `TaskName` | none | `ExecuteTask` only |
//! | `Parameters` | none | `ExecuteTask` only, required there: a JSON object (or its text) |
//! | `ExecutionStatus` | none | `CompleteExecution` only, required there, e.g. `Success` |
//! | `TaskExecutionId`, `TaskExecutionIds`, `LoopItem` | none | the task(s) meant, for `Approve`, `Reject`, `RetryTask`, `SkipTask`, `CancelTask` |
//! | `Vpc` | false | use `oos-vpc.<region>.aliyuncs.com` |
//!
//! Invalid combinations fail before anything is sent, naming the property.
//! Data: `RequestId` (OOS's).
//!
//! ```yaml
//! ApproveRelease:
//!   Type: Custom::OosExecutionNotify
//!   DependsOn: Database
//!   Properties:
//!     ServiceToken: acs:fc:cn-hangzhou:123456789:services/stackhook.LATEST/functions/provider
//!     Parameters:
//!       ExecutionId: { Ref: ReleaseExecutionId }
//!       NotifyType: Approve
//!       NotifyNote: database is ready
//! ```
//!
//! `NotifyExecution` has no idempotency token: if a retry follows an
//! ambiguous timeout, OOS may answer that the execution is no longer
//! waiting. The endpoint is handler configuration, never a property.

use serde::Deserialize;
use serde_json::Value;

use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, RequestContext, UpdateRequest, Updated,
};
use stackhook_cloud::oos::{NotifyExecutionRequest, NotifyType, OosClient};
use stackhook_cloud::{Error, Result};

/// The properties of a `Custom::OosExecutionNotify`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct OosExecutionNotifyProperties {
    /// The waiting execution.
    pub execution_id: String,
    /// What to tell it.
    pub notify_type: String,
    /// The execution's region; this stack's region when unset.
    #[serde(default)]
    pub region_id: Option<String>,
    /// A note.
    #[serde(default)]
    pub notify_note: Option<String>,
    /// The task to run (`ExecuteTask`).
    #[serde(default)]
    pub task_name: Option<String>,
    /// The task execution meant.
    #[serde(default)]
    pub task_execution_id: Option<String>,
    /// Several task executions.
    #[serde(default)]
    pub task_execution_ids: Vec<String>,
    /// The final status (`CompleteExecution`).
    #[serde(default)]
    pub execution_status: Option<String>,
    /// Task parameters (`ExecuteTask`): a JSON object or its text.
    #[serde(default)]
    pub parameters: Option<Value>,
    /// The item of a loop task.
    #[serde(default)]
    pub loop_item: Option<String>,
    /// Use the VPC endpoint.
    #[serde(default, with = "stackhook::lenient")]
    pub vpc: bool,
}

/// Sends OOS `NotifyExecution` on Create and Update.
#[derive(Debug, Clone, Default)]
pub struct OosExecutionNotify {
    access: super::CloudAccess,
}

impl OosExecutionNotify {
    /// The resource type `stackhook serve` routes to this handler.
    pub const RESOURCE_TYPE: &'static str = "Custom::OosExecutionNotify";

    /// A handler reading credentials from the process environment.
    pub fn new() -> Self {
        OosExecutionNotify::default()
    }
    cloud_access_builders!();

    /// The request this handler sends for `properties` in `context`.
    ///
    /// # Errors
    /// [`Error::Validation`] naming the property at fault.
    pub fn request_for(
        properties: &OosExecutionNotifyProperties,
        context: &RequestContext,
    ) -> Result<NotifyExecutionRequest> {
        let notify_type: NotifyType = properties.notify_type.parse()?;
        let region = properties
            .region_id
            .clone()
            .unwrap_or_else(|| context.region_id().to_string());
        let mut request = NotifyExecutionRequest::new(properties.execution_id.clone(), notify_type)
            .with_region_id(region);
        request.notify_note = properties.notify_note.clone();
        request.task_name = properties.task_name.clone();
        request.task_execution_id = properties.task_execution_id.clone();
        request.task_execution_ids = properties.task_execution_ids.clone();
        request.execution_status = properties.execution_status.clone();
        request.loop_item = properties.loop_item.clone();
        request.parameters = match &properties.parameters {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        };
        request.validate()?;
        Ok(request)
    }

    async fn notify(
        &self,
        properties: &OosExecutionNotifyProperties,
        context: &RequestContext,
    ) -> Result<String> {
        let request = Self::request_for(properties, context)?;
        let region = request.region_id.clone().unwrap_or_default();
        let credentials = self.access.env.alibaba_for(context)?;
        let client = if properties.vpc {
            OosClient::vpc(credentials, &region)?
        } else {
            OosClient::new(credentials, &region)?
        };
        let mut client = client.with_retry(self.access.retry);
        if let Some(endpoint) = &self.access.endpoint {
            client = client.with_endpoint(endpoint)?;
        }
        Ok(client.notify_execution(&request).await?.request_id)
    }
}

impl Handler for OosExecutionNotify {
    type Properties = OosExecutionNotifyProperties;
    type Error = Error;

    async fn create(&self, request: CreateRequest<Self::Properties>) -> Result<Created> {
        let id = self.notify(&request.properties, &request.context).await?;
        Ok(Created::new().with_data("RequestId", id))
    }

    async fn update(&self, request: UpdateRequest<Self::Properties>) -> Result<Updated> {
        let id = self.notify(&request.properties, &request.context).await?;
        Ok(Updated::new().with_data("RequestId", id))
    }

    async fn delete(&self, _request: DeleteRequest<Self::Properties>) -> Result<Deleted> {
        // A notification cannot be taken back.
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
            OosExecutionNotify::RESOURCE_TYPE,
            "Approve",
            "stack-1",
            "req-1",
        );
        request.region_id = "cn-hangzhou".into();
        RequestContext::new(&request, tokio::time::Instant::now())
    }

    fn props(json: Value) -> OosExecutionNotifyProperties {
        serde_json::from_value(json).expect("valid properties")
    }

    #[test]
    fn parameters_may_be_an_object_or_text() {
        for parameters in [serde_json::json!({"A": 1}), Value::from(r#"{"A":1}"#)] {
            let p = props(serde_json::json!({
                "ExecutionId": "exec-1", "NotifyType": "ExecuteTask", "Parameters": parameters, "Vpc": "false"
            }));
            let r = OosExecutionNotify::request_for(&p, &context()).expect("valid");
            assert_eq!(r.parameters.as_deref(), Some(r#"{"A":1}"#));
            assert_eq!(r.region_id.as_deref(), Some("cn-hangzhou"));
        }
    }

    #[test]
    fn invalid_combinations_name_the_property() {
        let p = props(serde_json::json!({
            "ExecutionId": "exec-1", "NotifyType": "Approve", "ExecutionStatus": "Success"
        }));
        let e = OosExecutionNotify::request_for(&p, &context()).expect_err("invalid");
        assert!(e.to_string().contains("ExecutionStatus"), "{e}");
        let p = props(serde_json::json!({"ExecutionId": "exec-1", "NotifyType": "Pause"}));
        assert!(OosExecutionNotify::request_for(&p, &context()).is_err());
    }
}
