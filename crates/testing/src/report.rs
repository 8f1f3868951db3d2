//! What a lifecycle run found, for people: progress lines and a summary table.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::check::{Finding, Severity};
use stackhook::request::RequestType;
use stackhook::response::Status;

/// What happened in one step.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StepReport {
    /// 1-based position.
    pub index: usize,
    /// Steps in the lifecycle.
    pub total: usize,
    /// A short description, such as `update (changed), delivered ×2`.
    pub label: String,
    /// The request type sent.
    pub request_type: RequestType,
    /// The request's id.
    pub request_id: String,
    /// The (first) answer's status, when one arrived.
    pub status: Option<Status>,
    /// The (first) answer's physical id.
    pub physical_id: Option<String>,
    /// The (first) answer's reason.
    pub reason: Option<String>,
    /// How many final answers arrived.
    pub answers: usize,
    /// Broken rules and warnings.
    pub findings: Vec<Finding>,
    /// Remarks that are neither, such as scripted callback refusals.
    pub notes: Vec<String>,
    /// Time from the first send to the last answer checked.
    pub elapsed: Duration,
}

impl StepReport {
    pub(crate) fn new(index: usize, total: usize, request_type: RequestType) -> Self {
        StepReport {
            index,
            total,
            label: String::new(),
            request_type,
            request_id: String::new(),
            status: None,
            physical_id: None,
            reason: None,
            answers: 0,
            findings: Vec::new(),
            notes: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Whether no rule was broken in this step.
    pub fn is_ok(&self) -> bool {
        !self.findings.iter().any(Finding::is_error)
    }

    /// One progress line, and a line per finding and note below it.
    pub fn progress(&self, color: bool) -> String {
        let p = Paint(color);
        let mark = if self.is_ok() {
            p.green("✔")
        } else {
            p.red("✘")
        };
        let status = match self.status {
            Some(Status::Success) => p.green("SUCCESS"),
            Some(Status::Failed) => p.yellow("FAILED"),
            None => p.red("no answer"),
        };
        let mut line = format!(
            "{mark} [{}/{}] {:<40} {status} {}",
            self.index,
            self.total,
            self.label,
            p.dim(&format!("({})", super::seconds(self.elapsed)))
        );
        if let Some(reason) = &self.reason {
            let short: String = reason.chars().take(100).collect();
            let _ = write!(line, "\n      {}", p.dim(&format!("reason: {short}")));
        }
        for finding in &self.findings {
            let text = match finding.severity {
                Severity::Error => p.red(&finding.to_string()),
                Severity::Warning => p.yellow(&finding.to_string()),
            };
            let _ = write!(line, "\n      {text}");
        }
        for note in &self.notes {
            let _ = write!(line, "\n      {}", p.dim(&format!("note: {note}")));
        }
        line
    }
}

/// The result of a lifecycle run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Report {
    /// The lifecycle's name.
    pub name: String,
    /// The resource type driven.
    pub resource_type: String,
    /// Where the requests went.
    pub target: String,
    /// One entry per step.
    pub steps: Vec<StepReport>,
}

impl Report {
    pub(crate) fn new(
        name: String,
        resource_type: String,
        target: String,
        steps: Vec<StepReport>,
    ) -> Self {
        Report {
            name,
            resource_type,
            target,
            steps,
        }
    }

    /// Whether every rule held (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.steps.iter().all(StepReport::is_ok)
    }

    /// Every finding, with its step's label.
    pub fn findings(&self) -> impl Iterator<Item = (&StepReport, &Finding)> {
        self.steps
            .iter()
            .flat_map(|s| s.findings.iter().map(move |f| (s, f)))
    }

    /// The broken rules, with their steps' labels.
    pub fn violations(&self) -> impl Iterator<Item = (&StepReport, &Finding)> {
        self.findings().filter(|(_, f)| f.is_error())
    }

    /// Panic with the whole report when a rule was broken. For tests.
    ///
    /// # Panics
    /// When [`Report::is_ok`] is false.
    #[track_caller]
    pub fn assert_ok(&self) {
        if !self.is_ok() {
            panic!("the mock ROS found violations:\n{}", self.render(false));
        }
    }

    /// The progress lines, a summary table and the verdict; coloured with
    /// ANSI escapes when `color` is set.
    pub fn render(&self, color: bool) -> String {
        let mut out = format!("{}\n", self.heading(color));
        for step in &self.steps {
            let _ = writeln!(out, "{}", step.progress(color));
        }
        out.push('\n');
        out.push_str(&self.summary(color));
        out
    }

    /// The heading line: lifecycle, resource type and target.
    pub fn heading(&self, color: bool) -> String {
        let p = Paint(color);
        p.bold(&format!(
            "mock ROS · {} · {} · {}",
            self.name, self.resource_type, self.target
        ))
    }

    /// The summary table and the verdict line.
    pub fn summary(&self, color: bool) -> String {
        let p = Paint(color);
        let headers = ["#", "step", "request", "answer", "physical id", "checks"];
        let rows: Vec<[String; 6]> = self
            .steps
            .iter()
            .map(|s| {
                let errors = s.findings.iter().filter(|f| f.is_error()).count();
                let warnings = s.findings.len() - errors;
                let checks = match (errors, warnings) {
                    (0, 0) => "ok".to_string(),
                    (0, w) => format!("{w} warning(s)"),
                    (e, 0) => format!("{e} violation(s)"),
                    (e, w) => format!("{e} violation(s), {w} warning(s)"),
                };
                [
                    s.index.to_string(),
                    s.label.clone(),
                    s.request_type.to_string(),
                    s.status.map_or("none", Status::as_str).to_string(),
                    shorten(s.physical_id.as_deref().unwrap_or("-"), 44),
                    checks,
                ]
            })
            .collect();
        let mut widths = headers.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: &[String; 6]| {
            cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let _ = writeln!(out, "{}", p.bold(&line(&headers.map(String::from))));
        for row in &rows {
            let text = line(row);
            let text = if row[5] == "ok" {
                text
            } else if row[5].contains("violation") {
                p.red(&text)
            } else {
                p.yellow(&text)
            };
            let _ = writeln!(out, "{text}");
        }
        let violations = self.violations().count();
        let warnings = self.findings().count() - violations;
        let verdict = if violations == 0 {
            p.green(&format!(
                "PASS: every ROS rule held in {} step(s){}",
                self.steps.len(),
                if warnings > 0 {
                    format!(", {warnings} warning(s)")
                } else {
                    String::new()
                }
            ))
        } else {
            p.red(&format!(
                "FAIL: {violations} violation(s) in {} step(s)",
                self.steps.len()
            ))
        };
        let _ = writeln!(out, "\n{verdict}");
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    // Keep both ends: generated ids share a prefix and differ at the end.
    let chars: Vec<char> = text.chars().collect();
    let head = (max - 1) / 2;
    let tail = max - 1 - head;
    let start: String = chars[..head].iter().collect();
    let end: String = chars[chars.len() - tail..].iter().collect();
    format!("{start}…{end}")
}

/// ANSI colour, or none.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }
    fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }
    fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }
    fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }
    fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
}
