//! From a parsed request to its one answer.
//!
//! The stages, each small: skip Deletes that have nothing to delete, find the
//! handler, run it (catching panics, cancelling at the deadline), and map the
//! result onto ROS's physical-id rules. Long-running work comes back as a
//! [`Step::Wait`]; whoever called decides how to wait (inline, or persisted
//! in the journal and scheduled).

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::error::error_chain;
use crate::handler::RequestContext;
use crate::handler::erased::{BoxFuture, DynHandler, Failure, Operation, Outcome, PollInput};
use crate::physical_id;
use crate::request::{Request, RequestType};
use crate::response::{Data, Response};
use crate::router::Router;

/// How long an `on_timeout` hook may run.
const ON_TIMEOUT_BUDGET: Duration = Duration::from_secs(5);

/// The time a request was given, so that a reason saying it ran out states
/// how much, and what set it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// The handler's deadline.
    deadline: Instant,
    /// From the request's arrival to `deadline`.
    window: Duration,
    /// What set the request's time.
    limit: Limit,
}

/// What sets a request's time, with the value it was set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// The type's timeout (`--timeout`, `--type-timeout`).
    Timeout(Duration),
    /// The type's timeout, for a `web[sync]:` request: below ROS's 10 s
    /// wait, which bounds it.
    SyncTimeout(Duration),
    /// ROS's 10 s wait for a `web[sync]:` reply.
    SyncWait,
    /// The function's timeout in Function Compute, below the type's.
    FunctionTimeout(Duration),
    /// A deadline chosen by the program that called [`Router::handle`].
    Caller(Duration),
}

impl Limit {
    /// The time this limit gives a request.
    fn value(self) -> Duration {
        match self {
            Limit::Timeout(d)
            | Limit::SyncTimeout(d)
            | Limit::FunctionTimeout(d)
            | Limit::Caller(d) => d,
            Limit::SyncWait => crate::config::ROS_SYNC_WAIT,
        }
    }
}

impl Budget {
    /// A handler whose deadline is `deadline`, `window` after the request
    /// arrived, under `limit`.
    pub(crate) fn new(deadline: Instant, window: Duration, limit: Limit) -> Self {
        Budget {
            deadline,
            window,
            limit,
        }
    }

    /// Time since the request arrived, measured.
    fn elapsed(&self) -> Duration {
        let now = Instant::now();
        if now >= self.deadline {
            self.window + (now - self.deadline)
        } else {
            self.window.saturating_sub(self.deadline - now)
        }
    }

    /// The limit that ran out, as a noun phrase.
    fn limit_name(&self, resource_type: &str) -> String {
        let value = seconds(self.limit.value());
        match self.limit {
            Limit::Timeout(_) | Limit::SyncTimeout(_) => {
                format!("{resource_type}'s timeout ({value} s)")
            }
            Limit::SyncWait => "ROS's 10 s wait for the answer to a web[sync]: request".into(),
            Limit::FunctionTimeout(_) => {
                format!("the function's timeout in Function Compute ({value} s)")
            }
            Limit::Caller(_) => format!("the {value} s it was given"),
        }
    }

    /// How to raise the limit, and how much of it the handler does not
    /// get; empty for a caller's deadline.
    fn remedy(&self, resource_type: &str) -> String {
        let kept = seconds(self.limit.value().saturating_sub(self.window));
        let timeout = format!(
            "; raise it with --type-timeout {resource_type}=SECONDS (up to the resource's Timeout \
             in the template)"
        );
        match self.limit {
            Limit::Timeout(_) => {
                format!("{timeout}; {kept} s of it is kept for delivering the answer")
            }
            Limit::SyncTimeout(_) => format!(
                "{timeout}; {kept} s of it is kept to reply; ROS waits only 10 s for the answer \
                 to a web[sync]: request, so more than that needs an async web: ServiceToken"
            ),
            Limit::SyncWait => format!(
                "; ROS waits only 10 s for the answer to a web[sync]: request, {kept} s of which \
                 the provider keeps to reply; more than that needs an async web: ServiceToken"
            ),
            Limit::FunctionTimeout(_) => format!(
                "; raise the function's timeout; {kept} s of it is kept for delivering the answer"
            ),
            Limit::Caller(_) => String::new(),
        }
    }
}

