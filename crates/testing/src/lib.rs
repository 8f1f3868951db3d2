//! # stackhook-testing
//!
//! A mock ROS for tests: drive whole lifecycles against a provider and check
//! ROS's rules on every answer. A provider puts this crate in its
//! `[dev-dependencies]`, so its release build does not carry it.
//!
//! [`MockRos`] plays ROS. It sends realistic Create, Update and Delete
//! requests to a provider, either an in-process [`Router`] or a running
//! provider at a URL (then it starts its own [`CallbackSink`] to take the
//! answers), and checks each answer:
//!
//! - `RequestId`, `StackId` and `LogicalResourceId` are copied;
//! - the physical id never changes after Create, and a Delete reports the id
//!   it received;
//! - the body is at most 4096 bytes and the physical id at most 255;
//! - FAILED carries a Reason; callbacks carry JSON and `Date` headers;
//! - exactly one final answer per request, in time (over a URL the mock
//!   waits a bounded extra moment for duplicates).
//!
//! A broken rule makes the call return [`Error::MockRos`] naming it, so a
//! test reads in a few lines:
//!
//! ```
//! use serde::Deserialize;
//! use serde_json::json;
//! use stackhook::handler::{Created, CreateRequest, DeleteRequest, Deleted, Handler, Updated, UpdateRequest};
//! use stackhook_testing::MockRos;
//! use stackhook::Router;
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "PascalCase")]
//! struct Props { name: String }
//!
//! struct Bucket;
//!
//! impl Handler for Bucket {
//!     type Properties = Props;
//!     type Error = std::io::Error;
//!     async fn create(&self, req: CreateRequest<Props>) -> Result<Created, Self::Error> {
//!         Ok(Created::with_id(req.properties.name.clone()).with_data("Name", req.properties.name))
//!     }
//!     async fn update(&self, req: UpdateRequest<Props>) -> Result<Updated, Self::Error> {
//!         Ok(Updated::new().with_data("Name", req.properties.name))
//!     }
//!     async fn delete(&self, _req: DeleteRequest<Props>) -> Result<Deleted, Self::Error> {
//!         Ok(Deleted::new())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), stackhook::Error> {
//! let ros = MockRos::new(Router::new().route("Custom::Bucket", Bucket)).resource_type("Custom::Bucket");
//! let bucket = ros.create(json!({"Name": "logs"})).await?.require_success()?;
//! assert_eq!(bucket.physical_resource_id(), "logs");
//! let renamed = ros.update(&bucket, json!({"Name": "archive"})).await?;
//! assert_eq!(renamed.data()["Name"], "archive");
//! ros.delete(&renamed).await?.require_success()?;
//! # Ok(()) }
//! ```
//!
//! [`Lifecycle`] runs whole sequences (create, update, rollback, redelivery,
//! failed create and its delete, timeouts) and returns a [`Report`];
//! [`Scenario`] reads the same from a YAML or JSON file, as
//! `stackhook mock-ros run` does.
//!
//! For handlers that call back into ROS, OOS or Huawei RFS,
//! [`api_emulator::ApiEmulator`] plays those APIs on loopback: it checks
//! signatures and parameters, records every call and answers as the
//! services do.
//!
//! Two tools for the `stackhook` binary and integration tests live here too:
//! [`invoke`] plays ROS once against a provider, and [`loadgen`] plays it at
//! scale.

pub mod api_emulator;
mod check;
pub mod invoke;
mod lifecycle;
pub mod loadgen;
mod remote;
mod report;
mod scenario;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use check::{Finding, Rule, Severity};
pub use lifecycle::{Action, Expect, Lifecycle, Step};
pub use remote::Transport;
pub use report::{Report, StepReport};
pub use scenario::{PropertiesRef, Scenario, ScenarioStep};

use stackhook::error::{Error, Result};
use stackhook::request::{Request, RequestType};
use stackhook::response::{Data, Response, Status};
use stackhook::router::Router;
#[cfg(doc)]
use stackhook::sink::CallbackSink;

/// ROS's default `Timeout` for a custom resource: how long it waits for an answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long, over a URL, the mock waits after the first answer for a
/// duplicate. Long enough for a provider that answers twice in a row, short
/// enough to keep a lifecycle quick.
pub const DEFAULT_DUPLICATE_WAIT: Duration = Duration::from_millis(300);

/// Where the requests go.
#[derive(Debug)]
enum Target {
    Local(Router),
    Remote(remote::Remote),
}

