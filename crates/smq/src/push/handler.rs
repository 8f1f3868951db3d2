//! A topic push endpoint's whole job, independent of any HTTP server:
//! verify, decode, record through the [`Intake`], and say what to answer.
//!
//! SMQ waits 5 s for a push's answer and retries anything but a 2xx
//! (according to the subscription's NotifyStrategy). So [`handle`] answers
//! 2xx only once the request is recorded, and 503 when it cannot say so
//! within [`PUSH_ANSWER_BUDGET`]: SMQ pushes again and the journal's dedupe
//! absorbs a record that did finish.
//!
//! | outcome | status | SMQ then |
//! |---|---|---|
//! | recorded (or a duplicate) | 204 | done |
//! | forged: signature, certificate URL, Content-MD5 or Date refused | 403 | retries; a forger gets nothing |
//! | not an SMQ push (unreadable, wrong method) | 400 | retries |
//! | poison: verified, but not a ROS request or refused by the intake | 200 | done (logged and counted by the caller) |
//! | certificate unavailable, journal unavailable, or out of time | 503 | retries |
//!
//! A poison push is answered 2xx on purpose: a retry cannot cure it, and
//! SMQ slows every push of a subscription that keeps failing.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};

use super::{CertFetcher, PushNotification, PushVerifier};
use crate::error::Error;
use crate::intake::{Intake, IntakeOutcome, Origin};
use crate::message::ShapesSeen;

/// How long [`handle`] may take: SMQ gives up on a push after 5 s, and the
/// answer needs the last second to travel back.
pub const PUSH_ANSWER_BUDGET: Duration = Duration::from_secs(4);

/// Shapes logged at INFO once per process.
static SHAPES_SEEN: ShapesSeen = ShapesSeen::new();

/// What became of a push, for the caller's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Recorded (or already known): answered 2xx.
    Recorded,
    /// Verified, but not a usable ROS request: answered 2xx and dropped.
    Poison,
    /// Failed verification: answered 403.
    Forged,
    /// Not an SMQ push at all: answered 400.
    Malformed,
    /// The signing certificate could not be had: answered 503.
    CertificateUnavailable,
    /// The intake was unavailable: answered 503.
    Unavailable,
    /// Not settled within the budget: answered 503.
    TimedOut,
}

impl PushOutcome {
    /// A short stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            PushOutcome::Recorded => "recorded",
            PushOutcome::Poison => "poison",
            PushOutcome::Forged => "forged",
            PushOutcome::Malformed => "malformed",
            PushOutcome::CertificateUnavailable => "certificate_unavailable",
            PushOutcome::Unavailable => "unavailable",
            PushOutcome::TimedOut => "timed_out",
        }
    }
}

/// The answer to send SMQ: a status and a short plain-text body (never the
/// request, never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct PushReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// A plain-text body (`text/plain; charset=utf-8`), possibly empty.
    pub body: Bytes,
    /// What happened, for metrics.
    pub outcome: PushOutcome,
}

impl PushReply {
    fn new(outcome: PushOutcome, body: &'static str) -> Self {
        let status = match outcome {
            PushOutcome::Recorded => StatusCode::NO_CONTENT,
            PushOutcome::Poison => StatusCode::OK,
            PushOutcome::Forged => StatusCode::FORBIDDEN,
            PushOutcome::Malformed => StatusCode::BAD_REQUEST,
            PushOutcome::CertificateUnavailable
            | PushOutcome::Unavailable
            | PushOutcome::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
        };
        PushReply {
            status,
            body: Bytes::from_static(body.as_bytes()),
            outcome,
        }
    }
}

/// Handle one topic push within [`PUSH_ANSWER_BUDGET`]: `request` as
/// received (method, path and query, headers, whole body).
pub async fn handle<F, I>(
    request: &Request<Bytes>,
    verifier: &PushVerifier<F>,
    intake: &I,
) -> PushReply
where
    F: CertFetcher,
    I: Intake,
{
    handle_within(request, verifier, intake, PUSH_ANSWER_BUDGET).await
}

