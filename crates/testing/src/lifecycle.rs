//! Whole lifecycles: a sequence of steps on one resource, as ROS would send them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::check::{Finding, Rule};
use super::report::{Report, StepReport};
use super::{Faults, MockRos, to_object};
use stackhook::request::RequestType;
use stackhook::response::Status;

/// What a step asks of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create the resource (a new one after a Delete).
    Create,
    /// Update it to new properties (the current ones when none are given:
    /// an Update whose properties did not change).
    Update,
    /// Roll the last Update back: an Update that sends the previous
    /// properties back, as ROS does when a stack update fails.
    Rollback,
    /// Delete it, with the id Create reported (also after a failed Create).
    Delete,
}

impl Action {
    fn request_type(self) -> RequestType {
        match self {
            Action::Create => RequestType::Create,
            Action::Update | Action::Rollback => RequestType::Update,
            Action::Delete => RequestType::Delete,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Rollback => "rollback",
            Action::Delete => "delete",
        }
    }
}

/// The answer a step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// SUCCESS (the default).
    #[default]
    Success,
    /// FAILED.
    Failed,
    /// Either: only ROS's rules are checked.
    Any,
}

/// One request of a lifecycle, with the faults to inject.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Step {
    action: Action,
    properties: Option<Result<Map<String, Value>, String>>,
    expect: Expect,
    faults: Faults,
}

impl Step {
    fn new(action: Action, properties: Option<Result<Map<String, Value>, String>>) -> Self {
        Step {
            action,
            properties,
            expect: Expect::Success,
            faults: Faults::default(),
        }
    }

    /// Create with `properties` (anything that serializes to a JSON object).
    pub fn create(properties: impl Serialize) -> Self {
        Step::new(Action::Create, Some(to_object(&properties)))
    }

    /// Update to `properties`.
    pub fn update(properties: impl Serialize) -> Self {
        Step::new(Action::Update, Some(to_object(&properties)))
    }

    /// Update with the current properties unchanged.
    pub fn update_unchanged() -> Self {
        Step::new(Action::Update, None)
    }

    /// Roll the last Update back.
    pub fn rollback() -> Self {
        Step::new(Action::Rollback, None)
    }

    /// Delete.
    pub fn delete() -> Self {
        Step::new(Action::Delete, None)
    }

    /// A step from its parts, as scenario files describe it.
    pub fn of(action: Action, properties: Option<Map<String, Value>>) -> Self {
        Step::new(action, properties.map(Ok))
    }

    /// Expect this answer (default SUCCESS).
    pub fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    /// Expect FAILED.
    pub fn expect_failure(self) -> Self {
        self.expect(Expect::Failed)
    }

    /// Send the same request `times` more times, as ROS does for `idempotent`
    /// tokens after a network error or HTTP 500.
    pub fn redeliver(mut self, times: u32) -> Self {
        self.faults.redeliver = times;
        self
    }

    /// Have the callback answer these HTTP statuses first (then 200). Only
    /// applies over a URL.
    pub fn callback_fails_first(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.faults.callback_statuses = statuses.into_iter().collect();
        self
    }

    /// ROS waits this long for this step's answer, instead of the mock's timeout.
    pub fn timeout(mut self, wait: Duration) -> Self {
        self.faults.timeout = Some(wait);
        self
    }

    /// The step's action.
    pub fn action(&self) -> Action {
        self.action
    }
}

/// A sequence of steps on one resource. Build one of the ready-made
/// lifecycles or your own, then [`run`](Lifecycle::run) it.
///
/// ```
/// # use stackhook_testing::{Lifecycle, MockRos, Step};
/// # use stackhook::Router;
/// # use stackhook_handlers::Echo;
/// # use serde_json::json;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ros = MockRos::new(Router::new().route("Custom::Echo", Echo)).resource_type("Custom::Echo");
/// let report = Lifecycle::standard(json!({"Greeting": "hi"}), json!({"Greeting": "hello"}))
///     .run(&ros)
///     .await;
/// report.assert_ok();
///
/// let custom = Lifecycle::new("fails, then cleans up")
///     .step(Step::create(json!({"FailWith": "quota exceeded"})).expect_failure())
///     .step(Step::delete());
/// assert!(custom.run(&ros).await.is_ok());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Lifecycle {
    name: String,
    steps: Vec<Step>,
}

