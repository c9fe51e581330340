//! Which fields each state type has in each query language, their types, required fields,
//! `Next` xor `End`, field-pair exclusivity, and the Task / Wait / Fail specifics
//! (features.md §1.2, §1.3, §1.12). AWS rejects any field a state type does not define with
//! `SCHEMA_VALIDATION_FAILED: Field 'X' is not supported`.

use serde_json::{Map, Value};

use super::values::is_expression_value;
use super::{Loc, StateCx, Validator};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateType {
    Task,
    Parallel,
    Map,
    Pass,
    Wait,
    Choice,
    Succeed,
    Fail,
}

const ALL_TYPES: [StateType; 8] = [
    StateType::Task,
    StateType::Parallel,
    StateType::Map,
    StateType::Pass,
    StateType::Wait,
    StateType::Choice,
    StateType::Succeed,
    StateType::Fail,
];

const TYPE_NAMES: &str = "[Task, Wait, Pass, Succeed, Fail, Choice, Parallel, Map]";

impl StateType {
    pub(crate) fn parse(text: &str) -> Option<StateType> {
        Some(match text {
            "Task" => StateType::Task,
            "Parallel" => StateType::Parallel,
            "Map" => StateType::Map,
            "Pass" => StateType::Pass,
            "Wait" => StateType::Wait,
            "Choice" => StateType::Choice,
            "Succeed" => StateType::Succeed,
            "Fail" => StateType::Fail,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StateType::Task => "Task",
            StateType::Parallel => "Parallel",
            StateType::Map => "Map",
            StateType::Pass => "Pass",
            StateType::Wait => "Wait",
            StateType::Choice => "Choice",
            StateType::Succeed => "Succeed",
            StateType::Fail => "Fail",
        }
    }

    /// Types that continue with `Next` or stop with `"End": true`.
    pub(crate) fn has_transition(self) -> bool {
        matches!(self, StateType::Task | StateType::Parallel | StateType::Map | StateType::Pass | StateType::Wait)
    }

    /// Types that may carry `Retry` and `Catch`.
    pub(crate) fn has_error_handling(self) -> bool {
        matches!(self, StateType::Task | StateType::Parallel | StateType::Map)
    }
}

/// The query language(s) a field exists in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
    Both,
    JsonPath,
    Jsonata,
}

impl Lang {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Lang::Both => "any",
            Lang::JsonPath => "JSONPath",
            Lang::Jsonata => "JSONata",
        }
    }
}

/// The language a state field belongs to, or `None` when the state type has no such field.
pub(crate) fn field_language(ty: StateType, field: &str) -> Option<Lang> {
    use StateType::*;
    let (lang, types): (Lang, &[StateType]) = match field {
        "Type" | "Comment" | "QueryLanguage" => return Some(Lang::Both),
        "Next" | "End" => (Lang::Both, &[Task, Parallel, Map, Pass, Wait]),
        "Assign" => (Lang::Both, &[Task, Parallel, Map, Pass, Wait, Choice]),
        "InputPath" | "OutputPath" => (Lang::JsonPath, &[Task, Parallel, Map, Pass, Wait, Choice, Succeed]),
        "Output" => (Lang::Jsonata, &[Task, Parallel, Map, Pass, Wait, Choice, Succeed]),
        "ResultPath" | "Parameters" => (Lang::JsonPath, &[Task, Parallel, Map, Pass]),
        "ResultSelector" => (Lang::JsonPath, &[Task, Parallel, Map]),
        "Arguments" => (Lang::Jsonata, &[Task, Parallel]),
        "Retry" | "Catch" => (Lang::Both, &[Task, Parallel, Map]),
        "Resource" | "TimeoutSeconds" | "HeartbeatSeconds" | "Credentials" => (Lang::Both, &[Task]),
        "TimeoutSecondsPath" | "HeartbeatSecondsPath" => (Lang::JsonPath, &[Task]),
        "Result" => (Lang::JsonPath, &[Pass]),
        "Seconds" | "Timestamp" => (Lang::Both, &[Wait]),
        "SecondsPath" | "TimestampPath" => (Lang::JsonPath, &[Wait]),
        "Choices" | "Default" => (Lang::Both, &[Choice]),
        "Error" | "Cause" => (Lang::Both, &[Fail]),
        "ErrorPath" | "CausePath" => (Lang::JsonPath, &[Fail]),
        "Branches" => (Lang::Both, &[Parallel]),
        "ItemProcessor"
        | "Iterator"
        | "ItemReader"
        | "ItemSelector"
        | "ItemBatcher"
        | "MaxConcurrency"
        | "ToleratedFailurePercentage"
        | "ToleratedFailureCount"
        | "Label"
        | "ResultWriter" => (Lang::Both, &[Map]),
        "ItemsPath" | "MaxConcurrencyPath" | "ToleratedFailurePercentagePath" | "ToleratedFailureCountPath" => {
            (Lang::JsonPath, &[Map])
        }
        "Items" => (Lang::Jsonata, &[Map]),
        _ => return None,
    };
    types.contains(&ty).then_some(lang)
}

