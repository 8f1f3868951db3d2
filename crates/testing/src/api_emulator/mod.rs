//! A local emulator of the orchestration APIs that handlers call back into:
//! ROS `SignalResource` and `StopStackGroupOperation`, OOS
//! `NotifyExecution`, and Huawei RFS `ListExecutionPlans`,
//! `ContinueRollbackStack` and `UpdateStack`.
//!
//! [`ApiEmulator`] listens on `127.0.0.1:0` and answers as the services do:
//!
//! - **Alibaba RPC** (`POST /`, parameters in the query, the action in
//!   `x-acs-action` or `Action`): signatures V3 (`ACS3-HMAC-SHA256`) and V2
//!   (HMAC-SHA1) are checked, a nonce used twice is refused, required
//!   parameters and enum values are checked, and success is
//!   `200 {"RequestId": "…"}` (XML when a V2 call does not ask for JSON).
//! - **Huawei RFS** (`/v1/{project_id}/stacks/{stack_name}…`): the
//!   `SDK-HMAC-SHA256` signature and `Client-Request-Id` are checked;
//!   `ListExecutionPlans` answers JSON with execution plans (paged by
//!   `limit` and `marker`), `ContinueRollbackStack` answers
//!   `202 {"deployment_id": "…"}`, `UpdateStack` an empty 200. Every answer
//!   carries `X-Request-Id`.
//!
//! The signatures are verified by code written from the published
//! algorithms, independently of the signers in `stackhook-cloud`, so it
//! catches a signer's bugs instead of sharing them. Every call is recorded
//! as a [`RecordedCall`]: the action, its parameters, the signature check,
//! the key that signed, and the answer. [`ApiEmulator::answer_next`]
//! scripts documented errors ([`Reply::throttling_user`],
//! [`Reply::stack_group_operation_not_found`], [`Reply::rfs_error`], …) for
//! the next calls.
//!
//! A handler that calls ROS, tested offline: start the emulator, point the
//! built-in `ResourceSignal` (`stackhook-handlers`) at it with
//! credentials that never touch the process environment, run a lifecycle
//! with [`MockRos`](super::MockRos), then assert what ROS received.
//!
//! ```
//! use serde_json::json;
//! use stackhook_cloud::EnvLookup;
//! use stackhook_handlers::ResourceSignal;
//! use stackhook_testing::api_emulator::{ApiEmulator, Reply, SignatureScheme};
//! use stackhook_testing::MockRos;
//! use stackhook::Router;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), stackhook::Error> {
//! let ros_api = ApiEmulator::start().await?;
//! let keys = EnvLookup::from_pairs([
//!     ("ALIBABA_CLOUD_ACCESS_KEY_ID", ApiEmulator::ALIBABA_ACCESS_KEY_ID),
//!     ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ApiEmulator::ALIBABA_ACCESS_KEY_SECRET),
//! ]);
//! let signal = ResourceSignal::new().with_env(keys).with_endpoint(ros_api.url());
//! let ros = MockRos::new(Router::new().route(ResourceSignal::RESOURCE_TYPE, signal))
//!     .resource_type(ResourceSignal::RESOURCE_TYPE);
//!
//! let created = ros.create(json!({"LogicalResourceId": "ReadyHandle"})).await?.require_success()?;
//! let calls = ros_api.calls();
//! assert_eq!(calls.len(), 1);
//! assert_eq!(calls[0].action, "SignalResource");
//! assert_eq!(calls[0].signature.scheme(), Some(SignatureScheme::V3));
//! assert_eq!(calls[0].param("LogicalResourceId"), Some("ReadyHandle"));
//! assert_eq!(calls[0].param("Status"), Some("SUCCESS"));
//! assert_eq!(created.data()["RequestId"], calls[0].request_id.as_deref().unwrap_or_default());
//!
//! // ROS refuses the next signal: the handler answers FAILED with the code.
//! ros_api.answer_next(1, Reply::alibaba_error(404, "ResourceNotAvailable", "The Resource (ReadyHandle) is not available."));
//! let failed = ros.update(&created, json!({"LogicalResourceId": "ReadyHandle"})).await?;
//! assert!(failed.reason().unwrap_or_default().contains("ResourceNotAvailable"));
//! ros.delete(&failed).await?.require_success()?;
//! assert_eq!(ros_api.calls().len(), 2, "Delete sends no signal");
//! # Ok(()) }
//! ```
//!
//! `stackhook mock-api` runs the same emulator in the foreground and prints
//! a line per call.

mod actions;
mod reply;
mod verify;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use reply::Reply;

use actions::Route;
use stackhook::error::{Error, Result};
use verify::{Refusal, Wire};

