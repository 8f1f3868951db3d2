//! Asynchronous intake, shared by `POST /` and by intakes that are not HTTP
//! (a queue consumer, a topic push endpoint): parse a body, check its
//! callbacks, admit it through the journal, wait until it is durable and
//! start it. [`Recorder`] is the public handle; `POST /` maps the same
//! steps ([`screen`], [`accept`]) to HTTP replies.

use std::sync::Arc;

use bytes::Bytes;
use tracing::Instrument;

use crate::error::Error;
use crate::journal::Channel;
use crate::request::Request;
use crate::response::Response;
use crate::runtime::{Admission, Intake, Runtime, delivery_note};
use crate::security::Refusal;

/// A body sorted by what the async intake does with it.
pub(crate) enum Screened {
    /// A valid request whose callbacks the guard allows.
    Request(Arc<Request>),
    /// A valid request with no callback URL: nothing could be answered.
    NoCallback(Arc<Request>),
    /// Every callback URL is refused by the callback guard.
    Refused(Refusal),
    /// Not a valid request (answerable at its callback or not).
    Bad(Intake),
}

/// Parse `body` and apply the callback guard.
pub(crate) fn screen(runtime: &Runtime, body: &[u8]) -> Screened {
    match Intake::parse(body) {
        Intake::Request(request) if !request.has_callback() => Screened::NoCallback(request),
        Intake::Request(request) => {
            let guarded = Runtime::span(&request).in_scope(|| {
                runtime
                    .security
                    .check_callbacks(runtime.delivery.targets(&request))
            });
            match guarded {
                Ok(()) => Screened::Request(request),
                Err(refusal) => Screened::Refused(refusal),
            }
        }
        intake => Screened::Bad(intake),
    }
}

/// What the journal made of a screened request (see [`accept`]).
pub(crate) enum Accepted {
    /// New, durably recorded, and started.
    New,
    /// Already running or open here or elsewhere: it keeps its one answer.
    Redelivery,
    /// Answered before: the same answer is being sent again.
    Reanswered,
    /// The queue was full: answered FAILED "overloaded", the answer
    /// journaled and being delivered.
    Overloaded(Arc<Response>),
    /// Started, but its record could not be made durable.
    NotDurable(Error),
    /// The journal refused it: not recorded, not started.
    NotRecorded(Error),
}

/// Journal an async request and start it, or recognise a redelivery. Runs
/// in the request's span.
pub(crate) async fn accept(runtime: &Arc<Runtime>, request: &Arc<Request>) -> Accepted {
    async {
        match runtime.admit(request, Channel::Async).await {
            Ok(Admission::Owner(key, record, durable)) => {
                runtime.spawn_owned(key, record);
                // Accepted only once the record is on disk, or once the
                // answer reached ROS, which makes the record moot. The
                // handler may be running already (see `Runtime::admit`); if
                // the journal failed, its answer is still coming, so no
                // FAILED is sent: the sender sees an error, and a retry
                // joins the running request.
                match durable.await {
                    Ok(()) => {
                        tracing::info!("accepted");
                        Accepted::New
                    }
                    Err(error) => {
                        tracing::error!(%error, "could not journal the request; it runs without a crash-safe record");
                        Accepted::NotDurable(error)
                    }
                }
            }
            Ok(Admission::Joined(_) | Admission::Elsewhere) => {
                tracing::info!("redelivery of a request in progress; it keeps its one answer");
                Accepted::Redelivery
            }
            Ok(Admission::Answered(response)) => {
                tracing::info!("redelivery of an answered request; sending the same answer again");
                runtime.spawn_redelivery(Arc::clone(request), response);
                Accepted::Reanswered
            }
            Ok(Admission::Overloaded(key, record, response)) => {
                // Answered FAILED, and the answer journaled: accepted like
                // any recorded request, and delivered from the outbox.
                tracing::warn!("queue full; answered FAILED \"overloaded\" at the callback");
                runtime.spawn_outbox_delivery(key, record);
                Accepted::Overloaded(response)
            }
            Err(error) => Accepted::NotRecorded(error),
        }
    }
    .instrument(Runtime::span(request))
    .await
}

