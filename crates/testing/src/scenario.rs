//! Scenario files: a lifecycle with faults, in YAML or JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::MockRos;
use super::lifecycle::{Action, Expect, Lifecycle, Step};
use stackhook::error::{Error, Result};

/// A scenario file: a lifecycle with faults, in YAML or JSON.
///
/// ```yaml
/// name: echo, with faults
/// resource_type: Custom::Echo
/// timeout: 10          # seconds ROS waits per step (default 60); or "500ms", "2m"
/// properties:          # named property sets
///   initial: {Greeting: hello}
///   changed: {Greeting: bonjour}
/// steps:
///   - action: create
///     properties: initial
///   - action: update   # no properties: an update with unchanged properties
///   - action: update
///     properties: changed
///     redeliver: 1     # send the same request twice
///   - action: rollback # the old properties sent back
///   - action: delete
///     callback_status: [500]   # the callback refuses the first answer
/// ```
///
/// Load one with [`Scenario::from_path`], then run [`Scenario::lifecycle`]
/// against a [`MockRos`] set up by [`Scenario::configure`]:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), stackhook::Error> {
/// use stackhook_testing::{MockRos, Scenario};
/// use stackhook::Router;
/// use stackhook_handlers::Echo;
///
/// let scenario = Scenario::from_yaml(r#"
/// resource_type: Custom::Echo
/// steps:
///   - action: create
///     properties: {Greeting: hello}
///   - action: delete
/// "#)?;
/// let ros = scenario.configure(MockRos::new(Router::new().route("Custom::Echo", Echo)));
/// let report = scenario.lifecycle()?.run(&ros).await;
/// assert!(report.is_ok(), "{report}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports (default: the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// The `ResourceType` of every request.
    pub resource_type: String,
    /// The `LogicalResourceId` of every request.
    #[serde(default)]
    pub logical_resource_id: Option<String>,
    /// Seconds ROS waits for each answer, unless a step says otherwise.
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// Over a URL, how long to listen for duplicate answers.
    #[serde(default, deserialize_with = "duration")]
    pub duplicate_wait: Option<Duration>,
    /// Named property sets that steps refer to.
    #[serde(default)]
    pub properties: BTreeMap<String, Map<String, Value>>,
    /// The steps, in order.
    pub steps: Vec<ScenarioStep>,
}

/// One step of a scenario file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioStep {
    /// `create`, `update`, `rollback` or `delete`.
    pub action: Action,
    /// The name of a property set, or the properties themselves.
    #[serde(default)]
    pub properties: Option<PropertiesRef>,
    /// `success` (default), `failed` or `any`.
    #[serde(default)]
    pub expect: Expect,
    /// Send the same request this many extra times.
    #[serde(default)]
    pub redeliver: u32,
    /// HTTP statuses the callback answers first, then 200.
    #[serde(default)]
    pub callback_status: Vec<u16>,
    /// Seconds ROS waits for this step's answer.
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
}

/// Properties by name or inline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PropertiesRef {
    /// The name of a set under `properties`.
    Named(String),
    /// The properties themselves.
    Inline(Map<String, Value>),
}

impl Scenario {
    /// Parse a YAML scenario.
    ///
    /// # Errors
    /// [`Error::Validation`] saying where the text is wrong.
    pub fn from_yaml(text: &str) -> Result<Scenario> {
        serde_norway::from_str(text).map_err(|e| Error::Validation {
            field: "scenario".into(),
            message: e.to_string(),
        })
    }

    /// Parse a JSON scenario.
    ///
    /// # Errors
    /// [`Error::Validation`] saying where the text is wrong.
    pub fn from_json(text: &str) -> Result<Scenario> {
        serde_json::from_str(text).map_err(|e| Error::Validation {
            field: "scenario".into(),
            message: e.to_string(),
        })
    }

