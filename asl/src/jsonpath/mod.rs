//! JSONPath in the Jayway dialect that AWS Step Functions uses (features.md §1.4).
//!
//! A path is compiled once ([`JsonPath::parse`]) into tokens and applied many times. Jayway
//! distinguishes *definite* paths (names and single indices: one node or an error) from
//! indefinite ones (wildcards, slices, unions, filters, `..`: a list of every match,
//! possibly empty); AWS exposes that distinction, and quotes Jayway's messages, so this
//! module reproduces both.

mod filter;
mod parser;
mod select;
mod token;

#[cfg(test)]
mod tests;

use serde_json::Value;

use token::Token;

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
    tokens: Vec<Token>,
    definite: bool,
}

impl JsonPath {
    /// Parses a path that starts with `$`.
    pub fn parse(text: &str) -> Result<JsonPath, PathSyntaxError> {
        let tokens = parser::parse_tokens(text, '$')?;
        let definite = select::is_definite(&tokens);
        Ok(JsonPath { text: text.to_string(), tokens, definite })
    }

    /// The text the path was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the path can match at most one node (no wildcard, slice, union, filter or
    /// deep scan); Jayway returns a single value for such paths and a list otherwise.
    pub fn is_definite(&self) -> bool {
        self.definite
    }

    /// True when the path is an ASL Reference Path: definite, made of names and indices only.
    pub fn is_reference_path(&self) -> bool {
        self.tokens.iter().all(|token| match token {
            Token::Property(names) => names.len() == 1,
            Token::Index(indices) => indices.len() == 1,
            _ => false,
        })
    }

    /// The name when the path is one name step (`$.name`, `$['name']`).
    pub fn single_name(&self) -> Option<&str> {
        match self.tokens.as_slice() {
            [Token::Property(names)] if names.len() == 1 => Some(&names[0]),
            _ => None,
        }
    }

    /// Applies the path. Definite paths return the single value or an error when it is
    /// missing; indefinite paths return a JSON array of every match (possibly empty).
    pub fn select(&self, root: &Value) -> Result<Value, PathError> {
        if self.tokens.is_empty() {
            Ok(root.clone())
        } else if self.definite {
            select::select_definite(&self.tokens, root)
        } else {
            Ok(Value::Array(select::select_all(&self.tokens, root, root)))
        }
    }

    /// [`JsonPath::select`] consuming `root`: a definite path's node is moved out, not copied.
    pub fn select_owned(&self, root: Value) -> Result<Value, PathError> {
        if self.tokens.is_empty() {
            Ok(root)
        } else if self.definite {
            select::take_definite(&self.tokens, root)
        } else {
            Ok(Value::Array(select::select_all(&self.tokens, &root, &root)))
        }
    }

    /// The rest of this path after the leading single-name steps `names`, e.g. `$.Value.qty`
    /// for `$.Map.Item.Value.qty` and `["Map", "Item"]`; `None` when it does not start so.
    pub fn after_names(&self, names: &[&str]) -> Option<JsonPath> {
        if self.tokens.len() < names.len() {
            return None;
        }
        for (token, name) in self.tokens.iter().zip(names) {
            match token {
                Token::Property(n) if n.len() == 1 && n[0] == *name => {}
                _ => return None,
            }
        }
        let tokens = self.tokens[names.len()..].to_vec();
        let definite = select::is_definite(&tokens);
        Some(JsonPath { text: token::render(&tokens), tokens, definite })
    }

    /// Writes `value` at the (reference) path, creating intermediate objects as needed
    /// (ResultPath semantics). `$` replaces the root.
    pub fn assign(&self, root: &mut Value, value: Value) -> Result<(), PathError> {
        select::assign(&self.tokens, root, value)
    }
}
