//! Evaluation of each intrinsic function (features.md §1.11). Arguments are evaluated left
//! to right; a path that does not resolve fails with the environment's failure, unchanged.
//! Where AWS's observed behaviour differs from the spec or the Developer Guide, AWS wins;
//! each function says what was observed.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};

use crate::failure::Failure;

use super::arguments::{
    array, check_arity, describe, invalid, invalid_template, java_length, ordinal, rounded_int, string, truncated_int,
};
use super::ast::{Arg, Call, Function};
use super::java_random::JavaRandom;
use super::java_text::java_string;
use super::template::{self, Piece};
use super::{java_hash, lenient_base64, IntrinsicEnv};

/// Payload limit for array inputs [DG-intr: "The input array can't exceed Step Functions'
/// payload size limit of 256 KiB"].
const MAX_ARRAY_BYTES: usize = 256 * 1024;
/// Character limit of `States.Base64Encode`, `States.Base64Decode` and `States.Hash` input.
const MAX_TEXT_CHARS: usize = 10_000;
/// Most elements `States.ArrayRange` may produce.
const MAX_RANGE_ITEMS: i64 = 1000;

/// Evaluates a call.
pub(crate) fn evaluate(call: &Call, env: &mut dyn IntrinsicEnv) -> Result<Value, Failure> {
    if call.function == Function::Uuid {
        // AWS ignores any arguments to States.UUID (observed: `States.UUID('x')`,
        // `States.UUID($.x)`, `States.UUID(1, 2)` all return a UUID).
        return Ok(uuid(env));
    }
    check_arity(call)?;
    let args = call.args.iter().map(|arg| argument(arg, env)).collect::<Result<Vec<_>, _>>()?;
    match call.function {
        Function::Format => format(call, &args),
        Function::StringToJson => string_to_json(call, &args),
        Function::JsonToString => Ok(Value::String(serde_json::to_string(&args[0]).unwrap_or_default())),
        Function::Array => Ok(Value::Array(args)),
        Function::ArrayPartition => array_partition(call, &args),
        Function::ArrayContains => array_contains(call, &args),
        Function::ArrayRange => array_range(call, &args),
        Function::ArrayGetItem => array_get_item(call, &args),
        Function::ArrayLength => Ok(Value::from(array(call, &args, 0)?.len())),
        Function::ArrayUnique => Ok(Value::Array(java_hash::hash_set_order(sized_array(call, &args, 0)?))),
        Function::Base64Encode => base64_encode(call, &args),
        Function::Base64Decode => base64_decode(call, &args),
        Function::Hash => hash(call, &args),
        Function::JsonMerge => json_merge(call, &args),
        Function::MathRandom => math_random(call, &args, env),
        Function::MathAdd => math_add(call, &args),
        Function::StringSplit => string_split(call, &args),
        Function::Uuid => Ok(uuid(env)),
    }
}

fn argument(arg: &Arg, env: &mut dyn IntrinsicEnv) -> Result<Value, Failure> {
    Ok(match arg {
        Arg::String { value, .. } => Value::String(value.clone()),
        Arg::Number(n) => Value::Number(n.clone()),
        Arg::Bool(b) => Value::Bool(*b),
        Arg::Null => Value::Null,
        Arg::Path(path) => env.resolve(path)?,
        Arg::Call(inner) => evaluate(inner, env)?,
    })
}

/// An array argument within the payload limit.
fn sized_array<'v>(call: &Call, args: &'v [Value], index: usize) -> Result<&'v [Value], Failure> {
    let items = array(call, args, index)?;
    let bytes = serde_json::to_vec(&args[index]).map_or(0, |b| b.len());
    if bytes > MAX_ARRAY_BYTES {
        return Err(invalid(
            call,
            format!("{} is {bytes} bytes, more than the limit of {MAX_ARRAY_BYTES}", ordinal(index)),
        ));
    }
    Ok(items)
}

