//! Definition validation in the shape of AWS's ValidateStateMachineDefinition
//! (features.md §1.12).
//!
//! Validation works on the raw JSON so that every finding carries a location in AWS's
//! format: a JSON pointer whose array indices are written in brackets
//! (`/States/C/Choices[0]/Next`). One concept per file:
//!
//! * [`schema`] — state types, which fields each type has in each query language, field
//!   types, required fields, `Next` xor `End`, field-pair exclusivity, Task/Wait/Fail details;
//! * [`names`] — state names (length, machine-wide uniqueness);
//! * [`transitions`] — transition targets, reachability, terminal states;
//! * [`paths`] — Path / Reference Path fields (`InputPath`, `ResultPath`, `…Path`);
//! * [`payload_template`] — `.$` keys of payload templates;
//! * [`variables`] — `Assign` blocks and variable names;
//! * [`retry_catch`] — retriers and catchers;
//! * [`choice`] — Choice rules;
//! * [`map`] — Map fields, Inline vs Distributed, ItemReader, ItemBatcher, ResultWriter, Label;
//! * [`resources`] — Task resources (recognised, supported by stepmap);
//! * [`express`] — what EXPRESS workflows may not use;
//! * [`jsonata`] — query languages and `{% %}` expressions.

mod choice;
mod express;
mod jsonata;
mod map;
mod names;
mod paths;
mod payload_template;
mod resources;
mod retry_catch;
mod schema;
mod transitions;
mod values;
mod variables;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::diagnostic::{codes, Diagnostic, ValidationReport};
use crate::model::StateMachineType;

use schema::StateType;

/// Validates a definition given as text (what a user uploads).
pub fn validate(definition_text: &str, machine_type: StateMachineType) -> ValidationReport {
    if definition_text.trim().is_empty() {
        return ValidationReport {
            diagnostics: vec![Diagnostic::error(
                codes::SCHEMA_VALIDATION_FAILED,
                "Definition must be a valid JSON object",
                None,
            )],
        };
    }
    match serde_json::from_str::<Value>(definition_text) {
        Ok(value) => validate_value(&value, machine_type),
        Err(error) => ValidationReport {
            diagnostics: vec![Diagnostic::error(
                codes::INVALID_JSON_DESCRIPTION,
                format!("The definition is not valid JSON: {error}"),
                Some(format!("line: {}, column: {}", error.line(), error.column())),
            )],
        },
    }
}

/// Validates a parsed definition.
pub fn validate_value(definition: &Value, machine_type: StateMachineType) -> ValidationReport {
    let mut validator = Validator::new(machine_type);
    validator.machine(definition);
    ValidationReport { diagnostics: validator.diagnostics }
}

/// A location inside the definition, rendered the way AWS does: `/` for the root,
/// `/States/A/Next`, `/States/C/Choices[0]/Next`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Loc(String);

impl Loc {
    pub(crate) fn root() -> Loc {
        Loc(String::new())
    }

    /// The location of a member of the object at `self`.
    pub(crate) fn field(&self, name: &str) -> Loc {
        Loc(format!("{}/{}", self.0, name))
    }

    /// The location of an element of the array at `self`.
    pub(crate) fn index(&self, index: usize) -> Loc {
        Loc(format!("{}[{}]", self.0, index))
    }

    pub(crate) fn render(&self) -> String {
        if self.0.is_empty() {
            "/".to_string()
        } else {
            self.0.clone()
        }
    }
}

/// What a states block inherits from the blocks around it.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    /// The type of the workflow the block runs in: the machine's type, or a Distributed
    /// Map's `ExecutionType` for its children.
    pub(crate) execution_type: StateMachineType,
    /// Variables assigned in enclosing blocks; inner blocks may read but not assign them.
    pub(crate) outer_variables: HashSet<String>,
    /// Whether this is the machine's own `States` (not a branch or an item processor).
    pub(crate) top_level: bool,
}

