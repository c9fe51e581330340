use std::collections::HashMap;

use serde::Deserialize;

use super::state::State;

/// A `{StartAt, States}` block: the machine itself, a Parallel branch or a Map's
/// ItemProcessor. Transitions never leave their block.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateBlock {
    pub start_at: String,
    pub states: HashMap<String, State>,
}

impl StateBlock {
    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.get(name)
    }

    /// Every state of this block and of the blocks nested in it.
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a State)) {
        for (name, state) in &self.states {
            visit(name, state);
            match state {
                State::Parallel(p) => p.branches.iter().for_each(|b| b.walk(visit)),
                State::Map(m) => {
                    if let Some(processor) = m.processor() {
                        processor.block.walk(visit)
                    }
                }
                _ => {}
            }
        }
    }
}

/// A whole definition (features.md §1.1).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateMachine {
    #[serde(flatten)]
    pub block: StateBlock,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub query_language: Option<String>,
    /// Whether some path or expression may read `$$.Execution.Input`. When not, executions
    /// keep no copy of their input for the Context Object (a Distributed Map child's input
    /// is its whole batch). Set by [`StateMachine::from_value`]; conservatively true otherwise.
    #[serde(skip, default = "conservative")]
    pub reads_execution_input: bool,
    /// A Distributed Map's ItemProcessor as written (see `ItemProcessor::definition`), so that
    /// its map run can be described to workers; `None` for other machines.
    #[serde(skip)]
    pub definition: Option<std::sync::Arc<serde_json::Value>>,
}

fn conservative() -> bool {
    true
}

/// Continuations of `$$` that cannot reach `$$.Execution.Input`.
const CONTEXT_PATHS_WITHOUT_INPUT: [&str; 9] = [
    ".Map.",
    ".Task.",
    ".State.",
    ".StateMachine.",
    ".Execution.Id",
    ".Execution.Name",
    ".Execution.RoleArn",
    ".Execution.StartTime",
    ".Execution.RedriveCount",
];

/// Whether the definition text may read `$$.Execution.Input`: JSONata's `$states` or any
/// `$$` reference other than the fields above (`$$`, `$$.Execution`, `$$..x`, `$$[...]`).
fn may_read_execution_input(text: &str) -> bool {
    text.contains("$states")
        || text
            .match_indices("$$")
            .any(|(at, _)| !CONTEXT_PATHS_WITHOUT_INPUT.iter().any(|safe| text[at + 2..].starts_with(safe)))
}

/// Why a definition could not be loaded into the model. `validate` gives the detailed,
/// located diagnostics; this is what remains for callers that skip it.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("the definition is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the definition does not match the States Language: {0}")]
    Model(#[source] serde_json::Error),
}

impl StateMachine {
    pub fn from_json(text: &str) -> Result<StateMachine, DefinitionError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(DefinitionError::Json)?;
        StateMachine::from_value(value)
    }

    pub fn from_value(value: serde_json::Value) -> Result<StateMachine, DefinitionError> {
        let reads_execution_input = may_read_execution_input(&value.to_string());
        let machine: StateMachine = serde_json::from_value(value).map_err(DefinitionError::Model)?;
        Ok(StateMachine { reads_execution_input, ..machine })
    }

    /// Whether an execution's input, given as text, would reach a Task's resource unparsed:
    /// the first state is a Task that hands its input over (see `TaskState::hands_input_over`).
    /// Otherwise the first state parses it, and a value is the cheaper input to give.
    pub fn takes_text_input(&self) -> bool {
        matches!(self.block.state(&self.block.start_at), Some(State::Task(task)) if task.hands_input_over())
    }

    /// Whether any state (or the machine) uses JSONata, which this engine does not run yet.
    pub fn uses_jsonata(&self) -> bool {
        let mut jsonata = self.query_language.as_deref() == Some("JSONata");
        self.block.walk(&mut |_, state| jsonata |= state.query_language() == Some("JSONata"));
        jsonata
    }
}

#[cfg(test)]
mod tests {
    use super::may_read_execution_input;

    #[test]
    fn execution_input_reads_are_found_conservatively() {
        for reads in
            ["$$", "$$.Execution", "$$.Execution.Input.x", "$$..Input", "$$['Execution']", "$states.input", "$$.*"]
        {
            assert!(may_read_execution_input(&format!(r#"{{"a.$": "{reads}"}}"#)), "{reads}");
        }
        for safe in
            ["$$.Map.Item.Value.x", "$$.Execution.Id", "$$.Task.Token", "$$.State.Name", "$$.StateMachine.Id", "$.x"]
        {
            assert!(!may_read_execution_input(&format!(r#"{{"a.$": "{safe}"}}"#)), "{safe}");
        }
    }
}