/// [`handle`] with another time budget.
pub async fn handle_within<F, I>(
    request: &Request<Bytes>,
    verifier: &PushVerifier<F>,
    intake: &I,
    budget: Duration,
) -> PushReply
where
    F: CertFetcher,
    I: Intake,
{
    match tokio::time::timeout(budget, settle(request, verifier, intake)).await {
        Ok(reply) => reply,
        Err(_) => {
            tracing::warn!(
                budget_ms = budget.as_millis() as u64,
                "SMQ topic push not recorded in time; answering 503 so SMQ pushes it again"
            );
            PushReply::new(PushOutcome::TimedOut, "not recorded in time; push again\n")
        }
    }
}

async fn settle<F, I>(request: &Request<Bytes>, verifier: &PushVerifier<F>, intake: &I) -> PushReply
where
    F: CertFetcher,
    I: Intake,
{
    if request.method() != Method::POST {
        return PushReply::new(PushOutcome::Malformed, "a topic push is a POST\n");
    }
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let headers = request.headers();
    let body = request.body();
    if let Err(e) = verifier.verify("POST", path, headers, body).await {
        return match e {
            Error::Certificate(_) => {
                tracing::warn!(error = %e, "SMQ topic push: no signing certificate; answering 503");
                PushReply::new(
                    PushOutcome::CertificateUnavailable,
                    "signing certificate unavailable; push again\n",
                )
            }
            _ => {
                tracing::warn!(error = %e, "SMQ topic push refused");
                PushReply::new(PushOutcome::Forged, "push verification failed\n")
            }
        };
    }
    let push = match PushNotification::parse(headers, body) {
        Ok(push) => push,
        Err(e) => {
            tracing::warn!(error = %e, "SMQ topic push is signed but unreadable");
            return PushReply::new(PushOutcome::Malformed, "not a topic notification\n");
        }
    };
    let message_id = push.notification.message_id.clone();
    let decoded = match push.decode() {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::warn!(
                message_id = %message_id,
                format = %push.format,
                error = %e,
                "poison SMQ topic push: the message cannot be decoded; dropping it"
            );
            return PushReply::new(PushOutcome::Poison, "not a ROS request; dropped\n");
        }
    };
    let shape = decoded.shape;
    if SHAPES_SEEN.first(shape) {
        tracing::info!(%shape, format = %push.format, message_id = %message_id, "first SMQ topic push in this body shape");
    }
    tracing::debug!(%shape, format = %push.format, message_id = %message_id, "SMQ topic push verified");
    let origin = Origin::push(message_id.clone(), push.format, shape);
    match intake.record(Bytes::from(decoded.json), origin).await {
        IntakeOutcome::Recorded => PushReply::new(PushOutcome::Recorded, ""),
        IntakeOutcome::Refused { reason } => {
            tracing::warn!(
                message_id = %message_id,
                reason = %reason,
                "poison SMQ topic push refused; dropping it"
            );
            PushReply::new(PushOutcome::Poison, "not a usable ROS request; dropped\n")
        }
        IntakeOutcome::Unavailable { reason } => {
            tracing::warn!(
                message_id = %message_id,
                reason = %reason,
                "the journal could not take an SMQ topic push; answering 503"
            );
            PushReply::new(PushOutcome::Unavailable, "cannot record now; push again\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_outcome() {
        let status = |o| PushReply::new(o, "").status;
        assert_eq!(status(PushOutcome::Recorded), StatusCode::NO_CONTENT);
        assert!(status(PushOutcome::Poison).is_success());
        assert_eq!(status(PushOutcome::Forged), StatusCode::FORBIDDEN);
        assert_eq!(status(PushOutcome::Malformed), StatusCode::BAD_REQUEST);
        for retry in [
            PushOutcome::CertificateUnavailable,
            PushOutcome::Unavailable,
            PushOutcome::TimedOut,
        ] {
            assert_eq!(status(retry), StatusCode::SERVICE_UNAVAILABLE, "{retry:?}");
        }
    }
}