/// One state being validated.
pub(crate) struct StateCx<'a> {
    pub(crate) name: &'a str,
    pub(crate) obj: &'a Map<String, Value>,
    pub(crate) loc: Loc,
    pub(crate) ty: StateType,
    /// Whether the state uses JSONata (its own `QueryLanguage`, else the machine's).
    pub(crate) jsonata: bool,
    pub(crate) scope: &'a Scope,
}

impl<'a> StateCx<'a> {
    pub(crate) fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field)
    }

    pub(crate) fn at(&self, field: &str) -> Loc {
        self.loc.field(field)
    }
}

/// Collects diagnostics while walking a definition.
pub(crate) struct Validator {
    pub(crate) machine_type: StateMachineType,
    /// The machine-level query language is JSONata.
    pub(crate) machine_jsonata: bool,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// State name → where it was first defined (names are unique machine-wide).
    pub(crate) state_names: HashMap<String, Loc>,
    /// Map `Label` → where it was first used (labels are unique in a definition).
    pub(crate) labels: HashMap<String, Loc>,
}

/// Top-level fields of a definition.
const MACHINE_FIELDS: &[&str] = &["StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"];

/// The kind of `{StartAt, States}` block being validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Machine,
    Branch,
    /// A Map's `ItemProcessor` or `Iterator` (may carry `ProcessorConfig`).
    Processor,
}

impl Validator {
    fn new(machine_type: StateMachineType) -> Validator {
        Validator {
            machine_type,
            machine_jsonata: false,
            diagnostics: Vec::new(),
            state_names: HashMap::new(),
            labels: HashMap::new(),
        }
    }

    pub(crate) fn error(&mut self, code: &str, message: impl Into<String>, loc: Option<&Loc>) {
        self.diagnostics.push(Diagnostic::error(code, message, loc.map(Loc::render)));
    }

    pub(crate) fn warning(&mut self, code: &str, message: impl Into<String>, loc: Option<&Loc>) {
        self.diagnostics.push(Diagnostic::warning(code, message, loc.map(Loc::render)));
    }

    /// A `SCHEMA_VALIDATION_FAILED` error, the code AWS uses for most definition errors.
    pub(crate) fn schema(&mut self, message: impl Into<String>, loc: &Loc) {
        self.error(codes::SCHEMA_VALIDATION_FAILED, message, Some(loc));
    }

    fn machine(&mut self, definition: &Value) {
        let root = Loc::root();
        let Some(obj) = definition.as_object() else {
            self.error(codes::SCHEMA_VALIDATION_FAILED, "Definition must be a valid JSON object", None);
            return;
        };
        let missing: Vec<&str> = ["States", "StartAt"].into_iter().filter(|f| !obj.contains_key(*f)).collect();
        if !missing.is_empty() {
            self.schema(format!("These fields are required: [{}]", missing.join(", ")), &root);
            return;
        }
        for key in obj.keys() {
            if !MACHINE_FIELDS.contains(&key.as_str()) {
                self.schema(format!("Field '{key}' is not supported at the top level of a definition"), &root);
            }
        }
        self.machine_jsonata = jsonata::machine_language(self, obj);
        if let Some(comment) = obj.get("Comment") {
            self.expect_string(comment, &root.field("Comment"), "the definition's 'Comment'");
        }
        if let Some(version) = obj.get("Version") {
            self.expect_string(version, &root.field("Version"), "the definition's 'Version'");
        }
        if let Some(timeout) = obj.get("TimeoutSeconds") {
            self.expect_positive_int(timeout, &root.field("TimeoutSeconds"), "the definition's 'TimeoutSeconds'");
        }
        let scope = Scope { execution_type: self.machine_type, outer_variables: HashSet::new(), top_level: true };
        self.block_fields(obj, &root, BlockKind::Machine, &scope);
    }

