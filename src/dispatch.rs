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
    pub(crate) fc_credentials:
        Option<std::sync::Arc<crate::cloud::credentials::AlibabaCredentials>>,
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
    budget: Duration,
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
    budget: Duration,
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

/// Long-running work ran out of time: run the handler's `on_timeout` hook
/// briefly, then answer FAILED.
pub(crate) async fn give_up(
    router: &Router,
    request: &Arc<Request>,
    waiting: &Waiting,
    budget: Duration,
) -> Response {
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
    to_response(request, RunResult::TimedOut, budget)
}

/// Drive a request to its answer in this task, sleeping between polls.
pub(crate) async fn run_to_answer(
    router: &Router,
    request: &Arc<Request>,
    deadline: Instant,
) -> Response {
    let budget = deadline.saturating_duration_since(Instant::now());
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
    budget: Duration,
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
pub(crate) fn to_response(request: &Request, result: RunResult, budget: Duration) -> Response {
    let reason = match result {
        RunResult::Done(outcome) => return success(request, outcome),
        RunResult::Failed(Failure::Properties(error)) => error.to_string(),
        RunResult::Failed(Failure::Handler(error)) => error_chain(error.as_ref()),
        RunResult::Panicked(message) => format!("handler panicked: {message}"),
        RunResult::TimedOut => format!(
            "timed out after {} s: the handler did not finish before the deadline",
            budget.as_secs_f64().round()
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
        assert!(
            resp.reason
                .expect("reason")
                .starts_with("timed out after 55 s")
        );
        assert!(cleaned_up.load(std::sync::atomic::Ordering::SeqCst));
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