/// Plays ROS against one provider. See the [module docs](self).
#[derive(Debug)]
pub struct MockRos {
    target: Target,
    resource_type: String,
    logical_resource_id: String,
    stack_id: String,
    stack_name: String,
    region_id: String,
    account_id: String,
    timeout: Duration,
    duplicate_wait: Duration,
}

/// Faults to inject into one exchange.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Faults {
    /// Send the same request this many extra times.
    pub(crate) redeliver: u32,
    /// The callback answers these statuses first, then 200.
    pub(crate) callback_statuses: Vec<u16>,
    /// ROS's wait for this request, instead of the mock's timeout.
    pub(crate) timeout: Option<Duration>,
}

/// One request and everything that came back.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    pub(crate) request: Request,
    /// The final answers, one per delivery at most when the provider is right.
    pub(crate) answers: Vec<Response>,
    pub(crate) findings: Vec<Finding>,
    pub(crate) notes: Vec<String>,
}

impl MockRos {
    /// A mock ROS that runs requests through `router` in-process.
    pub fn new(router: Router) -> Self {
        MockRos::with_target(Target::Local(router))
    }

    /// A mock ROS that sends requests to a running provider at `url`, such as
    /// `http://127.0.0.1:9000/` (async), `…/sync` or `…/invoke` (Function
    /// Compute); the [`Transport`] follows from the path. Each request gets
    /// its own local callback receiver.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), stackhook::Error> {
    /// use serde_json::json;
    /// use stackhook_testing::MockRos;
    ///
    /// let ros = MockRos::url("http://127.0.0.1:9000/")?.resource_type("Custom::Echo");
    /// let created = ros.create(json!({"Greeting": "hello"})).await?;
    /// ros.delete(&created).await?.require_success()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when the HTTP client cannot be built.
    pub fn url(url: impl Into<String>) -> Result<Self> {
        Ok(MockRos::with_target(Target::Remote(remote::Remote::new(
            url.into(),
        )?)))
    }

    /// A mock ROS that sends each request as a message on an SMQ `queue`, as
    /// ROS does for a queue ServiceToken (`acs:mns:REGION:ACCOUNT:queues/NAME`),
    /// to a provider consuming it (`stackhook serve --mns-queue`). Answers
    /// come to a local callback receiver, as over a URL.
    ///
    /// # Errors
    /// [`Error::Config`] when the HTTP client cannot be built.
    pub fn queue(queue: stackhook_smq::Queue) -> Result<Self> {
        Ok(MockRos::with_target(Target::Remote(remote::Remote::queue(
            queue,
        )?)))
    }

    fn with_target(target: Target) -> Self {
        MockRos {
            target,
            resource_type: "Custom::Resource".into(),
            logical_resource_id: "MockResource".into(),
            stack_id: uuid_like(),
            stack_name: "mock-ros-stack".into(),
            region_id: "cn-hangzhou".into(),
            account_id: "1234567890123456".into(),
            timeout: DEFAULT_TIMEOUT,
            duplicate_wait: DEFAULT_DUPLICATE_WAIT,
        }
    }

    /// The `ResourceType` of every request (default `Custom::Resource`).
    #[must_use]
    pub fn resource_type(mut self, resource_type: impl Into<String>) -> Self {
        self.resource_type = resource_type.into();
        self
    }

    /// The `LogicalResourceId` of every request (default `MockResource`).
    #[must_use]
    pub fn logical_resource_id(mut self, id: impl Into<String>) -> Self {
        self.logical_resource_id = id.into();
        self
    }

    /// The stack's id (default: a fresh UUID) and name.
    #[must_use]
    pub fn stack(mut self, stack_id: impl Into<String>, stack_name: impl Into<String>) -> Self {
        self.stack_id = stack_id.into();
        self.stack_name = stack_name.into();
        self
    }

    /// The `RegionId` of every request (default `cn-hangzhou`).
    #[must_use]
    pub fn region(mut self, region_id: impl Into<String>) -> Self {
        self.region_id = region_id.into();
        self
    }

    /// How long ROS waits for an answer: the resource's `Timeout` (default
    /// 60 s). In-process, the handler's deadline is derived from it as the
    /// runtime does. A `/sync` URL always gets ROS's fixed 10 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Over a URL, how long to keep listening after the first answer for a
    /// duplicate (default [`DEFAULT_DUPLICATE_WAIT`]).
    #[must_use]
    pub fn duplicate_wait(mut self, wait: Duration) -> Self {
        self.duplicate_wait = wait;
        self
    }

    /// The configured resource type.
    pub fn get_resource_type(&self) -> &str {
        &self.resource_type
    }

    /// Where requests go: `in-process` or the URL.
    pub fn describe_target(&self) -> String {
        match &self.target {
            Target::Local(_) => "in-process router".into(),
            Target::Remote(remote) => remote.describe(),
        }
    }

