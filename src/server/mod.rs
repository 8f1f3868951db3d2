//! The hyper receiver.
//!
//! | route | used by | what it does |
//! |---|---|---|
//! | `POST /` | `web:` ServiceTokens | acknowledges at once (200), runs the handler, delivers the answer to the callback URL |
//! | `POST /sync` | `web[sync]:` ServiceTokens | replies 200 with the full answer as the body, within ROS's 10 s; no callback |
//! | `POST /invoke` | Function Compute event functions (custom runtime or container) | runs the handler and delivers the answer, then replies; failures get 404 and `x-fc-status: 404` |
//! | `POST /initialize` | Function Compute's initializer hook | 200 |
//! | `GET /pre-stop` | Function Compute's pre-stop hook | 200 |
//! | `GET /healthz` | load balancers, probes | 200 with the routed resource types and the journal's health; 503 when the journal fails |
//! | `GET /metrics` | Prometheus | the metrics in `crate::metrics`, in the OpenMetrics text format |
//!
//! Bad input (not JSON, missing fields, body over the limit) gets a 4xx with
//! a JSON body that says what is wrong. If the body still names a callback
//! URL and the identifiers, FAILED is sent there too, so the stack does not hang.
//!
//! Authentication and limits (see [`crate::security`] and `docs/security.md`)
//! add 401 (unauthenticated, never dispatched), 403 (every callback URL
//! refused by the callback guard; never dispatched), 408 (slow body), 431
//! (oversize headers) and 503 with `Retry-After` (too many bodies from one
//! address being read at once). Refusals for load once a body was read are
//! answers: FAILED "overloaded", at the callback or in the sync reply.

mod extras;
mod fc;
mod record;
mod tls;

pub use extras::{BoxFuture, Extras};
pub use record::{RecordOutcome, Recorder};

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::reply::{self, json_reply};
use crate::router::Router;
use crate::runtime::{Intake, Runtime, delivery_note};
use record::{Accepted, Screened};

/// Serve `router` on `listener` until `shutdown` completes.
///
/// On shutdown it stops accepting, and lets open connections, in-flight
/// handlers and polls due within the configured grace period finish. Then
/// it cancels what is still running, answering each FAILED, and settles
/// the work still waiting by the journal's lifetime
/// ([`JournalLifetime`](crate::config::JournalLifetime)): answered FAILED,
/// or left in the journal for the next start. Answers get a final 5 s to be
/// delivered before this returns.
///
/// # Errors
/// [`Error::Config`] when the runtime cannot be built (TLS initialisation,
/// an unreadable certificate or key, inconsistent authentication settings).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve_with(listener, router, config, Extras::new(), shutdown).await
}

