//! Prometheus metrics, served at `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `stackhook_requests_total` | counter | `resource_type`, `request_type`, `outcome` (`success`, `failed`, `duplicate`, `overloaded`) |
//! | `stackhook_handler_runs_total` | counter | `resource_type`, `request_type`: actual handler executions, polls included; a deduplicated redelivery does not count |
//! | `stackhook_handler_duration_seconds` | histogram | `resource_type`, `request_type` |
//! | `stackhook_deliveries_total` | counter | `outcome` (`delivered`, `failed`) |
//! | `stackhook_inflight` | gauge | handlers running now |
//! | `stackhook_queue_depth` | gauge | requests waiting for a concurrency slot |
//! | `stackhook_outbox_pending` | gauge | answers recorded but not yet delivered |
//! | `stackhook_waiting` | gauge | long-running requests between polls |
//!
//! `resource_type` is the routed type, or `unrouted` for types no handler
//! serves, so a stream of made-up types cannot grow the label set.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::request::RequestType;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    resource_type: String,
    request_type: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    resource_type: String,
    request_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    outcome: &'static str,
}

fn duration_histogram() -> Histogram {
    // 5 ms to about 80 s, doubling.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The runtime's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    handler_runs: Family<RunLabels, Counter>,
    handler_duration: Family<RunLabels, Histogram, fn() -> Histogram>,
    deliveries: Family<DeliveryLabels, Counter>,
    pub(crate) inflight: Gauge,
    pub(crate) queue_depth: Gauge,
    pub(crate) outbox_pending: Gauge,
    pub(crate) waiting: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let handler_runs = Family::<RunLabels, Counter>::default();
        let handler_duration =
            Family::<RunLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let inflight = Gauge::default();
        let queue_depth = Gauge::default();
        let outbox_pending = Gauge::default();
        let waiting = Gauge::default();
        registry.register(
            "stackhook_requests",
            "Requests answered, by outcome",
            requests.clone(),
        );
        registry.register(
            "stackhook_handler_runs",
            "Handler executions (polls included; deduplicated redeliveries excluded)",
            handler_runs.clone(),
        );
        registry.register(
            "stackhook_handler_duration_seconds",
            "Time spent in one handler execution",
            handler_duration.clone(),
        );
        registry.register(
            "stackhook_deliveries",
            "Answers sent to callback URLs",
            deliveries.clone(),
        );
        registry.register(
            "stackhook_inflight",
            "Handlers running now",
            inflight.clone(),
        );
        registry.register(
            "stackhook_queue_depth",
            "Requests waiting for a concurrency slot",
            queue_depth.clone(),
        );
        registry.register(
            "stackhook_outbox_pending",
            "Answers recorded but not yet delivered",
            outbox_pending.clone(),
        );
        registry.register(
            "stackhook_waiting",
            "Long-running requests between polls",
            waiting.clone(),
        );
        Metrics {
            registry,
            requests,
            handler_runs,
            handler_duration,
            deliveries,
            inflight,
            queue_depth,
            outbox_pending,
            waiting,
        }
    }

    pub(crate) fn request(
        &self,
        resource_type: &str,
        request_type: RequestType,
        outcome: &'static str,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                resource_type: resource_type.to_string(),
                request_type: request_type.as_str(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn handler_run(
        &self,
        resource_type: &str,
        request_type: RequestType,
        took: Duration,
    ) {
        let labels = RunLabels {
            resource_type: resource_type.to_string(),
            request_type: request_type.as_str(),
        };
        self.handler_runs.get_or_create(&labels).inc();
        self.handler_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub(crate) fn delivery(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.deliveries
            .get_or_create(&DeliveryLabels { outcome })
            .inc();
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::new();
        m.request("Custom::Echo", RequestType::Create, "success");
        m.handler_run(
            "Custom::Echo",
            RequestType::Create,
            Duration::from_millis(3),
        );
        m.delivery(true);
        m.inflight.set(2);
        let text = m.encode();
        for name in [
            "stackhook_requests_total{resource_type=\"Custom::Echo\",request_type=\"Create\",outcome=\"success\"} 1",
            "stackhook_handler_runs_total{resource_type=\"Custom::Echo\",request_type=\"Create\"} 1",
            "stackhook_handler_duration_seconds_bucket",
            "stackhook_deliveries_total{outcome=\"delivered\"} 1",
            "stackhook_inflight 2",
            "stackhook_queue_depth 0",
            "stackhook_outbox_pending 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
