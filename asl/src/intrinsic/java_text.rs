//! How AWS turns a JSON value into text where an intrinsic needs text: Java's
//! `String.valueOf` of the plain Java object the value is read into (`null`, `Boolean`,
//! `Integer`/`Long`/`BigInteger`, `Double`, `String`, `List`, `Map`).
//!
//! Observed on AWS:
//! * `States.Format('{}', $.o)` with `{"Arg1": 1, "Arg2": []}` gives `{Arg1=1, Arg2=[]}` and
//!   `$$.StateMachine` gives `{Id=arn:…, Name=…}` (LocalStack snapshot `test_format_2`,
//!   `test_context_json_path`); strings are inserted without quotes, `null` as `null`;
//! * `States.ArrayContains` compares this text: `true` is found in `["true"]`,
//!   `9007199254740991` in `["9007199254740991"]`, and `{"b":2,"a":1}` is not found in
//!   `[{"a":1,"b":2}]` (key order matters);
//! * `States.Hash` of a non-string hashes this text.

use serde_json::{Number, Value};

/// `String.valueOf(object)` of the Java form of `value`.
pub(crate) fn java_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => out.push_str(s),
        // AbstractCollection.toString: "[a, b]".
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, out);
            }
            out.push(']');
        }
        // AbstractMap.toString: "{k=v, k2=v2}", in the object's key order.
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push('=');
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// Integers print as integers; other numbers as Java's `Double.toString`.
pub(crate) fn number_text(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        double_to_string(n.as_f64().unwrap_or(0.0))
    }
}

/// Java's `Double.toString` (JDK 19+, shortest digits that round-trip): plain notation with
/// at least one fractional digit for magnitudes in [10^-3, 10^7) (`1.0`, `0.001`,
/// `1234567.5`), computerised scientific notation otherwise (`1.0E7`, `1.5E-4`).
pub(crate) fn double_to_string(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    if !x.is_finite() {
        let text = if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        };
        return text.to_string();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let abs = x.abs();
    // Rust's `{:e}` also prints the shortest round-tripping digits: "1.2345e-5", "1e20".
    let scientific = format!("{abs:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (1e-3..1e7).contains(&abs) {
        let (int_part, frac_part) = if exponent >= 0 {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                (format!("{digits}{}", "0".repeat(int_len - digits.len())), "0".to_string())
            } else {
                (digits[..int_len].to_string(), digits[int_len..].to_string())
            }
        } else {
            ("0".to_string(), format!("{}{digits}", "0".repeat((-exponent - 1) as usize)))
        };
        format!("{sign}{int_part}.{frac_part}")
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        format!("{sign}{first}.{rest}E{exponent}")
    }
}