/// [`serve`], with [`Extras`] beside the receiver: extra routes on the same
/// listener, intakes that are not HTTP (a queue consumer) fed through a
/// [`Recorder`], and extra metrics on `GET /metrics`.
///
/// The intakes start once the runtime has recovered, before the first
/// connection is accepted. On shutdown they are told to stop at once, with
/// the listener; the grace period then covers their in-flight records as
/// it covers open connections, and recorded work finishes as for HTTP.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    config: Config,
    extras: Extras,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let runtime = Runtime::new(router, config)?;
    runtime.recover().await?;
    let mut extras = extras;
    let stop_intakes = tokio_util::sync::CancellationToken::new();
    let mut intakes = tokio::task::JoinSet::new();
    for (name, intake) in std::mem::take(&mut extras.intakes) {
        let stop: BoxFuture<()> = Box::pin(stop_intakes.clone().cancelled_owned());
        let run = intake(Recorder::new(Arc::clone(&runtime)), stop);
        intakes.spawn(async move {
            run.await;
            tracing::info!(intake = %name, "intake stopped");
        });
    }
    let extras = Arc::new(extras);
    let tls = tls::acceptor(&runtime.config.security)?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listener's address", e))?;
    tracing::info!(
        addr = %local,
        resource_types = ?runtime.router.resource_types().collect::<Vec<_>>(),
        tls = tls.is_some(),
        "stackhook is listening"
    );

    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    let security = &runtime.config.security;
    crate::security::limits::tune(
        &mut builder,
        security.header_read_timeout,
        security.max_header_bytes,
    );
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Replies are written whole; Nagle's algorithm would only hold them back.
                let _ = stream.set_nodelay(true);
                let Some(permit) = runtime.security.connections.try_enter() else {
                    tracing::debug!(%peer, "connection limit reached; closing the new connection");
                    drop(stream);
                    continue;
                };
                let read_timeout = runtime.config.security.header_read_timeout;
                let runtime = Arc::clone(&runtime);
                let extras = Arc::clone(&extras);
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let runtime = Arc::clone(&runtime);
                    let extras = Arc::clone(&extras);
                    // Split here, outside any future: every async fn keeps
                    // its arguments for its whole life, and a whole request
                    // (264 bytes) kept at each level made each request's
                    // future, moved into hyper's connection, twice the size.
                    let (head, body) = req.into_parts();
                    async move { Ok::<_, Infallible>(route(&runtime, &extras, &head, body, peer).await) }
                });
                if let Some(tls) = &tls {
                    let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
                    tokio::spawn(tls::serve_connection(tls, builder, stream, service, watcher, read_timeout, peer, permit));
                    continue;
                }
                let stream = crate::security::limits::FirstByteDeadline::new(stream, read_timeout);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    // Intakes stop taking requests with the listener.
    stop_intakes.cancel();
    let grace = runtime.config.shutdown_grace;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        journal_lifetime = %runtime.config.journal_lifetime,
        "shutting down: no new connections"
    );
    // One deadline for the whole grace period, counted from the signal:
    // open connections drain while polls keep running, then the runtime
    // finishes (see `Runtime::shutdown`).
    let grace_end = Instant::now() + grace;
    let _ = tokio::time::timeout_at(grace_end, graceful.shutdown()).await;
    // Intakes finish their in-flight records within the same deadline.
    let drained = tokio::time::timeout_at(grace_end, async {
        while intakes.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = intakes.len(),
            "intakes still recording at the end of the grace period; stopping them"
        );
        intakes.shutdown().await;
    }
    runtime.shutdown(grace_end).await;
    tracing::info!("stopped");
    Ok(())
}

/// Dispatch one HTTP request to its route.
async fn route(
    runtime: &Arc<Runtime>,
    extras: &Extras,
    head: &Parts,
    body: Incoming,
    peer: SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    let ip = peer.ip();
    // The async route is the hot one: its future is kept inline, and the
    // others are boxed, so that each request's future (moved into hyper's
    // connection per request) is only as large as the async route's.
    match (&head.method, head.uri.path()) {
        (&Method::POST, "/") => async_mode(runtime, head, body, ip).await,
        (&Method::POST, "/sync") => Box::pin(sync_mode(runtime, head, body, ip)).await,
        (&Method::POST, "/invoke") => Box::pin(fc::invoke(runtime, head, body, ip)).await,
        (&Method::POST, "/initialize") => fc::initialize(head),
        (&Method::GET, "/pre-stop") => fc::pre_stop(head),
        (&Method::GET | &Method::HEAD, "/healthz") => Box::pin(health(runtime)).await,
        (&Method::GET, "/metrics") => metrics(runtime, extras),
        (
            method,
            path @ ("/" | "/sync" | "/invoke" | "/initialize" | "/pre-stop" | "/healthz"
            | "/metrics"),
        ) => json_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": format!("{method} is not allowed on {path}")}),
        ),
        (_, path) if extras.find_route(path).is_some() => {
            Box::pin(extra_route(runtime, extras, head, body, ip)).await
        }
        (_, path) => {
            tracing::debug!(%peer, %path, "unknown path");
            json_reply(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no route for {path}; ROS requests go to POST / (async) or POST /sync")}),
            )
        }
    }
}

/// Read the whole body within the configured size and time limits, after
/// the token check and before the depth and signature checks.
///
/// The read holds one of the client address's intake slots (see
/// [`crate::security::limits::DEFAULT_MAX_REQUESTS_PER_IP`]), from after
/// the token check until the body passed its checks: what happens to the
/// request after that is the runtime's to limit, and to answer.
pub(crate) async fn read_body(
    runtime: &Runtime,
    head: &Parts,
    body: Incoming,
    ip: IpAddr,
) -> Result<Bytes, hyper::Response<Full<Bytes>>> {
    runtime
        .security
        .check_head(head)
        .map_err(|refusal| refusal.into_reply())?;
    let body = read_limited(runtime, head, body, ip).await?;
    runtime
        .security
        .check_body(head.uri.path(), &body)
        .map_err(|refusal| refusal.into_reply())?;
    Ok(body)
}

