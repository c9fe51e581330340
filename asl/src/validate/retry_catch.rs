//! `Retry` and `Catch` of Task, Parallel and Map states (features.md §1.9): `ErrorEquals`
//! is a non-empty array of error names in which `States.ALL` appears alone and only in the
//! last retrier / catcher; retrier fields have ranges; a catcher needs `Next` and has
//! `ResultPath` (JSONPath) or `Output` (JSONata), plus `Assign`.

use serde_json::Value;

use super::paths::PathKind;
use super::schema::field_allowed;
use super::values::sentence;
use super::{Loc, StateCx, Validator};

const STATES_ALL: &str = "States.ALL";

/// Largest `IntervalSeconds` / `MaxAttempts`.
const MAX_RETRY_VALUE: i128 = 99_999_999;
/// `MaxDelaySeconds` must be below this.
const MAX_DELAY_LIMIT: i128 = 31_622_401;

pub(crate) fn check_state(v: &mut Validator, cx: &StateCx) {
    if !cx.ty.has_error_handling() {
        return;
    }
    if let Some(retry) = cx.get("Retry") {
        let loc = cx.at("Retry");
        if let Some(retriers) = v.expect_array(retry, &loc, &format!("'Retry' of state '{}'", cx.name)) {
            for (i, retrier) in retriers.iter().enumerate() {
                check_retrier(v, cx, retrier, &loc.index(i), i + 1 == retriers.len());
            }
        }
    }
    if let Some(catch) = cx.get("Catch") {
        let loc = cx.at("Catch");
        if let Some(catchers) = v.expect_array(catch, &loc, &format!("'Catch' of state '{}'", cx.name)) {
            for (i, catcher) in catchers.iter().enumerate() {
                check_catcher(v, cx, catcher, &loc.index(i), i + 1 == catchers.len());
            }
        }
    }
}

/// Checks `ErrorEquals` of a retrier or catcher at `loc`.
fn check_error_equals(v: &mut Validator, value: &Value, loc: &Loc, owner: &str, last: bool) {
    let field_loc = loc.field("ErrorEquals");
    let Some(names) = v.expect_non_empty_array(value, &field_loc, &format!("'ErrorEquals' of {owner}")) else {
        return;
    };
    let mut has_all = false;
    for (i, name) in names.iter().enumerate() {
        if let Some(name) = v.expect_string(name, &field_loc.index(i), &format!("an error name in {owner}")) {
            has_all |= name == STATES_ALL;
        }
    }
    if has_all && names.len() > 1 {
        v.schema(format!("'{STATES_ALL}' must appear alone in 'ErrorEquals' of {owner}"), &field_loc);
    }
    if has_all && !last {
        v.schema(format!("{} uses '{STATES_ALL}', so it must be the last one", sentence(owner)), loc);
    }
}

fn check_retrier(v: &mut Validator, cx: &StateCx, retrier: &Value, loc: &Loc, last: bool) {
    let owner = format!("a retrier of state '{}'", cx.name);
    let Some(obj) = v.expect_object(retrier, loc, &owner) else { return };
    match obj.get("ErrorEquals") {
        Some(errors) => check_error_equals(v, errors, loc, &owner, last),
        None => v.schema(format!("These fields are required: [ErrorEquals] ({owner})"), loc),
    }
    for (key, value) in obj {
        let at = loc.field(key);
        let what = format!("'{key}' of {owner}");
        match key.as_str() {
            "ErrorEquals" => {}
            "IntervalSeconds" => {
                v.expect_int_range(value, &at, &what, 1, MAX_RETRY_VALUE);
            }
            "MaxAttempts" => {
                v.expect_int_range(value, &at, &what, 0, MAX_RETRY_VALUE);
            }
            "MaxDelaySeconds" => {
                v.expect_int_range(value, &at, &what, 1, MAX_DELAY_LIMIT - 1);
            }
            "BackoffRate" => match value.as_f64() {
                Some(rate) if rate >= 1.0 => {}
                Some(rate) => {
                    v.schema(format!("{what} must be at least 1.0 (the allowed minimum is 1), got {rate}"), &at)
                }
                None => {
                    v.expect_int_range(value, &at, &what, 1, i128::MAX);
                }
            },
            "JitterStrategy" => {
                v.expect_enum(value, &at, "JitterStrategy", &["FULL", "NONE"]);
            }
            "Comment" => {
                v.expect_string(value, &at, &what);
            }
            _ => v.schema(format!("Field '{key}' is not supported in {owner}"), loc),
        }
    }
}

fn check_catcher(v: &mut Validator, cx: &StateCx, catcher: &Value, loc: &Loc, last: bool) {
    let owner = format!("a catcher of state '{}'", cx.name);
    let Some(obj) = v.expect_object(catcher, loc, &owner) else { return };
    let missing: Vec<&str> = ["ErrorEquals", "Next"].into_iter().filter(|f| !obj.contains_key(*f)).collect();
    if !missing.is_empty() {
        v.schema(format!("These fields are required: [{}] ({owner})", missing.join(", ")), loc);
    }
    if let Some(errors) = obj.get("ErrorEquals") {
        check_error_equals(v, errors, loc, &owner, last);
    }
    for (key, value) in obj {
        let at = loc.field(key);
        match key.as_str() {
            "ErrorEquals" => {}
            "Next" | "Comment" => {
                v.expect_string(value, &at, &format!("'{key}' of {owner}"));
            }
            "ResultPath" if !cx.jsonata => v.check_path_field(value, &at, key, PathKind::Result, &owner),
            "Output" if cx.jsonata => {}
            "Assign" if field_allowed(cx, "Assign") => v.check_assign(value, &at, &owner, cx),
            "ResultPath" | "Output" => {
                let (language, other) = if cx.jsonata { ("JSONata", "JSONPath") } else { ("JSONPath", "JSONata") };
                v.schema(
                    format!(
                        "The QueryLanguage is set to '{language}', but field '{key}' is only supported for the \
                         '{other}' QueryLanguage ({owner})"
                    ),
                    loc,
                );
            }
            _ => v.schema(format!("Field '{key}' is not supported in {owner}"), loc),
        }
    }
}