/// The largest request body the emulator reads. RFS bodies are small JSON
/// documents and RPC calls have none; this only bounds a runaway client.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How many calls a slow [`ApiEmulator::subscribe`]r may fall behind before
/// it misses some (it is told how many).
const EVENT_BUFFER: usize = 1024;

/// The service a call was addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    /// Alibaba Cloud ROS, API `2019-09-10`.
    Ros,
    /// Alibaba Cloud OOS, API `2019-06-01`.
    Oos,
    /// Huawei Cloud RFS v1.
    Rfs,
    /// Neither: an unknown Alibaba action or version, or a path the emulator
    /// does not serve (such as a WaitConditionHandle URL).
    Unknown,
}

impl Service {
    /// `ROS`, `OOS`, `RFS` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Ros => "ROS",
            Service::Oos => "OOS",
            Service::Rfs => "RFS",
            Service::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signature scheme the emulator verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// Alibaba `ACS3-HMAC-SHA256`.
    V3,
    /// Alibaba HMAC-SHA1 (RPC signature V2).
    V2,
    /// Huawei `SDK-HMAC-SHA256`.
    Huawei,
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureScheme::V3 => "ACS3-HMAC-SHA256",
            SignatureScheme::V2 => "HMAC-SHA1",
            SignatureScheme::Huawei => "SDK-HMAC-SHA256",
        })
    }
}

/// What the signature check of a call found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureCheck {
    /// The signature verified with this scheme (and the nonce was fresh).
    Verified(SignatureScheme),
    /// The call was refused; the text says why (for a mismatch, the
    /// canonical request the emulator computed, as Huawei's gateway does).
    Failed(String),
    /// Not checked: the path is not one the emulator serves.
    NotChecked,
}

impl SignatureCheck {
    /// The scheme, when the signature verified.
    pub fn scheme(&self) -> Option<SignatureScheme> {
        match self {
            SignatureCheck::Verified(scheme) => Some(*scheme),
            _ => None,
        }
    }
    /// Whether the signature verified.
    pub fn is_verified(&self) -> bool {
        matches!(self, SignatureCheck::Verified(_))
    }
}

/// One call the emulator received, and what it answered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordedCall {
    /// Where it was addressed.
    pub service: Service,
    /// The action (`SignalResource`, `ListExecutionPlans`, …); empty when
    /// unknown.
    pub action: String,
    /// The HTTP method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query as sent.
    pub raw_query: String,
    /// The query, decoded (`+` and `%20` both read as a space).
    pub query: Vec<(String, String)>,
    /// Parameters taken from an RFS path: `project_id`, `stack_name`.
    pub path_params: Vec<(String, String)>,
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The request body.
    pub body: Bytes,
    /// The signature check.
    pub signature: SignatureCheck,
    /// The AccessKeyId or AK the call claimed (whether or not it verified).
    pub access_key_id: Option<String>,
    /// The STS security token sent with it, if any.
    pub security_token: Option<String>,
    /// The HTTP status answered; `None` when the connection was dropped.
    pub http_status: Option<u16>,
    /// The request id answered (`RequestId` or `X-Request-Id`).
    pub request_id: Option<String>,
    /// The error code answered, if any.
    pub error_code: Option<String>,
    /// Whether the answer came from [`ApiEmulator::answer_next`] or
    /// [`ApiEmulator::answer_always`].
    pub scripted: bool,
}

impl RecordedCall {
    /// A parameter by name: the decoded query first (business parameters,
    /// and V2's common ones such as `Action`), then the RFS path parameters.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .chain(&self.path_params)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A request header by name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON, when it is JSON.
    pub fn json_body(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether the answer was a success (2xx).
    pub fn succeeded(&self) -> bool {
        self.http_status.is_some_and(|s| (200..300).contains(&s))
    }

    /// One line for a log: service, action, key parameters, signature,
    /// key id and answer. Never a signature, secret or token.
    pub fn summary(&self) -> String {
        let mut line = format!("{} {}", self.service, display_or(&self.action, "?"));
        if self.service == Service::Unknown {
            line.push_str(&format!(" {} {}", self.method, self.path));
        }
        for name in actions::KEY_PARAMS {
            if let Some(value) = self.param(name) {
                line.push_str(&format!(" {name}={}", shorten(value)));
            }
        }
        let signature = match &self.signature {
            SignatureCheck::Verified(scheme) => format!("signature ok ({scheme})"),
            SignatureCheck::Failed(why) => format!("signature FAILED: {}", first_clause(why)),
            SignatureCheck::NotChecked => "signature not checked".to_string(),
        };
        line.push_str(&format!(" · {signature}"));
        if let Some(key) = &self.access_key_id {
            line.push_str(&format!(" · key {key}"));
            if self.security_token.is_some() {
                line.push_str(" +sts");
            }
        }
        match self.http_status {
            Some(status) => line.push_str(&format!(" → {status}")),
            None => line.push_str(" → connection dropped"),
        }
        if let Some(code) = &self.error_code {
            line.push_str(&format!(" {code}"));
        }
        if self.scripted {
            line.push_str(" (scripted)");
        }
        line
    }
}

fn display_or<'a>(text: &'a str, fallback: &'a str) -> &'a str {
    if text.is_empty() { fallback } else { text }
}

fn shorten(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        format!("{}…", value.chars().take(MAX).collect::<String>())
    }
}