/// Whether a field may be used by this state in its language.
pub(crate) fn field_allowed(cx: &StateCx, field: &str) -> bool {
    match field_language(cx.ty, field) {
        Some(Lang::Both) => true,
        Some(Lang::JsonPath) => !cx.jsonata,
        Some(Lang::Jsonata) => cx.jsonata,
        None => false,
    }
}

/// Reads and checks `Type`. `None` when the state cannot be validated further.
pub(crate) fn state_type(v: &mut Validator, name: &str, obj: &Map<String, Value>, loc: &Loc) -> Option<StateType> {
    let Some(ty) = obj.get("Type") else {
        v.schema(format!("These fields are required: [Type] (state '{name}')"), loc);
        return None;
    };
    let parsed = ty.as_str().and_then(StateType::parse);
    if parsed.is_none() {
        v.schema(
            format!("The field 'Type' should have one of these values: {TYPE_NAMES}, but state '{name}' has {ty}"),
            &loc.field("Type"),
        );
    }
    parsed
}

/// The "not supported" message for a field, with a hint for the common mistakes.
fn unsupported_message(cx: &StateCx, field: &str) -> String {
    let ty = cx.ty.as_str();
    let hint = match (cx.ty, field) {
        (StateType::Choice, "End") => {
            ": a Choice state cannot end the workflow; route its rules and 'Default' to a Succeed state".to_string()
        }
        (StateType::Choice, "Next") => {
            ": a Choice state transitions with its rules' 'Next' and its 'Default'".to_string()
        }
        (StateType::Succeed | StateType::Fail, "Next" | "End") => format!(": a {ty} state is always terminal"),
        _ if ALL_TYPES.iter().any(|t| field_language(*t, field).is_some()) => String::new(),
        _ => " (no state type defines it)".to_string(),
    };
    format!("Field '{field}' is not supported in {ty} state '{}'{hint}", cx.name)
}

/// Field presence and the type-specific rules of one state.
pub(crate) fn check_state(v: &mut Validator, cx: &StateCx) {
    for field in cx.obj.keys() {
        match field_language(cx.ty, field) {
            None => v.schema(unsupported_message(cx, field), &cx.loc),
            Some(Lang::JsonPath) if cx.jsonata => v.schema(
                format!(
                    "The QueryLanguage is set to 'JSONata', but field '{field}' is only supported for the 'JSONPath' \
                     QueryLanguage; state '{}'",
                    cx.name
                ),
                &cx.loc,
            ),
            Some(Lang::Jsonata) if !cx.jsonata => v.schema(
                format!(
                    "The QueryLanguage is set to 'JSONPath', but field '{field}' is only supported for the 'JSONata' \
                     QueryLanguage; state '{}'",
                    cx.name
                ),
                &cx.loc,
            ),
            Some(_) => {}
        }
    }
    if let Some(comment) = cx.get("Comment") {
        v.expect_string(comment, &cx.at("Comment"), &format!("'Comment' of state '{}'", cx.name));
    }
    let required: &[&str] = match cx.ty {
        StateType::Task => &["Resource"],
        StateType::Choice => &["Choices"],
        StateType::Parallel => &["Branches"],
        _ => &[],
    };
    let missing: Vec<&str> = required.iter().copied().filter(|f| !cx.obj.contains_key(*f)).collect();
    if !missing.is_empty() {
        v.schema(format!("These fields are required: [{}] (state '{}')", missing.join(", "), cx.name), &cx.loc);
    }
    if cx.ty.has_transition() {
        check_next_end(v, cx);
    }
    match cx.ty {
        StateType::Task => check_task(v, cx),
        StateType::Wait => check_wait(v, cx),
        StateType::Fail => check_fail(v, cx),
        StateType::Choice => {
            if let Some(default) = cx.get("Default") {
                v.expect_string(default, &cx.at("Default"), &format!("'Default' of state '{}'", cx.name));
            }
        }
        _ => {}
    }
}