    /// Read a scenario file: JSON when it ends in `.json`, YAML otherwise.
    /// The name defaults to the file's stem.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, [`Error::Validation`] when it
    /// does not parse.
    pub fn from_path(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            Scenario::from_json(&text)
        } else {
            Scenario::from_yaml(&text)
        };
        let mut scenario = parsed.map_err(|e| match e {
            Error::Validation { message, .. } => Error::Validation {
                field: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        if scenario.name.is_none() {
            scenario.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        Ok(scenario)
    }

    /// The lifecycle the steps describe, with property names resolved.
    ///
    /// # Errors
    /// [`Error::Validation`] naming a step that refers to an unknown property set.
    pub fn lifecycle(&self) -> Result<Lifecycle> {
        let mut lifecycle = Lifecycle::new(self.name.clone().unwrap_or_else(|| "scenario".into()));
        for (index, spec) in self.steps.iter().enumerate() {
            let properties = match &spec.properties {
                None => None,
                Some(PropertiesRef::Inline(map)) => Some(map.clone()),
                Some(PropertiesRef::Named(name)) => {
                    Some(self.properties.get(name).cloned().ok_or_else(|| {
                        let known: Vec<&str> = self.properties.keys().map(String::as_str).collect();
                        Error::Validation {
                            field: format!("steps[{index}].properties"),
                            message: format!(
                                "no property set named `{name}` (known: {})",
                                if known.is_empty() {
                                    "none".into()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        }
                    })?)
                }
            };
            let mut step = Step::of(spec.action, properties)
                .expect(spec.expect)
                .redeliver(spec.redeliver)
                .callback_fails_first(spec.callback_status.iter().copied());
            if let Some(wait) = spec.timeout {
                step = step.timeout(wait);
            }
            lifecycle = lifecycle.step(step);
        }
        Ok(lifecycle)
    }

    /// Apply the scenario's resource type, logical id and timeouts to `ros`.
    pub fn configure(&self, mut ros: MockRos) -> MockRos {
        ros = ros.resource_type(self.resource_type.clone());
        if let Some(id) = &self.logical_resource_id {
            ros = ros.logical_resource_id(id.clone());
        }
        if let Some(timeout) = self.timeout {
            ros = ros.timeout(timeout);
        }
        if let Some(wait) = self.duplicate_wait {
            ros = ros.duplicate_wait(wait);
        }
        ros
    }
}

/// Seconds as a number, or a string such as `500ms`, `10s`, `2m`.
fn duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    use serde::de::Error as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    let seconds = match Option::<Raw>::deserialize(deserializer)? {
        None => return Ok(None),
        Some(Raw::Seconds(s)) => s,
        Some(Raw::Text(text)) => parse_duration(&text).map_err(D::Error::custom)?,
    };
    if !(seconds.is_finite() && (0.0..=43_200.0).contains(&seconds)) {
        return Err(D::Error::custom(format!(
            "{seconds} s is outside 0 to 43200 s (ROS's longest Timeout)"
        )));
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

fn parse_duration(text: &str) -> std::result::Result<f64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 10s or 2m"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m or h)"
            ));
        }
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
resource_type: Custom::Echo
timeout: 2m
properties:
  a: {Greeting: hello}
steps:
  - action: create
    properties: a
  - action: update
    properties: {Greeting: inline}
    redeliver: 1
    timeout: 500ms
  - action: delete
    callback_status: [500]
"#;

    #[test]
    fn parses_and_resolves() {
        let s = Scenario::from_yaml(YAML).expect("valid");
        assert_eq!(s.timeout, Some(Duration::from_secs(120)));
        assert_eq!(s.steps[1].timeout, Some(Duration::from_millis(500)));
        assert_eq!(s.lifecycle().expect("resolves").steps().len(), 3);
    }

    #[test]
    fn unknown_set_is_named() {
        let s =
            Scenario::from_yaml(&YAML.replace("properties: a", "properties: b")).expect("valid");
        let err = s.lifecycle().unwrap_err().to_string();
        assert!(err.contains("`b`") && err.contains("known: a"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = Scenario::from_yaml(&YAML.replace("redeliver", "redelivr"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("redelivr"), "{err}");
    }
}
