//! What [`serve_with`](super::serve_with) runs beside the receiver's own
//! routes: extra HTTP routes, background intakes and extra metrics.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;

use super::record::Recorder;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

type RouteFn =
    dyn Fn(http::Request<Bytes>, Recorder) -> BoxFuture<http::Response<Bytes>> + Send + Sync;
type IntakeFn = Box<dyn FnOnce(Recorder, BoxFuture<()>) -> BoxFuture<()> + Send + Sync>;

/// Routes, intakes and metrics to serve beside the receiver (see
/// [`serve_with`](super::serve_with)). Built with the `#[must_use]` setters:
///
/// ```no_run
/// # async fn demo(listener: tokio::net::TcpListener, router: stackhook::Router) -> stackhook::Result<()> {
/// use bytes::Bytes;
/// use stackhook::server::{Extras, serve_with};
///
/// let extras = Extras::new()
///     // Take requests from somewhere that is not HTTP, until told to stop.
///     .intake("my-queue", |recorder, stop| async move {
///         let _ = stop.await; // a real intake loops: receive, record, acknowledge
///         let _ = recorder;
///     })
///     // And answer one more path on the receiver.
///     .route("/notifications", |request, recorder| async move {
///         let outcome = recorder.record(request.into_body()).await;
///         let status = if outcome.is_handled() { 204 } else { 503 };
///         let mut reply = http::Response::new(Bytes::new());
///         *reply.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
///         reply
///     });
/// serve_with(listener, router, stackhook::Config::default(), extras, std::future::pending()).await
/// # }
/// ```
#[derive(Default)]
pub struct Extras {
    pub(crate) routes: Vec<(String, Arc<RouteFn>)>,
    pub(crate) intakes: Vec<(String, IntakeFn)>,
    pub(crate) registry: Option<Registry>,
}

impl fmt::Debug for Extras {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extras")
            .field(
                "routes",
                &self.routes.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field(
                "intakes",
                &self.intakes.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("metrics", &self.registry.is_some())
            .finish()
    }
}

impl Extras {
    /// Nothing extra.
    pub fn new() -> Self {
        Extras::default()
    }

    /// Serve `path` (any method) with `handler`, which gets the request with
    /// its whole body and a [`Recorder`]. The body is read within the
    /// receiver's size and time limits and per-address intake cap; the
    /// bearer token and request signature are not checked (the route
    /// authenticates its own way). The receiver's own paths take
    /// precedence.
    #[must_use]
    pub fn route<F, Fut>(mut self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(http::Request<Bytes>, Recorder) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Bytes>> + Send + 'static,
    {
        let handler: Arc<RouteFn> =
            Arc::new(move |request, recorder| Box::pin(handler(request, recorder)) as BoxFuture<_>);
        self.routes.push((path.into(), handler));
        self
    }

    /// Run `intake` once the runtime has recovered, with a [`Recorder`] and
    /// a future that completes when shutdown begins. On that signal it must
    /// stop taking new requests at once and return once what it took is
    /// recorded (or given back); the runtime then finishes recorded work as
    /// for HTTP. `name` is for logs.
    #[must_use]
    pub fn intake<F, Fut>(mut self, name: impl Into<String>, intake: F) -> Self
    where
        F: FnOnce(Recorder, BoxFuture<()>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let intake: IntakeFn =
            Box::new(move |recorder, stop| Box::pin(intake(recorder, stop)) as BoxFuture<()>);
        self.intakes.push((name.into(), intake));
        self
    }

    /// Export `collector`'s series on `GET /metrics`, after the runtime's.
    #[must_use]
    pub fn metrics(mut self, collector: impl Collector) -> Self {
        self.registry
            .get_or_insert_with(Registry::default)
            .register_collector(Box::new(collector));
        self
    }

    pub(crate) fn find_route(&self, path: &str) -> Option<&Arc<RouteFn>> {
        self.routes
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, handler)| handler)
    }

    /// The runtime's exposition with the extra series inserted before the
    /// final `# EOF`.
    pub(crate) fn encode_after(&self, mut text: String) -> String {
        let Some(registry) = &self.registry else {
            return text;
        };
        let Some(without_eof) = text.strip_suffix("# EOF\n") else {
            return text;
        };
        text.truncate(without_eof.len());
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, registry);
        let _ = prometheus_client::encoding::text::encode_eof(&mut text);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::DescriptorEncoder;
    use prometheus_client::encoding::EncodeMetric;
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::counter::ConstCounter;

    #[derive(Debug)]
    struct Seven;

    impl Collector for Seven {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
            let metric = encoder.encode_descriptor(
                "extra",
                "An extra counter",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(7u64).encode(metric)
        }
    }

    #[test]
    fn extra_metrics_go_before_the_final_eof() {
        let extras = Extras::new().metrics(Seven);
        let text = extras.encode_after("# TYPE a counter\na_total 1\n# EOF\n".into());
        assert!(text.contains("a_total 1\n"), "{text}");
        assert!(text.contains("extra_total 7\n"), "{text}");
        assert!(text.ends_with("extra_total 7\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }

    #[test]
    fn routes_are_found_by_exact_path() {
        let extras = Extras::new().route("/notifications", |_, _| async {
            http::Response::new(Bytes::new())
        });
        assert!(extras.find_route("/notifications").is_some());
        assert!(extras.find_route("/notifications/x").is_none());
    }
}
