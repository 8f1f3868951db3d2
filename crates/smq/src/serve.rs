//! The SMQ transports next to stackhook's `serve`: the queue consumer as an
//! intake and the topic push endpoint as a route, both recording through
//! the runtime's [`Recorder`], with their counters on `GET /metrics`.
//!
//! ```no_run
//! # async fn demo(listener: tokio::net::TcpListener, router: stackhook::Router) -> Result<(), Box<dyn std::error::Error>> {
//! use stackhook::server::{Extras, serve_with};
//! use stackhook_smq::{Consumer, ConsumerConfig, Credentials, push::PushVerifier};
//!
//! let arn = "acs:mns:cn-hangzhou:1234567890:queues/ros-requests".parse()?;
//! let consumer = Consumer::new(ConsumerConfig::new(arn, Credentials::new("LTAI...", "secret")))?;
//! consumer.check().await?; // QueueNotExist, AccessDenied: fail at start
//! let extras = Extras::new();
//! let extras = stackhook_smq::serve_queue(extras, consumer);
//! let extras = stackhook_smq::serve_push(extras, "/notifications", PushVerifier::new()?);
//! serve_with(listener, router, stackhook::Config::default(), extras, std::future::pending()).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use stackhook::server::{Extras, RecordOutcome, Recorder};

use crate::consumer::{Consumer, ConsumerStats};
use crate::intake::{Intake, IntakeOutcome, Origin};
use crate::push::{CertFetcher, PushOutcome, PushVerifier, handle};

impl Intake for Recorder {
    async fn record(&self, request_json: Bytes, origin: Origin) -> IntakeOutcome {
        match Recorder::record(self, request_json).await {
            RecordOutcome::Recorded => {
                tracing::info!(message_id = %origin.message_id, shape = %origin.shape, "recorded");
                IntakeOutcome::Recorded
            }
            RecordOutcome::Duplicate => {
                tracing::info!(message_id = %origin.message_id, dequeue_count = ?origin.dequeue_count, "recorded before (a redelivery)");
                IntakeOutcome::Recorded
            }
            RecordOutcome::Answered { reason } => {
                tracing::info!(message_id = %origin.message_id, %reason, "answered FAILED without running");
                IntakeOutcome::Recorded
            }
            RecordOutcome::Refused { reason } => IntakeOutcome::refused(reason),
            RecordOutcome::Unavailable { reason } => IntakeOutcome::unavailable(reason),
        }
    }
}

/// Consume `consumer`'s queue beside the receiver: its receivers start once
/// the runtime has recovered, record through the runtime's journal, stop
/// receiving at once on shutdown and finish their in-flight records within
/// the grace period. Its counters are exported on `GET /metrics` as
/// `stackhook_smq_*{queue="NAME"}`.
///
/// Call [`Consumer::check`] first, so that a missing queue or refused
/// credentials fail at start.
pub fn serve_queue(extras: Extras, consumer: Consumer) -> Extras {
    let consumer = Arc::new(consumer);
    let name = consumer.queue().name().to_owned();
    let metrics = QueueMetrics {
        queue: name.clone(),
        stats: consumer.stats(),
    };
    extras
        .intake(format!("smq:{name}"), move |recorder, stop| async move {
            consumer.run(recorder, stop).await;
        })
        .metrics(metrics)
}

/// Answer SMQ topic HTTP pushes on `path` (e.g. `/notifications`): verify
/// the signature with `verifier`'s certificate policy, decode, record, and
/// answer 2xx only once recorded (see [`crate::push::handle`]). Outcomes
/// are counted on `GET /metrics` as
/// `stackhook_smq_push_total{path,outcome}`.
pub fn serve_push<F: CertFetcher + Send + Sync + 'static>(
    extras: Extras,
    path: impl Into<String>,
    verifier: PushVerifier<F>,
) -> Extras {
    let path = path.into();
    let verifier = Arc::new(verifier);
    let counts = Arc::new(PushCounts {
        path: path.clone(),
        counts: Default::default(),
    });
    let counted = Arc::clone(&counts);
    extras
        .route(path, move |request, recorder| {
            let verifier = Arc::clone(&verifier);
            let counts = Arc::clone(&counted);
            async move {
                let reply = handle(&request, &*verifier, &recorder).await;
                counts.count(reply.outcome);
                let mut response = http::Response::new(reply.body);
                *response.status_mut() = reply.status;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                response
            }
        })
        .metrics(counts)
}

