//! Which handler serves which resource type.
//!
//! [`Router::handle`], which runs a request through its handler, is defined
//! with the rest of the running in `dispatch.rs`, which uses this table.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::handler::Handler;
use crate::handler::erased::DynHandler;

/// The resource type ROS sends for the generic `ALIYUN::ROS::CustomResource`.
pub const GENERIC_RESOURCE_TYPE: &str = "ALIYUN::ROS::CustomResource";

/// Handlers by exact `ResourceType`, plus an optional fallback.
///
/// ```
/// # use stackhook::Router;
/// # use stackhook_handlers::Echo;
/// let router = Router::new()
///     .route("Custom::Echo", Echo)
///     .fallback(Echo);
/// assert_eq!(router.resource_types().collect::<Vec<_>>(), ["Custom::Echo"]);
/// ```
#[derive(Clone, Default)]
pub struct Router {
    routes: BTreeMap<String, Arc<dyn DynHandler>>,
    fallback: Option<Arc<dyn DynHandler>>,
}

impl Router {
    /// An empty router: every request is answered FAILED "no handler".
    pub fn new() -> Self {
        Router::default()
    }

    /// Serve `resource_type` (for example `Custom::Database`) with `handler`.
    ///
    /// # Panics
    /// When `resource_type` is already routed: two handlers for one type is a
    /// programming error, caught at start-up.
    #[must_use]
    pub fn route<H: Handler>(mut self, resource_type: impl Into<String>, handler: H) -> Self {
        let resource_type = resource_type.into();
        assert!(
            !self.routes.contains_key(&resource_type),
            "resource type `{resource_type}` is routed twice"
        );
        self.routes.insert(resource_type, Arc::new(handler));
        self
    }

    /// Serve every resource type that has no route of its own with `handler`,
    /// for example the generic `ALIYUN::ROS::CustomResource`.
    #[must_use]
    pub fn fallback<H: Handler>(mut self, handler: H) -> Self {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// Serve requests of type `from` with the handler already routed for `to`.
    /// Returns the router unchanged when `to` has no route.
    #[must_use]
    pub fn alias(mut self, from: impl Into<String>, to: &str) -> Self {
        if let Some(handler) = self.routes.get(to).cloned() {
            self.routes.insert(from.into(), handler);
        }
        self
    }

    /// The routed resource types, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Whether a fallback handler is set.
    pub fn has_fallback(&self) -> bool {
        self.fallback.is_some()
    }

    pub(crate) fn handler_for(&self, resource_type: &str) -> Option<&Arc<dyn DynHandler>> {
        self.routes.get(resource_type).or(self.fallback.as_ref())
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("resource_types", &self.routes.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}
