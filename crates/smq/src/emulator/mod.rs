//! A local SMQ for tests and for `stackhook`'s mock API (feature
//! `emulator`).
//!
//! [`Emulator::start`] serves the queue actions this crate's client uses on
//! 127.0.0.1, port 0, on SMQ's real wire format:
//! - every request's V2 signature is checked (and `security-token` when the
//!   emulator's credentials carry one), with SMQ's error codes;
//! - a received message is hidden for the queue's visibility timeout and
//!   comes back with `DequeueCount` + 1 and a new receipt handle; each
//!   receive and each ChangeMessageVisibility issues a new handle and kills
//!   the old one;
//! - a long poll (`waitseconds`) returns as soon as a message is sent or
//!   becomes visible again;
//! - messages come out by priority, then in the order they were sent.
//!
//! Faults for tests: [`Emulator::throttle_next`], [`Emulator::fail_next`],
//! [`Emulator::empty_next_receives`], [`Emulator::refuse_deletes`] and
//! [`Emulator::restart`].
//!
//! [`push`] signs topic notifications the way SMQ does, and
//! [`Emulator::serve_certificate`] publishes the certificate to check them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use stackhook_smq::emulator::{Emulator, QueueConfig};
//! use stackhook_smq::{Client, Credentials};
//!
//! let credentials = Credentials::new("test-id", "test-secret");
//! let emulator = Emulator::start(credentials.clone()).await?;
//! emulator.create_queue("ros-requests", QueueConfig::default());
//! let queue = Client::new(&emulator.endpoint(), credentials)?.queue("ros-requests");
//! queue.send(r#"{"RequestType":"Create"}"#).await?;
//! # Ok(())
//! # }
//! ```

pub mod push;
mod queue;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use queue::{QueueConfig, QueueStats};

use crate::client::{MAX_BATCH, MAX_WAIT};
use crate::credentials::Credentials;
use crate::error::{ErrorCode, ServiceError};
use crate::signature::{self, CONTENT_MD5};
use crate::xml;

/// SMQ rejects a request whose Date is further than this from its clock.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
/// Largest request body read (a batch of 16 handles is a few KiB; a message
/// at most 64 KiB plus XML).
const MAX_BODY_BYTES: usize = 1024 * 1024;

struct State {
    credentials: RwLock<Credentials>,
    queues: RwLock<HashMap<String, Arc<queue::Queue>>>,
    certificates: RwLock<HashMap<String, Bytes>>,
    throttle: AtomicU32,
    fail: AtomicU32,
    empty_receives: AtomicU32,
    refuse_deletes: std::sync::atomic::AtomicBool,
    requests: AtomicU64,
    request_ids: AtomicU64,
    /// Bumped by `restart`; every connection watches it.
    generation: watch::Sender<u64>,
}

