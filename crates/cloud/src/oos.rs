//! Alibaba Cloud OOS (API `2019-06-01`): `NotifyExecution`.
//!
//! OOS endpoints are per region: `oos.<region>.aliyuncs.com`, and
//! `oos-vpc.<region>.aliyuncs.com` from inside a VPC.
//!
//! # Which parameters go with which `NotifyType`
//! Checked before anything is sent:
//!
//! | parameter | allowed with | required with |
//! |---|---|---|
//! | `ExecutionStatus` | `CompleteExecution` | `CompleteExecution` |
//! | `Parameters` (a JSON object) | `ExecuteTask` | `ExecuteTask` |
//! | `TaskName` | `ExecuteTask` | |
//! | `TaskExecutionId`, `TaskExecutionIds`, `LoopItem` | `Approve`, `Reject`, `RetryTask`, `SkipTask`, `CancelTask` | |
//!
//! `TaskExecutionId` and `TaskExecutionIds` exclude each other, and
//! `LoopItem` (an item of a loop task) needs `TaskExecutionId`.
//! `TaskExecutionIds` goes on the wire as a JSON-array string.
//!
//! `NotifyExecution` has no client token: a retry after an ambiguous timeout
//! may find the transition already made and answer with an error.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::acs::{RpcClient, SignatureVersion};
use crate::credentials::AlibabaCredentials;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::{transport, validate};

/// The OOS API version.
pub const API_VERSION: &str = "2019-06-01";

/// What to tell a waiting execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotifyType {
    /// Debug mode: run a task (needs `Parameters`).
    ExecuteTask,
    /// Debug mode: cancel the current task.
    CancelTask,
    /// Debug mode: end the execution with `ExecutionStatus`.
    CompleteExecution,
    /// Approve a waiting approval.
    Approve,
    /// Reject a waiting approval.
    Reject,
    /// Retry a failed task whose mode is suspend-on-failure.
    RetryTask,
    /// Skip such a failed task.
    SkipTask,
}

impl NotifyType {
    /// Every type, in documentation order.
    pub const ALL: [NotifyType; 7] = [
        NotifyType::ExecuteTask,
        NotifyType::CancelTask,
        NotifyType::CompleteExecution,
        NotifyType::Approve,
        NotifyType::Reject,
        NotifyType::RetryTask,
        NotifyType::SkipTask,
    ];

    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyType::ExecuteTask => "ExecuteTask",
            NotifyType::CancelTask => "CancelTask",
            NotifyType::CompleteExecution => "CompleteExecution",
            NotifyType::Approve => "Approve",
            NotifyType::Reject => "Reject",
            NotifyType::RetryTask => "RetryTask",
            NotifyType::SkipTask => "SkipTask",
        }
    }

    fn targets_tasks(self) -> bool {
        matches!(
            self,
            NotifyType::Approve
                | NotifyType::Reject
                | NotifyType::RetryTask
                | NotifyType::SkipTask
                | NotifyType::CancelTask
        )
    }
}

impl fmt::Display for NotifyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NotifyType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        NotifyType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = NotifyType::ALL.iter().map(|t| t.as_str()).collect();
                Error::validation(
                    "NotifyType",
                    format!("must be one of {}, not {s:?}", names.join(", ")),
                )
            })
    }
}

/// `NotifyExecution`: tell an execution in the `Waiting` state what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifyExecutionRequest {
    /// The execution, e.g. `exec-79c321c11003a97c`.
    pub execution_id: String,
    /// What to do.
    pub notify_type: NotifyType,
    /// Region; the client's region when unset.
    pub region_id: Option<String>,
    /// A free-text note.
    pub notify_note: Option<String>,
    /// The task to run (`ExecuteTask`).
    pub task_name: Option<String>,
    /// The task execution the notification is about.
    pub task_execution_id: Option<String>,
    /// Several task executions (sent as a JSON-array string).
    pub task_execution_ids: Vec<String>,
    /// The final status (`CompleteExecution`), e.g. `Success`.
    pub execution_status: Option<String>,
    /// Task parameters as a JSON object text (`ExecuteTask`).
    pub parameters: Option<String>,
    /// The item of a loop task, e.g. `i-xxx`.
    pub loop_item: Option<String>,
}

