//! # stackhook-cloud
//!
//! Outbound clients for orchestration services, for handlers that call back
//! into them and for the `stackhook ros | oos | rfs` commands.
//!
//! - [`ros`]: Alibaba Cloud ROS `SignalResource`, `StopStackGroupOperation`
//!   and the WaitConditionHandle signed-URL signal.
//! - [`oos`]: Alibaba Cloud OOS `NotifyExecution`.
//! - [`huawei::rfs`]: Huawei Cloud RFS `ListExecutionPlans`,
//!   `ContinueRollbackStack` and `UpdateStack`.
//! - [`acs`]: Alibaba signatures V3 (`ACS3-HMAC-SHA256`, the default) and V2
//!   (HMAC-SHA1), and the RPC client both services use.
//! - [`huawei::signer`]: Huawei `SDK-HMAC-SHA256`.
//! - [`credentials`]: keys from the environment or Function Compute headers.
//! - [`retry`]: which failures are retried, and the backoff.
//! - [`api_error`]: the error a service answered with.
//! - [`error`]: this crate's [`Error`].
//!
//! Every request is validated before it is sent ([`Error::Validation`]
//! names the field), signed afresh on every attempt, and its failures come
//! back typed: [`Error::Api`], [`Error::Credentials`] or
//! [`Error::Transport`]. Every endpoint can be overridden, `http://`
//! included, for local testing.
//!
//! ```no_run
//! # async fn demo() -> stackhook_cloud::Result<()> {
//! use stackhook_cloud::credentials::AlibabaCredentials;
//! use stackhook_cloud::ros::{RosClient, SignalResourceRequest, SignalStatus};
//!
//! let ros = RosClient::new(AlibabaCredentials::from_env()?);
//! let request = SignalResourceRequest::new("cn-hangzhou", "4a6c9851-...", "WebServer", "signal-1", SignalStatus::Success);
//! let answer = ros.signal_resource(&request).await?;
//! println!("RequestId {}", answer.request_id);
//! # Ok(()) }
//! ```

pub mod acs;
pub mod api_error;
mod clock;
pub mod credentials;
mod encode;
pub mod error;
pub mod huawei;
pub mod oos;
pub mod retry;
pub mod ros;
mod transport;
mod validate;

pub use api_error::{ApiError, ApiErrorKind};
pub use credentials::{AlibabaCredentials, EnvLookup, HuaweiCredentials};
pub use error::{Error, Result};
pub use retry::RetryPolicy;