/// A running SMQ emulator. Dropping it stops the server and closes every
/// connection.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Start on 127.0.0.1, port 0, accepting requests signed with
    /// `credentials`.
    pub async fn start(credentials: Credentials) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Emulator::serve(listener, credentials)
    }

    /// Serve on a listener the caller bound.
    pub fn serve(listener: TcpListener, credentials: Credentials) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (generation, _) = watch::channel(0);
        let state = Arc::new(State {
            credentials: RwLock::new(credentials),
            queues: RwLock::new(HashMap::new()),
            certificates: RwLock::new(HashMap::new()),
            throttle: AtomicU32::new(0),
            fail: AtomicU32::new(0),
            empty_receives: AtomicU32::new(0),
            refuse_deletes: std::sync::atomic::AtomicBool::new(false),
            requests: AtomicU64::new(0),
            request_ids: AtomicU64::new(0),
            generation,
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, state.clone(), stop_rx));
        Ok(Emulator {
            addr,
            state,
            accept,
            stop,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint for [`crate::Client::new`]: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Create (or replace, emptying it) a queue.
    pub fn create_queue(&self, name: &str, config: QueueConfig) {
        self.state
            .queues
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), queue::Queue::new(name, config));
    }

    /// Delete a queue; its requests then answer `QueueNotExist`.
    pub fn delete_queue(&self, name: &str) {
        self.state
            .queues
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Message counts of a queue, or `None` when it does not exist.
    pub fn stats(&self, name: &str) -> Option<QueueStats> {
        self.state.queue(name).map(|q| q.stats())
    }

    /// Accept another key from now on (a rotated STS token, say).
    pub fn set_credentials(&self, credentials: Credentials) {
        *self
            .state
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner) = credentials;
    }

    /// Answer the next `n` requests `429 TooManyRequests`.
    pub fn throttle_next(&self, n: u32) {
        self.state.throttle.store(n, Ordering::SeqCst);
    }

    /// Answer the next `n` requests `500 InternalError`.
    pub fn fail_next(&self, n: u32) {
        self.state.fail.store(n, Ordering::SeqCst);
    }

    /// Answer the next `n` receives `MessageNotExist` at once, as SMQ does
    /// when too many long polls are open.
    pub fn empty_next_receives(&self, n: u32) {
        self.state.empty_receives.store(n, Ordering::SeqCst);
    }

    /// While `on`, answer every DeleteMessage and BatchDeleteMessage
    /// `500 InternalError`: received messages stay in flight and come back
    /// after their visibility timeout, as after a consumer crashed between
    /// recording a message and deleting it.
    pub fn refuse_deletes(&self, on: bool) {
        self.state.refuse_deletes.store(on, Ordering::SeqCst);
    }

    /// Simulate a restart: close every open connection (in-flight long
    /// polls included) at once. Queues and messages survive, as SMQ's do;
    /// new connections are accepted straight away.
    pub fn restart(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Requests served so far (faults included).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Serve `pem` unsigned at `path` (e.g. `/certs/signing.pem`); returns
    /// its URL. For a push verifier's certificate fetch.
    pub fn serve_certificate(&self, path: &str, pem: impl Into<Bytes>) -> String {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.state
            .certificates
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.clone(), pem.into());
        format!("{}{}", self.endpoint(), path)
    }

    /// Stop serving, close every connection and wait until the port is
    /// closed. (Dropping the emulator does the same without waiting.)
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        self.accept.abort();
        // The listener is dropped once the aborted task has finished.
        let _ = (&mut self.accept).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.accept.abort();
    }
}

