//! Definition validation in the shape of AWS's ValidateStateMachineDefinition
//! (features.md §1.12).
//!
//! SCAFFOLD: interface fixed, implementation in progress.

use serde_json::Value;

use crate::diagnostic::ValidationReport;
use crate::model::StateMachineType;

/// Validates a definition given as text (what a user uploads).
pub fn validate(definition_text: &str, machine_type: StateMachineType) -> ValidationReport {
    match serde_json::from_str::<Value>(definition_text) {
        Ok(value) => validate_value(&value, machine_type),
        Err(_) => todo!(),
    }
}

/// Validates a parsed definition.
pub fn validate_value(_definition: &Value, _machine_type: StateMachineType) -> ValidationReport {
    todo!()
}
