//! `Custom::RfsStackSettings`: manage a Huawei Cloud RFS stack's settings
//! from a ROS stack, and report its latest execution plan.
//!
//! On Create and Update it applies the given settings with RFS
//! `UpdateStack` (description, deletion protection, auto rollback,
//! agencies; settings left out are not touched, and `Agencies` replaces the
//! whole list), then reads `ListExecutionPlans` and reports the newest plan
//! in Data. On Delete it does nothing: the RFS stack keeps its settings.
//! Signed with `HUAWEICLOUD_SDK_AK` / `HUAWEICLOUD_SDK_SK` (optional
//! `HUAWEICLOUD_SDK_SECURITY_TOKEN`), read on every request.
//!
//! | property | default | meaning |
//! |---|---|---|
//! | `Region` | required | Huawei region, e.g. `cn-north-4` |
//! | `ProjectId` | `HUAWEICLOUD_SDK_PROJECT_ID` | the project |
//! | `StackName` | required | the RFS stack |
//! | `StackId` | none | guard: fail unless the stack has this id |
//! | `Description` | unchanged | 0–1024 characters |
//! | `EnableDeletionProtection` | unchanged | boolean |
//! | `EnableAutoRollback` | unchanged | boolean |
//! | `Agencies` | unchanged | list of `{ProviderName, AgencyName}` or `{ProviderName, AgencyUrn}` |
//!
//! Data: `StackName`, `Updated` (whether UpdateStack was called),
//! `LatestExecutionPlanStatus` (`NONE` when the stack has no plan),
//! `LatestExecutionPlanName`, `LatestExecutionPlanId`.
//!
//! ```yaml
//! NetworkStackSettings:
//!   Type: Custom::RfsStackSettings
//!   Properties:
//!     ServiceToken: acs:fc:cn-hangzhou:123456789:services/stackhook.LATEST/functions/provider
//!     Parameters:
//!       Region: cn-north-4
//!       StackName: network
//!       EnableDeletionProtection: "true"
//!       EnableAutoRollback: true
//!       Agencies:
//!         - ProviderName: huaweicloud
//!           AgencyUrn: iam::0a1b2c:agency:rf_admin_trust
//! Outputs:
//!   PlanStatus:
//!     Value: { "Fn::GetAtt": [NetworkStackSettings, LatestExecutionPlanStatus] }
//! ```
//!
//! The endpoint is handler configuration, never a property.

use serde::Deserialize;

use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::response::Data;
use stackhook_cloud::huawei::rfs::{
    Agency, ListExecutionPlansRequest, RfsClient, UpdateStackRequest,
};
use stackhook_cloud::{Error, Result};

/// One agency, as the template gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct AgencyProperty {
    /// The provider, e.g. `huaweicloud`.
    pub provider_name: String,
    /// The agency's name.
    #[serde(default)]
    pub agency_name: Option<String>,
    /// The agency's URN.
    #[serde(default)]
    pub agency_urn: Option<String>,
}

/// The properties of a `Custom::RfsStackSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct RfsStackSettingsProperties {
    /// Huawei region.
    pub region: String,
    /// The project; `HUAWEICLOUD_SDK_PROJECT_ID` when unset.
    #[serde(default)]
    pub project_id: Option<String>,
    /// The RFS stack.
    pub stack_name: String,
    /// Guard: the stack's id.
    #[serde(default)]
    pub stack_id: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// Deletion protection.
    #[serde(default, with = "stackhook::lenient::option")]
    pub enable_deletion_protection: Option<bool>,
    /// Auto rollback.
    #[serde(default, with = "stackhook::lenient::option")]
    pub enable_auto_rollback: Option<bool>,
    /// The agencies, replacing the current list.
    #[serde(default)]
    pub agencies: Option<Vec<AgencyProperty>>,
}

impl RfsStackSettingsProperties {
    /// The `UpdateStack` request these properties ask for.
    pub fn update_request(&self) -> UpdateStackRequest {
        let mut request = UpdateStackRequest::new(self.stack_name.clone());
        request.stack_id = self.stack_id.clone();
        request.description = self.description.clone();
        request.enable_deletion_protection = self.enable_deletion_protection;
        request.enable_auto_rollback = self.enable_auto_rollback;
        request.agencies = self.agencies.as_ref().map(|list| {
            list.iter()
                .map(|a| {
                    Agency::new(
                        a.provider_name.clone(),
                        a.agency_name.clone(),
                        a.agency_urn.clone(),
                    )
                })
                .collect()
        });
        request
    }
}