/// Seconds as a reason says them: whole, or with one decimal.
fn seconds(duration: Duration) -> String {
    let tenths = (duration.as_secs_f64() * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0}")
    } else {
        format!("{tenths:.1}")
    }
}

/// How a handler run ended, before it becomes a [`Response`].
#[derive(Debug)]
pub(crate) enum RunResult {
    Done(Outcome),
    Failed(Failure),
    Panicked(String),
    TimedOut,
}

/// What a request carries besides its body, for the handler's context only
/// (never journaled).
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras {
    /// Function Compute's per-invocation credentials.
    pub(crate) fc_credentials: Option<std::sync::Arc<crate::handler::FcCredentials>>,
}

impl Extras {
    fn context(&self, request: &Arc<Request>, deadline: Instant) -> RequestContext {
        RequestContext::shared(Arc::clone(request), deadline)
            .with_fc_credentials(self.fc_credentials.clone())
    }
}

/// What a run leads to: the answer, or a wait before the next poll.
#[derive(Debug)]
pub(crate) enum Step {
    Answer(Response),
    Wait(Waiting),
}

/// Long-running work between polls: everything needed to poll again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Waiting {
    /// How long until the next poll.
    pub(crate) after: Duration,
    /// The handler's state.
    pub(crate) state: Value,
    /// Data returned so far, merged into the final answer.
    pub(crate) data: Data,
    /// The id chosen so far (Create).
    pub(crate) physical_resource_id: Option<String>,
    /// Polls made so far.
    pub(crate) attempt: u32,
}

/// Run the handler for `request` once.
pub(crate) async fn first_step(
    router: &Router,
    request: &Arc<Request>,
    deadline: Instant,
    budget: &Budget,
    extras: &Extras,
) -> Step {
    if request.request_type == RequestType::Delete
        && physical_id::is_placeholder(request.physical_resource_id.as_deref())
    {
        tracing::info!("delete of a resource that was never created; answering SUCCESS");
        return Step::Answer(Response::success(request, answer_id(request), Data::new()));
    }
    let handler = match handler_for(router, request) {
        Ok(handler) => handler,
        Err(response) => return Step::Answer(*response),
    };
    let operation = match operation_for(request) {
        Ok(operation) => operation,
        Err(reason) => return Step::Answer(Response::failed(request, answer_id(request), reason)),
    };
    let context = extras.context(request, deadline);
    // One line per handler run, in the request's span: the crash tests count
    // them to prove no answered request runs again.
    tracing::info!(step = "first", "handler started");
    let result = run_guarded(handler.call(operation, context), deadline).await;
    finish(request, result, budget, None)
}

/// Poll long-running work once.
pub(crate) async fn poll_step(
    router: &Router,
    request: &Arc<Request>,
    waiting: &Waiting,
    deadline: Instant,
    budget: &Budget,
    extras: &Extras,
) -> Step {
    let handler = match handler_for(router, request) {
        Ok(handler) => handler,
        Err(response) => return Step::Answer(*response),
    };
    let context = extras.context(request, deadline);
    tracing::info!(step = "poll", poll = waiting.attempt + 1, "handler started");
    let result = run_guarded(
        handler.poll(poll_input(request, waiting), context),
        deadline,
    )
    .await;
    finish(request, result, budget, Some(waiting))
}

