//! Validation diagnostics in the shape of AWS's ValidateStateMachineDefinition response.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Error,
    Warning,
}

/// AWS diagnostic codes seen in ValidateStateMachineDefinition responses.
pub mod codes {
    pub const SCHEMA_VALIDATION_FAILED: &str = "SCHEMA_VALIDATION_FAILED";
    pub const INVALID_JSON_DESCRIPTION: &str = "INVALID_JSON_DESCRIPTION";
    pub const MISSING_TRANSITION_TARGET: &str = "MISSING_TRANSITION_TARGET";
    pub const MISSING_END_STATE: &str = "MISSING_END_STATE";
    /// Two states with the same name anywhere in the machine (nested blocks included).
    pub const DUPLICATE_STATE_NAME: &str = "DUPLICATE_STATE_NAME";
    /// stepmap's own warning: valid ASL that this engine cannot run (an AWS service
    /// integration stepmap does not have).
    pub const UNSUPPORTED_RESOURCE: &str = "UNSUPPORTED_RESOURCE";
}

/// One finding. `location` is a JSON pointer into the definition (`/States/A/Next`),
/// absent when the finding concerns the whole definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &str, message: impl Into<String>, location: Option<String>) -> Self {
        Diagnostic { severity: Severity::Error, code: code.into(), message: message.into(), location }
    }

    pub fn warning(code: &str, message: impl Into<String>, location: Option<String>) -> Self {
        Diagnostic { severity: Severity::Warning, code: code.into(), message: message.into(), location }
    }
}

/// The ValidateStateMachineDefinition result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub diagnostics: Vec<Diagnostic>,
}

impl ValidationReport {
    /// `OK` unless some diagnostic is an error (warnings do not fail validation).
    pub fn is_ok(&self) -> bool {
        !self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn result(&self) -> &'static str {
        if self.is_ok() {
            "OK"
        } else {
            "FAIL"
        }
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }
}