impl NotifyExecutionRequest {
    /// A request with only the required fields.
    pub fn new(execution_id: impl Into<String>, notify_type: NotifyType) -> Self {
        NotifyExecutionRequest {
            execution_id: execution_id.into(),
            notify_type,
            region_id: None,
            notify_note: None,
            task_name: None,
            task_execution_id: None,
            task_execution_ids: Vec::new(),
            execution_status: None,
            parameters: None,
            loop_item: None,
        }
    }

    /// Set the region.
    #[must_use]
    pub fn with_region_id(mut self, value: impl Into<String>) -> Self {
        self.region_id = Some(value.into());
        self
    }
    /// Set the note.
    #[must_use]
    pub fn with_notify_note(mut self, value: impl Into<String>) -> Self {
        self.notify_note = Some(value.into());
        self
    }
    /// Set the task name.
    #[must_use]
    pub fn with_task_name(mut self, value: impl Into<String>) -> Self {
        self.task_name = Some(value.into());
        self
    }
    /// Set the task execution id.
    #[must_use]
    pub fn with_task_execution_id(mut self, value: impl Into<String>) -> Self {
        self.task_execution_id = Some(value.into());
        self
    }
    /// Set several task execution ids.
    #[must_use]
    pub fn with_task_execution_ids(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.task_execution_ids = ids.into_iter().collect();
        self
    }
    /// Set the final execution status.
    #[must_use]
    pub fn with_execution_status(mut self, value: impl Into<String>) -> Self {
        self.execution_status = Some(value.into());
        self
    }
    /// Set the parameters, as JSON object text.
    #[must_use]
    pub fn with_parameters(mut self, json: impl Into<String>) -> Self {
        self.parameters = Some(json.into());
        self
    }
    /// Set the parameters from a JSON value.
    #[must_use]
    pub fn with_parameters_value(mut self, value: &Value) -> Self {
        self.parameters = Some(value.to_string());
        self
    }
    /// Set the loop item.
    #[must_use]
    pub fn with_loop_item(mut self, value: impl Into<String>) -> Self {
        self.loop_item = Some(value.into());
        self
    }

    /// Check the fields and their combination with `NotifyType` (see the
    /// module docs).
    ///
    /// # Errors
    /// [`Error::Validation`] naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        let kind = self.notify_type;
        validate::required("ExecutionId", &self.execution_id)?;
        if let Some(region) = &self.region_id {
            validate_region("RegionId", region)?;
        }
        let only_with = |field: &str, present: bool, allowed: bool, with: &str| {
            if present && !allowed {
                Err(Error::validation(
                    field,
                    format!("is only allowed with NotifyType {with}, not {kind}"),
                ))
            } else {
                Ok(())
            }
        };
        let complete = kind == NotifyType::CompleteExecution;
        let execute = kind == NotifyType::ExecuteTask;
        let task_types = "Approve, Reject, RetryTask, SkipTask or CancelTask";
        only_with(
            "ExecutionStatus",
            self.execution_status.is_some(),
            complete,
            "CompleteExecution",
        )?;
        only_with(
            "Parameters",
            self.parameters.is_some(),
            execute,
            "ExecuteTask",
        )?;
        only_with("TaskName", self.task_name.is_some(), execute, "ExecuteTask")?;
        only_with(
            "TaskExecutionId",
            self.task_execution_id.is_some(),
            kind.targets_tasks(),
            task_types,
        )?;
        only_with(
            "TaskExecutionIds",
            !self.task_execution_ids.is_empty(),
            kind.targets_tasks(),
            task_types,
        )?;
        only_with(
            "LoopItem",
            self.loop_item.is_some(),
            kind.targets_tasks(),
            task_types,
        )?;
        if complete {
            match &self.execution_status {
                Some(status) => validate::required("ExecutionStatus", status)?,
                None => {
                    return Err(Error::validation(
                        "ExecutionStatus",
                        "is required with NotifyType CompleteExecution (e.g. Success)",
                    ));
                }
            }
        }
        if execute {
            let Some(parameters) = &self.parameters else {
                return Err(Error::validation(
                    "Parameters",
                    "is required with NotifyType ExecuteTask (a JSON object, e.g. {})",
                ));
            };
            match serde_json::from_str::<Value>(parameters) {
                Ok(Value::Object(_)) => {}
                _ => {
                    return Err(Error::validation(
                        "Parameters",
                        "must be the text of a JSON object, e.g. {\"Key\":\"value\"}",
                    ));
                }
            }
        }
        if let Some(name) = &self.task_name {
            validate::required("TaskName", name)?;
        }
        if let Some(id) = &self.task_execution_id {
            validate::required("TaskExecutionId", id)?;
        }
        if self.task_execution_id.is_some() && !self.task_execution_ids.is_empty() {
            return Err(Error::validation(
                "TaskExecutionIds",
                "cannot be combined with TaskExecutionId; give one or the other",
            ));
        }
        for id in &self.task_execution_ids {
            validate::required("TaskExecutionIds", id)?;
        }
        if let Some(item) = &self.loop_item {
            validate::required("LoopItem", item)?;
            if self.task_execution_id.is_none() {
                return Err(Error::validation(
                    "LoopItem",
                    "needs TaskExecutionId (the loop task it belongs to)",
                ));
            }
        }
        Ok(())
    }

    fn params(&self, default_region: &str) -> Vec<(String, String)> {
        let mut params = vec![
            ("ExecutionId".to_string(), self.execution_id.clone()),
            (
                "NotifyType".to_string(),
                self.notify_type.as_str().to_string(),
            ),
            (
                "RegionId".to_string(),
                self.region_id
                    .clone()
                    .unwrap_or_else(|| default_region.to_string()),
            ),
        ];
        let optional = [
            ("NotifyNote", &self.notify_note),
            ("TaskName", &self.task_name),
            ("TaskExecutionId", &self.task_execution_id),
            ("ExecutionStatus", &self.execution_status),
            ("Parameters", &self.parameters),
            ("LoopItem", &self.loop_item),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                params.push((name.to_string(), value.clone()));
            }
        }
        if !self.task_execution_ids.is_empty() {
            params.push((
                "TaskExecutionIds".to_string(),
                Value::from(self.task_execution_ids.clone()).to_string(),
            ));
        }
        params
    }
}

