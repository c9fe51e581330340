//! `--input <JSON>` or `--input @<FILE>`.

use anyhow::Context;
use serde_json::Value;

/// Parses the execution input; `@path` reads it from a file. Absent input is `{}`, as
/// StartExecution defaults it.
pub fn read_input(arg: Option<&str>) -> anyhow::Result<Value> {
    let Some(arg) = arg else {
        return Ok(Value::Object(Default::default()));
    };
    let (text, origin) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("cannot read the input file '{path}'"))?,
            format!("the input file '{path}'"),
        ),
        None => (arg.to_string(), "--input".to_string()),
    };
    serde_json::from_str(&text).with_context(|| format!("{origin} is not valid JSON"))
}
