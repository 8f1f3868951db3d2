//! What a handler knows about the request besides its properties.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::FcCredentials;
use crate::request::{Request, RequestType};

/// Identifiers of the request and the time the handler has left.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Shared with the runtime, which holds the request for its whole life.
    request: Arc<Request>,
    deadline: Instant,
    fc_credentials: Option<Arc<FcCredentials>>,
}

impl RequestContext {
    /// The context for `request`, whose handler must finish by `deadline`.
    pub fn new(request: &Request, deadline: Instant) -> Self {
        Self::shared(Arc::new(request.clone()), deadline)
    }

    /// The context for a request the runtime already shares.
    pub(crate) fn shared(request: Arc<Request>, deadline: Instant) -> Self {
        RequestContext {
            request,
            deadline,
            fc_credentials: None,
        }
    }

    /// Attach Function Compute's per-invocation credentials.
    #[must_use]
    pub fn with_fc_credentials(mut self, credentials: Option<Arc<FcCredentials>>) -> Self {
        self.fc_credentials = credentials;
        self
    }

    /// The temporary credentials of the function's role, when the request
    /// arrived as a Function Compute event invocation (`x-fc-access-key-id`,
    /// `x-fc-access-key-secret`, `x-fc-security-token`). They are never
    /// journaled, so a request resumed after a restart does not have them.
    pub fn fc_credentials(&self) -> Option<&FcCredentials> {
        self.fc_credentials.as_deref()
    }

    /// The whole request, shared with the runtime.
    pub(crate) fn request(&self) -> &Request {
        &self.request
    }

    /// Create, Update or Delete.
    pub fn request_type(&self) -> RequestType {
        self.request.request_type
    }
    /// ROS's id for this request.
    pub fn request_id(&self) -> &str {
        &self.request.request_id
    }
    /// The resource type the request was routed by.
    pub fn resource_type(&self) -> &str {
        &self.request.resource_type
    }
    /// The resource's name in the template.
    pub fn logical_resource_id(&self) -> &str {
        &self.request.logical_resource_id
    }
    /// The stack's id.
    pub fn stack_id(&self) -> &str {
        &self.request.stack_id
    }
    /// The stack's name.
    pub fn stack_name(&self) -> &str {
        &self.request.stack_name
    }
    /// The stack's region.
    pub fn region_id(&self) -> &str {
        &self.request.region_id
    }
    /// The account that owns the stack.
    pub fn resource_owner_id(&self) -> &str {
        &self.request.resource_owner_id
    }
    /// The account or RAM user that ran the stack operation.
    pub fn caller_id(&self) -> &str {
        &self.request.caller_id
    }
    /// When the handler's future will be cancelled.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
    /// Time left before the handler is cancelled.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}