impl State {
    fn queue(&self, name: &str) -> Option<Arc<queue::Queue>> {
        self.queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn take_fault(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "SMQ emulator accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let state = state.clone();
        let mut generation = state.generation.subscribe();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // Dropping the connection future closes the socket: that is
            // what a restart or shutdown does to every client.
            tokio::select! {
                _ = conn => {}
                _ = generation.changed() => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// What a handler answers: a status and an XML body, or an SMQ error.
type Answer = Result<(StatusCode, Option<String>), ServiceError>;

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let request_id = format!(
        "{:024X}",
        state.request_ids.fetch_add(1, Ordering::SeqCst) + 0x5F_0000_0000
    );
    let (parts, body) = req.into_parts();
    // Certificates are plain downloads, as on OSS.
    if parts.method == Method::GET {
        let cert = state
            .certificates
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(parts.uri.path())
            .cloned();
        if let Some(cert) = cert {
            return response(
                StatusCode::OK,
                Some(cert),
                "application/x-pem-file",
                &request_id,
            );
        }
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error_response(
                &ServiceError::new(
                    400,
                    ErrorCode::InvalidArgument,
                    "The request body is too large or was cut.",
                ),
                &request_id,
            );
        }
    };
    if State::take_fault(&state.throttle) {
        return error_response(
            &ServiceError::new(
                429,
                ErrorCode::TooManyRequests,
                "The request is denied by cluster flow limiter for too many requests.",
            ),
            &request_id,
        );
    }
    if State::take_fault(&state.fail) {
        return error_response(
            &ServiceError::new(500, ErrorCode::InternalError, "Interal error."),
            &request_id,
        );
    }
    if parts.method == Method::DELETE
        && parts.uri.path().ends_with("/messages")
        && state.refuse_deletes.load(Ordering::SeqCst)
    {
        return error_response(
            &ServiceError::new(500, ErrorCode::InternalError, "Interal error."),
            &request_id,
        );
    }
    let answer = match authenticate(state, &parts, &body) {
        Ok(()) => route(state, &parts, &body).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok((status, xml)) => response(
            status,
            xml.map(Bytes::from),
            "text/xml;charset=utf-8",
            &request_id,
        ),
        Err(e) => error_response(&e, &request_id),
    }
}

fn response(
    status: StatusCode,
    body: Option<Bytes>,
    content_type: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.unwrap_or_default()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-mns-request-id", v);
    }
    response
}

fn error_response(e: &ServiceError, request_id: &str) -> Response<Full<Bytes>> {
    let body = xml::to_document(
        "Error",
        &xml::ErrorXml {
            xmlns: xml::Xmlns,
            code: e.code().as_str().to_owned(),
            message: e.message().to_owned(),
            request_id: request_id.to_owned(),
            host_id: "http://127.0.0.1".to_owned(),
        },
    )
    .unwrap_or_default();
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response(
        status,
        Some(Bytes::from(body)),
        "text/xml;charset=utf-8",
        request_id,
    )
}

fn denied(status: u16, code: ErrorCode, message: &str) -> ServiceError {
    ServiceError::new(status, code, message)
}

/// SMQ's header and signature checks, in SMQ's order.
fn authenticate(
    state: &State,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<(), ServiceError> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    match header(signature::VERSION_HEADER) {
        None => {
            return Err(denied(
                400,
                ErrorCode::Other("MissingVersionHeader".into()),
                "x-mns-version is required.",
            ));
        }
        Some(signature::API_VERSION) => {}
        Some(_) => {
            return Err(denied(
                400,
                ErrorCode::Other("InvalidVersionHeader".into()),
                "The x-mns-version is invalid.",
            ));
        }
    }
    let date = header(DATE.as_str()).ok_or_else(|| {
        denied(
            400,
            ErrorCode::Other("MissingDateHeader".into()),
            "Date header is required.",
        )
    })?;
    let sent = httpdate::parse_http_date(date).map_err(|_| {
        denied(
            400,
            ErrorCode::Other("InvalidDateHeader".into()),
            "The Date header format is invalid.",
        )
    })?;
    let now = SystemTime::now();
    let skew = now
        .duration_since(sent)
        .or_else(|_| sent.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_CLOCK_SKEW {
        return Err(denied(
            403,
            ErrorCode::TimeExpired,
            "The http request you sent is expired.",
        ));
    }
    let authorization = header(AUTHORIZATION.as_str()).ok_or_else(|| {
        denied(
            400,
            ErrorCode::Other("MissingAuthorizationHeader".into()),
            "Authorization header is required.",
        )
    })?;
    let (key_id, sig) = signature::parse_authorization(authorization).ok_or_else(|| {
        denied(
            400,
            ErrorCode::Other("InvalidAuthorizationHeader".into()),
            "The Authorization header format is invalid.",
        )
    })?;
    if let Some(md5) = header(CONTENT_MD5.as_str()) {
        if !signature::content_md5_matches(md5, body) {
            return Err(denied(
                400,
                ErrorCode::Other("InvalidDegist".into()),
                "The Content-MD5 you specified is invalid.",
            ));
        }
    }
    let credentials = state
        .credentials
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if key_id != credentials.access_key_id() {
        return Err(denied(
            403,
            ErrorCode::InvalidAccessKeyId,
            "The AccessKey Id you provided is not exist.",
        ));
    }
    if let Some(token) = credentials.security_token() {
        if header(signature::SECURITY_TOKEN_HEADER) != Some(token) {
            return Err(denied(
                403,
                ErrorCode::AccessDenied,
                "The security token you provided is invalid.",
            ));
        }
    }
    // The resource is the path and query exactly as they came on the wire.
    let resource = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let string_to_sign = signature::string_to_sign(parts.method.as_str(), &parts.headers, resource);
    if !signature::verify(credentials.access_key_secret(), &string_to_sign, sig) {
        return Err(denied(
            403,
            ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(())
}

/// A query parameter, percent-decoded. `+` stays `+`: a receipt handle sent
/// unescaped (as the Python SDK does) must still match.
fn query_param(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts.uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode_str(value).decode_utf8_lossy().into_owned())
    })
}

fn invalid(message: &str) -> ServiceError {
    ServiceError::new(400, ErrorCode::InvalidArgument, message)
}

fn number_param(parts: &http::request::Parts, name: &str) -> Result<Option<u64>, ServiceError> {
    match query_param(parts, name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| invalid(&format!("The value of {name} is not a number."))),
    }
}

async fn route(state: &State, parts: &http::request::Parts, body: &[u8]) -> Answer {
    let segments: Vec<&str> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let (name, messages) = match segments.as_slice() {
        ["queues", name] => (*name, false),
        ["queues", name, "messages"] => (*name, true),
        _ => {
            return Err(ServiceError::new(
                400,
                ErrorCode::Other("InvalidRequestURL".into()),
                "Http request URL format invalid.",
            ));
        }
    };
    let name = percent_decode_str(name).decode_utf8_lossy();
    let queue = state.queue(&name).ok_or_else(|| {
        ServiceError::new(
            404,
            ErrorCode::QueueNotExist,
            "The queue name you provided is not exist.",
        )
    })?;
    let text = || String::from_utf8_lossy(body);
    match (&parts.method, messages) {
        (&Method::GET, false) => {
            let stats = queue.stats();
            let doc = xml::to_document(
                "Queue",
                &xml::QueueXml {
                    xmlns: xml::Xmlns,
                    queue_name: queue.name.clone(),
                    create_time: queue.created_ms() / 1000,
                    last_modify_time: queue.created_ms() / 1000,
                    delay_seconds: queue.config.delay.as_secs() as u32,
                    maximum_message_size: queue.config.max_message_size as u32,
                    message_retention_period: 345_600,
                    visibility_timeout: queue.config.visibility_timeout.as_secs() as u32,
                    polling_wait_seconds: queue.config.polling_wait.as_secs() as u32,
                    active_messages: stats.visible as u64,
                    inactive_messages: stats.in_flight as u64,
                    delay_messages: stats.delayed as u64,
                    logging_enabled: false,
                },
            )
            .map_err(|e| ServiceError::new(500, ErrorCode::InternalError, e.to_string()))?;
            Ok((StatusCode::OK, Some(doc)))
        }
        (&Method::GET, true) => receive(state, &queue, parts).await,
        (&Method::POST, true) => {
            let send: xml::SendXml = xml::from_document("Message", &text()).map_err(|_| {
                ServiceError::new(
                    400,
                    ErrorCode::Other("MalformedXML".into()),
                    "The XML you provided was not well-formed.",
                )
            })?;
            let (id, md5) = queue.send(
                send.message_body,
                send.delay_seconds.map(u64::from),
                send.priority,
            )?;
            let doc = xml::to_document(
                "Message",
                &xml::SentXml {
                    xmlns: xml::Xmlns,
                    message_id: id,
                    message_body_md5: md5,
                },
            )
            .map_err(|e| ServiceError::new(500, ErrorCode::InternalError, e.to_string()))?;
            Ok((StatusCode::CREATED, Some(doc)))
        }
        (&Method::DELETE, true) => match query_param(parts, "ReceiptHandle") {
            Some(handle) => {
                queue.delete(&handle)?;
                Ok((StatusCode::NO_CONTENT, None))
            }
            None => batch_delete(&queue, &text()),
        },
        (&Method::PUT, true) => {
            let handle = query_param(parts, "ReceiptHandle").ok_or_else(|| {
                ServiceError::new(
                    400,
                    ErrorCode::Other("MissingReceiptHandle".into()),
                    "ReceiptHandle is required.",
                )
            })?;
            let timeout = number_param(parts, "VisibilityTimeout")?.ok_or_else(|| {
                ServiceError::new(
                    400,
                    ErrorCode::Other("MissingVisibilityTimeout".into()),
                    "VisibilityTimeout is required.",
                )
            })?;
            let (handle, next_visible_time) = queue.change_visibility(&handle, timeout)?;
            let doc = xml::to_document(
                "ChangeVisibility",
                &xml::ChangeVisibilityXml {
                    xmlns: xml::Xmlns,
                    receipt_handle: handle,
                    next_visible_time,
                },
            )
            .map_err(|e| ServiceError::new(500, ErrorCode::InternalError, e.to_string()))?;
            Ok((StatusCode::OK, Some(doc)))
        }
        _ => Err(ServiceError::new(
            400,
            ErrorCode::Other("InvalidRequestURL".into()),
            "Http request URL format invalid.",
        )),
    }
}

async fn receive(state: &State, queue: &queue::Queue, parts: &http::request::Parts) -> Answer {
    let batch = number_param(parts, "numOfMessages")?;
    if let Some(n) = batch {
        if !(1..=MAX_BATCH as u64).contains(&n) {
            return Err(invalid(
                "The value of numOfMessages should between 1 and 16.",
            ));
        }
    }
    let wait = match number_param(parts, "waitseconds")? {
        Some(w) if w > MAX_WAIT.as_secs() => {
            return Err(invalid(
                "The value of waitseconds should between 0 and 30 seconds.",
            ));
        }
        Some(w) => Duration::from_secs(w),
        None => queue.config.polling_wait,
    };
    let not_exist = || ServiceError::new(404, ErrorCode::MessageNotExist, "Message not exist.");
    if State::take_fault(&state.empty_receives) {
        return Err(not_exist());
    }
    let got = queue.receive(batch.unwrap_or(1) as usize, wait).await;
    if got.is_empty() {
        return Err(not_exist());
    }
    let doc = match batch {
        Some(_) => xml::to_document(
            "Messages",
            &xml::ReceivedBatchXml {
                xmlns: xml::Xmlns,
                messages: got.iter().map(|m| m.to_xml()).collect(),
            },
        ),
        None => xml::to_document("Message", &got[0].to_xml()),
    }
    .map_err(|e| ServiceError::new(500, ErrorCode::InternalError, e.to_string()))?;
    Ok((StatusCode::OK, Some(doc)))
}

fn batch_delete(queue: &queue::Queue, body: &str) -> Answer {
    let handles: xml::ReceiptHandlesXml =
        xml::from_document("ReceiptHandles", body).map_err(|_| {
            ServiceError::new(
                400,
                ErrorCode::Other("MalformedXML".into()),
                "The XML you provided was not well-formed.",
            )
        })?;
    if handles.handles.is_empty() || handles.handles.len() > MAX_BATCH {
        return Err(invalid(
            "The count of ReceiptHandle should between 1 and 16.",
        ));
    }
    let errors: Vec<xml::BatchErrorXml> = handles
        .handles
        .into_iter()
        .filter_map(|handle| {
            queue.delete(&handle).err().map(|e| xml::BatchErrorXml {
                error_code: e.code().as_str().to_owned(),
                error_message: e.message().to_owned(),
                receipt_handle: handle,
            })
        })
        .collect();
    if errors.is_empty() {
        return Ok((StatusCode::NO_CONTENT, None));
    }
    let doc = xml::to_document(
        "Errors",
        &xml::BatchErrorsXml {
            xmlns: xml::Xmlns,
            errors,
        },
    )
    .map_err(|e| ServiceError::new(500, ErrorCode::InternalError, e.to_string()))?;
    // SMQ answers a partial failure with an error status and `<Errors>`.
    Ok((StatusCode::NOT_FOUND, Some(doc)))
}
