//! Where the consumer and the push handler hand requests: the [`Intake`].
//!
//! Both SMQ transports end the same way: a ROS request's JSON, taken off a
//! queue or out of a topic push, is given to [`Intake::record`], whose
//! [`IntakeOutcome`] decides what happens to the message. The embedding
//! runtime implements it on top of its journal; this crate never looks
//! inside the JSON.
//!
//! # Guarantees the consumer relies on
//! - **Recorded** means the request is durably in the journal (or the
//!   journal already had it). Only then is the message deleted (a queue) or
//!   the push answered 2xx (a topic). From there the journal owns it.
//! - The same request may be recorded more than once: a crash between the
//!   record and the delete, a visibility timeout that ran out, or two pushes
//!   of one notification all redeliver it. The journal's dedupe must make
//!   that harmless (one handler run, one answer).
//! - A record may be cancelled (its future dropped) when the process shuts
//!   down or a push's answer deadline passes; the message is then delivered
//!   again.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::message::BodyShape;
use crate::notification::NotifyFormat;

/// Takes ROS requests from the SMQ transports and records them.
///
/// Implement it with a plain `async fn`:
///
/// ```
/// use bytes::Bytes;
/// use stackhook_smq::{Intake, IntakeOutcome, Origin};
///
/// struct Journal;
///
/// impl Intake for Journal {
///     async fn record(&self, request_json: Bytes, origin: Origin) -> IntakeOutcome {
///         if serde_json::from_slice::<serde_json::Value>(&request_json).is_err() {
///             return IntakeOutcome::refused("not a ROS request");
///         }
///         // ... insert into the journal and wait until it is durable ...
///         IntakeOutcome::Recorded
///     }
/// }
/// ```
pub trait Intake: Send + Sync + 'static {
    /// Record one request: `request_json` is the JSON object the message
    /// carried (already unwrapped from base64 and topic envelopes), `origin`
    /// says where it came from, for logs.
    ///
    /// # Errors
    /// There are none as such: every outcome, failure included, is an
    /// [`IntakeOutcome`]. A panic counts as [`IntakeOutcome::Unavailable`].
    fn record(
        &self,
        request_json: Bytes,
        origin: Origin,
    ) -> impl Future<Output = IntakeOutcome> + Send;
}

impl<T: Intake> Intake for Arc<T> {
    fn record(
        &self,
        request_json: Bytes,
        origin: Origin,
    ) -> impl Future<Output = IntakeOutcome> + Send {
        T::record(self, request_json, origin)
    }
}

/// What became of a request handed to [`Intake::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum IntakeOutcome {
    /// Durably in the journal, now or already (a duplicate): the message can
    /// be deleted, the push answered 2xx.
    Recorded,
    /// Never recordable: not a ROS request, or no usable callback. The
    /// message is poison: counted, logged by its MessageId, and deleted once
    /// its DequeueCount reaches the consumer's limit.
    ///
    /// `reason` is logged: it must not quote the request (a presigned
    /// ResponseURL, secret properties).
    Refused {
        /// Why, for the log.
        reason: String,
    },
    /// The journal cannot take it now (down, overloaded, shutting down): the
    /// message is kept, to be delivered again after its visibility timeout,
    /// and the receiver backs off.
    Unavailable {
        /// Why, for the log (same rule as [`IntakeOutcome::Refused`]).
        reason: String,
    },
}

impl IntakeOutcome {
    /// [`IntakeOutcome::Refused`] with this reason.
    pub fn refused(reason: impl Into<String>) -> Self {
        IntakeOutcome::Refused {
            reason: reason.into(),
        }
    }

    /// [`IntakeOutcome::Unavailable`] with this reason.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        IntakeOutcome::Unavailable {
            reason: reason.into(),
        }
    }
}

/// Which transport a request came by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Received from this queue.
    Queue(String),
    /// Pushed by a topic subscription in this format.
    TopicPush(NotifyFormat),
}

/// Where a request came from: for logs and metrics, not for dedupe (the
/// request's own ids are the key).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Origin {
    /// SMQ's MessageId (a queue message's, or the published message's for a
    /// push).
    pub message_id: String,
    /// How many times the queue has delivered the message, this delivery
    /// included (above 1: a redelivery). `None` for a push, which has no
    /// such count.
    pub dequeue_count: Option<u32>,
    /// The shape the body arrived in (raw or base64, with or without a topic
    /// envelope).
    pub shape: BodyShape,
    /// The transport.
    pub via: Via,
}

impl Origin {
    /// A message received from `queue`.
    pub fn queue(
        queue: impl Into<String>,
        message_id: impl Into<String>,
        dequeue_count: u32,
        shape: BodyShape,
    ) -> Self {
        Origin {
            message_id: message_id.into(),
            dequeue_count: Some(dequeue_count),
            shape,
            via: Via::Queue(queue.into()),
        }
    }

    /// A topic push in `format`.
    pub fn push(message_id: impl Into<String>, format: NotifyFormat, shape: BodyShape) -> Self {
        Origin {
            message_id: message_id.into(),
            dequeue_count: None,
            shape,
            via: Via::TopicPush(format),
        }
    }
}
