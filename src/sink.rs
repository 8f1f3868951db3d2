//! A local callback receiver: it plays ROS's side of the presigned URL.
//!
//! `stackhook invoke`, the integration tests and the load harness point a
//! request's callback URLs at a sink and read what arrives. It listens on
//! loopback only, answers 200 unless told otherwise, and records every call.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! let sink = stackhook::sink::CallbackSink::start().await?;
//! let url = sink.url("/callback");
//! // ... send a request whose ResponseURL is `url` ...
//! let calls = sink.wait_for(1, Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::response::Response;
use crate::sync::lock;

/// One call the sink received.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Received {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Request headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The status the sink answered with.
    pub answered: u16,
}

impl Received {
    /// The body as a ROS response, if it is one.
    pub fn response(&self) -> Option<Response> {
        Response::from_slice(&self.body).ok()
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Statuses to answer with, in order; 200 once it runs out.
    script: VecDeque<u16>,
}

/// A running callback receiver. Stops when dropped.
pub struct CallbackSink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    task: JoinHandle<()>,
}

impl CallbackSink {
    /// Start a sink on `127.0.0.1` and an ephemeral port.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        Self::bind("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())).await
    }

    /// Start a sink on `addr`.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let arrived = Arc::new(Notify::new());
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&state),
            Arc::clone(&arrived),
        ));
        Ok(CallbackSink {
            addr,
            state,
            arrived,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A presigned-looking URL on this sink (`path` should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}?Expires=4102444800&Signature=sink-{}",
            self.addr,
            self.addr.port()
        )
    }

    /// Answer the next calls with these statuses, in order (then 200).
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        lock(&self.state).script.extend(statuses);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// Wait until at least `count` calls have arrived or `timeout` passes,
    /// and return what arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            {
                let state = lock(&self.state);
                if state.received.len() >= count {
                    return state.received.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received();
            }
        }
    }
}

impl Drop for CallbackSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, arrived: Arc<Notify>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        let arrived = Arc::clone(&arrived);
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let state = Arc::clone(&state);
                let arrived = Arc::clone(&arrived);
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let status = {
                        let mut state = lock(&state);
                        let status = state.script.pop_front().unwrap_or(200);
                        state.received.push(Received {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                            answered: status,
                        });
                        status
                    };
                    arrived.notify_waiters();
                    let mut reply = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                    *reply.status_mut() =
                        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
                    Ok::<_, Infallible>(reply)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
