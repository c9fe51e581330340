//! State names: at most 80 characters, not empty, unique in the whole machine, nested
//! branches and item processors included (features.md §1.1, §1.12).

use crate::diagnostic::codes;

use super::{Loc, Validator};

/// Longest state name AWS accepts, in Unicode characters.
pub(crate) const MAX_STATE_NAME_CHARS: usize = 80;

pub(crate) fn check_state_name(v: &mut Validator, name: &str, loc: &Loc) {
    let chars = name.chars().count();
    if chars == 0 {
        v.schema("State names cannot be empty", loc);
    } else if chars > MAX_STATE_NAME_CHARS {
        v.schema(
            format!(
                "State name '{name}' is {chars} characters long; state names may have at most {MAX_STATE_NAME_CHARS}"
            ),
            loc,
        );
    }
    if let Some(first) = v.state_names.get(name) {
        let first = first.render();
        v.error(
            codes::DUPLICATE_STATE_NAME,
            format!("Duplicate State name: {name} (already defined at {first}; state names must be unique in the whole state machine, nested branches and item processors included)"),
            Some(loc),
        );
    } else {
        v.state_names.insert(name.to_string(), loc.clone());
    }
}
