//! Choice rules (features.md §1.8), parsed from their JSON form.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::payload_template::AssignTemplate;
use crate::expr::PathExpr;

/// The comparison family of a data-test operator, without its `...Path` suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

impl Operator {
    pub const ALL: [(&'static str, Operator); 23] = [
        ("StringEquals", Operator::StringEquals),
        ("StringLessThan", Operator::StringLessThan),
        ("StringGreaterThan", Operator::StringGreaterThan),
        ("StringLessThanEquals", Operator::StringLessThanEquals),
        ("StringGreaterThanEquals", Operator::StringGreaterThanEquals),
        ("StringMatches", Operator::StringMatches),
        ("NumericEquals", Operator::NumericEquals),
        ("NumericLessThan", Operator::NumericLessThan),
        ("NumericGreaterThan", Operator::NumericGreaterThan),
        ("NumericLessThanEquals", Operator::NumericLessThanEquals),
        ("NumericGreaterThanEquals", Operator::NumericGreaterThanEquals),
        ("BooleanEquals", Operator::BooleanEquals),
        ("TimestampEquals", Operator::TimestampEquals),
        ("TimestampLessThan", Operator::TimestampLessThan),
        ("TimestampGreaterThan", Operator::TimestampGreaterThan),
        ("TimestampLessThanEquals", Operator::TimestampLessThanEquals),
        ("TimestampGreaterThanEquals", Operator::TimestampGreaterThanEquals),
        ("IsNull", Operator::IsNull),
        ("IsPresent", Operator::IsPresent),
        ("IsNumeric", Operator::IsNumeric),
        ("IsString", Operator::IsString),
        ("IsBoolean", Operator::IsBoolean),
        ("IsTimestamp", Operator::IsTimestamp),
    ];

    /// Parses an operator key (`NumericEquals`, `NumericEqualsPath`, ...); the flag says
    /// whether it is a `...Path` variant. `StringMatches` and the `Is...` tests have none.
    pub fn from_key(key: &str) -> Option<(Operator, bool)> {
        let (base, is_path) = match key.strip_suffix("Path") {
            Some(base) => (base, true),
            None => (key, false),
        };
        let op = Operator::ALL.iter().find(|(name, _)| *name == base).map(|(_, op)| *op)?;
        let type_test = matches!(
            op,
            Operator::StringMatches
                | Operator::IsNull
                | Operator::IsPresent
                | Operator::IsNumeric
                | Operator::IsString
                | Operator::IsBoolean
                | Operator::IsTimestamp
        );
        if is_path && type_test {
            return None;
        }
        Some((op, is_path))
    }
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Literal(Value),
    Path(PathExpr),
}

/// A Choice condition. `Test` is the large variant; conditions are built once per definition,
/// so boxing it would only add indirection to every evaluation.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Test { variable: PathExpr, operator: Operator, operand: Operand },
}

/// A top-level Choice rule: a condition, its `Next` and optional `Assign`.
#[derive(Clone, Debug)]
pub struct ChoiceRule {
    pub condition: Condition,
    pub next: String,
    pub assign: Option<AssignTemplate>,
}

impl Condition {
    pub fn from_json(value: &Value) -> Result<Condition, String> {
        let map = value.as_object().ok_or("a Choice rule must be an object")?;
        Condition::from_map(map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Condition, String> {
        if let Some(items) = map.get("And").or_else(|| map.get("Or")) {
            let items = items.as_array().ok_or("And/Or must be an array of rules")?;
            let rules = items.iter().map(Condition::from_json).collect::<Result<Vec<_>, _>>()?;
            return Ok(if map.contains_key("And") { Condition::And(rules) } else { Condition::Or(rules) });
        }
        if let Some(inner) = map.get("Not") {
            return Ok(Condition::Not(Box::new(Condition::from_json(inner)?)));
        }
        let variable =
            map.get("Variable").and_then(Value::as_str).ok_or("a data-test rule needs a string 'Variable'")?;
        let variable = PathExpr::parse(variable).map_err(|e| format!("invalid Variable '{variable}': {e}"))?;
        for (key, value) in map {
            if let Some((operator, is_path)) = Operator::from_key(key) {
                let operand = if is_path {
                    let text = value.as_str().ok_or_else(|| format!("{key} must be a path string"))?;
                    Operand::Path(PathExpr::parse(text).map_err(|e| format!("invalid {key} '{text}': {e}"))?)
                } else {
                    Operand::Literal(value.clone())
                };
                return Ok(Condition::Test { variable, operator, operand });
            }
        }
        Err("a data-test rule needs a comparison operator".into())
    }
}

impl<'de> Deserialize<'de> for ChoiceRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        let condition = Condition::from_map(&map).map_err(serde::de::Error::custom)?;
        let next = map
            .get("Next")
            .and_then(Value::as_str)
            .ok_or_else(|| serde::de::Error::custom("a Choice rule needs 'Next'"))?
            .to_string();
        let assign = match map.get("Assign") {
            Some(value) => Some(AssignTemplate::deserialize(value.clone()).map_err(serde::de::Error::custom)?),
            None => None,
        };
        Ok(ChoiceRule { condition, next, assign })
    }
}
