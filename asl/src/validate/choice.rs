//! Choice rules (features.md §1.3 Choice, §1.8).
//!
//! JSONPath: a rule is a data test (`Variable` + exactly one comparison operator) or a
//! boolean expression (`And` / `Or`: non-empty array of rules, `Not`: one rule). Only
//! top-level rules have `Next` (required there) and `Assign`. JSONata: a rule has
//! `Condition` (boolean or `{% %}`) and `Next`, plus `Assign`, `Output`, `Comment`.

use serde_json::Value;

use super::paths::is_path;
use super::values::{is_expression_value, sentence};
use super::{Loc, StateCx, Validator};

/// How a comparison operator's operand must look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operand {
    String,
    Number,
    Boolean,
    Timestamp,
    Path,
}

const OPERATORS: &[(&str, Operand)] = &[
    ("StringEquals", Operand::String),
    ("StringEqualsPath", Operand::Path),
    ("StringLessThan", Operand::String),
    ("StringLessThanPath", Operand::Path),
    ("StringGreaterThan", Operand::String),
    ("StringGreaterThanPath", Operand::Path),
    ("StringLessThanEquals", Operand::String),
    ("StringLessThanEqualsPath", Operand::Path),
    ("StringGreaterThanEquals", Operand::String),
    ("StringGreaterThanEqualsPath", Operand::Path),
    ("StringMatches", Operand::String),
    ("NumericEquals", Operand::Number),
    ("NumericEqualsPath", Operand::Path),
    ("NumericLessThan", Operand::Number),
    ("NumericLessThanPath", Operand::Path),
    ("NumericGreaterThan", Operand::Number),
    ("NumericGreaterThanPath", Operand::Path),
    ("NumericLessThanEquals", Operand::Number),
    ("NumericLessThanEqualsPath", Operand::Path),
    ("NumericGreaterThanEquals", Operand::Number),
    ("NumericGreaterThanEqualsPath", Operand::Path),
    ("BooleanEquals", Operand::Boolean),
    ("BooleanEqualsPath", Operand::Path),
    ("TimestampEquals", Operand::Timestamp),
    ("TimestampEqualsPath", Operand::Path),
    ("TimestampLessThan", Operand::Timestamp),
    ("TimestampLessThanPath", Operand::Path),
    ("TimestampGreaterThan", Operand::Timestamp),
    ("TimestampGreaterThanPath", Operand::Path),
    ("TimestampLessThanEquals", Operand::Timestamp),
    ("TimestampLessThanEqualsPath", Operand::Path),
    ("TimestampGreaterThanEquals", Operand::Timestamp),
    ("TimestampGreaterThanEqualsPath", Operand::Path),
    ("IsNull", Operand::Boolean),
    ("IsPresent", Operand::Boolean),
    ("IsNumeric", Operand::Boolean),
    ("IsString", Operand::Boolean),
    ("IsBoolean", Operand::Boolean),
    ("IsTimestamp", Operand::Boolean),
];

fn operator(name: &str) -> Option<Operand> {
    OPERATORS.iter().find(|(op, _)| *op == name).map(|(_, operand)| *operand)
}

/// Boolean expressions nest; past this depth a definition is refused rather than recursed.
const MAX_RULE_DEPTH: usize = 64;

pub(crate) fn check_state(v: &mut Validator, cx: &StateCx) {
    let Some(choices) = cx.get("Choices") else { return };
    let loc = cx.at("Choices");
    let Some(rules) = v.expect_non_empty_array(choices, &loc, &format!("'Choices' of state '{}'", cx.name)) else {
        return;
    };
    for (i, rule) in rules.iter().enumerate() {
        let at = loc.index(i);
        if cx.jsonata {
            check_jsonata_rule(v, cx, rule, &at, i);
        } else {
            check_rule(v, cx, rule, &at, i, 0);
        }
    }
}

fn check_jsonata_rule(v: &mut Validator, cx: &StateCx, rule: &Value, loc: &Loc, index: usize) {
    let owner = format!("Choice rule {index} of state '{}'", cx.name);
    let Some(obj) = v.expect_object(rule, loc, &owner) else { return };
    let missing: Vec<&str> = ["Condition", "Next"].into_iter().filter(|f| !obj.contains_key(*f)).collect();
    if !missing.is_empty() {
        v.schema(format!("These fields are required: [{}] ({owner})", missing.join(", ")), loc);
    }
    for (key, value) in obj {
        let at = loc.field(key);
        match key.as_str() {
            "Condition" => {
                if !(value.is_boolean() || is_expression_value(value)) {
                    v.schema(
                        format!(
                            "'Condition' of {owner} must be a boolean or a JSONata expression {{% … %}}, got {value}"
                        ),
                        &at,
                    );
                }
            }
            "Next" | "Comment" => {
                v.expect_string(value, &at, &format!("'{key}' of {owner}"));
            }
            "Output" => {}
            "Assign" => v.check_assign(value, &at, &owner, cx),
            _ if key == "Variable" || operator(key).is_some() || matches!(key.as_str(), "And" | "Or" | "Not") => v
                .schema(
                    format!(
                        "The QueryLanguage is set to 'JSONata', but field '{key}' is only supported for the 'JSONPath' \
                         QueryLanguage ({owner}; use 'Condition')"
                    ),
                    loc,
                ),
            _ => v.schema(format!("Field '{key}' is not supported in {owner}"), loc),
        }
    }
}

