//! # stackhook
//!
//! A runtime for Alibaba Cloud ROS custom-resource providers.
//!
//! A ROS stack with a `Custom::*` or `ALIYUN::ROS::CustomResource` resource
//! sends Create, Update and Delete requests to a provider, which must answer
//! SUCCESS or FAILED at a presigned callback URL, or the stack hangs until its
//! timeout. stackhook gives you a typed [`Handler`] trait per resource type,
//! routes requests to it, and makes sure every request gets exactly one
//! answer within ROS's limits: errors, panics, timeouts, unknown types and
//! malformed input included.
//!
//! ```no_run
//! use serde::Deserialize;
//! use stackhook::handler::{Created, CreateRequest, DeleteRequest, Deleted, Handler, Updated, UpdateRequest};
//! use stackhook::{Config, Router};
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "PascalCase")]
//! struct BucketProps {
//!     name: String,
//!     #[serde(default, with = "stackhook::lenient")]
//!     versioned: bool,
//! }
//!
//! struct Bucket;
//!
//! impl Handler for Bucket {
//!     type Properties = BucketProps;
//!     type Error = std::io::Error;
//!
//!     async fn create(&self, req: CreateRequest<BucketProps>) -> Result<Created, Self::Error> {
//!         Ok(Created::with_id(req.properties.name.clone()).with_data("Versioned", req.properties.versioned))
//!     }
//!     async fn update(&self, req: UpdateRequest<BucketProps>) -> Result<Updated, Self::Error> {
//!         Ok(Updated::new().with_data("Versioned", req.properties.versioned))
//!     }
//!     async fn delete(&self, _req: DeleteRequest<BucketProps>) -> Result<Deleted, Self::Error> {
//!         Ok(Deleted::new())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), stackhook::Error> {
//!     let router = Router::new().route("Custom::Bucket", Bucket);
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:9000").await.map_err(|e| stackhook::Error::Config(e.to_string()))?;
//!     stackhook::serve(listener, router, Config::default(), std::future::pending()).await
//! }
//! ```
//!
//! ## Map of the crate
//! - [`request`] and [`response`]: the wire model and ROS's size limits.
//! - [`handler`]: the trait you implement, its inputs and results.
//! - [`lenient`]: serde helpers for numbers and booleans sent as strings.
//! - [`router`]: handlers by resource type; [`Router::handle`] runs one request.
//! - [`physical_id`]: ROS's physical-id rules and the failed-create marker.
//! - [`delivery`]: sending the answer to the callback URL, with retries.
//! - [`server`]: the hyper receiver (async, sync and Function Compute modes).
//! - [`journal`]: the durable record of requests and answers, behind the
//!   [`Store`](journal::Store) trait; an in-memory store and, with the
//!   default `redb` feature, the embedded [`RedbStore`](journal::RedbStore).
//! - [`sink`]: a local callback receiver, for tools and tests.
//! - [`security`]: request authentication (token, ROS SignKey signature), the
//!   callback allow list, input limits, and [`Sensitive`] values that never print.
//! - [`config`]: every setting, with its default.
//!
//! ## The other crates
//! - `stackhook-cloud`: signed clients for ROS, OOS and Huawei RFS (outbound calls).
//! - `stackhook-handlers`: the built-in handlers the `stackhook` binary ships.
//! - `stackhook-testing`: a mock ROS that drives whole lifecycles against a
//!   provider and checks ROS's rules, an emulator of the ROS, OOS and RFS
//!   APIs, and a load generator. Put it in `[dev-dependencies]`.
//! - `stackhook-cli`: the `stackhook` binary.
//!
//! `docs/architecture.md` in the repository maps them.

pub mod config;
pub mod delivery;
mod dispatch;
pub mod error;
pub mod handler;
pub mod journal;
mod json_text;
pub mod lenient;
mod metrics;
pub mod physical_id;
mod reply;
pub mod request;
pub mod response;
pub mod router;
mod runtime;
pub mod security;
pub mod server;
pub mod sink;
mod sync;

/// The guides in `docs/`, compiled so that their Rust snippets are tested.
#[cfg(doctest)]
mod docs {
    #[doc = include_str!("../docs/writing-handlers.md")]
    mod writing_handlers {}
    #[doc = include_str!("../docs/deploying.md")]
    mod deploying {}
    #[doc = include_str!("../docs/templates.md")]
    mod templates {}
    #[doc = include_str!("../docs/testing.md")]
    mod testing {}
}

pub use config::Config;
pub use error::{Error, Result};
pub use handler::Handler;
pub use request::{Request, RequestType};
pub use response::{Response, Status};
pub use router::Router;
pub use security::sensitive::Sensitive;
pub use server::serve;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