impl Lifecycle {
    /// An empty lifecycle called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Lifecycle {
            name: name.into(),
            steps: Vec::new(),
        }
    }

    /// Add a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Create, Update with unchanged properties, Update to `changed`, Delete.
    pub fn standard(initial: impl Serialize, changed: impl Serialize) -> Self {
        Lifecycle::new("create, update, delete")
            .step(Step::create(initial))
            .step(Step::update_unchanged())
            .step(Step::update(changed))
            .step(Step::delete())
    }

    /// A Create that fails (with `failing` properties), then the Delete of
    /// whatever id it reported, which must succeed so the stack can go.
    pub fn failed_create(failing: impl Serialize) -> Self {
        Lifecycle::new("failed create, then delete")
            .step(Step::create(failing).expect_failure())
            .step(Step::delete())
    }

    /// Create, Update to `changed`, roll it back (the old properties sent
    /// back), Delete.
    pub fn rollback(initial: impl Serialize, changed: impl Serialize) -> Self {
        Lifecycle::new("update rollback")
            .step(Step::create(initial))
            .step(Step::update(changed))
            .step(Step::rollback())
            .step(Step::delete())
    }

    /// Every request delivered twice: Create, Update to `changed`, Delete.
    pub fn redelivery(initial: impl Serialize, changed: impl Serialize) -> Self {
        Lifecycle::new("redelivery")
            .step(Step::create(initial).redeliver(1))
            .step(Step::update(changed).redeliver(1))
            .step(Step::delete().redeliver(1))
    }

    /// A Create that ROS waits only `wait` for: the provider must answer in
    /// time, SUCCESS or FAILED (`slow` properties make a handler overrun).
    /// Then the Delete.
    pub fn timeout(slow: impl Serialize, wait: Duration) -> Self {
        Lifecycle::new("timeout")
            .step(Step::create(slow).timeout(wait).expect(Expect::Any))
            .step(Step::delete().timeout(wait))
    }

    /// Run every step against `ros` and report.
    pub async fn run(&self, ros: &MockRos) -> Report {
        self.run_with_progress(ros, |_| {}).await
    }

    /// Run every step, calling `progress` after each one.
    pub async fn run_with_progress(
        &self,
        ros: &MockRos,
        mut progress: impl FnMut(&StepReport),
    ) -> Report {
        let mut state = State::default();
        let mut steps = Vec::new();
        let total = self.steps.len();
        for (index, step) in self.steps.iter().enumerate() {
            let report = run_step(ros, step, &mut state, index, total).await;
            progress(&report);
            steps.push(report);
        }
        Report::new(
            self.name.clone(),
            ros.get_resource_type().to_string(),
            ros.describe_target(),
            steps,
        )
    }
}

/// What the mock knows about the resource between steps.
#[derive(Debug, Default)]
struct State {
    created: bool,
    physical_id: Option<String>,
    properties: Map<String, Value>,
    /// The properties before the last Update, for a rollback.
    previous: Option<Map<String, Value>>,
}

async fn run_step(
    ros: &MockRos,
    step: &Step,
    state: &mut State,
    index: usize,
    total: usize,
) -> StepReport {
    let mut label = step.action.as_str().to_string();
    let mut report = StepReport::new(index + 1, total, step.action.request_type());
    let mut request = ros.request(step.action.request_type());

    let properties = match &step.properties {
        Some(Ok(properties)) => Some(properties.clone()),
        Some(Err(problem)) => {
            report.label = label;
            report.findings.push(Finding::error(
                Rule::Expectation,
                format!("the step's properties are unusable: {problem}"),
            ));
            return report;
        }
        None => None,
    };
    match step.action {
        Action::Create => {
            request.resource_properties = properties.unwrap_or_default();
        }
        Action::Update => {
            let new = properties.unwrap_or_else(|| state.properties.clone());
            label.push_str(if new == state.properties {
                " (unchanged)"
            } else {
                " (changed)"
            });
            request.resource_properties = new;
            request.old_resource_properties = Some(state.properties.clone());
        }
        Action::Rollback => {
            let Some(previous) = state.previous.clone() else {
                report.label = label;
                report.findings.push(Finding::error(
                    Rule::Expectation,
                    "a rollback needs an earlier update to roll back",
                ));
                return report;
            };
            request.resource_properties = previous;
            request.old_resource_properties = Some(state.properties.clone());
        }
        Action::Delete => {
            request.resource_properties = state.properties.clone();
        }
    }
    if step.action != Action::Create {
        match &state.physical_id {
            Some(id) => request.physical_resource_id = Some(id.clone()),
            // A Create that got no answer: ROS deletes without an id.
            None if step.action == Action::Delete && state.created => {}
            None => {
                report.label = label;
                report.findings.push(Finding::error(
                    Rule::Expectation,
                    format!("a {} needs a Create before it", step.action.as_str()),
                ));
                return report;
            }
        }
    }
    if step.faults.redeliver > 0 {
        label.push_str(&format!(", delivered ×{}", step.faults.redeliver + 1));
    }
    if !step.faults.callback_statuses.is_empty() {
        let statuses: Vec<String> = step
            .faults
            .callback_statuses
            .iter()
            .map(u16::to_string)
            .collect();
        label.push_str(&format!(", callback {} first", statuses.join(",")));
    }
    if let Some(wait) = step.faults.timeout {
        label.push_str(&format!(", timeout {}", super::seconds(wait)));
    }
    report.label = label;

    let started = Instant::now();
    let exchange = ros.exchange(request, &step.faults).await;
    report.elapsed = started.elapsed();
    report.request_id = exchange.request.request_id.clone();
    report.findings = exchange.findings;
    report.notes = exchange.notes;
    let answer = exchange.answers.first().cloned();
    report.answers = exchange.answers.len();

    if let Some(answer) = &answer {
        report.status = Some(answer.status);
        report.physical_id = Some(answer.physical_resource_id.clone());
        report.reason = answer.reason.clone();
        let expected = match step.expect {
            Expect::Success => Some(Status::Success),
            Expect::Failed => Some(Status::Failed),
            Expect::Any => None,
        };
        if let Some(expected) = expected.filter(|e| *e != answer.status) {
            let why = answer
                .reason
                .as_deref()
                .map(|r| format!(" (Reason: {r})"))
                .unwrap_or_default();
            report.findings.push(Finding::error(
                Rule::Expectation,
                format!(
                    "expected {}, got {}{why}",
                    expected.as_str(),
                    answer.status.as_str()
                ),
            ));
        }
    }

    // What ROS remembers after this step.
    let request = &exchange.request;
    match step.action {
        Action::Create => {
            state.created = true;
            state.physical_id = answer.map(|a| a.physical_resource_id);
            state.properties = request.resource_properties.clone();
            state.previous = None;
        }
        Action::Update | Action::Rollback => {
            state.previous = request.old_resource_properties.clone();
            state.properties = request.resource_properties.clone();
        }
        Action::Delete => {}
    }
    report
}
