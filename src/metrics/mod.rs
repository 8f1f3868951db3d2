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
//! `resource_type` is a routed type by name, `fallback` for the types the
//! fallback handler serves, or `unrouted` for types no handler serves, so a
//! stream of made-up types cannot grow the label set. Every label set is
//! created at start-up: each series is exported from the first scrape (at 0),
//! and counting on the request path is a map lookup and an atomic add, with
//! no label built per update. Each series is sharded per thread (see
//! `sharded.rs`), so the workers do not pass its cache line back and forth.

mod sharded;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use self::sharded::{Counter, Gauge, Histogram};

use crate::request::RequestType;
use crate::router::Router;

/// How a request ended, as the `outcome` label of `stackhook_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failed,
    Duplicate,
    Overloaded,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Failed,
        Outcome::Duplicate,
        Outcome::Overloaded,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Duplicate => "duplicate",
            Outcome::Overloaded => "overloaded",
        }
    }
}

const REQUEST_TYPES: [RequestType; 3] = [
    RequestType::Create,
    RequestType::Update,
    RequestType::Delete,
];

/// The label for types the fallback handler serves.
const FALLBACK: &str = "fallback";
/// The label for types no handler serves.
const UNROUTED: &str = "unrouted";

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

fn type_index(request_type: RequestType) -> usize {
    match request_type {
        RequestType::Create => 0,
        RequestType::Update => 1,
        RequestType::Delete => 2,
    }
}

/// One resource-type label's series, resolved once at start-up.
#[derive(Debug)]
pub(crate) struct TypeMetrics {
    /// By request type, then by outcome (in `Outcome::ALL` order).
    requests: [[Counter; Outcome::ALL.len()]; REQUEST_TYPES.len()],
    handler_runs: [Counter; REQUEST_TYPES.len()],
    handler_duration: [Histogram; REQUEST_TYPES.len()],
}

impl TypeMetrics {
    /// Count a request that ended with `outcome`.
    pub(crate) fn request(&self, request_type: RequestType, outcome: Outcome) {
        self.requests[type_index(request_type)][outcome as usize].inc();
    }

    /// Count one handler execution that took `took`.
    pub(crate) fn handler_run(&self, request_type: RequestType, took: Duration) {
        let i = type_index(request_type);
        self.handler_runs[i].inc();
        self.handler_duration[i].observe(took);
    }
}

/// The runtime's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    by_type: foldhash::HashMap<Box<str>, TypeMetrics>,
    /// Types without a route of their own: `fallback` or `unrouted`.
    other_types: TypeMetrics,
    /// Delivered, failed.
    deliveries: [Counter; 2],
    pub(crate) inflight: Gauge,
    pub(crate) queue_depth: Gauge,
    pub(crate) outbox_pending: Gauge,
    pub(crate) waiting: Gauge,
    /// 1 while the journal answers, 0 while it cannot be reached.
    pub(crate) journal_up: prometheus_client::metrics::gauge::Gauge,
    /// Statements sent to a shared journal's database (set at each scrape).
    pub(crate) journal_round_trips: prometheus_client::metrics::gauge::Gauge,
}

impl Metrics {
    /// The metrics for `router`'s resource types.
    pub(crate) fn new(router: &Router) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let handler_runs = Family::<RunLabels, Counter>::default();
        let handler_duration = Family::<RunLabels, Histogram>::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let type_metrics = |resource_type: &str| TypeMetrics {
            requests: REQUEST_TYPES.map(|request_type| {
                Outcome::ALL.map(|outcome| {
                    requests
                        .get_or_create(&RequestLabels {
                            resource_type: resource_type.to_owned(),
                            request_type: request_type.as_str(),
                            outcome: outcome.as_str(),
                        })
                        .clone()
                })
            }),
            handler_runs: REQUEST_TYPES.map(|request_type| {
                handler_runs
                    .get_or_create(&RunLabels {
                        resource_type: resource_type.to_owned(),
                        request_type: request_type.as_str(),
                    })
                    .clone()
            }),
            handler_duration: REQUEST_TYPES.map(|request_type| {
                handler_duration
                    .get_or_create(&RunLabels {
                        resource_type: resource_type.to_owned(),
                        request_type: request_type.as_str(),
                    })
                    .clone()
            }),
        };
        let by_type = router
            .resource_types()
            .map(|t| (Box::from(t), type_metrics(t)))
            .collect();
        let other_types = type_metrics(if router.has_fallback() {
            FALLBACK
        } else {
            UNROUTED
        });
        let delivery_counters = ["delivered", "failed"].map(|outcome| {
            deliveries
                .get_or_create(&DeliveryLabels { outcome })
                .clone()
        });
        let inflight = Gauge::default();
        let queue_depth = Gauge::default();
        let outbox_pending = Gauge::default();
        let waiting = Gauge::default();
        let journal_up = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        journal_up.set(1);
        let journal_round_trips = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        registry.register(
            "stackhook_requests",
            "Requests answered, by outcome",
            requests,
        );
        registry.register(
            "stackhook_handler_runs",
            "Handler executions (polls included; deduplicated redeliveries excluded)",
            handler_runs,
        );
        registry.register(
            "stackhook_handler_duration_seconds",
            "Time spent in one handler execution",
            handler_duration,
        );
        registry.register(
            "stackhook_deliveries",
            "Answers sent to callback URLs",
            deliveries,
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
        registry.register(
            "stackhook_journal_up",
            "1 while the journal answers (health checks, lease renewals), 0 while it cannot be reached",
            journal_up.clone(),
        );
        registry.register(
            "stackhook_journal_round_trips",
            "Statements sent to a shared journal's database so far, each one round trip (0 for an embedded journal)",
            journal_round_trips.clone(),
        );
        Metrics {
            registry,
            by_type,
            other_types,
            deliveries: delivery_counters,
            inflight,
            queue_depth,
            outbox_pending,
            waiting,
            journal_up,
            journal_round_trips,
        }
    }