fn check_next_end(v: &mut Validator, cx: &StateCx) {
    let next = cx.get("Next");
    if let Some(next) = next {
        v.expect_string(next, &cx.at("Next"), &format!("'Next' of state '{}'", cx.name));
    }
    let end = match cx.get("End") {
        Some(end) => v.expect_bool(end, &cx.at("End"), &format!("'End' of state '{}'", cx.name)).unwrap_or(true),
        None => false,
    };
    match (next.is_some(), end) {
        (true, true) => v.schema(format!("State '{}' may have only one of [Next, End]", cx.name), &cx.loc),
        (false, false) => v.schema(
            format!(
                "State '{}' must have either 'Next' or \"End\": true (a {} state is not terminal by itself)",
                cx.name,
                cx.ty.as_str()
            ),
            &cx.loc,
        ),
        _ => {}
    }
}

fn check_task(v: &mut Validator, cx: &StateCx) {
    let name = cx.name;
    if let Some(resource) = cx.get("Resource") {
        v.expect_string(resource, &cx.at("Resource"), &format!("'Resource' of state '{name}'"));
    }
    let mut timeout = None;
    let mut heartbeat = None;
    if let Some(value) = cx.get("TimeoutSeconds") {
        if !(cx.jsonata && is_expression_value(value)) {
            timeout =
                v.expect_positive_int(value, &cx.at("TimeoutSeconds"), &format!("'TimeoutSeconds' of state '{name}'"));
        }
    }
    if let Some(value) = cx.get("HeartbeatSeconds") {
        if !(cx.jsonata && is_expression_value(value)) {
            heartbeat = v.expect_positive_int(
                value,
                &cx.at("HeartbeatSeconds"),
                &format!("'HeartbeatSeconds' of state '{name}'"),
            );
        }
    }
    let owner = format!("State '{name}'");
    v.exclusive(cx.obj, &["TimeoutSeconds", "TimeoutSecondsPath"], &cx.loc, &owner);
    v.exclusive(cx.obj, &["HeartbeatSeconds", "HeartbeatSecondsPath"], &cx.loc, &owner);
    if let (Some(timeout), Some(heartbeat)) = (timeout, heartbeat) {
        if heartbeat >= timeout {
            v.schema(
                format!(
                    "HeartbeatSeconds ({heartbeat}) must be smaller than TimeoutSeconds ({timeout}) in state '{name}'"
                ),
                &cx.at("HeartbeatSeconds"),
            );
        }
    }
    if let Some(credentials) = cx.get("Credentials") {
        check_credentials(v, cx, credentials);
    }
}

/// `Credentials`: an object with the role to assume (features.md §1.3 Task).
fn check_credentials(v: &mut Validator, cx: &StateCx, credentials: &Value) {
    let loc = cx.at("Credentials");
    let Some(obj) = v.expect_object(credentials, &loc, &format!("'Credentials' of state '{}'", cx.name)) else {
        return;
    };
    let has_role = obj.contains_key("RoleArn") || (!cx.jsonata && obj.contains_key("RoleArn.$"));
    if !has_role {
        v.schema(format!("The field 'RoleArn' is required but was missing (Credentials of state '{}')", cx.name), &loc);
    }
    for (key, value) in obj {
        match key.as_str() {
            "RoleArn" => {
                v.expect_string(
                    value,
                    &loc.field("RoleArn"),
                    &format!("'RoleArn' in Credentials of state '{}'", cx.name),
                );
            }
            "RoleArn.$" if !cx.jsonata => {}
            _ => v.schema(format!("Field '{key}' is not supported in Credentials of state '{}'", cx.name), &loc),
        }
    }
}

