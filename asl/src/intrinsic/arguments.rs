//! Run-time checks of argument values and the failures they produce.
//!
//! AWS fails the execution with `States.Runtime` (not `States.IntrinsicFailure`, which the
//! spec names) when an intrinsic gets arguments it cannot use, with a cause naming the
//! function: "Invalid arguments in States.MathAdd" (observed: a CloudFormation-deployed
//! `States.MathAdd($.a, $.b)` with `b = "NOT A NUMBER"`; likewise for wrong types, wrong
//! argument counts and out-of-range values of every function). `States.Runtime` is neither
//! retried nor caught (features.md §1.10).
//!
//! Numbers are read as AWS reads them:
//! * most integer parameters are truncated toward zero (Java's `(int)` cast):
//!   `States.ArrayPartition($.a, 2.6)` uses 2, `States.ArrayGetItem($.a, 1.2)` reads index 1,
//!   `States.ArrayRange(1.6, 1.4, 1)` is `[1]` (all observed);
//! * `States.MathAdd` rounds half up (Java's `Math.round`): 1.5 → 2, -1.5 → -1, -2.5 → -2
//!   (LocalStack snapshot `test_math_add`).

use std::fmt::Display;

use serde_json::Value;

use crate::failure::Failure;

use super::ast::Call;

/// The failure of an intrinsic call. One place decides the error name.
fn failure(call: &Call, message: impl Display) -> Failure {
    Failure::runtime(format!("There was an error while evaluating the intrinsic function: {call}. {message}"))
}

/// "Invalid arguments in States.X: <detail>".
pub(crate) fn invalid(call: &Call, detail: impl Display) -> Failure {
    failure(call, format!("Invalid arguments in {}: {detail}", call.function.name()))
}

/// "Invalid template in States.Format: <detail>".
pub(crate) fn invalid_template(call: &Call, detail: impl Display) -> Failure {
    failure(call, format!("Invalid template in {}: {detail}", call.function.name()))
}

/// Checks the argument count (AWS accepts any count when the definition is created).
pub(crate) fn check_arity(call: &Call) -> Result<(), Failure> {
    let (min, max) = call.function.arity();
    let given = call.args.len();
    if given >= min && max.is_none_or(|max| given <= max) {
        return Ok(());
    }
    let expected = match max {
        None => format!("at least {min}"),
        Some(max) if max == min => min.to_string(),
        Some(max) => format!("{min} to {max}"),
    };
    let plural = if min == 1 && max.is_none_or(|max| max == 1) { "" } else { "s" };
    Err(invalid(call, format!("expected {expected} argument{plural}, got {given}")))
}

/// "the first argument", "the second argument", …
pub(crate) fn ordinal(index: usize) -> &'static str {
    ["the first argument", "the second argument", "the third argument"].get(index).copied().unwrap_or("an argument")
}

/// What a value is, for messages: "a string", "null", "the number 1.5".
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// The argument at `index`, which must be a string.
pub(crate) fn string<'v>(call: &Call, args: &'v [Value], index: usize) -> Result<&'v str, Failure> {
    match &args[index] {
        Value::String(s) => Ok(s),
        other => Err(invalid(call, format!("{} must be a string, got {}", ordinal(index), describe(other)))),
    }
}

/// The argument at `index`, which must be an array.
pub(crate) fn array<'v>(call: &Call, args: &'v [Value], index: usize) -> Result<&'v [Value], Failure> {
    match &args[index] {
        Value::Array(items) => Ok(items),
        other => Err(invalid(call, format!("{} must be an array, got {}", ordinal(index), describe(other)))),
    }
}

/// The argument at `index`, a number truncated toward zero to a 32-bit integer.
pub(crate) fn truncated_int(call: &Call, args: &[Value], index: usize) -> Result<i32, Failure> {
    let value = &args[index];
    let n = match value {
        Value::Number(n) => n,
        other => return Err(invalid(call, format!("{} must be a number, got {}", ordinal(index), describe(other)))),
    };
    let truncated = match n.as_i64() {
        Some(i) => i32::try_from(i).ok(),
        None => n
            .as_f64()
            .map(f64::trunc)
            .filter(|t| (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(t))
            .map(|t| t as i32),
    };
    truncated.ok_or_else(|| invalid(call, format!("{} must be a 32-bit integer, got {n}", ordinal(index))))
}

/// The argument at `index`, a number rounded half up (Java's `Math.round`) to a 32-bit
/// integer.
pub(crate) fn rounded_int(call: &Call, args: &[Value], index: usize) -> Result<i32, Failure> {
    let n = match &args[index] {
        Value::Number(n) => n,
        other => return Err(invalid(call, format!("{} must be a number, got {}", ordinal(index), describe(other)))),
    };
    let rounded = match n.as_i64() {
        Some(i) => i32::try_from(i).ok(),
        None => {
            let r = java_round(n.as_f64().unwrap_or(f64::NAN));
            (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&r).then_some(r as i32)
        }
    };
    rounded
        .ok_or_else(|| invalid(call, format!("{} must be between -2147483648 and 2147483647, got {n}", ordinal(index))))
}

/// Java's `Math.round(double)`: the closest integer, ties toward positive infinity.
/// (`x - floor(x)` is exact, so 0.49999999999999994 rounds to 0 as in Java 7+.)
pub(crate) fn java_round(x: f64) -> f64 {
    let floor = x.floor();
    if x - floor >= 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

/// The length of a string as Java counts it (UTF-16 code units), for AWS's character
/// limits.
pub(crate) fn java_length(s: &str) -> usize {
    s.encode_utf16().count()
}