/// Read the whole body within the size and time limits, holding one of the
/// client address's intake slots; no authentication.
async fn read_limited(
    runtime: &Runtime,
    head: &Parts,
    body: Incoming,
    ip: IpAddr,
) -> Result<Bytes, hyper::Response<Full<Bytes>>> {
    let _slot = runtime
        .security
        .enter(ip)
        .await
        .map_err(|refusal| refusal.into_reply())?;
    let path = head.uri.path();
    let limit = runtime.config.body_limit;
    let too_large = || {
        json_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("the request body is over the limit of {limit} bytes")}),
        )
    };
    let declared = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let read_timeout = runtime.security.body_read_timeout();
    let collected = tokio::time::timeout(read_timeout, Limited::new(body, limit).collect()).await;
    let body = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(too_large());
        }
        Ok(Err(error)) => {
            return Err(json_reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("the request body could not be read: {error}")}),
            ));
        }
        Err(_elapsed) => {
            tracing::warn!(%path, "request body not received in time");
            return Err(json_reply(
                StatusCode::REQUEST_TIMEOUT,
                json!({"error": format!("the request body did not arrive within {} ms", read_timeout.as_millis())}),
            ));
        }
    };
    Ok(body)
}

/// A route from [`Extras::route`]: the body read within the limits, then
/// the route's handler.
async fn extra_route(
    runtime: &Arc<Runtime>,
    extras: &Extras,
    head: &Parts,
    body: Incoming,
    ip: IpAddr,
) -> hyper::Response<Full<Bytes>> {
    let Some(handler) = extras.find_route(head.uri.path()) else {
        return json_reply(StatusCode::NOT_FOUND, json!({"error": "no such route"}));
    };
    let body = match read_limited(runtime, head, body, ip).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let mut request = http::Request::new(body);
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    let reply = handler(request, Recorder::new(Arc::clone(runtime))).await;
    let (parts, body) = reply.into_parts();
    hyper::Response::from_parts(parts, Full::new(body))
}

/// `POST /`: acknowledge, then run and deliver in the background.
async fn async_mode(
    runtime: &Arc<Runtime>,
    head: &Parts,
    body: Incoming,
    ip: IpAddr,
) -> hyper::Response<Full<Bytes>> {
    let body = match read_body(runtime, head, body, ip).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    match record::screen(runtime, &body) {
        Screened::NoCallback(request) => {
            let _span = Runtime::span(&request).entered();
            tracing::warn!("request without a callback URL on the async route");
            json_reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "the request has no ResponseURL or IntranetResponseURL; \
                                 web[sync]: tokens must point at /sync"}),
            )
        }
        Screened::Request(request) => {
            let accepted = record::accept(runtime, &request).await;
            accept_reply(runtime, &request, accepted).await
        }
        Screened::Refused(refusal) => refusal.into_reply(),
        // Boxed: bad input is rare, and its future would make every
        // request's larger (see `route`).
        Screened::Bad(intake) => Box::pin(reject(runtime, intake, true)).await,
    }
}

/// The reply to `POST /` for what the journal made of a request.
async fn accept_reply(
    runtime: &Arc<Runtime>,
    request: &Arc<crate::request::Request>,
    accepted: Accepted,
) -> hyper::Response<Full<Bytes>> {
    match accepted {
        Accepted::New => reply::acknowledgement(&request.request_id, false),
        Accepted::Redelivery | Accepted::Reanswered => {
            reply::acknowledgement(&request.request_id, true)
        }
        // Answered FAILED, and the answer journaled: acknowledged like any
        // recorded request. A 5xx would only bring the same request back.
        Accepted::Overloaded(response) => json_reply(
            StatusCode::OK,
            json!({
                "accepted": true,
                "requestId": request.request_id,
                "status": response.status.as_str(),
                "reason": response.reason,
            }),
        ),
        // The handler runs; its answer is still coming, so no FAILED.
        Accepted::NotDurable(error) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": error.to_string(), "requestId": request.request_id}),
        ),
        // A shared journal that cannot be reached comes back: ROS retries
        // a 503, and the request is recorded then.
        Accepted::NotRecorded(error) if runtime.store.is_shared() => {
            Runtime::span(request).in_scope(|| {
                tracing::warn!(%error, "could not journal the request; answering 503 for ROS to retry");
            });
            json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": error.to_string(), "requestId": request.request_id}),
            )
        }
        Accepted::NotRecorded(error) => {
            // Not recorded, so not accepted: answer FAILED rather than leave the stack waiting.
            Runtime::span(request).in_scope(|| {
                tracing::error!(%error, "could not journal the request; answering FAILED");
            });
            let response = crate::response::Response::failed(
                request,
                crate::dispatch::answer_id(request),
                format!("the provider could not record the request: {error}"),
            );
            let until = Instant::now() + Duration::from_secs(10);
            let delivered = Box::pin(runtime.delivery.deliver(request, &response, until)).await;
            json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": error.to_string(), "callback": delivery_note(&delivered)}),
            )
        }
    }
}