    /// A request of `kind` with fresh ids and this mock's identity; the
    /// properties start empty.
    pub fn request(&self, kind: RequestType) -> Request {
        let mut request = Request::new(
            kind,
            self.resource_type.clone(),
            self.logical_resource_id.clone(),
            self.stack_id.clone(),
            uuid_like(),
        );
        request.stack_name = self.stack_name.clone();
        request.region_id = self.region_id.clone();
        request.resource_owner_id = self.account_id.clone();
        request.caller_id = self.account_id.clone();
        request
    }

    /// Send a Create with `properties` (anything that serializes to a JSON object).
    ///
    /// # Errors
    /// [`Error::MockRos`] when an answer breaks a ROS rule, none arrives in
    /// time, or the provider cannot be reached. A FAILED answer is not an
    /// error: check [`Answer::status`] or call [`Answer::require_success`].
    pub async fn create(&self, properties: impl Serialize) -> Result<Answer> {
        let mut request = self.request(RequestType::Create);
        request.resource_properties = to_object(&properties).map_err(Error::MockRos)?;
        self.send(request).await
    }

    /// Send an Update of the resource `current` describes (the answer to its
    /// Create or last Update) to `properties`; the old properties are
    /// `current`'s. To send a rollback, pass the old properties back.
    ///
    /// # Errors
    /// As for [`MockRos::create`].
    pub async fn update(&self, current: &Answer, properties: impl Serialize) -> Result<Answer> {
        let mut request = self.request(RequestType::Update);
        request.physical_resource_id = Some(current.physical_resource_id().to_string());
        request.resource_properties = to_object(&properties).map_err(Error::MockRos)?;
        request.old_resource_properties = Some(current.properties().clone());
        self.send(request).await
    }

    /// Send a Delete of the resource `current` describes.
    ///
    /// # Errors
    /// As for [`MockRos::create`].
    pub async fn delete(&self, current: &Answer) -> Result<Answer> {
        let mut request = self.request(RequestType::Delete);
        request.physical_resource_id = Some(current.physical_resource_id().to_string());
        request.resource_properties = current.properties().clone();
        self.send(request).await
    }

    /// Send a request built by hand (see [`MockRos::request`]) and check its answer.
    ///
    /// # Errors
    /// As for [`MockRos::create`].
    pub async fn send(&self, request: Request) -> Result<Answer> {
        let exchange = self.exchange(request, &Faults::default()).await;
        let errors: Vec<String> = exchange
            .findings
            .iter()
            .filter(|f| f.is_error())
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            return Err(Error::MockRos(format!(
                "{} request `{}`: {}",
                exchange.request.request_type,
                exchange.request.request_id,
                errors.join("; ")
            )));
        }
        let Some(response) = exchange.answers.first().cloned() else {
            return Err(Error::MockRos(format!(
                "{} request `{}`: no answer",
                exchange.request.request_type, exchange.request.request_id
            )));
        };
        Ok(Answer {
            request: exchange.request,
            response,
            warnings: exchange.findings,
        })
    }

    /// Run one exchange with faults and collect every finding.
    pub(crate) async fn exchange(&self, mut request: Request, faults: &Faults) -> Exchange {
        let wait = faults.timeout.unwrap_or(self.timeout);
        let mut findings = Vec::new();
        let mut notes = Vec::new();
        let deliveries = 1 + faults.redeliver;
        let mut bodies = Vec::new();
        match &self.target {
            Target::Local(router) => {
                if !faults.callback_statuses.is_empty() {
                    notes.push(
                        "callback faults do not apply in-process (there is no callback)".into(),
                    );
                }
                for _ in 0..deliveries {
                    match local(router, &request, wait).await {
                        Some(body) => bodies.push(body),
                        None => findings.push(Finding::error(
                            Rule::AnswerInTime,
                            format!(
                                "no answer within {}: ROS would fail the stack operation",
                                seconds(wait)
                            ),
                        )),
                    }
                }
            }
            Target::Remote(remote) => {
                let raw = remote
                    .exchange(
                        &mut request,
                        deliveries,
                        &faults.callback_statuses,
                        wait,
                        self.duplicate_wait,
                    )
                    .await;
                findings.extend(raw.findings);
                notes.extend(raw.notes);
                for (body, headers) in raw.answers {
                    if let Some(headers) = headers {
                        check::check_headers(&headers, &mut findings);
                    }
                    bodies.push(body.to_vec());
                }
            }
        }
        let mut answers = Vec::new();
        for body in bodies {
            if let Some(response) = check::check_answer(&request, &body, &mut findings) {
                answers.push(response);
            }
        }
        if deliveries > 1 {
            check_redelivery(&request, &answers, &mut findings);
        }
        dedupe(&mut findings);
        Exchange {
            request,
            answers,
            findings,
            notes,
        }
    }
}

