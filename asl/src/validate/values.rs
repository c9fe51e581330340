//! Checks of a single JSON value's type and range, shared by the other validators.
//! Type errors use AWS's wording ("Expected value of type [STRING]") followed by what the
//! value is.

use serde_json::Value;

use super::{Loc, Validator};

/// Whether a string is a JSONata expression: exactly `{%` … `%}` (features.md §1.6).
pub(crate) fn is_jsonata_expression(text: &str) -> bool {
    text.len() >= 4 && text.starts_with("{%") && text.ends_with("%}")
}

/// Whether a value is a JSONata expression string.
pub(crate) fn is_expression_value(value: &Value) -> bool {
    value.as_str().is_some_and(is_jsonata_expression)
}

/// An integer value, if the JSON number is one.
pub(crate) fn as_integer(value: &Value) -> Option<i128> {
    if let Some(v) = value.as_i64() {
        Some(v as i128)
    } else {
        value.as_u64().map(|v| v as i128)
    }
}

/// `text` with its first letter in upper case, for messages that start with an owner
/// description ("a retrier of state 'A'").
pub(crate) fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The name of a JSON value's type, for messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Validator {
    fn type_error(&mut self, expected: &str, value: &Value, loc: &Loc, what: &str) {
        self.schema(format!("Expected value of type [{expected}] for {what}, but it is {}", type_name(value)), loc);
    }

    pub(crate) fn expect_string<'v>(&mut self, value: &'v Value, loc: &Loc, what: &str) -> Option<&'v str> {
        match value.as_str() {
            Some(text) => Some(text),
            None => {
                self.type_error("STRING", value, loc, what);
                None
            }
        }
    }

    pub(crate) fn expect_bool(&mut self, value: &Value, loc: &Loc, what: &str) -> Option<bool> {
        match value.as_bool() {
            Some(b) => Some(b),
            None => {
                self.type_error("BOOLEAN", value, loc, what);
                None
            }
        }
    }

    pub(crate) fn expect_object<'v>(
        &mut self,
        value: &'v Value,
        loc: &Loc,
        what: &str,
    ) -> Option<&'v serde_json::Map<String, Value>> {
        match value.as_object() {
            Some(obj) => Some(obj),
            None => {
                self.type_error("OBJECT", value, loc, what);
                None
            }
        }
    }

    pub(crate) fn expect_array<'v>(&mut self, value: &'v Value, loc: &Loc, what: &str) -> Option<&'v Vec<Value>> {
        match value.as_array() {
            Some(items) => Some(items),
            None => {
                self.type_error("ARRAY", value, loc, what);
                None
            }
        }
    }

    /// A non-empty array ("Value cannot be empty", as AWS says for empty `Branches`).
    pub(crate) fn expect_non_empty_array<'v>(
        &mut self,
        value: &'v Value,
        loc: &Loc,
        what: &str,
    ) -> Option<&'v Vec<Value>> {
        let items = self.expect_array(value, loc, what)?;
        if items.is_empty() {
            self.schema(format!("Value cannot be empty: {what} needs at least one element"), loc);
        }
        Some(items)
    }

    /// An integer in `min..=max`.
    pub(crate) fn expect_int_range(
        &mut self,
        value: &Value,
        loc: &Loc,
        what: &str,
        min: i128,
        max: i128,
    ) -> Option<i128> {
        let Some(n) = as_integer(value) else {
            if value.is_number() {
                self.schema(format!("{what} must be an integer, got {value}"), loc);
            } else {
                self.type_error("INTEGER", value, loc, what);
            }
            return None;
        };
        if n < min || n > max {
            let range = match (min, max) {
                (1, i128::MAX) => "a positive integer".to_string(),
                (0, i128::MAX) => "a non-negative integer".to_string(),
                (min, max) => format!("an integer between {min} and {max}"),
            };
            self.schema(format!("{what} must be {range}, got {n}"), loc);
            return None;
        }
        Some(n)
    }

    pub(crate) fn expect_positive_int(&mut self, value: &Value, loc: &Loc, what: &str) -> Option<i128> {
        self.expect_int_range(value, loc, what, 1, i128::MAX)
    }

    /// An integer in range, or (in a JSONata state) a `{% %}` expression.
    pub(crate) fn expect_int_or_expression(
        &mut self,
        value: &Value,
        loc: &Loc,
        what: &str,
        jsonata: bool,
        min: i128,
        max: i128,
    ) {
        if jsonata && is_expression_value(value) {
            return;
        }
        self.expect_int_range(value, loc, what, min, max);
    }

    /// A number in `min..=max`, or (in a JSONata state) a `{% %}` expression.
    pub(crate) fn expect_number_or_expression(
        &mut self,
        value: &Value,
        loc: &Loc,
        what: &str,
        jsonata: bool,
        min: f64,
        max: f64,
    ) {
        if jsonata && is_expression_value(value) {
            return;
        }
        match value.as_f64() {
            Some(n) if n >= min && n <= max => {}
            Some(n) => self.schema(format!("{what} must be a number between {min} and {max}, got {n}"), loc),
            None => self.type_error("NUMBER", value, loc, what),
        }
    }

    /// A string among `allowed` ("should have one of these values", AWS's wording).
    pub(crate) fn expect_enum(&mut self, value: &Value, loc: &Loc, field: &str, allowed: &[&str]) -> Option<String> {
        let text = self.expect_string(value, loc, &format!("'{field}'"))?;
        if allowed.contains(&text) {
            Some(text.to_string())
        } else {
            self.schema(
                format!(
                    "The field '{field}' should have one of these values: [{}], but it is '{text}'",
                    allowed.join(", ")
                ),
                loc,
            );
            None
        }
    }

    /// At most one of `fields` may be present in `obj`.
    pub(crate) fn exclusive(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        fields: &[&str],
        loc: &Loc,
        owner: &str,
    ) -> bool {
        let present: Vec<&str> = fields.iter().copied().filter(|f| obj.contains_key(*f)).collect();
        if present.len() > 1 {
            self.schema(
                format!(
                    "{} may have only one of [{}], but has [{}]",
                    sentence(owner),
                    fields.join(", "),
                    present.join(", ")
                ),
                loc,
            );
            false
        } else {
            true
        }
    }
}