/// A JSONPath rule. `depth` 0 is a top-level rule (with `Next`), deeper ones are nested in
/// `And` / `Or` / `Not`.
fn check_rule(v: &mut Validator, cx: &StateCx, rule: &Value, loc: &Loc, index: usize, depth: usize) {
    let top = depth == 0;
    let owner = if top {
        format!("Choice rule {index} of state '{}'", cx.name)
    } else {
        format!("a nested Choice rule of state '{}'", cx.name)
    };
    let Some(obj) = v.expect_object(rule, loc, &owner) else { return };
    if depth > MAX_RULE_DEPTH {
        v.schema(format!("Choice rules of state '{}' are nested too deeply", cx.name), loc);
        return;
    }
    let mut operators = Vec::new();
    for (key, value) in obj {
        let at = loc.field(key);
        match key.as_str() {
            "Variable" => {
                if let Some(text) = v.expect_string(value, &at, &format!("'Variable' of {owner}")) {
                    if !is_path(text) {
                        v.schema(
                            format!(
                                "The value for the field 'Variable' of {owner} must be a valid JSONPath, got '{text}'"
                            ),
                            &at,
                        );
                    }
                }
            }
            "And" | "Or" => {
                if let Some(nested) = v.expect_non_empty_array(value, &at, &format!("'{key}' of {owner}")) {
                    for (i, inner) in nested.iter().enumerate() {
                        check_rule(v, cx, inner, &at.index(i), i, depth + 1);
                    }
                }
            }
            "Not" => check_rule(v, cx, value, &at, 0, depth + 1),
            "Comment" => {
                v.expect_string(value, &at, &format!("'Comment' of {owner}"));
            }
            "Next" if top => {
                v.expect_string(value, &at, &format!("'Next' of {owner}"));
            }
            "Assign" if top => v.check_assign(value, &at, &owner, cx),
            "Next" | "Assign" => v.schema(
                format!("Field '{key}' is not supported in {owner} (only top-level Choice rules have '{key}')"),
                loc,
            ),
            "Condition" | "Output" => v.schema(
                format!(
                    "The QueryLanguage is set to 'JSONPath', but field '{key}' is only supported for the 'JSONata' \
                     QueryLanguage ({owner})"
                ),
                loc,
            ),
            _ => match operator(key) {
                Some(operand) => {
                    operators.push(key.as_str());
                    check_operand(v, value, &at, key, operand, &owner);
                }
                None => {
                    v.schema(format!("Field '{key}' is not supported in {owner} (unknown comparison operator?)"), loc)
                }
            },
        }
    }
    let kinds: Vec<&str> = ["And", "Or", "Not", "Variable"].into_iter().filter(|k| obj.contains_key(*k)).collect();
    match kinds.as_slice() {
        [] => v.schema(
            format!(
                "{} must have one of the fields [And, Or, Not, Variable] (a data test needs 'Variable' and one \
                 comparison operator)",
                sentence(&owner)
            ),
            loc,
        ),
        ["Variable"] => {
            if operators.len() != 1 {
                v.schema(
                    format!(
                        "{} must have exactly one comparison operator with 'Variable', but has {}",
                        sentence(&owner),
                        if operators.is_empty() { "none".to_string() } else { format!("[{}]", operators.join(", ")) }
                    ),
                    loc,
                );
            }
        }
        [_] => {
            if !operators.is_empty() {
                v.schema(format!("Comparison operators [{}] in {owner} need 'Variable'", operators.join(", ")), loc);
            }
        }
        _ => v.schema(
            format!(
                "{} must have only one of the fields [And, Or, Not, Variable], but has [{}]",
                sentence(&owner),
                kinds.join(", ")
            ),
            loc,
        ),
    }
    if top && !obj.contains_key("Next") {
        v.schema(format!("These fields are required: [Next] ({owner})"), loc);
    }
}

fn check_operand(v: &mut Validator, value: &Value, loc: &Loc, op: &str, operand: Operand, owner: &str) {
    let what = format!("'{op}' of {owner}");
    match operand {
        Operand::String => {
            v.expect_string(value, loc, &what);
        }
        Operand::Boolean => {
            v.expect_bool(value, loc, &what);
        }
        Operand::Number => {
            if !value.is_number() {
                v.expect_number_or_expression(value, loc, &what, false, f64::MIN, f64::MAX);
            }
        }
        Operand::Timestamp => {
            if let Some(text) = v.expect_string(value, loc, &what) {
                if crate::timestamp::parse(text).is_none() {
                    v.schema(format!("String does not match RFC3339 timestamp: '{text}' ({what})"), loc);
                }
            }
        }
        Operand::Path => {
            if let Some(text) = v.expect_string(value, loc, &what) {
                if !is_path(text) {
                    v.schema(
                        format!("The value for the field '{op}' of {owner} must be a valid JSONPath, got '{text}'"),
                        loc,
                    );
                }
            }
        }
    }
}
