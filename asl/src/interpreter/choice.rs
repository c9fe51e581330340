//! Choice rule evaluation (features.md §1.8). A type mismatch makes a comparison false,
//! never an error.

use std::cmp::Ordering;

use serde_json::Value;

use super::data_flow::{Eval, Unresolved};
use crate::failure::Failure;
use crate::model::{Condition, Operand, Operator};
use crate::timestamp;

pub fn evaluate(eval: &Eval<'_>, condition: &Condition, input: &Value) -> Result<bool, Failure> {
    match condition {
        Condition::And(rules) => {
            for rule in rules {
                if !evaluate(eval, rule, input)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Condition::Or(rules) => {
            for rule in rules {
                if evaluate(eval, rule, input)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Condition::Not(rule) => Ok(!evaluate(eval, rule, input)?),
        Condition::Test { variable, operator, operand } => {
            let value = match eval.resolve(variable, input) {
                Ok(value) => Some(value),
                Err(Unresolved::Missing(_)) => None,
                Err(Unresolved::NoVariable(name)) => {
                    return Err(eval.runtime(format!("The variable '${name}' could not be found.")))
                }
            };
            if *operator == Operator::IsPresent {
                return Ok(value.is_some() == (operand_literal(operand) == Some(&Value::Bool(true))));
            }
            let Some(value) = value else {
                return Err(eval.runtime(format!(
                    "Invalid path '{}': The choice state's condition path references an invalid value.",
                    variable.text
                )));
            };
            let expected = match operand {
                Operand::Literal(literal) => literal.clone(),
                Operand::Path(path) => eval.resolve(path, input).map_err(|_| {
                    eval.runtime(format!(
                        "Invalid path '{}': The choice state's condition path references an invalid value.",
                        path.text
                    ))
                })?,
            };
            Ok(compare(*operator, &value, &expected))
        }
    }
}

fn operand_literal(operand: &Operand) -> Option<&Value> {
    match operand {
        Operand::Literal(value) => Some(value),
        Operand::Path(_) => None,
    }
}

/// Applies one operator; `expected` is the literal or the value its `...Path` selected.
pub fn compare(operator: Operator, value: &Value, expected: &Value) -> bool {
    use Operator::*;
    let is_true = expected == &Value::Bool(true);
    match operator {
        IsNull => value.is_null() == is_true,
        IsNumeric => value.is_number() == is_true,
        IsString => value.is_string() == is_true,
        IsBoolean => value.is_boolean() == is_true,
        IsTimestamp => value.as_str().and_then(timestamp::parse).is_some() == is_true,
        IsPresent => true,
        BooleanEquals => matches!((value, expected), (Value::Bool(a), Value::Bool(b)) if a == b),
        StringMatches => match (value.as_str(), expected.as_str()) {
            (Some(text), Some(pattern)) => wildcard_match(pattern, text),
            _ => false,
        },
        StringEquals | StringLessThan | StringGreaterThan | StringLessThanEquals | StringGreaterThanEquals => {
            match (value.as_str(), expected.as_str()) {
                (Some(a), Some(b)) => ordering_holds(operator, a.cmp(b)),
                _ => false,
            }
        }
        NumericEquals | NumericLessThan | NumericGreaterThan | NumericLessThanEquals | NumericGreaterThanEquals => {
            match (value.as_f64(), expected.as_f64()) {
                (Some(a), Some(b)) if value.is_number() && expected.is_number() => {
                    a.partial_cmp(&b).is_some_and(|o| ordering_holds(operator, o))
                }
                _ => false,
            }
        }
        TimestampEquals
        | TimestampLessThan
        | TimestampGreaterThan
        | TimestampLessThanEquals
        | TimestampGreaterThanEquals => {
            match (value.as_str().and_then(timestamp::parse), expected.as_str().and_then(timestamp::parse)) {
                (Some(a), Some(b)) => ordering_holds(operator, a.cmp(&b)),
                _ => false,
            }
        }
    }
}

fn ordering_holds(operator: Operator, ordering: Ordering) -> bool {
    use Operator::*;
    match operator {
        StringEquals | NumericEquals | TimestampEquals => ordering == Ordering::Equal,
        StringLessThan | NumericLessThan | TimestampLessThan => ordering == Ordering::Less,
        StringGreaterThan | NumericGreaterThan | TimestampGreaterThan => ordering == Ordering::Greater,
        StringLessThanEquals | NumericLessThanEquals | TimestampLessThanEquals => ordering != Ordering::Greater,
        StringGreaterThanEquals | NumericGreaterThanEquals | TimestampGreaterThanEquals => ordering != Ordering::Less,
        _ => false,
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` is a literal star and `\\` a
/// literal backslash.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    enum Token {
        Char(char),
        Star,
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => tokens.push(Token::Char(escaped)),
                None => tokens.push(Token::Char('\\')),
            },
            '*' => tokens.push(Token::Star),
            other => tokens.push(Token::Char(other)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    // Classic two-pointer glob match with backtracking to the last star.
    let (mut t, mut p) = (0usize, 0usize);
    let (mut star, mut star_t) = (None::<usize>, 0usize);
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Token::Star) => {
                star = Some(p);
                star_t = t;
                p += 1;
            }
            _ => match star {
                Some(s) => {
                    p = s + 1;
                    star_t += 1;
                    t = star_t;
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| matches!(token, Token::Star))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.log", "a.log"));
        assert!(wildcard_match("a*b*c", "abxbc"));
        assert!(!wildcard_match("a*b", "ac"));
        assert!(wildcard_match("lit\\*", "lit*"));
        assert!(!wildcard_match("lit\\*", "litx"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("back\\\\slash", "back\\slash"));
    }

    #[test]
    fn operators_and_type_mismatch() {
        use Operator::*;
        let cases = [
            (StringEquals, json!("a"), json!("a"), true),
            (StringEquals, json!(1), json!("1"), false),
            (StringLessThan, json!("a"), json!("b"), true),
            (StringGreaterThanEquals, json!("b"), json!("b"), true),
            (NumericEquals, json!(1), json!(1.0), true),
            (NumericEquals, json!("1"), json!(1), false),
            (NumericLessThan, json!(-1.5), json!(0), true),
            (NumericGreaterThan, json!(3), json!(2), true),
            (NumericLessThanEquals, json!(2), json!(2), true),
            (BooleanEquals, json!(true), json!(true), true),
            (BooleanEquals, json!("true"), json!(true), false),
            (TimestampEquals, json!("2016-03-14T01:59:00Z"), json!("2016-03-14T02:59:00+01:00"), true),
            (TimestampLessThan, json!("2016-03-14T01:59:00Z"), json!("2016-03-14T01:59:01Z"), true),
            (TimestampGreaterThan, json!("not a time"), json!("2016-03-14T01:59:01Z"), false),
            (IsNull, json!(null), json!(true), true),
            (IsNull, json!(0), json!(false), true),
            (IsNumeric, json!(1.5), json!(true), true),
            (IsString, json!(1), json!(true), false),
            (IsBoolean, json!(false), json!(true), true),
            (IsTimestamp, json!("2016-03-14T01:59:00Z"), json!(true), true),
            (IsTimestamp, json!("2016-03-14"), json!(false), true),
            (StringMatches, json!("log-2024.txt"), json!("log-*.txt"), true),
        ];
        for (op, value, expected, outcome) in cases {
            assert_eq!(compare(op, &value, &expected), outcome, "{op:?} {value} {expected}");
        }
    }
}