/// Long-running work cannot finish in time: its next poll is due after
/// its deadline. Run the handler's `on_timeout` hook briefly, then answer
/// FAILED, saying so (it did not run until the deadline: the reason says
/// when it gave up, and what would give it the time).
pub(crate) async fn give_up(
    router: &Router,
    request: &Arc<Request>,
    waiting: &Waiting,
    budget: &Budget,
) -> Response {
    let given_up = budget.elapsed();
    if let Ok(handler) = handler_for(router, request) {
        let deadline = Instant::now() + ON_TIMEOUT_BUDGET;
        let context = RequestContext::shared(Arc::clone(request), deadline);
        let hook = AssertUnwindSafe(handler.on_timeout(poll_input(request, waiting), context));
        match tokio::time::timeout_at(deadline, hook.catch_unwind()).await {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => {
                tracing::warn!(panic = %panic_message(panic.as_ref()), "on_timeout panicked");
            }
            Err(_) => tracing::warn!("on_timeout did not finish within its budget"),
        }
    }
    let reason = format!(
        "gave up after {} s: the handler asked to be polled again in {} s, past its deadline \
         {} s after the request arrived, so the operation needs more time than {}{}",
        seconds(given_up),
        seconds(waiting.after),
        seconds(budget.window),
        budget.limit_name(&request.resource_type),
        budget.remedy(&request.resource_type),
    );
    tracing::warn!(reason = %reason, "answering FAILED");
    Response::failed(request, answer_id(request), reason)
}

// `Router::handle` lives here rather than in router.rs so that the
// dependency runs one way: dispatch uses the router's table, and the router
// knows nothing of how a handler is run.
impl Router {
    /// Run the handler for `request` and build its one answer.
    ///
    /// Long-running work is polled in this task, sleeping between polls. The
    /// handler's future is cancelled at `deadline`. Errors, panics, timeouts,
    /// unknown types and bad properties all become FAILED; this never fails
    /// and never panics.
    pub async fn handle(&self, request: &Request, deadline: Instant) -> Response {
        run_to_answer(self, &Arc::new(request.clone()), deadline).await
    }
}

/// Drive a request to its answer in this task, sleeping between polls.
pub(crate) async fn run_to_answer(
    router: &Router,
    request: &Arc<Request>,
    deadline: Instant,
) -> Response {
    let total = deadline.saturating_duration_since(Instant::now());
    let budget = &Budget::new(deadline, total, Limit::Caller(total));
    let extras = Extras::default();
    let mut step = first_step(router, request, deadline, budget, &extras).await;
    loop {
        match step {
            Step::Answer(response) => return response,
            Step::Wait(waiting) => {
                if Instant::now() + waiting.after >= deadline {
                    return give_up(router, request, &waiting, budget).await;
                }
                tokio::time::sleep(waiting.after).await;
                step = poll_step(router, request, &waiting, deadline, budget, &extras).await;
            }
        }
    }
}

fn handler_for<'r>(
    router: &'r Router,
    request: &Request,
) -> Result<&'r dyn DynHandler, Box<Response>> {
    if let Some(handler) = router.handler_for(&request.resource_type) {
        return Ok(handler.as_ref());
    }
    let known: Vec<&str> = router.resource_types().collect();
    let reason = if known.is_empty() {
        format!(
            "no handler for resource type `{}`: this provider has no handlers registered",
            request.resource_type
        )
    } else {
        format!(
            "no handler for resource type `{}`; this provider handles: {}",
            request.resource_type,
            known.join(", ")
        )
    };
    Err(Box::new(Response::failed(
        request,
        answer_id(request),
        reason,
    )))
}

/// What to ask of the handler; refuses an Update that names no resource.
fn operation_for(request: &Request) -> Result<Operation, String> {
    match request.request_type {
        RequestType::Create => Ok(Operation::Create),
        RequestType::Update => {
            let id = request.physical_resource_id.as_deref();
            if physical_id::is_placeholder(id) {
                return Err(match id {
                    Some(id) if !id.trim().is_empty() => format!(
                        "cannot update `{id}`: the resource's Create failed, so there is nothing to update"
                    ),
                    _ => "the Update request carries no PhysicalResourceId".to_string(),
                });
            }
            Ok(Operation::Update {
                physical_resource_id: id.unwrap_or_default().to_string(),
            })
        }
        RequestType::Delete => Ok(Operation::Delete {
            physical_resource_id: request.physical_resource_id.clone().unwrap_or_default(),
        }),
    }
}

