//! `Custom::Wait`: pause a stack operation for a while, by polling.
//!
//! Create and Update finish after `Seconds` (a number or a string). The
//! runtime persists the wait and polls; no task or thread is held while
//! waiting, and the wait survives a provider restart with the durable
//! journal. Delete is immediate. Data: `WaitedSeconds`.
//!
//! It is also the model for long-running work: return `in_progress(after,
//! state)` and implement `poll`.
//!
//! ```yaml
//! PauseForDns:
//!   Type: Custom::Wait
//!   Properties:
//!     ServiceToken: web:https://provider.example.com/
//!     Timeout: 900
//!     Parameters:
//!       Seconds: "600"
//! ```
//! Set the provider's timeout for this type at least as long (for example
//! `--type-timeout Custom::Wait=900`), or the wait is answered FAILED at
//! once, with a reason that names that setting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, PollRequest, Polled, UpdateRequest,
    Updated,
};
use stackhook::journal::now_ms;

/// The longest wait: ROS's largest resource Timeout, 12 hours.
pub const MAX_SECONDS: u64 = 43_200;

/// Longest sleep between two polls, so a wait stays responsive to its
/// deadline without costing anything while it sleeps.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Waits, then succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wait;

impl Wait {
    /// The resource type `stackhook serve` routes to this handler.
    pub const RESOURCE_TYPE: &'static str = "Custom::Wait";
}

/// The properties of a `Custom::Wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitProperties {
    /// How long to wait.
    #[serde(with = "stackhook::lenient")]
    pub seconds: u64,
}

/// What is kept between polls.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct WaitState {
    /// When the wait started, in Unix milliseconds.
    started_ms: u64,
    /// When it ends, in Unix milliseconds.
    until_ms: u64,
}

/// Why a wait cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// `Seconds` is over the limit.
    #[error("Seconds must be at most {MAX_SECONDS} (12 hours), not {0}")]
    TooLong(u64),
    /// The stored state is unreadable.
    #[error("the wait's stored state is unreadable: {0}")]
    State(#[from] stackhook::Error),
}

impl Wait {
    fn start(properties: &WaitProperties) -> Result<(Duration, WaitState), WaitError> {
        if properties.seconds > MAX_SECONDS {
            return Err(WaitError::TooLong(properties.seconds));
        }
        let started_ms = now_ms();
        let state = WaitState {
            started_ms,
            until_ms: started_ms + properties.seconds * 1000,
        };
        Ok((
            Duration::from_secs(properties.seconds).min(MAX_POLL_INTERVAL),
            state,
        ))
    }
}

impl Handler for Wait {
    type Properties = WaitProperties;
    type Error = WaitError;
    const IDEMPOTENT: bool = true;

    async fn create(&self, request: CreateRequest<WaitProperties>) -> Result<Created, WaitError> {
        let (after, state) = Wait::start(&request.properties)?;
        Ok(Created::new().in_progress(after, &state))
    }

    async fn update(&self, request: UpdateRequest<WaitProperties>) -> Result<Updated, WaitError> {
        let (after, state) = Wait::start(&request.properties)?;
        Ok(Updated::new().in_progress(after, &state))
    }

    async fn delete(&self, _request: DeleteRequest<WaitProperties>) -> Result<Deleted, WaitError> {
        Ok(Deleted::new())
    }

    async fn poll(&self, request: PollRequest<WaitProperties>) -> Result<Polled, WaitError> {
        let state: WaitState = request.state()?;
        let now = now_ms();
        if now >= state.until_ms {
            let waited = (now - state.started_ms) as f64 / 1000.0;
            return Ok(Polled::done().with_data("WaitedSeconds", waited.round() as u64));
        }
        let left = Duration::from_millis(state.until_ms - now);
        Ok(Polled::again(left.min(MAX_POLL_INTERVAL), &state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackhook::Router;
    use stackhook::request::{Request, RequestType};
    use stackhook::response::Status;
    use tokio::time::Instant;

    #[test]
    fn refuses_more_than_twelve_hours() {
        let err = Wait::start(&WaitProperties {
            seconds: MAX_SECONDS + 1,
        })
        .unwrap_err();
        assert!(err.to_string().contains("12 hours"), "{err}");
    }

    #[tokio::test]
    async fn zero_seconds_finishes_at_the_first_poll() {
        let router = Router::new().route(Wait::RESOURCE_TYPE, Wait);
        let mut request = Request::new(RequestType::Create, Wait::RESOURCE_TYPE, "W", "s", "r");
        request
            .resource_properties
            .insert("Seconds".into(), "0".into());
        let response = router
            .handle(&request, Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(response.status, Status::Success, "{:?}", response.reason);
        assert_eq!(response.data.expect("data")["WaitedSeconds"], 0);
    }

    #[tokio::test]
    async fn a_wait_past_the_deadline_fails_at_once_saying_why() {
        let router = Router::new().route(Wait::RESOURCE_TYPE, Wait);
        let mut request = Request::new(RequestType::Create, Wait::RESOURCE_TYPE, "W", "s", "r");
        request
            .resource_properties
            .insert("Seconds".into(), 600.into());
        let response = router
            .handle(&request, Instant::now() + Duration::from_secs(2))
            .await;
        assert_eq!(response.status, Status::Failed);
        let reason = response.reason.expect("reason");
        assert!(
            reason.starts_with("gave up after 0 s: the handler asked to be polled again in 300 s"),
            "{reason}"
        );
    }
}