/// `POST /sync`: the answer is the reply.
async fn sync_mode(
    runtime: &Arc<Runtime>,
    head: &Parts,
    body: Incoming,
    ip: IpAddr,
) -> hyper::Response<Full<Bytes>> {
    let body = match read_body(runtime, head, body, ip).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    match Intake::parse(&body) {
        Intake::Request(request) => {
            let span = Runtime::span(&request);
            let response = match runtime
                .try_answer_sync(&request)
                .instrument(span.clone())
                .await
            {
                Ok(response) => response,
                // A shared journal that cannot be reached: not recorded, so
                // not run; ROS retries a 503.
                Err(error) => {
                    span.in_scope(|| {
                        tracing::warn!(%error, "could not journal the sync request; answering 503 for ROS to retry");
                    });
                    return json_reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": error.to_string(), "requestId": request.request_id}),
                    );
                }
            };
            span.in_scope(|| {
                tracing::info!(status = response.status.as_str(), "answered in the reply")
            });
            reply::answer(StatusCode::OK, &response)
        }
        Intake::Answerable { problem, salvage } => {
            // ROS reads the reply, so the FAILED answer goes there, not to a callback.
            tracing::warn!(%problem, "malformed sync request; answering FAILED in the reply");
            reply::answer(
                StatusCode::OK,
                &crate::runtime::broken_response(&salvage, &problem),
            )
        }
        intake @ Intake::Unanswerable { .. } => Box::pin(reject(runtime, intake, false)).await,
    }
}

/// A 400 for a body that is not a valid request; FAILED goes to the callback
/// when `notify` is set and the body names one.
pub(crate) async fn reject(
    runtime: &Runtime,
    intake: Intake,
    notify: bool,
) -> hyper::Response<Full<Bytes>> {
    match intake {
        Intake::Answerable { problem, salvage } if notify => {
            tracing::warn!(%problem, request_id = ?salvage.request_id, "malformed request; answering FAILED at its callback");
            let delivered = runtime.answer_broken(&salvage, &problem).await;
            json_reply(
                StatusCode::BAD_REQUEST,
                json!({"error": problem, "callback": delivery_note(&delivered)}),
            )
        }
        Intake::Answerable { problem, .. } | Intake::Unanswerable { problem } => {
            tracing::warn!(%problem, "malformed request with no callback to answer");
            json_reply(StatusCode::BAD_REQUEST, json!({"error": problem}))
        }
        Intake::Request(_) => json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "a valid request was rejected"}),
        ),
    }
}

async fn health(runtime: &Runtime) -> hyper::Response<Full<Bytes>> {
    let checked = runtime.store.check().await;
    runtime.metrics.journal_up.set(i64::from(checked.is_ok()));
    let (status, store) = match checked {
        Ok(()) => (
            StatusCode::OK,
            json!({"ok": true, "durable": runtime.store.is_durable()}),
        ),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ok": false, "error": error.to_string()}),
        ),
    };
    json_reply(
        status,
        json!({
            "status": if status == StatusCode::OK { "ok" } else { "unhealthy" },
            "store": store,
            "resourceTypes": runtime.router.resource_types().collect::<Vec<_>>(),
            "fallback": runtime.router.has_fallback(),
        }),
    )
}

fn metrics(runtime: &Runtime, extras: &Extras) -> hyper::Response<Full<Bytes>> {
    if let Some(trips) = runtime.store.round_trips() {
        let trips = i64::try_from(trips).unwrap_or(i64::MAX);
        runtime.metrics.journal_round_trips.set(trips);
    }
    let text = extras.encode_after(runtime.metrics.encode());
    let mut reply = hyper::Response::new(Full::new(Bytes::from(text)));
    reply.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    reply
}