/// Applies RFS stack settings and reports the latest execution plan.
#[derive(Debug, Clone, Default)]
pub struct RfsStackSettings {
    access: super::CloudAccess,
}

impl RfsStackSettings {
    /// The resource type `stackhook serve` routes to this handler.
    pub const RESOURCE_TYPE: &'static str = "Custom::RfsStackSettings";

    /// A handler reading credentials from the process environment.
    pub fn new() -> Self {
        RfsStackSettings::default()
    }
    cloud_access_builders!();

    async fn apply(&self, properties: &RfsStackSettingsProperties) -> Result<Data> {
        let update = properties.update_request();
        if update.changes_anything() {
            update.validate()?;
        }
        let mut plans = ListExecutionPlansRequest::new(properties.stack_name.clone());
        plans.stack_id = properties.stack_id.clone();
        plans.limit = Some(10);
        plans.validate()?;

        let mut credentials = self.access.env.huawei()?;
        if let Some(project) = &properties.project_id {
            credentials = credentials.with_project_id(project.clone());
        }
        let mut client =
            RfsClient::new(credentials, &properties.region)?.with_retry(self.access.retry);
        if let Some(endpoint) = &self.access.endpoint {
            client = client.with_endpoint(endpoint)?;
        }
        if update.changes_anything() {
            client.update_stack(&update).await?;
        }
        let page = client.list_execution_plans(&plans).await?;
        let latest = page.execution_plans.first();
        let text = |value: Option<&String>| value.cloned().unwrap_or_default();
        let mut data = Data::new();
        data.insert("StackName".into(), properties.stack_name.clone().into());
        data.insert("Updated".into(), update.changes_anything().into());
        data.insert(
            "LatestExecutionPlanStatus".into(),
            latest
                .and_then(|p| p.status.clone())
                .unwrap_or_else(|| "NONE".into())
                .into(),
        );
        data.insert(
            "LatestExecutionPlanName".into(),
            text(latest.and_then(|p| p.execution_plan_name.as_ref())).into(),
        );
        data.insert(
            "LatestExecutionPlanId".into(),
            text(latest.and_then(|p| p.execution_plan_id.as_ref())).into(),
        );
        Ok(data)
    }
}

impl Handler for RfsStackSettings {
    type Properties = RfsStackSettingsProperties;
    type Error = Error;

    async fn create(&self, request: CreateRequest<Self::Properties>) -> Result<Created> {
        Ok(Created::new().with_data_map(self.apply(&request.properties).await?))
    }

    async fn update(&self, request: UpdateRequest<Self::Properties>) -> Result<Updated> {
        Ok(Updated::new().with_data_map(self.apply(&request.properties).await?))
    }

    async fn delete(&self, _request: DeleteRequest<Self::Properties>) -> Result<Deleted> {
        // The RFS stack is not ours to delete; its settings stay as they are.
        Ok(Deleted::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_accept_strings_and_map_to_the_request() {
        let p: RfsStackSettingsProperties = serde_json::from_value(serde_json::json!({
            "Region": "cn-north-4",
            "StackName": "network",
            "EnableDeletionProtection": "true",
            "Agencies": [{"ProviderName": "huaweicloud", "AgencyUrn": "iam::1:agency:a"}]
        }))
        .expect("valid");
        let r = p.update_request();
        assert_eq!(r.enable_deletion_protection, Some(true));
        assert_eq!(r.enable_auto_rollback, None);
        let agencies = r.agencies.as_deref().unwrap_or_default();
        assert_eq!(agencies[0].agency_urn.as_deref(), Some("iam::1:agency:a"));
        assert_eq!(agencies[0].agency_name, None);
        assert!(r.validate().is_ok());
    }

    #[test]
    fn an_agency_with_both_references_is_refused() {
        let p: RfsStackSettingsProperties = serde_json::from_value(serde_json::json!({
            "Region": "cn-north-4",
            "StackName": "network",
            "Agencies": [{"ProviderName": "huaweicloud", "AgencyName": "a", "AgencyUrn": "u"}]
        }))
        .expect("valid");
        let e = p.update_request().validate().expect_err("both");
        assert!(e.to_string().contains("agencies[0]"), "{e}");
    }
}