/// A handle on a running provider's async intake, for transports other than
/// HTTP: hand it a request body, and learn when the request is durably
/// recorded. Cheap to clone; given to [`Extras`](super::Extras) intakes and
/// routes by [`serve_with`](super::serve_with).
///
/// [`Recorder::record`] does what `POST /` does, minus HTTP: it parses the
/// body, answers FAILED at the callback for a malformed body that names one,
/// refuses a request whose every callback URL the callback guard refuses,
/// admits the request through the journal (a redelivery is recognised, not
/// run again), waits until its record is durable, and starts it.
#[derive(Clone)]
pub struct Recorder {
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

/// What became of a body handed to [`Recorder::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum RecordOutcome {
    /// New: durably in the journal, and started.
    Recorded,
    /// The journal already had it (running, or answered, in which case the
    /// answer is sent again): one handler run, one answer.
    Duplicate,
    /// Answered FAILED at its callback without running: a malformed body
    /// that names its callback, or a full queue ("overloaded"). The stack
    /// has its answer, so this counts as handled.
    Answered {
        /// Why, for the log (never a URL's query, never a property).
        reason: String,
    },
    /// Never runnable and nothing to answer: not a ROS request, no callback
    /// URL, or every callback URL refused by the callback guard. Poison for
    /// a queue.
    Refused {
        /// Why, for the log (same rule as [`RecordOutcome::Answered`]).
        reason: String,
    },
    /// Not recorded now (the journal failed, or the provider is shutting
    /// down): hand it again later.
    Unavailable {
        /// Why, for the log (same rule as [`RecordOutcome::Answered`]).
        reason: String,
    },
}

impl RecordOutcome {
    /// Whether the provider now owns the request (recorded, a duplicate, or
    /// answered): the sender may forget it.
    pub fn is_handled(&self) -> bool {
        matches!(
            self,
            RecordOutcome::Recorded | RecordOutcome::Duplicate | RecordOutcome::Answered { .. }
        )
    }
}

impl Recorder {
    pub(crate) fn new(runtime: Arc<Runtime>) -> Self {
        Recorder { runtime }
    }

    /// Record one ROS request body (its JSON, as ROS sent it) and start it.
    /// Completes once the request is durably recorded, or known not to be.
    ///
    /// The body limit and the JSON nesting limit apply as for HTTP; the
    /// token and request signature do not (the transport authenticates).
    pub async fn record(&self, body: Bytes) -> RecordOutcome {
        let runtime = &self.runtime;
        if runtime.stopping.is_cancelled() {
            return RecordOutcome::Unavailable {
                reason: "the provider is shutting down".into(),
            };
        }
        let limit = runtime.config.body_limit;
        if body.len() > limit {
            return RecordOutcome::Refused {
                reason: format!("the request body is over the limit of {limit} bytes"),
            };
        }
        let depth = runtime.config.security.json_depth;
        if crate::security::limits::json_too_deep(&body, depth) {
            return RecordOutcome::Refused {
                reason: format!("the request body nests deeper than {depth} levels"),
            };
        }
        match screen(runtime, &body) {
            Screened::Request(request) => match accept(runtime, &request).await {
                Accepted::New => RecordOutcome::Recorded,
                Accepted::Redelivery | Accepted::Reanswered => RecordOutcome::Duplicate,
                Accepted::Overloaded(response) => RecordOutcome::Answered {
                    reason: response
                        .reason
                        .clone()
                        .unwrap_or_else(|| "overloaded".into()),
                },
                Accepted::NotDurable(error) | Accepted::NotRecorded(error) => {
                    let _span = Runtime::span(&request).entered();
                    tracing::warn!(%error, "could not journal the request; leaving it to be handed again");
                    RecordOutcome::Unavailable {
                        reason: format!("the journal failed: {error}"),
                    }
                }
            },
            Screened::NoCallback(request) => {
                let _span = Runtime::span(&request).entered();
                tracing::warn!("request without a callback URL on an async intake");
                RecordOutcome::Refused {
                    reason: "the request has no ResponseURL or IntranetResponseURL".into(),
                }
            }
            Screened::Refused(refusal) => RecordOutcome::Refused {
                reason: refusal.reason().to_owned(),
            },
            Screened::Bad(Intake::Answerable { problem, salvage }) => {
                tracing::warn!(%problem, request_id = ?salvage.request_id, "malformed request; answering FAILED at its callback");
                let delivered = runtime.answer_broken(&salvage, &problem).await;
                RecordOutcome::Answered {
                    reason: format!(
                        "malformed request ({problem}); FAILED {}",
                        delivery_note(&delivered)
                    ),
                }
            }
            Screened::Bad(Intake::Unanswerable { problem }) => {
                tracing::warn!(%problem, "malformed request with no callback to answer");
                RecordOutcome::Refused { reason: problem }
            }
            Screened::Bad(Intake::Request(_)) => RecordOutcome::Refused {
                reason: "a valid request was rejected".into(),
            },
        }
    }
}