fn poll_input(request: &Request, waiting: &Waiting) -> PollInput {
    let physical_resource_id = match request.request_type {
        RequestType::Create => waiting.physical_resource_id.clone(),
        _ => request.physical_resource_id.clone(),
    };
    PollInput {
        physical_resource_id,
        state: waiting.state.clone(),
        attempt: waiting.attempt + 1,
    }
}

/// Run a handler future, catching its panic and cancelling it at `deadline`.
async fn run_guarded(run: BoxFuture<'_, Result<Outcome, Failure>>, deadline: Instant) -> RunResult {
    match tokio::time::timeout_at(deadline, AssertUnwindSafe(run).catch_unwind()).await {
        Ok(Ok(Ok(outcome))) => RunResult::Done(outcome),
        Ok(Ok(Err(failure))) => RunResult::Failed(failure),
        Ok(Err(panic)) => RunResult::Panicked(panic_message(panic.as_ref())),
        Err(_elapsed) => RunResult::TimedOut,
    }
}

/// Turn a run into the next step, merging what earlier steps returned.
fn finish(
    request: &Request,
    result: RunResult,
    budget: &Budget,
    previous: Option<&Waiting>,
) -> Step {
    let RunResult::Done(mut outcome) = result else {
        return Step::Answer(to_response(request, result, budget));
    };
    if let Some(previous) = previous {
        let mut data = previous.data.clone();
        data.extend(std::mem::take(&mut outcome.data));
        outcome.data = data;
        if outcome.physical_resource_id.is_none() {
            outcome.physical_resource_id = previous.physical_resource_id.clone();
        }
    }
    match outcome.progress.take() {
        None => Step::Answer(success(request, outcome)),
        Some(progress) => match progress.state {
            Ok(state) => Step::Wait(Waiting {
                after: progress.after,
                state,
                data: outcome.data,
                physical_resource_id: outcome.physical_resource_id,
                attempt: previous.map_or(0, |p| p.attempt + 1),
            }),
            Err(problem) => Step::Answer(Response::failed(
                request,
                answer_id(request),
                format!("the handler's in-progress state could not be serialized: {problem}"),
            )),
        },
    }
}

/// Map a run onto the answer ROS sees.
pub(crate) fn to_response(request: &Request, result: RunResult, budget: &Budget) -> Response {
    let reason = match result {
        RunResult::Done(outcome) => return success(request, outcome),
        RunResult::Failed(Failure::Properties(error)) => error.to_string(),
        RunResult::Failed(Failure::Handler(error)) => error_chain(error.as_ref()),
        RunResult::Panicked(message) => format!("handler panicked: {message}"),
        RunResult::TimedOut => format!(
            "timed out after {} s: the handler was still running at its deadline, so the \
             operation needs more time than {}{}",
            seconds(budget.window),
            budget.limit_name(&request.resource_type),
            budget.remedy(&request.resource_type),
        ),
    };
    tracing::warn!(reason = %reason, "answering FAILED");
    Response::failed(request, answer_id(request), reason)
}

fn success(request: &Request, outcome: Outcome) -> Response {
    if request.request_type != RequestType::Create {
        return Response::success(request, answer_id(request), outcome.data);
    }
    let chosen = outcome.physical_resource_id.is_some();
    // Derived from the request, so a rerun after a crash answers with the
    // id the first run may already have delivered.
    let id = outcome.physical_resource_id.unwrap_or_else(|| {
        physical_id::generate(
            &request.stack_id,
            &request.logical_resource_id,
            &request.request_id,
        )
    });
    let checked = if chosen {
        physical_id::validate(&id)
    } else {
        physical_id::validate_generated(&id)
    };
    match checked {
        Ok(()) => Response::success(request, id, outcome.data),
        Err(problem) => Response::failed(
            request,
            answer_id(request),
            format!("the handler returned an invalid physical id: {problem}"),
        ),
    }
}