/// A string argument within the 10,000-character limit.
fn limited_text(call: &Call, text: &str, index: usize) -> Result<(), Failure> {
    let chars = java_length(text);
    if chars > MAX_TEXT_CHARS {
        return Err(invalid(
            call,
            format!("{} has {chars} characters, more than the limit of {MAX_TEXT_CHARS}", ordinal(index)),
        ));
    }
    Ok(())
}

/// `States.Format(template, args…)`: each `{}` is replaced by the text of the matching
/// argument. Any value may be inserted; objects and arrays as Java prints them
/// (`{Arg1=1, Arg2=[]}`, observed) rather than rejected as the spec says.
fn format(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let template = match (&call.args[0], &args[0]) {
        (Arg::String { raw, .. }, _) => raw.as_str(),
        (_, Value::String(s)) => s.as_str(),
        (_, other) => {
            return Err(invalid(
                call,
                format!("the template (first argument) must be a string, got {}", describe(other)),
            ))
        }
    };
    let pieces = template::parse(template).map_err(|e| invalid_template(call, e))?;
    let placeholders = pieces.iter().filter(|p| **p == Piece::Placeholder).count();
    let values = &args[1..];
    if placeholders != values.len() {
        return Err(invalid(
            call,
            format!(
                "number of arguments do not match the occurrences of {{}}: the template has {placeholders}, {} given",
                values.len()
            ),
        ));
    }
    let mut values = values.iter();
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(&text),
            Piece::Placeholder => out.push_str(&values.next().map(java_string).unwrap_or_default()),
        }
    }
    Ok(Value::String(out))
}

/// `States.StringToJson(s)`. Blank text is `null` (observed: `""` and `" "` give `null`);
/// anything else must be one JSON document, surrounding whitespace allowed. `-0` is the
/// integer 0 (observed), not the float -0.0 serde_json reads it as.
fn string_to_json(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let text = string(call, args, 0)?;
    parse_json_text(text).map_err(|e| invalid(call, format!("the first argument is not valid JSON ({e})")))
}

/// `States.StringToJson` of `text`: blank text is `null`; `-0` stays an integer where Java's
/// parser keeps it one.
pub(crate) fn parse_json_text(text: &str) -> Result<Value, serde_json::Error> {
    // Fast path for the commonest text, a plain non-negative integer (CSV columns of ids and
    // counts): the value serde_json would read, without its reader.
    if plain_integer(text) {
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Value::from(n));
        }
    }
    if text.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
        return Ok(Value::Null);
    }
    let mut value: Value = serde_json::from_str(text)?;
    if text.contains("-0") {
        let mut tokens = number_tokens(text).into_iter();
        integer_negative_zeros(&mut value, &mut tokens);
    }
    Ok(value)
}

/// Whether `text` is a non-negative integer of at most 18 digits without a leading zero: JSON
/// whose value is a `u64` and whose canonical text is `text` itself.
pub(crate) fn plain_integer(text: &str) -> bool {
    (1..=18).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

/// The number tokens of a JSON text, in document order.
fn number_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '"' {
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
        } else if c == '-' || c.is_ascii_digit() {
            let mut end = start + 1;
            while let Some(&(i, c)) = chars.peek() {
                if !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-')) {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            tokens.push(&text[start..end]);
        }
    }
    tokens
}

/// Turns the numbers written `-0` into the integer 0, walking `value` in document order
/// alongside its number tokens.
fn integer_negative_zeros<'t>(value: &mut Value, tokens: &mut impl Iterator<Item = &'t str>) {
    match value {
        Value::Number(_) if tokens.next() == Some("-0") => *value = Value::from(0),
        Value::Array(items) => items.iter_mut().for_each(|item| integer_negative_zeros(item, tokens)),
        Value::Object(map) => map.values_mut().for_each(|item| integer_negative_zeros(item, tokens)),
        _ => {}
    }
}

/// `States.ArrayPartition(array, size)`: chunks of `size` items, the last one possibly
/// shorter. `size` is truncated (observed: 2.6 → 2; 0.6 is rejected).
fn array_partition(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let items = sized_array(call, args, 0)?;
    let size = truncated_int(call, args, 1)?;
    if size < 1 {
        return Err(invalid(call, format!("the chunk size must be a positive integer, got {}", args[1])));
    }
    Ok(Value::Array(items.chunks(size as usize).map(|chunk| Value::Array(chunk.to_vec())).collect()))
}