fn validate_region(field: &str, region: &str) -> Result<()> {
    validate::length(field, region, 1, 64)?;
    validate::chars(
        field,
        region,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "lowercase letters, digits and '-' (e.g. cn-hangzhou)",
    )
}

/// The answer of `NotifyExecution`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct NotifyExecutionResponse {
    /// OOS's `RequestId`.
    pub request_id: String,
}

/// An OOS client for one region.
#[derive(Debug, Clone)]
pub struct OosClient {
    rpc: RpcClient,
    region: String,
}

impl OosClient {
    /// A client for `oos.<region>.aliyuncs.com`, signing with V3.
    ///
    /// # Errors
    /// [`Error::Validation`] when `region` is not a region id.
    pub fn new(credentials: AlibabaCredentials, region: &str) -> Result<Self> {
        Self::build(credentials, region, "oos")
    }

    /// A client for the VPC endpoint `oos-vpc.<region>.aliyuncs.com`.
    ///
    /// # Errors
    /// [`Error::Validation`] when `region` is not a region id.
    pub fn vpc(credentials: AlibabaCredentials, region: &str) -> Result<Self> {
        Self::build(credentials, region, "oos-vpc")
    }

    fn build(credentials: AlibabaCredentials, region: &str, prefix: &str) -> Result<Self> {
        validate_region("RegionId", region)?;
        let url = transport::parse_endpoint(&format!("{prefix}.{region}.aliyuncs.com"))?;
        Ok(OosClient {
            rpc: RpcClient::new("OOS", API_VERSION, url, credentials),
            region: region.to_string(),
        })
    }

    /// Send to another endpoint: a host or an `http(s)://` URL.
    ///
    /// # Errors
    /// [`Error::Validation`] when it is not a usable URL.
    pub fn with_endpoint(self, endpoint: &str) -> Result<Self> {
        Ok(OosClient {
            rpc: self.rpc.with_endpoint(endpoint)?,
            ..self
        })
    }

    /// Sign with V2 (HMAC-SHA1) instead of V3.
    #[must_use]
    pub fn with_signature_version(self, version: SignatureVersion) -> Self {
        OosClient {
            rpc: self.rpc.with_signature_version(version),
            ..self
        }
    }

