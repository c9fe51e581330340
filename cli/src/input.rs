//! JSON arguments given inline or as `@<FILE>`: `--input`, `--task-output`.

use anyhow::Context;
use serde_json::Value;

/// Parses the execution input; `@path` reads it from a file. Absent input is `{}`, as
/// StartExecution defaults it.
pub fn read_input(arg: Option<&str>) -> anyhow::Result<Value> {
    match arg {
        None => Ok(Value::Object(Default::default())),
        Some(arg) => read_json_argument("--input", arg),
    }
}

/// Parses `flag`'s argument as JSON; `@path` reads it from a file.
pub fn read_json_argument(flag: &str, arg: &str) -> anyhow::Result<Value> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("cannot read the file '{path}' given to {flag}"))?,
            format!("the file '{path}' given to {flag}"),
        ),
        None => (arg.to_string(), flag.to_string()),
    };
    serde_json::from_str(&text).with_context(|| format!("{origin} is not valid JSON"))
}