/// `States.ArrayContains(array, value)`: whether an item has the same Java text as
/// `value` (see `java_text`: AWS finds `true` in `["true"]` and does not find
/// `{"b":2,"a":1}` in `[{"a":1,"b":2}]`).
fn array_contains(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let items = sized_array(call, args, 0)?;
    let wanted = java_string(&args[1]);
    Ok(Value::Bool(items.iter().any(|item| java_string(item) == wanted)))
}

/// `States.ArrayRange(start, end, step)`: from `start` by `step` while not past `end`
/// (`end` included when reached). Arguments are truncated (observed: `(1.6, 1.4, 1)` is
/// `[1]`, `(5.4, -0.6, -2.4)` is `[5, 3, 1]`); `step` must not be 0; at most 1000 items.
fn array_range(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let start = i64::from(truncated_int(call, args, 0)?);
    let end = i64::from(truncated_int(call, args, 1)?);
    let step = i64::from(truncated_int(call, args, 2)?);
    if step == 0 {
        return Err(invalid(call, "the step (third argument) must not be 0"));
    }
    let count = if (step > 0 && start <= end) || (step < 0 && start >= end) { (end - start) / step + 1 } else { 0 };
    if count > MAX_RANGE_ITEMS {
        return Err(invalid(call, format!("the range has {count} items, more than the limit of {MAX_RANGE_ITEMS}")));
    }
    Ok(Value::Array((0..count).map(|i| Value::from(start + i * step)).collect()))
}

/// `States.ArrayGetItem(array, index)`. The index is truncated (observed: index 1.2 reads
/// item 1) and must not be negative. Past the end of an empty array the result is `null`
/// (observed: `[]` at 999 gives `null`); past the end of any other array it fails
/// (observed: `[10, 20, 30]` at 3).
fn array_get_item(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let items = sized_array(call, args, 0)?;
    let index = truncated_int(call, args, 1)?;
    if index < 0 {
        return Err(invalid(call, format!("the index must not be negative, got {index}")));
    }
    if items.is_empty() {
        return Ok(Value::Null);
    }
    items.get(index as usize).cloned().ok_or_else(|| {
        invalid(call, format!("the index {index} is out of bounds for an array of length {}", items.len()))
    })
}

/// `States.Base64Encode(s)`: Base64 (standard alphabet, padded) of the UTF-8 bytes.
fn base64_encode(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let text = string(call, args, 0)?;
    limited_text(call, text, 0)?;
    Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())))
}

/// `States.Base64Decode(s)`: the decoded bytes read as UTF-8 (invalid sequences become
/// U+FFFD). Decoding is lenient as on AWS (see `lenient_base64`).
fn base64_decode(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let text = string(call, args, 0)?;
    limited_text(call, text, 0)?;
    Ok(Value::String(String::from_utf8_lossy(&lenient_base64::decode(text)).into_owned()))
}

/// `States.Hash(data, algorithm)`: lowercase hex digest of the UTF-8 bytes of `data`. Data
/// that is not a string is hashed as its Java text (observed: AWS hashes `123` and `{}`
/// instead of failing). The algorithm name must match exactly (`sha-256`, `SHA256` and
/// `MD-5` fail, observed).
fn hash(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let data = match &args[0] {
        Value::String(s) => s.clone(),
        other => java_string(other),
    };
    limited_text(call, &data, 0)?;
    let algorithm = string(call, args, 1)?;
    let bytes = data.as_bytes();
    let digest: Vec<u8> = match algorithm {
        "MD5" => Md5::digest(bytes).to_vec(),
        "SHA-1" => Sha1::digest(bytes).to_vec(),
        "SHA-256" => Sha256::digest(bytes).to_vec(),
        "SHA-384" => Sha384::digest(bytes).to_vec(),
        "SHA-512" => Sha512::digest(bytes).to_vec(),
        other => {
            return Err(invalid(
                call,
                format!("unsupported hash algorithm '{other}' (use MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"),
            ))
        }
    };
    Ok(Value::String(digest.iter().map(|b| format!("{b:02x}")).collect()))
}

