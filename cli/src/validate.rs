//! `stepmap validate`.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use stepmap_asl::model::StateMachineType;

use crate::definition;

#[derive(Args)]
pub struct ValidateArgs {
    /// The definition file (JSON).
    definition: PathBuf,
    /// The state machine type the definition is checked for.
    #[arg(long = "type", default_value = "STANDARD")]
    machine_type: StateMachineType,
    /// `text` for people, `json` for AWS's ValidateStateMachineDefinition shape.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<u8> {
    let text = definition::read(&args.definition)?;
    let report = definition::validate_text(&text, args.machine_type);
    if args.output == "json" {
        outln!("{}", json!({"result": report.result(), "diagnostics": report.diagnostics, "truncated": false}));
    } else {
        for diagnostic in &report.diagnostics {
            outln!("{}", definition::describe(diagnostic));
        }
        outln!("{}: {}", args.definition.display(), report.result());
    }
    Ok(if report.is_ok() { 0 } else { 1 })
}
