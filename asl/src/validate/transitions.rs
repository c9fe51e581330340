//! Transitions inside one `{StartAt, States}` block: every target exists in the same block
//! (so transitions never cross Parallel / Map boundaries), every state is reachable from
//! `StartAt`, and the machine has a terminal state (features.md §1.12).
//!
//! AWS reports a missing target and an unreachable state with `MISSING_TRANSITION_TARGET`
//! ("Missing 'Next' target: X" at the transition, "State \"X\" is not reachable." at the
//! state) and a machine without terminal state with `MISSING_END_STATE`; when that happens
//! the unreachable states of that block are not reported on top.

use std::collections::{HashSet, VecDeque};

use serde_json::{Map, Value};

use crate::diagnostic::codes;

use super::{Loc, Validator};

/// Every transition a state makes: `(target, location of the field naming it)`.
fn targets(state: &Value, loc: &Loc) -> Vec<(String, Loc)> {
    let mut found = Vec::new();
    let Some(obj) = state.as_object() else { return found };
    let mut add = |value: Option<&Value>, at: Loc| {
        if let Some(target) = value.and_then(Value::as_str) {
            found.push((target.to_string(), at));
        }
    };
    add(obj.get("Next"), loc.field("Next"));
    for list in ["Choices", "Catch"] {
        if let Some(items) = obj.get(list).and_then(Value::as_array) {
            for (i, item) in items.iter().enumerate() {
                add(item.get("Next"), loc.field(list).index(i).field("Next"));
            }
        }
    }
    add(obj.get("Default"), loc.field("Default"));
    found
}

fn is_terminal(state: &Value) -> bool {
    let ty = state.get("Type").and_then(Value::as_str);
    matches!(ty, Some("Succeed" | "Fail")) || state.get("End").and_then(Value::as_bool) == Some(true)
}

pub(crate) fn check_block(
    v: &mut Validator,
    states: &Map<String, Value>,
    start_at: Option<&str>,
    block_loc: &Loc,
    top_level: bool,
) {
    let states_loc = block_loc.field("States");
    if let Some(start) = start_at {
        if !states.contains_key(start) {
            v.error(
                codes::MISSING_TRANSITION_TARGET,
                format!("Missing 'Next' target: {start} ('StartAt' names no state of this block)"),
                Some(&block_loc.field("StartAt")),
            );
        }
    }
    for (name, state) in states {
        for (target, at) in targets(state, &states_loc.field(name)) {
            if !states.contains_key(&target) {
                v.error(codes::MISSING_TRANSITION_TARGET, format!("Missing 'Next' target: {target}"), Some(&at));
            }
        }
    }
    if top_level && !states.values().any(is_terminal) {
        v.error(codes::MISSING_END_STATE, "Workflow has no terminal state", None);
        return;
    }
    let Some(start) = start_at.filter(|s| states.contains_key(*s)) else { return };
    let mut reached: HashSet<&str> = HashSet::from([start]);
    let mut queue: VecDeque<&str> = VecDeque::from([start]);
    while let Some(current) = queue.pop_front() {
        let Some((_, state)) = states.get_key_value(current) else { continue };
        for (target, _) in targets(state, &states_loc) {
            if let Some((key, _)) = states.get_key_value(&target) {
                if reached.insert(key.as_str()) {
                    queue.push_back(key.as_str());
                }
            }
        }
    }
    for name in states.keys() {
        if !reached.contains(name.as_str()) {
            v.error(
                codes::MISSING_TRANSITION_TARGET,
                format!("State \"{name}\" is not reachable."),
                Some(&states_loc.field(name)),
            );
        }
    }
}