    /// Retry with this policy.
    #[must_use]
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        OosClient {
            rpc: self.rpc.with_retry(retry),
            ..self
        }
    }

    /// Give each attempt this long.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        OosClient {
            rpc: self.rpc.with_timeout(timeout),
            ..self
        }
    }

    /// The underlying RPC client.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// Notify an execution.
    ///
    /// # Errors
    /// [`Error::Validation`] before sending; [`Error::Api`] or
    /// [`Error::Transport`] after.
    pub async fn notify_execution(
        &self,
        request: &NotifyExecutionRequest,
    ) -> Result<NotifyExecutionResponse> {
        request.validate()?;
        let response = self
            .rpc
            .call("NotifyExecution", &request.params(&self.region))
            .await?;
        Ok(NotifyExecutionResponse {
            request_id: response.request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: NotifyType) -> NotifyExecutionRequest {
        NotifyExecutionRequest::new("exec-1", kind)
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Validation { field, .. } => field,
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn every_type_is_valid_with_its_required_fields() {
        for kind in NotifyType::ALL {
            let mut r = req(kind);
            if kind == NotifyType::CompleteExecution {
                r = r.with_execution_status("Success");
            }
            if kind == NotifyType::ExecuteTask {
                r = r.with_parameters("{}");
            }
            assert!(r.validate().is_ok(), "{kind}");
            assert_eq!(kind.as_str().parse::<NotifyType>().ok(), Some(kind));
        }
    }

    #[test]
    fn dependent_parameters_are_required() {
        let e = req(NotifyType::CompleteExecution)
            .validate()
            .expect_err("status");
        assert_eq!(field_of(e), "ExecutionStatus");
        let e = req(NotifyType::ExecuteTask)
            .validate()
            .expect_err("parameters");
        assert_eq!(field_of(e), "Parameters");
        let e = req(NotifyType::ExecuteTask)
            .with_parameters("[1]")
            .validate()
            .expect_err("not an object");
        assert_eq!(field_of(e), "Parameters");
    }

    #[test]
    fn misplaced_parameters_are_refused() {
        let cases = [
            (
                req(NotifyType::Approve).with_execution_status("Success"),
                "ExecutionStatus",
            ),
            (req(NotifyType::Approve).with_parameters("{}"), "Parameters"),
            (req(NotifyType::RetryTask).with_task_name("t"), "TaskName"),
            (
                req(NotifyType::CompleteExecution)
                    .with_execution_status("Success")
                    .with_task_execution_id("task-exec-1"),
                "TaskExecutionId",
            ),
            (
                req(NotifyType::Approve)
                    .with_task_execution_id("a")
                    .with_task_execution_ids(["b".to_string()]),
                "TaskExecutionIds",
            ),
            (req(NotifyType::SkipTask).with_loop_item("i-1"), "LoopItem"),
            (req(NotifyType::Approve).with_region_id("CN HZ"), "RegionId"),
            (
                req(NotifyType::Approve).with_task_execution_id(""),
                "TaskExecutionId",
            ),
        ];
        for (request, field) in cases {
            let e = request.validate().expect_err(field);
            let text = e.to_string();
            assert_eq!(field_of(e), field, "{text}");
        }
        let e = req(NotifyType::Reject)
            .with_task_name("x")
            .validate()
            .expect_err("task name");
        assert!(
            e.to_string()
                .contains("only allowed with NotifyType ExecuteTask, not Reject")
        );
    }

    #[test]
    fn task_execution_ids_go_as_a_json_array() {
        let r = req(NotifyType::Approve).with_task_execution_ids(["t-1".into(), "t-2".into()]);
        let params = r.params("cn-hangzhou");
        assert!(params.contains(&("TaskExecutionIds".into(), r#"["t-1","t-2"]"#.into())));
        assert!(params.contains(&("RegionId".into(), "cn-hangzhou".into())));
    }

    #[test]
    fn unknown_notify_type_lists_the_choices() {
        let e = "Pause".parse::<NotifyType>().expect_err("unknown");
        assert!(e.to_string().contains("CompleteExecution"), "{e}");
    }

    #[test]
    fn endpoints_follow_the_region() {
        let c = AlibabaCredentials::new("a", "b");
        let oos = OosClient::new(c.clone(), "cn-zhangjiakou").expect("valid");
        assert_eq!(
            oos.rpc().endpoint().as_str(),
            "https://oos.cn-zhangjiakou.aliyuncs.com/"
        );
        let vpc = OosClient::vpc(c.clone(), "cn-hangzhou").expect("valid");
        assert_eq!(
            vpc.rpc().endpoint().as_str(),
            "https://oos-vpc.cn-hangzhou.aliyuncs.com/"
        );
        assert!(OosClient::new(c, "cn/hangzhou").is_err());
    }
}