/// A consumer's counters as Prometheus series.
#[derive(Debug)]
struct QueueMetrics {
    queue: String,
    stats: Arc<ConsumerStats>,
}

impl Collector for QueueMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let s = &self.stats;
        let labels = [("queue", self.queue.as_str())];
        let counters: [(&str, &str, u64); 10] = [
            (
                "stackhook_smq_received",
                "SMQ messages received (each delivery counts)",
                s.received(),
            ),
            (
                "stackhook_smq_recorded",
                "SMQ deliveries recorded in the journal (duplicates included)",
                s.recorded(),
            ),
            (
                "stackhook_smq_deleted",
                "SMQ messages deleted, recorded and poison alike",
                s.deleted(),
            ),
            (
                "stackhook_smq_poison",
                "Poison SMQ deliveries (undecodable, or refused by the runtime)",
                s.poison(),
            ),
            (
                "stackhook_smq_poison_deleted",
                "Poison SMQ messages deleted at the DequeueCount limit",
                s.poison_deleted(),
            ),
            (
                "stackhook_smq_unavailable",
                "SMQ deliveries the journal could not take, left on the queue",
                s.unavailable(),
            ),
            (
                "stackhook_smq_delete_failures",
                "SMQ deletes that failed for good (the message comes back)",
                s.delete_failures(),
            ),
            (
                "stackhook_smq_receive_errors",
                "Failed SMQ receives (network, throttling, 5xx, configuration)",
                s.receive_errors(),
            ),
            (
                "stackhook_smq_backoffs",
                "Backoff pauses taken by the SMQ receivers",
                s.backoffs(),
            ),
            (
                "stackhook_smq_visibility_extensions",
                "SMQ visibility extensions for slow records",
                s.visibility_extensions(),
            ),
        ];
        for (name, help, value) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "stackhook_smq_in_flight",
            "SMQ messages being recorded now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(s.in_flight()).unwrap_or(i64::MAX))
            .encode(metric.encode_family(&labels)?)
    }
}

const PUSH_OUTCOMES: [PushOutcome; 7] = [
    PushOutcome::Recorded,
    PushOutcome::Poison,
    PushOutcome::Forged,
    PushOutcome::Malformed,
    PushOutcome::CertificateUnavailable,
    PushOutcome::Unavailable,
    PushOutcome::TimedOut,
];

/// Topic pushes on one path, by outcome.
#[derive(Debug)]
struct PushCounts {
    path: String,
    counts: [AtomicU64; PUSH_OUTCOMES.len()],
}

impl PushCounts {
    fn count(&self, outcome: PushOutcome) {
        if let Some(i) = PUSH_OUTCOMES.iter().position(|o| *o == outcome) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Collector for PushCounts {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "stackhook_smq_push",
            "SMQ topic pushes answered, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in PUSH_OUTCOMES.iter().zip(&self.counts) {
            let labels = [("path", self.path.as_str()), ("outcome", outcome.as_str())];
            ConstCounter::new(count.load(Ordering::Relaxed))
                .encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(collector: impl Collector) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(collector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn queue_counters_are_exported_with_the_queue_label() {
        let text = encode(QueueMetrics {
            queue: "ros".into(),
            stats: Arc::new(ConsumerStats::default()),
        });
        for name in ["received", "deleted", "poison", "receive_errors"] {
            assert!(
                text.contains(&format!("stackhook_smq_{name}_total{{queue=\"ros\"}} 0\n")),
                "{name}: {text}"
            );
        }
        assert!(
            text.contains("stackhook_smq_in_flight{queue=\"ros\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn push_outcomes_are_counted_by_label() {
        let counts = PushCounts {
            path: "/notifications".into(),
            counts: Default::default(),
        };
        counts.count(PushOutcome::Forged);
        counts.count(PushOutcome::Forged);
        counts.count(PushOutcome::Recorded);
        let text = encode(counts);
        assert!(
            text.contains(
                "stackhook_smq_push_total{path=\"/notifications\",outcome=\"forged\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "stackhook_smq_push_total{path=\"/notifications\",outcome=\"recorded\"} 1\n"
            ),
            "{text}"
        );
    }
}
