//! `Assign` blocks (features.md §1.7): an object whose keys are variable names (Unicode
//! identifier, at most 80 characters, not `states`, no sub-paths such as `x.y`), in JSONPath
//! states with `.$` keys holding paths or intrinsic calls. A Parallel branch or Map item
//! processor may read the variables of the blocks around it but not assign them.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::schema::field_allowed;
use super::{Loc, StateCx, Validator};

pub(crate) const MAX_VARIABLE_NAME_CHARS: usize = 80;

/// Whether `name` is a valid variable name (ID_Start ID_Continue*, approximated with Rust's
/// alphabetic / alphanumeric classes plus `_`).
pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    (first.is_alphabetic() || first == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// The variable a key of an Assign object assigns (`x.$` assigns `x`).
fn variable_of(key: &str, jsonata: bool) -> &str {
    if jsonata {
        key
    } else {
        key.strip_suffix(".$").unwrap_or(key)
    }
}

/// Names assigned in one block's own states (state Assign, Choice rule Assign); nested
/// blocks are not included. Catcher Assigns are not counted: AWS accepts a Parallel whose
/// catcher assigns a variable that its branches assign too.
pub(crate) fn assigned_in_block(states: &Map<String, Value>, machine_jsonata: bool) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut add = |assign: Option<&Value>, jsonata: bool| {
        if let Some(obj) = assign.and_then(Value::as_object) {
            names.extend(obj.keys().map(|k| variable_of(k, jsonata).to_string()));
        }
    };
    for state in states.values() {
        let jsonata = match state.get("QueryLanguage").and_then(Value::as_str) {
            Some(language) => language == "JSONata",
            None => machine_jsonata,
        };
        add(state.get("Assign"), jsonata);
        if let Some(rules) = state.get("Choices").and_then(Value::as_array) {
            for rule in rules {
                add(rule.get("Assign"), jsonata);
            }
        }
    }
    names
}

impl Validator {
    /// Checks an `Assign` object at `loc`, owned by `owner` (for messages).
    pub(crate) fn check_assign(&mut self, value: &Value, loc: &Loc, owner: &str, cx: &StateCx) {
        let Some(obj) = self.expect_object(value, loc, &format!("'Assign' of {owner}")) else { return };
        for key in obj.keys() {
            let name = variable_of(key, cx.jsonata);
            if !is_variable_name(name) {
                let hint = if name.contains(['.', '[']) {
                    " (a variable cannot be assigned in part: assign the whole value)"
                } else {
                    " (variable names start with a letter or '_' and continue with letters, digits or '_')"
                };
                self.schema(format!("Invalid variable name '{name}' in 'Assign' of {owner}{hint}"), loc);
            } else if name.chars().count() > MAX_VARIABLE_NAME_CHARS {
                self.schema(
                    format!(
                        "Variable name '{name}' in 'Assign' of {owner} is longer than {MAX_VARIABLE_NAME_CHARS} characters"
                    ),
                    loc,
                );
            } else if name == "states" {
                self.schema(format!("The variable name 'states' is reserved ('Assign' of {owner})"), loc);
            } else if cx.scope.outer_variables.contains(name) {
                self.schema(
                    format!(
                        "Variable '{name}' is assigned in an enclosing scope and cannot be assigned again inside \
                         a Parallel branch or Map iteration ('Assign' of {owner})"
                    ),
                    loc,
                );
            }
        }
        if !cx.jsonata {
            self.check_template(value, loc, &format!("'Assign' of {owner}"));
        }
    }
}

/// The state's own `Assign` (Choice rules and Catchers are checked with them).
pub(crate) fn check_state(v: &mut Validator, cx: &StateCx) {
    if let Some(assign) = cx.get("Assign") {
        if field_allowed(cx, "Assign") {
            v.check_assign(assign, &cx.at("Assign"), &format!("state '{}'", cx.name), cx);
        }
    }
}