/// Run one request in-process, as the runtime would, within ROS's wait.
async fn local(router: &Router, request: &Request, wait: Duration) -> Option<Vec<u8>> {
    let margin = stackhook::config::delivery_margin(wait);
    let handler_time = wait
        .checked_sub(margin)
        .filter(|d| !d.is_zero())
        .unwrap_or(wait / 2);
    let deadline = tokio::time::Instant::now() + handler_time;
    tokio::time::timeout(wait, router.handle(request, deadline))
        .await
        .ok()
        .map(|response| response.to_body())
}

/// Answers to one redelivered request should agree.
fn check_redelivery(request: &Request, answers: &[Response], findings: &mut Vec<Finding>) {
    let Some(first) = answers.first() else {
        return;
    };
    for other in &answers[1..] {
        if other.status != first.status {
            findings.push(Finding::warning(
                Rule::Redelivery,
                format!(
                    "the redelivered {} was answered {} the first time and {} the next",
                    request.request_type,
                    first.status.as_str(),
                    other.status.as_str()
                ),
            ));
        }
        if other.physical_resource_id != first.physical_resource_id {
            findings.push(Finding::warning(
                Rule::Redelivery,
                format!(
                    "the redelivered {} got two physical ids, `{}` and `{}`: if both ran, one \
                     resource is orphaned; derive the id from the request or deduplicate",
                    request.request_type, first.physical_resource_id, other.physical_resource_id
                ),
            ));
        }
    }
}

fn dedupe(findings: &mut Vec<Finding>) {
    let mut seen = Vec::new();
    findings.retain(|f| {
        if seen.contains(f) {
            false
        } else {
            seen.push(f.clone());
            true
        }
    });
}

/// The answer ROS accepted for one request, with the request it answered.
#[derive(Debug, Clone)]
pub struct Answer {
    request: Request,
    response: Response,
    warnings: Vec<Finding>,
}

impl Answer {
    /// SUCCESS or FAILED.
    pub fn status(&self) -> Status {
        self.response.status
    }

    /// Whether the answer is SUCCESS.
    pub fn is_success(&self) -> bool {
        self.response.status == Status::Success
    }

    /// The Reason, on FAILED.
    pub fn reason(&self) -> Option<&str> {
        self.response.reason.as_deref()
    }

    /// The physical id the answer reported.
    pub fn physical_resource_id(&self) -> &str {
        &self.response.physical_resource_id
    }

    /// The `Data` map (empty when the answer has none).
    pub fn data(&self) -> &Data {
        static EMPTY: std::sync::OnceLock<Data> = std::sync::OnceLock::new();
        self.response
            .data
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Data::new))
    }

    /// The `Data` map decoded into your own type.
    ///
    /// # Errors
    /// [`Error::MockRos`] when it does not decode.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(Value::Object(self.data().clone()))
            .map_err(|e| Error::MockRos(format!("the answer's Data does not decode: {e}")))
    }

    /// The properties the request carried: the resource's properties now.
    pub fn properties(&self) -> &Map<String, Value> {
        &self.request.resource_properties
    }

    /// The request this answers.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The answer as ROS received it.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// Findings that do not break a rule, such as a redelivery that got a second id.
    pub fn warnings(&self) -> &[Finding] {
        &self.warnings
    }

    /// The answer, if it is SUCCESS.
    ///
    /// # Errors
    /// [`Error::MockRos`] with the Reason when it is FAILED.
    pub fn require_success(self) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(Error::MockRos(format!(
                "{} answered FAILED: {}",
                self.request.request_type,
                self.reason().unwrap_or("(no reason)")
            )))
        }
    }
}

/// A value as a JSON object, or a sentence saying why it is not one.
pub(crate) fn to_object(value: &impl Serialize) -> std::result::Result<Map<String, Value>, String> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(format!(
            "properties must be a JSON object, not {}",
            stackhook::request::json_kind(&other)
        )),
        Err(e) => Err(format!("properties do not serialize: {e}")),
    }
}

/// A random id in the shape of a UUID, as ROS uses for stacks and requests.
fn uuid_like() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A duration for people: `1.5 s`, `300 ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        let s = d.as_secs_f64();
        if s.fract() == 0.0 {
            format!("{s:.0} s")
        } else {
            format!("{s:.1} s")
        }
    }
}