/// `States.JsonMerge(a, b, deep)`: the keys of `a` in order, values of `b` replacing those
/// of `a` in place, new keys of `b` appended. Only shallow merging exists [DG-intr: the
/// third argument must be false]; `true` fails. A third argument that is not a boolean
/// reads as Java's `asBoolean` (observed: the string `'false'` merges shallowly).
fn json_merge(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let object = |index: usize| -> Result<&Map<String, Value>, Failure> {
        match &args[index] {
            Value::Object(map) => Ok(map),
            other => Err(invalid(call, format!("{} must be an object, got {}", ordinal(index), describe(other)))),
        }
    };
    let (left, right) = (object(0)?, object(1)?);
    let deep = match &args[2] {
        Value::Bool(b) => *b,
        Value::String(s) => s.trim() == "true",
        _ => false,
    };
    if deep {
        return Err(invalid(call, "deep merging is not supported; the third argument must be false"));
    }
    let mut merged = left.clone();
    for (key, value) in right {
        merged.insert(key.clone(), value.clone());
    }
    Ok(Value::Object(merged))
}

/// `States.MathRandom(start, end[, seed])`: an integer in [start, end), bounds truncated
/// (observed: `(1.6, 5.4)` can give 1; `(1.4, 1.6)` fails as the bounds become equal). With
/// a seed the result is `java.util.Random(seed).nextInt(end - start) + start`, as on AWS;
/// without one the generator is seeded from the environment so executions replay.
fn math_random(call: &Call, args: &[Value], env: &mut dyn IntrinsicEnv) -> Result<Value, Failure> {
    let start = truncated_int(call, args, 0)?;
    let end = truncated_int(call, args, 1)?;
    if start >= end {
        return Err(invalid(call, format!("the start ({start}) must be less than the end ({end})")));
    }
    let bound = i32::try_from(i64::from(end) - i64::from(start))
        .map_err(|_| invalid(call, format!("the range from {start} to {end} is too large")))?;
    let seed = match args.get(2) {
        None => env.random_u64() as i64,
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_u64().map(|u| u as i64)).unwrap_or_else(|| {
            // Java's `(long)` of a double: truncation, saturating.
            n.as_f64().unwrap_or(0.0) as i64
        }),
        Some(other) => {
            return Err(invalid(call, format!("the seed (third argument) must be a number, got {}", describe(other))))
        }
    };
    Ok(Value::from(start + JavaRandom::new(seed).next_int(bound)))
}

/// `States.MathAdd(a, b)`: operands rounded half up, each and the sum within 32-bit range.
fn math_add(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let a = rounded_int(call, args, 0)?;
    let b = rounded_int(call, args, 1)?;
    a.checked_add(b)
        .map(Value::from)
        .ok_or_else(|| invalid(call, format!("the sum of {a} and {b} is outside -2147483648..2147483647")))
}

/// `States.StringSplit(s, delimiters)`: every character of `delimiters` separates tokens
/// and empty tokens are dropped, like Java's `StringTokenizer` (observed: `",,,,"` gives
/// `[]`, `", , ,"` gives `[" ", " "]`, `""` gives `[]`). An empty delimiter string leaves
/// the text whole.
fn string_split(call: &Call, args: &[Value]) -> Result<Value, Failure> {
    let text = string(call, args, 0)?;
    let delimiters = string(call, args, 1)?;
    Ok(Value::Array(
        text.split(|c: char| delimiters.contains(c))
            .filter(|token| !token.is_empty())
            .map(|token| Value::String(token.to_string()))
            .collect(),
    ))
}

/// `States.UUID()`: a version 4 UUID made from the environment's random numbers, so that a
/// replayed execution produces the same one.
fn uuid(env: &mut dyn IntrinsicEnv) -> Value {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&env.random_u64().to_be_bytes());
    bytes[8..].copy_from_slice(&env.random_u64().to_be_bytes());
    Value::String(uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string())
}