/// The id every answer other than a successful Create carries: the request's
/// own id where it has one, or the failed-create marker.
pub(crate) fn answer_id(request: &Request) -> String {
    match request.physical_resource_id.as_deref() {
        Some(id) if request.request_type != RequestType::Create && !id.trim().is_empty() => {
            id.to_string()
        }
        _ => physical_id::failed_create(&request.request_id),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::handler::{
        CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
    };
    use crate::response::Status;
    use serde_json::Value;

    /// Behaves according to its `Mode` property.
    struct Scripted;

    #[derive(serde::Deserialize)]
    struct Props {
        #[serde(rename = "Mode", default)]
        mode: String,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("could not reach the database")]
    struct Outer(#[source] std::io::Error);

    impl Scripted {
        async fn act(mode: &str) -> Result<(), Outer> {
            match mode {
                "error" => Err(Outer(std::io::Error::other("connection refused"))),
                "panic" => panic!("boom"),
                "hang" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }

    impl Handler for Scripted {
        type Properties = Props;
        type Error = Outer;

        async fn create(&self, r: CreateRequest<Props>) -> Result<Created, Outer> {
            Self::act(&r.properties.mode).await?;
            Ok(match r.properties.mode.as_str() {
                "id" => Created::with_id("chosen-id"),
                "bad-id" => Created::with_id("x".repeat(300)),
                _ => Created::new().with_data("Seen", r.context.request_id().to_string()),
            })
        }
        async fn update(&self, r: UpdateRequest<Props>) -> Result<Updated, Outer> {
            Self::act(&r.properties.mode).await?;
            Ok(Updated::new().with_data("Old", r.old_properties.mode))
        }
        async fn delete(&self, r: DeleteRequest<Props>) -> Result<Deleted, Outer> {
            Self::act(&r.properties.mode).await?;
            Ok(Deleted::new())
        }
    }

    fn request(kind: RequestType, mode: &str, id: Option<&str>) -> Request {
        let mut r = Request::new(kind, "Custom::Scripted", "Res", "stack-1", "req-1");
        r.resource_properties
            .insert("Mode".into(), Value::String(mode.into()));
        r.physical_resource_id = id.map(str::to_string);
        if kind == RequestType::Update {
            let mut old = serde_json::Map::new();
            old.insert("Mode".into(), Value::String("before".into()));
            r.old_resource_properties = Some(old);
        }
        r
    }

    fn router() -> Router {
        Router::new().route("Custom::Scripted", Scripted)
    }

    async fn run(r: &Request) -> Response {
        router()
            .handle(r, Instant::now() + Duration::from_secs(5))
            .await
    }

    #[tokio::test]
    async fn create_generates_an_id() {
        let resp = run(&request(RequestType::Create, "ok", None)).await;
        assert_eq!(resp.status, Status::Success);
        assert!(resp.physical_resource_id.starts_with("stack-1-Res-"));
        assert_eq!(resp.data.expect("data")["Seen"], "req-1");
    }

    #[tokio::test]
    async fn create_keeps_the_handlers_id() {
        let resp = run(&request(RequestType::Create, "id", None)).await;
        assert_eq!(resp.physical_resource_id, "chosen-id");
    }

    #[tokio::test]
    async fn invalid_handler_id_fails_with_marker() {
        let resp = run(&request(RequestType::Create, "bad-id", None)).await;
        assert_eq!(resp.status, Status::Failed);
        assert!(physical_id::is_placeholder(Some(
            &resp.physical_resource_id
        )));
        assert!(resp.reason.expect("reason").contains("300 bytes"));
    }

    #[tokio::test]
    async fn update_echoes_the_id_and_sees_old_properties() {
        let resp = run(&request(RequestType::Update, "ok", Some("pid-1"))).await;
        assert_eq!(resp.status, Status::Success);
        assert_eq!(resp.physical_resource_id, "pid-1");
        assert_eq!(resp.data.expect("data")["Old"], "before");
    }

    #[tokio::test]
    async fn error_reports_the_source_chain() {
        let resp = run(&request(RequestType::Create, "error", None)).await;
        assert_eq!(resp.status, Status::Failed);
        assert_eq!(
            resp.reason.as_deref(),
            Some("could not reach the database: connection refused")
        );
        assert!(
            resp.physical_resource_id
                .starts_with(physical_id::FAILED_CREATE_PREFIX)
        );
    }

    #[tokio::test]
    async fn panic_becomes_failed() {
        let resp = run(&request(RequestType::Delete, "panic", Some("pid-1"))).await;
        assert_eq!(resp.status, Status::Failed);
        assert_eq!(resp.reason.as_deref(), Some("handler panicked: boom"));
        assert_eq!(resp.physical_resource_id, "pid-1");
    }

    #[tokio::test(start_paused = true)]
    async fn hang_times_out() {
        let r = request(RequestType::Update, "hang", Some("pid-1"));
        let resp = router()
            .handle(&r, Instant::now() + Duration::from_secs(54))
            .await;
        assert_eq!(resp.status, Status::Failed);
        assert!(
            resp.reason
                .expect("reason")
                .starts_with("timed out after 54 s")
        );
    }

    #[tokio::test]
    async fn failed_create_marker_delete_skips_the_handler() {
        let marker = physical_id::failed_create("req-0");
        for id in [Some(marker.as_str()), Some(""), None] {
            // "panic" would fail if the handler ran.
            let resp = run(&request(RequestType::Delete, "panic", id)).await;
            assert_eq!(resp.status, Status::Success, "{id:?}");
            assert!(!resp.physical_resource_id.is_empty());
        }
    }

    #[tokio::test]
    async fn unknown_type_names_the_known_ones() {
        let mut r = request(RequestType::Create, "ok", None);
        r.resource_type = "Custom::Nope".into();
        let resp = run(&r).await;
        let reason = resp.reason.expect("reason");
        assert!(
            reason.contains("Custom::Nope") && reason.contains("Custom::Scripted"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn update_without_id_fails_clearly() {
        let resp = run(&request(RequestType::Update, "ok", None)).await;
        assert_eq!(resp.status, Status::Failed);
        assert!(
            resp.reason
                .expect("reason")
                .contains("no PhysicalResourceId")
        );
    }

    #[tokio::test]
    async fn bad_properties_name_the_path() {
        let mut r = request(RequestType::Create, "ok", None);
        r.resource_properties
            .insert("Mode".into(), Value::Bool(true));
        let reason = run(&r).await.reason.expect("reason");
        assert!(
            reason.contains("ResourceProperties") && reason.contains("Mode"),
            "{reason}"
        );
    }

    /// Polls until its third attempt, recording that `on_timeout` ran.
    struct Slow {
        cleaned_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
        finish_at: u32,
    }

    impl Handler for Slow {
        type Properties = serde_json::Map<String, Value>;
        type Error = std::io::Error;

        async fn create(&self, r: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
            assert!(r.context.remaining() > Duration::from_secs(50));
            Ok(Created::with_id("slow-1")
                .with_data("Started", true)
                .in_progress(Duration::from_secs(10), &0u32))
        }
        async fn update(
            &self,
            _r: UpdateRequest<Self::Properties>,
        ) -> Result<Updated, Self::Error> {
            Ok(Updated::new())
        }
        async fn delete(
            &self,
            _r: DeleteRequest<Self::Properties>,
        ) -> Result<Deleted, Self::Error> {
            Ok(Deleted::new())
        }
        async fn poll(
            &self,
            r: crate::handler::PollRequest<Self::Properties>,
        ) -> Result<crate::handler::Polled, Self::Error> {
            let count: u32 = r.state().map_err(std::io::Error::other)?;
            assert_eq!(r.attempt, count + 1);
            assert_eq!(r.physical_resource_id.as_deref(), Some("slow-1"));
            if r.attempt >= self.finish_at {
                return Ok(crate::handler::Polled::done().with_data("Polls", r.attempt));
            }
            Ok(crate::handler::Polled::again(
                Duration::from_secs(10),
                &(count + 1),
            ))
        }
        async fn on_timeout(&self, _r: crate::handler::PollRequest<Self::Properties>) {
            self.cleaned_up
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn slow_router(finish_at: u32) -> (Router, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler = Slow {
            cleaned_up: std::sync::Arc::clone(&flag),
            finish_at,
        };
        (Router::new().route("Custom::Slow", handler), flag)
    }

    #[tokio::test(start_paused = true)]
    async fn long_running_work_is_polled_to_completion() {
        let (router, cleaned_up) = slow_router(3);
        let r = Request::new(
            RequestType::Create,
            "Custom::Slow",
            "Res",
            "stack-1",
            "req-1",
        );
        let resp = router
            .handle(&r, Instant::now() + Duration::from_secs(60))
            .await;
        assert_eq!(resp.status, Status::Success, "{:?}", resp.reason);
        assert_eq!(resp.physical_resource_id, "slow-1");
        let data = resp.data.expect("data");
        assert_eq!(data["Started"], true);
        assert_eq!(data["Polls"], 3);
        assert!(!cleaned_up.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn polling_past_the_deadline_runs_on_timeout_then_fails() {
        let (router, cleaned_up) = slow_router(u32::MAX);
        let r = Request::new(
            RequestType::Create,
            "Custom::Slow",
            "Res",
            "stack-1",
            "req-1",
        );
        let resp = router
            .handle(&r, Instant::now() + Duration::from_secs(55))
            .await;
        assert_eq!(resp.status, Status::Failed);
        // Polls at 10, 20, 30 and 40 s; the one due at 60 s is past the
        // deadline, so it gives up at 50 s, and says so.
        assert_eq!(
            resp.reason.as_deref(),
            Some(
                "gave up after 50 s: the handler asked to be polled again in 10 s, past its \
                 deadline 55 s after the request arrived, so the operation needs more time than \
                 the 55 s it was given"
            )
        );
        assert!(cleaned_up.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// Asks to be polled again after its `Seconds`, as the built-in
    /// `Custom::Wait` (in the handlers crate) does for a wait that short.
    struct Pause;

    #[derive(serde::Deserialize)]
    struct PauseProps {
        #[serde(rename = "Seconds")]
        seconds: u64,
    }

    impl Handler for Pause {
        type Properties = PauseProps;
        type Error = std::io::Error;

        async fn create(&self, r: CreateRequest<PauseProps>) -> Result<Created, Self::Error> {
            Ok(Created::new().in_progress(Duration::from_secs(r.properties.seconds), &()))
        }
        async fn update(&self, _r: UpdateRequest<PauseProps>) -> Result<Updated, Self::Error> {
            Ok(Updated::new())
        }
        async fn delete(&self, _r: DeleteRequest<PauseProps>) -> Result<Deleted, Self::Error> {
            Ok(Deleted::new())
        }
        async fn poll(
            &self,
            _r: crate::handler::PollRequest<PauseProps>,
        ) -> Result<crate::handler::Polled, Self::Error> {
            Ok(crate::handler::Polled::done())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_type_timeout_gives_up_at_once_naming_the_setting() {
        let router = Router::new().route("Custom::Wait", Pause);
        let mut r = Request::new(RequestType::Create, "Custom::Wait", "W", "stack-1", "req-1");
        r.resource_properties.insert("Seconds".into(), 600.into());
        let r = Arc::new(r);
        // `--timeout 10`: the handler's deadline is 9 s in, 1 s kept for delivery.
        let kept = Duration::from_secs(1);
        let deadline = Instant::now() + Duration::from_secs(10) - kept;
        let budget = Budget::new(
            deadline,
            Duration::from_secs(10) - kept,
            Limit::Timeout(Duration::from_secs(10)),
        );
        let started = Instant::now();
        let step = first_step(&router, &r, deadline, &budget, &Extras::default()).await;
        let Step::Wait(waiting) = step else {
            panic!("a wait is long-running work: {step:?}");
        };
        let resp = give_up(&router, &r, &waiting, &budget).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "answered at once");
        assert_eq!(resp.status, Status::Failed);
        let reason = resp.reason.expect("reason");
        assert!(reason.starts_with("gave up after 0 s: "), "{reason}");
        assert!(
            reason.contains("needs more time than Custom::Wait's timeout (10 s)"),
            "{reason}"
        );
        assert!(
            reason.contains("--type-timeout Custom::Wait=SECONDS"),
            "{reason}"
        );
        assert!(!reason.contains("timed out"), "{reason}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_timeout_states_the_handlers_time_and_ros_s_wait() {
        // A web[sync]: request under a long timeout: 10 s less 1 s to reply
        // is 9 s in all, and the handler's deadline 1 s before that, at 8 s.
        let r = Arc::new(request(RequestType::Update, "hang", Some("pid-1")));
        let deadline = Instant::now() + Duration::from_secs(8);
        let budget = Budget::new(deadline, Duration::from_secs(8), Limit::SyncWait);
        let step = first_step(&router(), &r, deadline, &budget, &Extras::default()).await;
        let Step::Answer(resp) = step else {
            panic!("a hang is cut off: {step:?}");
        };
        let reason = resp.reason.expect("reason");
        assert!(reason.starts_with("timed out after 8 s: "), "{reason}");
        assert!(reason.contains("ROS waits only 10 s"), "{reason}");
        assert!(
            reason.contains("2 s of which the provider keeps"),
            "{reason}"
        );
        assert!(!reason.contains("9 s"), "{reason}");
        assert!(
            !reason.contains("--type-timeout"),
            "a longer timeout would not help: {reason}"
        );

        // Under a type timeout of 5 s it is the type's timeout that ran out:
        // 1 s kept to reply, and of the 4 s left 0.5 s for delivery.
        let deadline = Instant::now() + Duration::from_millis(3500);
        let budget = Budget::new(
            deadline,
            Duration::from_millis(3500),
            Limit::SyncTimeout(Duration::from_secs(5)),
        );
        let step = first_step(&router(), &r, deadline, &budget, &Extras::default()).await;
        let Step::Answer(resp) = step else {
            panic!("a hang is cut off: {step:?}");
        };
        let reason = resp.reason.expect("reason");
        assert!(reason.starts_with("timed out after 3.5 s: "), "{reason}");
        assert!(
            reason.contains("Custom::Scripted's timeout (5 s)")
                && reason.contains("--type-timeout Custom::Scripted=SECONDS")
                && reason.contains("1.5 s of it is kept to reply")
                && reason.contains("ROS waits only 10 s"),
            "{reason}"
        );
    }

    #[test]
    fn seconds_are_whole_or_have_one_decimal() {
        assert_eq!(seconds(Duration::from_secs(8)), "8");
        assert_eq!(seconds(Duration::from_millis(8_000_400)), "8000.4");
        assert_eq!(seconds(Duration::from_millis(499)), "0.5");
        assert_eq!(seconds(Duration::from_millis(7_960)), "8");
        assert_eq!(seconds(Duration::ZERO), "0");
    }

    #[tokio::test]
    async fn in_progress_without_poll_fails_clearly() {
        struct Forgetful;
        impl Handler for Forgetful {
            type Properties = serde_json::Map<String, Value>;
            type Error = std::io::Error;
            async fn create(
                &self,
                _r: CreateRequest<Self::Properties>,
            ) -> Result<Created, Self::Error> {
                Ok(Created::new().in_progress(Duration::from_millis(1), &()))
            }
            async fn update(
                &self,
                _r: UpdateRequest<Self::Properties>,
            ) -> Result<Updated, Self::Error> {
                Ok(Updated::new())
            }
            async fn delete(
                &self,
                _r: DeleteRequest<Self::Properties>,
            ) -> Result<Deleted, Self::Error> {
                Ok(Deleted::new())
            }
        }
        let router = Router::new().route("Custom::F", Forgetful);
        let r = Request::new(RequestType::Create, "Custom::F", "Res", "stack-1", "req-1");
        let resp = router
            .handle(&r, Instant::now() + Duration::from_secs(5))
            .await;
        assert!(
            resp.reason
                .expect("reason")
                .contains("does not implement poll")
        );
    }
}
