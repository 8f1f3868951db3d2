//! The built-in handlers that `stackhook serve` registers.
//!
//! Each lives in its own file and is written as a model of how to write one:
//! typed properties, lenient numbers and booleans, a short doc comment with a
//! ROS template snippet, and unit tests at the bottom.
//!
//! | resource type | handler | what it does |
//! |---|---|---|
//! | `Custom::Echo` | [`Echo`] | returns its properties as Data; `FailWith` makes it fail |
//! | `Custom::RandomString` | [`RandomString`] | a random string, stable across updates that do not change how it is generated |
//! | `Custom::Wait` | [`Wait`] | waits `Seconds` by polling (a model for long-running work) |
//! | `Custom::ResourceSignal` | [`ResourceSignal`] | ROS `SignalResource` on Create and Update |
//! | `Custom::OosExecutionNotify` | [`OosExecutionNotify`] | OOS `NotifyExecution` (approve, reject, resume…) on Create and Update |
//! | `Custom::RfsStackSettings` | [`RfsStackSettings`] | Huawei RFS `UpdateStack`, then the latest execution plan's status in Data |
//!
//! The three cloud handlers read their credentials from the environment on
//! every request, so the server starts without them and a request that
//! needs them fails naming the missing variable.

/// The builder methods every cloud handler shares; the handler keeps a
/// [`CloudAccess`] in a field named `access`.
macro_rules! cloud_access_builders {
    () => {
        /// Read credentials from `env` instead of the process environment.
        #[must_use]
        pub fn with_env(mut self, env: stackhook_cloud::EnvLookup) -> Self {
            self.access.env = env;
            self
        }
        /// Send to this endpoint (a host or an `http(s)://` URL).
        #[must_use]
        pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
            self.access.endpoint = Some(endpoint.into());
            self
        }
        /// Retry with this policy.
        #[must_use]
        pub fn with_retry(mut self, retry: stackhook_cloud::retry::RetryPolicy) -> Self {
            self.access.retry = retry;
            self
        }
    };
}

pub mod echo;
pub mod oos_execution_notify;
pub mod random_string;
pub mod resource_signal;
pub mod rfs_stack_settings;
pub mod wait;

pub use echo::Echo;
pub use oos_execution_notify::OosExecutionNotify;
pub use random_string::RandomString;
pub use resource_signal::ResourceSignal;
pub use rfs_stack_settings::RfsStackSettings;
pub use wait::Wait;

use stackhook::Router;
use stackhook_cloud::EnvLookup;
use stackhook_cloud::retry::RetryPolicy;

/// How a cloud handler reaches its service: where its credentials come from
/// (the process environment by default, then Function Compute's
/// per-invocation credentials), an endpoint override (for tests and private
/// endpoints) and its retry policy.
#[derive(Debug, Clone, Default)]
pub struct CloudAccess {
    pub(crate) env: EnvLookup,
    pub(crate) endpoint: Option<String>,
    pub(crate) retry: RetryPolicy,
}

/// A router with every built-in handler, keyed with `secret_key` where a
/// handler needs one (see [`RandomString`]).
pub fn builtin_router(secret_key: &[u8]) -> Router {
    Router::new()
        .route(Echo::RESOURCE_TYPE, Echo)
        .route(RandomString::RESOURCE_TYPE, RandomString::new(secret_key))
        .route(Wait::RESOURCE_TYPE, Wait)
        .route(ResourceSignal::RESOURCE_TYPE, ResourceSignal::new())
        .route(OosExecutionNotify::RESOURCE_TYPE, OosExecutionNotify::new())
        .route(RfsStackSettings::RESOURCE_TYPE, RfsStackSettings::new())
}
