//! The handler contract: one trait per resource type.
//!
//! A handler receives typed properties and a [`RequestContext`], and returns a
//! small result value. It never talks to ROS itself: the runtime turns its
//! result, its error or its panic into exactly one answer.
//!
//! ```
//! use stackhook::handler::{Created, CreateRequest, DeleteRequest, Deleted, Handler, Updated, UpdateRequest};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "PascalCase")]
//! struct Props {
//!     #[serde(with = "stackhook::lenient")]
//!     replicas: u32,
//! }
//!
//! struct Scaler;
//!
//! impl Handler for Scaler {
//!     type Properties = Props;
//!     type Error = std::io::Error;
//!
//!     async fn create(&self, req: CreateRequest<Props>) -> Result<Created, Self::Error> {
//!         Ok(Created::new().with_data("Replicas", req.properties.replicas))
//!     }
//!     async fn update(&self, req: UpdateRequest<Props>) -> Result<Updated, Self::Error> {
//!         Ok(Updated::new().with_data("Replicas", req.properties.replicas))
//!     }
//!     async fn delete(&self, _req: DeleteRequest<Props>) -> Result<Deleted, Self::Error> {
//!         Ok(Deleted::new())
//!     }
//! }
//! ```

mod context;
pub(crate) mod erased;
mod fc_credentials;
mod outcome;

use std::future::Future;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use context::RequestContext;
pub use fc_credentials::{
    FC_ACCESS_KEY_ID, FC_ACCESS_KEY_SECRET, FC_SECURITY_TOKEN, FcCredentials,
};
pub(crate) use outcome::Progress;
pub use outcome::{Created, Deleted, Polled, Updated};

use crate::error::BoxError;

/// A provider for one resource type.
///
/// # Guarantees
/// - For each request ROS sends, at most one of `create`, `update` or `delete`
///   runs (a request with a failed-create marker id skips `delete`).
/// - `update` cannot change the physical id: ROS forbids it, so [`Updated`]
///   has no id and the runtime echoes the request's id.
/// - The future is dropped (cancelled) when the request's deadline, less a
///   margin for delivery, passes; the runtime then answers FAILED.
///
/// # Errors
/// Any error becomes a FAILED answer whose Reason is the error's text followed
/// by its source chain. A panic becomes FAILED "handler panicked: …".
pub trait Handler: Send + Sync + 'static {
    /// Whether running an operation twice is harmless. When the provider
    /// restarts in the middle of an operation, an idempotent handler's
    /// operation is run again; any other is answered FAILED "provider
    /// restarted during the operation". A per-type setting can override it.
    const IDEMPOTENT: bool = false;

    /// The template's `Properties.Parameters`, decoded with serde. Use
    /// [`crate::lenient`] for numbers and booleans that ROS sends as strings.
    type Properties: DeserializeOwned + Send + 'static;
    /// The handler's error; anything that converts into a boxed error, such
    /// as `std::io::Error`, a `thiserror` enum or `anyhow::Error`.
    type Error: Into<BoxError> + Send + 'static;

    /// Create the resource. Return its physical id, or let the runtime
    /// generate one.
    fn create(
        &self,
        request: CreateRequest<Self::Properties>,
    ) -> impl Future<Output = Result<Created, Self::Error>> + Send;

    /// Apply changed properties. The physical id stays the same.
    fn update(
        &self,
        request: UpdateRequest<Self::Properties>,
    ) -> impl Future<Output = Result<Updated, Self::Error>> + Send;

    /// Delete the resource. Should succeed when the resource is already gone.
    fn delete(
        &self,
        request: DeleteRequest<Self::Properties>,
    ) -> impl Future<Output = Result<Deleted, Self::Error>> + Send;

    /// Check on long-running work. Called after a result made with
    /// `in_progress(after, state)`, with that state, until it returns
    /// [`Polled::done`] or fails, or the request's deadline passes. Waiting
    /// between polls holds no task or thread, and survives restarts (with
    /// the durable journal).
    ///
    /// The default answers FAILED: a handler that returns `in_progress` must
    /// implement it.
    fn poll(
        &self,
        request: PollRequest<Self::Properties>,
    ) -> impl Future<Output = Result<Polled, Self::Error>> + Send {
        let _ = request;
        async {
            Ok(Polled::failed(
                "the handler returned in_progress but does not implement poll",
            ))
        }
    }

    /// Runs once when long-running work passes its deadline, before the
    /// runtime answers FAILED: a place to clean up. It gets a few seconds.
    fn on_timeout(
        &self,
        request: PollRequest<Self::Properties>,
    ) -> impl Future<Output = ()> + Send {
        let _ = request;
        async {}
    }
}

