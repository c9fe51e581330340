//! JSONPath in the Jayway dialect that AWS Step Functions uses (features.md §1.4).
//!
//! SCAFFOLD: interface fixed, implementation in progress.

use serde_json::Value;

/// A definition-time syntax error in a path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PathSyntaxError {
    pub message: String,
}

/// A run-time failure to apply a path, with Jayway's message, e.g.
/// `No results for path: $['NoSuchInputPath']` or `Missing property in path $['no']`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PathError {
    pub message: String,
}

/// A parsed `$`-rooted JSONPath.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    text: String,
}

impl JsonPath {
    /// Parses a path that starts with `$`.
    pub fn parse(text: &str) -> Result<JsonPath, PathSyntaxError> {
        Ok(JsonPath { text: text.to_string() })
    }

    /// The text the path was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the path can match at most one node (no wildcard, slice, union, filter or
    /// deep scan); Jayway returns a single value for such paths and a list otherwise.
    pub fn is_definite(&self) -> bool {
        todo!()
    }

    /// True when the path is an ASL Reference Path: definite, made of names and indices only.
    pub fn is_reference_path(&self) -> bool {
        todo!()
    }

    /// Applies the path. Definite paths return the single value or an error when it is
    /// missing; indefinite paths return a JSON array of every match (possibly empty).
    pub fn select(&self, _root: &Value) -> Result<Value, PathError> {
        todo!()
    }

    /// Writes `value` at the (reference) path, creating intermediate objects as needed
    /// (ResultPath semantics). `$` replaces the root.
    pub fn assign(&self, _root: &mut Value, _value: Value) -> Result<(), PathError> {
        todo!()
    }
}
