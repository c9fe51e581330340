//! The eight state types (features.md §1.3), JSONPath fields.

use serde::Deserialize;
use serde_json::Value;

use super::choice_rule::ChoiceRule;
use super::map_state::MapState;
use super::path_field::PathField;
use super::payload_template::{AssignTemplate, PayloadTemplate};
use super::retry::{Catcher, Retrier};
use super::state_machine::StateBlock;
use crate::expr::PathExpr;

/// A state of a definition. Variants differ in size (Map carries the most fields); states
/// are built once per definition and never moved in hot loops, so they are not boxed.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "Type")]
#[allow(clippy::large_enum_variant)]
pub enum State {
    Pass(PassState),
    Task(TaskState),
    Choice(ChoiceState),
    Wait(WaitState),
    Succeed(SucceedState),
    Fail(FailState),
    Parallel(ParallelState),
    Map(MapState),
}

impl State {
    /// AWS's name of the type, as used in history event names (`PassStateEntered`).
    pub fn type_name(&self) -> &'static str {
        match self {
            State::Pass(_) => "Pass",
            State::Task(_) => "Task",
            State::Choice(_) => "Choice",
            State::Wait(_) => "Wait",
            State::Succeed(_) => "Succeed",
            State::Fail(_) => "Fail",
            State::Parallel(_) => "Parallel",
            State::Map(_) => "Map",
        }
    }

    pub fn query_language(&self) -> Option<&str> {
        match self {
            State::Pass(s) => s.query_language.as_deref(),
            State::Task(s) => s.query_language.as_deref(),
            State::Choice(s) => s.query_language.as_deref(),
            State::Wait(s) => s.query_language.as_deref(),
            State::Succeed(s) => s.query_language.as_deref(),
            State::Fail(s) => s.query_language.as_deref(),
            State::Parallel(s) => s.query_language.as_deref(),
            State::Map(s) => s.query_language.as_deref(),
        }
    }
}

/// `Next` or `"End": true`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Next(String),
    End,
}

impl Transition {
    /// From the `Next`/`End` fields (validation guarantees exactly one is set).
    pub fn from_fields(next: &Option<String>) -> Transition {
        match next {
            Some(next) => Transition::Next(next.clone()),
            None => Transition::End,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PassState {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub query_language: Option<String>,
    #[serde(default)]
    pub input_path: PathField,
    #[serde(default)]
    pub parameters: Option<PayloadTemplate>,
    /// `"Result": null` is a null result, not an absent one.
    #[serde(default, deserialize_with = "present_value")]
    pub result: Option<Value>,
    #[serde(default)]
    pub result_path: PathField,
    #[serde(default)]
    pub output_path: PathField,
    #[serde(default)]
    pub assign: Option<AssignTemplate>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskState {
    pub resource: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub query_language: Option<String>,
    #[serde(default)]
    pub input_path: PathField,
    #[serde(default)]
    pub parameters: Option<PayloadTemplate>,
    #[serde(default)]
    pub result_selector: Option<PayloadTemplate>,
    #[serde(default)]
    pub result_path: PathField,
    #[serde(default)]
    pub output_path: PathField,
    #[serde(default)]
    pub assign: Option<AssignTemplate>,
    #[serde(default)]
    pub retry: Vec<Retrier>,
    #[serde(default)]
    pub catch: Vec<Catcher>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub timeout_seconds_path: Option<PathExpr>,
    #[serde(default)]
    pub heartbeat_seconds: Option<u64>,
    #[serde(default)]
    pub heartbeat_seconds_path: Option<PathExpr>,
    #[serde(default)]
    pub credentials: Option<PayloadTemplate>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
}

impl TaskState {
    /// Whether the state needs its input only for one attempt: no Retry or Catch, no *Path
    /// timeout, and a result that replaces the input.
    pub fn uses_input_once(&self) -> bool {
        self.retry.is_empty()
            && self.catch.is_empty()
            && self.result_path.is_identity()
            && self.timeout_seconds_path.is_none()
            && self.heartbeat_seconds_path.is_none()
    }

    /// Whether the state's input goes to its resource as it is and serves nothing else, so it
    /// can stay text (see `crate::payload`).
    pub fn hands_input_over(&self) -> bool {
        self.uses_input_once() && self.input_path.is_identity() && self.parameters.is_none()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChoiceState {
    pub choices: Vec<ChoiceRule>,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub query_language: Option<String>,
    #[serde(default)]
    pub input_path: PathField,
    #[serde(default)]
    pub output_path: PathField,
    #[serde(default)]
    pub assign: Option<AssignTemplate>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitState {
    #[serde(default)]
    pub seconds: Option<Value>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub seconds_path: Option<PathExpr>,
    #[serde(default)]
    pub timestamp_path: Option<PathExpr>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub query_language: Option<String>,
    #[serde(default)]
    pub input_path: PathField,
    #[serde(default)]
    pub output_path: PathField,
    #[serde(default)]
    pub assign: Option<AssignTemplate>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SucceedState {
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub query_language: Option<String>,
    #[serde(default)]
    pub input_path: PathField,
    #[serde(default)]
    pub output_path: PathField,
}

/// `ErrorPath`/`CausePath`: a reference path or an intrinsic call yielding a string.
pub type DynamicString = PayloadTemplate;

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FailState {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default, deserialize_with = "dynamic_string::error_path")]
    pub error_path: Option<DynamicString>,
    #[serde(default, deserialize_with = "dynamic_string::cause_path")]
    pub cause_path: Option<DynamicString>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub query_language: Option<String>,
}

mod dynamic_string {
    use serde::{Deserialize, Deserializer};

    use super::DynamicString;

    fn compile<'de, D: Deserializer<'de>>(field: &str, d: D) -> Result<Option<DynamicString>, D::Error> {
        let text = String::deserialize(d)?;
        DynamicString::compile_entry(field, &text).map(Some).map_err(serde::de::Error::custom)
    }
    pub fn error_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DynamicString>, D::Error> {
        compile("ErrorPath", d)
    }
    pub fn cause_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DynamicString>, D::Error> {
        compile("CausePath", d)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParallelState {
    pub branches: Vec<StateBlock>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub query_language: Option<String>,
    #[serde(default)]
    pub input_path: PathField,
    #[serde(default)]
    pub parameters: Option<PayloadTemplate>,
    #[serde(default)]
    pub result_selector: Option<PayloadTemplate>,
    #[serde(default)]
    pub result_path: PathField,
    #[serde(default)]
    pub output_path: PathField,
    #[serde(default)]
    pub assign: Option<AssignTemplate>,
    #[serde(default)]
    pub retry: Vec<Retrier>,
    #[serde(default)]
    pub catch: Vec<Catcher>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
}

/// Deserializes a field that is present (even as `null`) into `Some`; serde's `default`
/// leaves absent fields `None`.
fn present_value<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}