    /// The series of `resource_type`'s label.
    pub(crate) fn of(&self, resource_type: &str) -> &TypeMetrics {
        self.by_type.get(resource_type).unwrap_or(&self.other_types)
    }

    pub(crate) fn delivery(&self, delivered: bool) {
        self.deliveries[usize::from(!delivered)].inc();
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
    use crate::handler::{
        CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
    };

    /// A handler that is only routed, never run: metrics are keyed by route.
    struct Routed;

    impl Handler for Routed {
        type Properties = serde_json::Value;
        type Error = std::io::Error;
        async fn create(&self, _: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
            Ok(Created::new())
        }
        async fn update(&self, _: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
            Ok(Updated::new())
        }
        async fn delete(&self, _: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
            Ok(Deleted::new())
        }
    }

    fn echo_router() -> Router {
        Router::new().route("Custom::Echo", Routed)
    }

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::new(&echo_router());
        m.of("Custom::Echo")
            .request(RequestType::Create, Outcome::Success);
        m.of("Custom::Echo")
            .handler_run(RequestType::Create, Duration::from_millis(3));
        m.delivery(true);
        m.inflight.inc();
        m.inflight.inc();
        let text = m.encode();
        for name in [
            "stackhook_requests_total{resource_type=\"Custom::Echo\",request_type=\"Create\",outcome=\"success\"} 1",
            "stackhook_handler_runs_total{resource_type=\"Custom::Echo\",request_type=\"Create\"} 1",
            "stackhook_handler_duration_seconds_bucket{le=\"0.005\",resource_type=\"Custom::Echo\",request_type=\"Create\"} 1",
            "stackhook_handler_duration_seconds_bucket{le=\"+Inf\",resource_type=\"Custom::Echo\",request_type=\"Create\"} 1",
            "stackhook_handler_duration_seconds_sum{resource_type=\"Custom::Echo\",request_type=\"Create\"} 0.003",
            "stackhook_handler_duration_seconds_count{resource_type=\"Custom::Echo\",request_type=\"Create\"} 1",
            "stackhook_deliveries_total{outcome=\"delivered\"} 1",
            "stackhook_inflight 2",
            "stackhook_queue_depth 0",
            "stackhook_outbox_pending 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn every_series_is_exported_from_the_start() {
        let text = Metrics::new(&echo_router()).encode();
        for name in [
            "stackhook_requests_total{resource_type=\"Custom::Echo\",request_type=\"Delete\",outcome=\"overloaded\"} 0",
            "stackhook_requests_total{resource_type=\"unrouted\",request_type=\"Update\",outcome=\"failed\"} 0",
            "stackhook_handler_runs_total{resource_type=\"Custom::Echo\",request_type=\"Update\"} 0",
            "stackhook_deliveries_total{outcome=\"failed\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn made_up_types_share_one_label() {
        let m = Metrics::new(&echo_router());
        let before = m.encode().lines().count();
        for i in 0..50 {
            m.of(&format!("Custom::MadeUp{i}"))
                .request(RequestType::Create, Outcome::Failed);
        }
        let text = m.encode();
        assert_eq!(text.lines().count(), before, "no new series");
        assert!(text.contains(
            "stackhook_requests_total{resource_type=\"unrouted\",request_type=\"Create\",outcome=\"failed\"} 50"
        ));

        let m = Metrics::new(&echo_router().fallback(Routed));
        m.of("Custom::Anything")
            .request(RequestType::Delete, Outcome::Duplicate);
        let text = m.encode();
        assert!(text.contains(
            "stackhook_requests_total{resource_type=\"fallback\",request_type=\"Delete\",outcome=\"duplicate\"} 1"
        ));
        assert!(!text.contains("Custom::Anything"));
    }
}