    /// Validates a nested `{StartAt, States}` block (a Parallel branch or a Map's item
    /// processor) at `loc`.
    pub(crate) fn nested_block(&mut self, value: &Value, loc: &Loc, kind: BlockKind, scope: &Scope) {
        let Some(obj) = value.as_object() else {
            self.schema(format!("Expected value of type [OBJECT] at {}", loc.render()), loc);
            return;
        };
        let missing: Vec<&str> = ["States", "StartAt"].into_iter().filter(|f| !obj.contains_key(*f)).collect();
        if !missing.is_empty() {
            self.schema(format!("These fields are required: [{}]", missing.join(", ")), loc);
        }
        for key in obj.keys() {
            let known = matches!(key.as_str(), "StartAt" | "States" | "Comment")
                || (kind == BlockKind::Processor && key == "ProcessorConfig");
            if !known {
                self.schema(format!("Field '{key}' is not supported"), loc);
            }
        }
        if let Some(comment) = obj.get("Comment") {
            self.expect_string(comment, &loc.field("Comment"), "'Comment'");
        }
        if !missing.is_empty() {
            return;
        }
        self.block_fields(obj, loc, kind, scope);
    }

    /// Validates `StartAt` and `States` of a block, then every state in it.
    fn block_fields(&mut self, obj: &Map<String, Value>, loc: &Loc, kind: BlockKind, scope: &Scope) {
        let start_at = obj
            .get("StartAt")
            .and_then(|start| self.expect_string(start, &loc.field("StartAt"), "'StartAt'").map(str::to_string));
        let states_loc = loc.field("States");
        let Some(states) = obj.get("States") else { return };
        let Some(states) = states.as_object() else {
            self.schema("Expected value of type [OBJECT] for 'States'", &states_loc);
            return;
        };
        // Variables assigned in this block: inner blocks may not assign them again.
        let block_variables = variables::assigned_in_block(states, self.machine_jsonata);
        let mut inner_scope = scope.clone();
        inner_scope.top_level = false;
        inner_scope.outer_variables.extend(block_variables);
        for (name, state) in states {
            let state_loc = states_loc.field(name);
            names::check_state_name(self, name, &state_loc);
            self.state(name, state, state_loc, scope, &inner_scope);
        }
        transitions::check_block(self, states, start_at.as_deref(), loc, kind == BlockKind::Machine);
    }

    /// Validates one state. `scope` is the block the state is in; `inner_scope` is what
    /// blocks nested in the state (branches, item processors) inherit.
    fn state(&mut self, name: &str, value: &Value, loc: Loc, scope: &Scope, inner_scope: &Scope) {
        let Some(obj) = value.as_object() else {
            self.schema(format!("Expected value of type [OBJECT] for state '{name}'"), &loc);
            return;
        };
        let Some(ty) = schema::state_type(self, name, obj, &loc) else { return };
        let jsonata = jsonata::state_language(self, name, obj, &loc);
        let cx = StateCx { name, obj, loc, ty, jsonata, scope };
        schema::check_state(self, &cx);
        paths::check_state(self, &cx);
        payload_template::check_state(self, &cx);
        variables::check_state(self, &cx);
        retry_catch::check_state(self, &cx);
        match ty {
            StateType::Task => {
                resources::check_task(self, &cx);
                express::check_task(self, &cx);
            }
            StateType::Choice => choice::check_state(self, &cx),
            StateType::Parallel => self.branches(&cx, inner_scope),
            StateType::Map => map::check_state(self, &cx, inner_scope),
            _ => {}
        }
        if jsonata {
            jsonata::check_expressions(self, &cx);
        }
    }

    fn branches(&mut self, cx: &StateCx, inner_scope: &Scope) {
        let Some(branches) = cx.get("Branches") else { return };
        let loc = cx.at("Branches");
        let Some(branches) = branches.as_array() else {
            self.schema(format!("Expected value of type [ARRAY] for 'Branches' of state '{}'", cx.name), &loc);
            return;
        };
        if branches.is_empty() {
            self.schema("Value cannot be empty", &loc);
        }
        for (i, branch) in branches.iter().enumerate() {
            self.nested_block(branch, &loc.index(i), BlockKind::Branch, inner_scope);
        }
    }
}
