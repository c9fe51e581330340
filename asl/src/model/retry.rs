use serde::Deserialize;

use super::path_field::PathField;
use super::payload_template::AssignTemplate;

/// A Retry entry (features.md §1.9).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Retrier {
    pub error_equals: Vec<String>,
    #[serde(default = "default_interval")]
    pub interval_seconds: f64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u64,
    #[serde(default = "default_backoff")]
    pub backoff_rate: f64,
    #[serde(default)]
    pub max_delay_seconds: Option<f64>,
    #[serde(default)]
    pub jitter_strategy: Option<JitterStrategy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JitterStrategy {
    Full,
    None,
}

fn default_interval() -> f64 {
    1.0
}
fn default_max_attempts() -> u64 {
    3
}
fn default_backoff() -> f64 {
    2.0
}

/// A Catch entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    #[serde(default)]
    pub result_path: PathField,
    #[serde(default)]
    pub assign: Option<AssignTemplate>,
}

/// Whether an `ErrorEquals` list matches an error name (features.md §1.9): exact names,
/// `States.ALL` for everything, `States.TaskFailed` for everything but `States.Timeout`.
pub fn error_matches(error_equals: &[String], error: &str) -> bool {
    error_equals.iter().any(|name| {
        name == error
            || name == crate::failure::names::ALL
            || (name == crate::failure::names::TASK_FAILED && error != crate::failure::names::TIMEOUT)
    })
}
