//! The runtime: what happens to a request once it has been read, whatever
//! transport brought it (async HTTP, sync HTTP, Function Compute).
//!
//! It computes deadlines, runs the handler through the router, delivers the
//! answer, and answers FAILED for bodies that are broken but still carry a
//! callback URL and the identifiers.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{Config, ROS_SYNC_WAIT, delivery_margin};
use crate::delivery::{Delivered, Delivery};
use crate::error::{Error, Result};
use crate::request::{CallbackUrl, Request, Salvage};
use crate::response::Response;
use crate::router::Router;

/// Time kept back from ROS's 10 s sync wait for writing the reply.
const SYNC_REPLY_MARGIN: Duration = Duration::from_secs(1);

/// The least time a delivery gets, even when the handler used all of its own.
const MIN_DELIVERY_WINDOW: Duration = Duration::from_secs(5);

/// A body read from the wire, sorted by what can be done with it.
#[derive(Debug)]
pub(crate) enum Intake {
    /// A valid request.
    Request(Box<Request>),
    /// Not a valid request, but a FAILED answer can reach ROS.
    Answerable { problem: String, salvage: Salvage },
    /// Not a valid request and nothing to answer.
    Unanswerable { problem: String },
}

impl Intake {
    pub(crate) fn parse(body: &[u8]) -> Intake {
        match Request::from_slice(body) {
            Ok(request) => Intake::Request(Box::new(request)),
            Err(error) => {
                let problem = error.to_string();
                match Salvage::from_slice(body) {
                    Some(salvage) if salvage.answerable() => {
                        Intake::Answerable { problem, salvage }
                    }
                    _ => Intake::Unanswerable { problem },
                }
            }
        }
    }
}

/// The state shared by every request.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) router: Router,
    pub(crate) config: Config,
    pub(crate) delivery: Delivery,
    /// Background work (async-mode handlers and deliveries) to wait for on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the shutdown grace period is over.
    pub(crate) cancel: CancellationToken,
    /// Authentication and limits for incoming requests.
    pub(crate) security: crate::security::Gate,
}

impl Runtime {
    pub(crate) fn new(router: Router, config: Config) -> Result<Arc<Self>> {
        let delivery = Delivery::new(&config)?;
        let security = crate::security::Gate::new(&config.security)?;
        Ok(Arc::new(Runtime {
            router,
            config,
            delivery,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            security,
        }))
    }

    /// The span every log line about `request` is written in.
    pub(crate) fn span(request: &Request) -> tracing::Span {
        tracing::info_span!(
            "request",
            request_id = %request.request_id,
            request_type = %request.request_type,
            resource_type = %request.resource_type,
            logical_resource_id = %request.logical_resource_id,
            stack_id = %request.stack_id,
        )
    }

    /// Run the handler with a deadline `total` after `arrived`, less the
    /// delivery margin; stop early, with FAILED, if the runtime is shut down.
    pub(crate) async fn answer(
        &self,
        request: &Request,
        arrived: Instant,
        total: Duration,
    ) -> Response {
        let handler_deadline = arrived + total - delivery_margin(total);
        tokio::select! {
            response = self.router.handle(request, handler_deadline) => response,
            () = self.cancel.cancelled() => Response::failed(
                request,
                crate::dispatch::answer_id(request),
                "the provider shut down before the handler finished",
            ),
        }
    }

    /// Run and deliver, for async HTTP and Function Compute.
    pub(crate) async fn answer_and_deliver(
        &self,
        request: &Request,
        arrived: Instant,
        total: Duration,
    ) -> (Response, Result<Delivered>) {
        let response = self.answer(request, arrived, total).await;
        let until = (arrived + total).max(Instant::now() + MIN_DELIVERY_WINDOW);
        let delivered = self.delivery.deliver(request, &response, until).await;
        if let Err(error) = &delivered {
            tracing::error!(%error, status = response.status.as_str(), "answer not delivered");
        }
        (response, delivered)
    }

    /// Accept a request in async mode: run and deliver in the background.
    pub(crate) fn spawn(self: &Arc<Self>, request: Request, arrived: Instant) {
        let runtime = Arc::clone(self);
        let total = self.config.timeout_for(&request.resource_type);
        let span = Self::span(&request);
        self.tasks.spawn(
            async move {
                let _ = runtime.answer_and_deliver(&request, arrived, total).await;
            }
            .instrument(span),
        );
    }

    /// Answer in sync mode, within ROS's fixed 10 s wait.
    pub(crate) async fn answer_sync(&self, request: &Request, arrived: Instant) -> Response {
        let total = self
            .config
            .timeout_for(&request.resource_type)
            .min(ROS_SYNC_WAIT);
        let deadline = arrived + total - SYNC_REPLY_MARGIN.min(total / 2);
        let mut response = tokio::select! {
            response = self.router.handle(request, deadline) => response,
            () = self.cancel.cancelled() => Response::failed(
                request,
                crate::dispatch::answer_id(request),
                "the provider shut down before the handler finished",
            ),
        };
        if let Some(reason) = response
            .reason
            .as_mut()
            .filter(|r| r.starts_with("timed out"))
        {
            reason.push_str("; ROS waits only 10 s for the answer to a web[sync]: request");
        }
        response
    }

    /// Send FAILED for a body that was not a valid request but names its
    /// callback and identifiers, so the stack does not hang.
    pub(crate) async fn answer_broken(
        &self,
        salvage: &Salvage,
        problem: &str,
    ) -> Result<Delivered> {
        let response = broken_response(salvage, problem);
        let mut request = Request::new(
            crate::request::RequestType::Create,
            salvage.resource_type.clone().unwrap_or_default(),
            response.logical_resource_id.clone(),
            response.stack_id.clone(),
            response.request_id.clone(),
        );
        request.response_url = salvage.response_url.clone().map(CallbackUrl::new);
        request.intranet_response_url = salvage.intranet_response_url.clone().map(CallbackUrl::new);
        let until = Instant::now() + self.config.timeout.max(MIN_DELIVERY_WINDOW);
        self.delivery.deliver(&request, &response, until).await
    }
}

/// The FAILED answer for a broken body.
pub(crate) fn broken_response(salvage: &Salvage, problem: &str) -> Response {
    let request_id = salvage.request_id.clone().unwrap_or_default();
    let physical_id = match (&salvage.request_type, &salvage.physical_resource_id) {
        (Some(kind), Some(id)) if kind != "Create" && !id.trim().is_empty() => id.clone(),
        _ => crate::physical_id::failed_create(&request_id),
    };
    Response::failed_for(
        &request_id,
        salvage.logical_resource_id.as_deref().unwrap_or_default(),
        salvage.stack_id.as_deref().unwrap_or_default(),
        physical_id,
        format!("the provider could not read the request: {problem}"),
    )
}

/// A short, loggable description of a delivery failure.
pub(crate) fn delivery_note(delivered: &Result<Delivered>) -> String {
    match delivered {
        Ok(d) => format!(
            "delivered to the {} URL (HTTP {})",
            d.target.as_str(),
            d.status
        ),
        Err(Error::Delivery(message)) => format!("not delivered: {message}"),
        Err(other) => format!("not delivered: {other}"),
    }
}
