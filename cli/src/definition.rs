//! Loading a definition file: validation first (so the user gets located diagnostics),
//! then the typed model.

use std::path::Path;

use anyhow::Context;
use stepmap_asl::diagnostic::{Diagnostic, Severity, ValidationReport};
use stepmap_asl::model::StateMachineType;
use stepmap_asl::validate;

pub fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read the definition file '{}'", path.display()))
}

pub fn validate_text(text: &str, machine_type: StateMachineType) -> ValidationReport {
    validate::validate(text, machine_type)
}

/// One diagnostic as a line for people: `ERROR SCHEMA_VALIDATION_FAILED at /States/A: ...`.
pub fn describe(diagnostic: &Diagnostic) -> String {
    let severity = match diagnostic.severity {
        Severity::Error => "ERROR",
        Severity::Warning => "WARNING",
    };
    match &diagnostic.location {
        Some(location) => format!("{severity} {} at {location}: {}", diagnostic.code, diagnostic.message),
        None => format!("{severity} {}: {}", diagnostic.code, diagnostic.message),
    }
}
