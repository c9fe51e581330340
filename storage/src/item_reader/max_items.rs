//! `ReaderConfig.MaxItems` / `MaxItemsPath` (features.md §2.3, corpus cases `max_items_*`).
//!
//! AWS's observed behaviour:
//! * `0` means no limit; positive integers limit the items read (values above the documented
//!   100,000,000 were accepted through a path);
//! * an integer written as a string (`"2"`, e.g. from a variable) is accepted;
//! * a negative value fails the Map Run with `States.ItemReaderFailed`
//!   "field MaxItems must be positive" (after `MapRunStarted`);
//! * anything else (`1.5`, `"abc"`, `{}`) is `States.Runtime` "The MaxItemsPath field refers to
//!   value \"1.5\" which is not a valid integer: $.MaxItems" (before `MapRunStarted`).

use serde_json::Value;

use crate::error::{Result, StorageError};

/// Resolves the value of `MaxItems` (or of the path `path` for `MaxItemsPath`) to a limit;
/// `None` means every item.
pub fn resolve_max_items(value: &Value, path: &str) -> Result<Option<u64>> {
    let integer = match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX))),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let Some(integer) = integer else {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Err(StorageError::MaxItemsNotInteger { value: shown, path: path.to_string() });
    };
    match integer {
        n if n < 0 => Err(StorageError::MaxItemsNotPositive { value: n }),
        0 => Ok(None),
        n => Ok(Some(n as u64)),
    }
}