const WAIT_FIELDS: &[&str] = &["Seconds", "Timestamp", "SecondsPath", "TimestampPath"];

fn check_wait(v: &mut Validator, cx: &StateCx) {
    let name = cx.name;
    let present: Vec<&str> = WAIT_FIELDS.iter().copied().filter(|f| cx.obj.contains_key(*f)).collect();
    if present.len() != 1 {
        let allowed: &[&str] = if cx.jsonata { &["Seconds", "Timestamp"] } else { WAIT_FIELDS };
        v.schema(
            format!(
                "Wait state '{name}' must have exactly one of [{}], but has {}",
                allowed.join(", "),
                if present.is_empty() { "none".to_string() } else { format!("[{}]", present.join(", ")) }
            ),
            &cx.loc,
        );
    }
    if let Some(seconds) = cx.get("Seconds") {
        v.expect_int_or_expression(
            seconds,
            &cx.at("Seconds"),
            &format!("'Seconds' of state '{name}'"),
            cx.jsonata,
            0,
            i128::MAX,
        );
    }
    if let Some(timestamp) = cx.get("Timestamp") {
        let loc = cx.at("Timestamp");
        if let Some(text) = v.expect_string(timestamp, &loc, &format!("'Timestamp' of state '{name}'")) {
            let expression = cx.jsonata && is_expression_value(timestamp);
            if !expression && crate::timestamp::parse(text).is_none() {
                v.schema(
                    format!(
                        "String does not match RFC3339 timestamp: '{text}' ('Timestamp' of state '{name}'; \
                         expected e.g. 2016-03-14T01:59:00Z)"
                    ),
                    &loc,
                );
            }
        }
    }
}

fn check_fail(v: &mut Validator, cx: &StateCx) {
    let name = cx.name;
    for field in ["Error", "Cause"] {
        if let Some(value) = cx.get(field) {
            v.expect_string(value, &cx.at(field), &format!("'{field}' of state '{name}'"));
        }
    }
    let owner = format!("Fail state '{name}'");
    v.exclusive(cx.obj, &["Error", "ErrorPath"], &cx.loc, &owner);
    v.exclusive(cx.obj, &["Cause", "CausePath"], &cx.loc, &owner);
}

impl Validator {
    /// Reports the members of a nested object (`ItemReader`, `ProcessorConfig`, …) that it
    /// does not define, or that belong to the other query language. `fields` lists what the
    /// object defines and in which language.
    pub(crate) fn check_fields(
        &mut self,
        obj: &Map<String, Value>,
        loc: &Loc,
        owner: &str,
        jsonata: bool,
        fields: &[(&str, Lang)],
    ) {
        for key in obj.keys() {
            match fields.iter().find(|(name, _)| name == key).map(|(_, lang)| *lang) {
                None => self.schema(format!("Field '{key}' is not supported in {owner}"), loc),
                Some(lang @ Lang::JsonPath) if jsonata => self.language_mismatch(key, true, lang, owner, loc),
                Some(lang @ Lang::Jsonata) if !jsonata => self.language_mismatch(key, false, lang, owner, loc),
                Some(_) => {}
            }
        }
    }

    fn language_mismatch(&mut self, field: &str, jsonata: bool, lang: Lang, owner: &str, loc: &Loc) {
        let current = if jsonata { "JSONata" } else { "JSONPath" };
        self.schema(
            format!(
                "The QueryLanguage is set to '{current}', but field '{field}' is only supported for the '{}' \
                 QueryLanguage ({owner})",
                lang.name()
            ),
            loc,
        );
    }
}