fn first_clause(why: &str) -> &str {
    why.split(';').next().unwrap_or(why)
}

/// Builds an [`ApiEmulator`] with the keys it accepts.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ApiEmulatorBuilder {
    alibaba: Vec<(String, String)>,
    huawei: Vec<(String, String)>,
}

impl ApiEmulatorBuilder {
    /// Accept this Alibaba AccessKeyId and secret (instead of the default
    /// [`ApiEmulator::ALIBABA_ACCESS_KEY_ID`] pair; call again for more).
    pub fn alibaba_key(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.alibaba.push((id.into(), secret.into()));
        self
    }

    /// Accept this Huawei AK and SK (instead of the default
    /// [`ApiEmulator::HUAWEI_AK`] pair; call again for more).
    pub fn huawei_key(mut self, ak: impl Into<String>, sk: impl Into<String>) -> Self {
        self.huawei.push((ak.into(), sk.into()));
        self
    }

    /// Start on `127.0.0.1:0`.
    ///
    /// # Errors
    /// [`Error::Io`] when the port cannot be bound.
    pub async fn start(self) -> Result<ApiEmulator> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("binding the API emulator to 127.0.0.1:0", e))?;
        self.start_on(listener)
    }

    /// Serve on a listener already bound (for a fixed port).
    ///
    /// # Errors
    /// [`Error::Io`] when the listener's address cannot be read.
    pub fn start_on(self, listener: TcpListener) -> Result<ApiEmulator> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the API emulator's address", e))?;
        let mut alibaba = self.alibaba;
        if alibaba.is_empty() {
            alibaba.push((
                ApiEmulator::ALIBABA_ACCESS_KEY_ID.into(),
                ApiEmulator::ALIBABA_ACCESS_KEY_SECRET.into(),
            ));
        }
        let mut huawei = self.huawei;
        if huawei.is_empty() {
            huawei.push((ApiEmulator::HUAWEI_AK.into(), ApiEmulator::HUAWEI_SK.into()));
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                alibaba: alibaba.into_iter().collect(),
                huawei: huawei.into_iter().collect(),
                script: VecDeque::new(),
                always: None,
                calls: Vec::new(),
                nonces: HashSet::new(),
                plans: HashMap::new(),
            }),
            events,
        });
        let task = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Ok(ApiEmulator { addr, shared, task })
    }
}

struct State {
    alibaba: HashMap<String, String>,
    huawei: HashMap<String, String>,
    script: VecDeque<Reply>,
    always: Option<Reply>,
    calls: Vec<RecordedCall>,
    nonces: HashSet<String>,
    plans: HashMap<String, Vec<Value>>,
}

struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<RecordedCall>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // What a panicking thread left behind is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running emulator; it stops when dropped. See the [module docs](self).
pub struct ApiEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl fmt::Debug for ApiEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiEmulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ApiEmulator {
    /// The default Alibaba AccessKeyId (the V2 doc's test key).
    pub const ALIBABA_ACCESS_KEY_ID: &'static str = "testid";
    /// The default Alibaba AccessKeySecret.
    pub const ALIBABA_ACCESS_KEY_SECRET: &'static str = "testsecret";
    /// The default Huawei AK (the signing guide's example).
    pub const HUAWEI_AK: &'static str = "QTWAOYTTINDUT2QVKYUC";
    /// The default Huawei SK.
    pub const HUAWEI_SK: &'static str = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc";

    /// Start on `127.0.0.1:0` with the default keys.
    ///
    /// # Errors
    /// [`Error::Io`] when the port cannot be bound.
    pub async fn start() -> Result<ApiEmulator> {
        ApiEmulator::builder().start().await
    }