/// A poll of long-running work, as a handler sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct PollRequest<P> {
    /// The id: the request's on Update and Delete, the one given with
    /// `in_progress` on Create (if any).
    pub physical_resource_id: Option<String>,
    /// The resource's properties.
    pub properties: P,
    /// The previous properties, on Update.
    pub old_properties: Option<P>,
    /// The state returned with the last `in_progress` or [`Polled::again`].
    pub state: Value,
    /// 1 for the first poll, then 2, 3, ...
    pub attempt: u32,
    /// Identifiers and deadline. `context.request_type()` says which
    /// operation is being polled.
    pub context: RequestContext,
}

impl<P> PollRequest<P> {
    /// Build a poll, for calling a handler directly in tests.
    pub fn new(
        physical_resource_id: Option<String>,
        properties: P,
        old_properties: Option<P>,
        state: Value,
        attempt: u32,
        context: RequestContext,
    ) -> Self {
        PollRequest {
            physical_resource_id,
            properties,
            old_properties,
            state,
            attempt,
            context,
        }
    }

    /// The state, decoded into the handler's own type.
    ///
    /// # Errors
    /// [`crate::Error::Validation`] when the stored state does not fit `T`.
    pub fn state<T: DeserializeOwned>(&self) -> Result<T, crate::Error> {
        T::deserialize(&self.state).map_err(|e| crate::Error::Validation {
            field: "poll state".into(),
            message: e.to_string(),
        })
    }
}

/// A Create request, as a handler sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct CreateRequest<P> {
    /// The resource's properties.
    pub properties: P,
    /// Identifiers and deadline.
    pub context: RequestContext,
}

/// An Update request, as a handler sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct UpdateRequest<P> {
    /// The id Create returned; it cannot change.
    pub physical_resource_id: String,
    /// The new properties.
    pub properties: P,
    /// The properties before this update. On a rollback ROS sends the
    /// previous values back as `properties`.
    pub old_properties: P,
    /// Identifiers and deadline.
    pub context: RequestContext,
}

/// A Delete request, as a handler sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeleteRequest<P> {
    /// The id Create returned.
    pub physical_resource_id: String,
    /// The resource's current properties.
    pub properties: P,
    /// Identifiers and deadline.
    pub context: RequestContext,
}

impl<P> CreateRequest<P> {
    /// Build a request, for calling a handler directly in tests.
    pub fn new(properties: P, context: RequestContext) -> Self {
        CreateRequest {
            properties,
            context,
        }
    }
}

impl<P> UpdateRequest<P> {
    /// Build a request, for calling a handler directly in tests.
    pub fn new(
        physical_resource_id: impl Into<String>,
        properties: P,
        old_properties: P,
        context: RequestContext,
    ) -> Self {
        UpdateRequest {
            physical_resource_id: physical_resource_id.into(),
            properties,
            old_properties,
            context,
        }
    }
}

impl<P> DeleteRequest<P> {
    /// Build a request, for calling a handler directly in tests.
    pub fn new(
        physical_resource_id: impl Into<String>,
        properties: P,
        context: RequestContext,
    ) -> Self {
        DeleteRequest {
            physical_resource_id: physical_resource_id.into(),
            properties,
            context,
        }
    }
}