    /// Choose the keys first.
    pub fn builder() -> ApiEmulatorBuilder {
        ApiEmulatorBuilder::default()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the endpoint override for clients and
    /// handlers.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// The calls of one action.
    pub fn calls_to(&self, action: &str) -> Vec<RecordedCall> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.action == action)
            .cloned()
            .collect()
    }

    /// The call, when exactly one arrived.
    pub fn only_call(&self) -> Option<RecordedCall> {
        let state = self.shared.lock();
        match state.calls.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// Forget the calls recorded so far (nonces stay used).
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Answer the next `times` correctly signed calls with `reply`, after
    /// any replies already queued. Calls whose signature fails get the
    /// signature error and do not use up the script.
    pub fn answer_next(&self, times: usize, reply: Reply) {
        let mut state = self.shared.lock();
        state.script.extend(std::iter::repeat_n(reply, times));
    }

    /// Answer every correctly signed call with `reply` once the queued
    /// replies run out, until [`clear_answers`](Self::clear_answers).
    pub fn answer_always(&self, reply: Reply) {
        self.shared.lock().always = Some(reply);
    }

    /// Drop the scripted replies: answer as the services do again.
    pub fn clear_answers(&self) {
        let mut state = self.shared.lock();
        state.script.clear();
        state.always = None;
    }

    /// The execution plans `ListExecutionPlans` reports for a stack, newest
    /// first, each a JSON object in RFS's format (`execution_plan_name`,
    /// `status`, …). A stack without plans set reports one `AVAILABLE`
    /// plan.
    pub fn set_execution_plans(&self, stack_name: impl Into<String>, plans: Vec<Value>) {
        self.shared.lock().plans.insert(stack_name.into(), plans);
    }

    /// Every call from now on, as it is answered (for live output). A
    /// receiver that falls more than a thousand calls behind is told how
    /// many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<RecordedCall> {
        self.shared.events.subscribe()
    }
}

impl Drop for ApiEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: give the system a moment.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let shared = Arc::clone(&shared);
                async move { handle(req, &shared).await }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Returned to hyper to close the connection without an answer.
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the emulator dropped the connection as scripted")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    req: hyper::Request<Incoming>,
    shared: &Shared,
) -> std::result::Result<hyper::Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let (body, too_large) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(_) => (Bytes::new(), true),
    };
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let wire = Wire {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: verify::decode_query(&raw_query),
        headers: parts.headers,
        body,
    };
    let route = Route::of(&wire);
    let (call, rendered) = {
        let mut state = shared.lock();
        let checked = check_signature(&route, &wire, &mut state);
        let (reply, scripted) = match &checked {
            Err(refusal) => (route.refusal(refusal), false),
            Ok(_) if too_large => (route.too_large(), false),
            Ok(_) => match state.script.pop_front().or_else(|| state.always.clone()) {
                Some(reply) => (reply, true),
                None => (route.answer(&wire), false),
            },
        };
        let rendered = route.render(&reply, &wire, &state.plans);
        let call = RecordedCall {
            service: route.service(),
            action: route.action().to_string(),
            method: wire.method.clone(),
            path: wire.path.clone(),
            raw_query,
            query: wire.query.clone(),
            path_params: route.path_params(),
            headers: wire.headers.clone(),
            body: wire.body.clone(),
            signature: match &checked {
                Ok(Some(scheme)) => SignatureCheck::Verified(*scheme),
                Ok(None) => SignatureCheck::NotChecked,
                Err(refusal) => SignatureCheck::Failed(refusal.detail().to_string()),
            },
            access_key_id: route.claimed_key(&wire),
            security_token: route.security_token(&wire),
            http_status: rendered.as_ref().map(|r| r.status),
            request_id: rendered.as_ref().and_then(|r| r.request_id.clone()),
            error_code: rendered.as_ref().and_then(|r| r.error_code.clone()),
            scripted,
        };
        state.calls.push(call.clone());
        (call, rendered)
    };
    // No subscriber is fine: the send fails and nothing is lost.
    let _ = shared.events.send(call);
    match rendered {
        None => Err(Dropped),
        Some(rendered) => Ok(rendered.into_response()),
    }
}

/// Verify the signature and, for Alibaba, spend the nonce. `Ok(None)` when
/// the route is not one the emulator checks.
fn check_signature(
    route: &Route,
    wire: &Wire,
    state: &mut State,
) -> std::result::Result<Option<SignatureScheme>, Refusal> {
    let verified = match route {
        Route::Alibaba { .. } => {
            let secrets = |id: &str| state.alibaba.get(id).cloned();
            verify::verify_alibaba(wire, &secrets)?
        }
        Route::Rfs { .. } => {
            let secrets = |id: &str| state.huawei.get(id).cloned();
            verify::verify_huawei(wire, &secrets)?
        }
        Route::Unknown => return Ok(None),
    };
    if let Some(nonce) = verified.nonce {
        if !state.nonces.insert(nonce.clone()) {
            return Err(Refusal::NonceUsed(format!("nonce {nonce} was used before")));
        }
    }
    Ok(Some(verified.scheme))
}
