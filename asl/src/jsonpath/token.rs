//! The tokens of a compiled path, and how Jayway renders them in its messages
//! (`$['a'][0][*]`), which AWS quotes verbatim in `States.Runtime` causes.

use std::fmt::{self, Write};

use super::filter::Filter;

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Token {
    /// `.name`, `['name']`, or `['a','b']` (several names).
    Property(Vec<String>),
    /// `[0]`, `[-1]`, or `[0,2]` (several indices).
    Index(Vec<i64>),
    /// `[start:end]`, either bound optional; negative bounds count from the end.
    Slice { start: Option<i64>, end: Option<i64> },
    /// `.*` or `[*]`: every element of an array, every value of an object.
    Wildcard,
    /// `..`: applies the next token to the current node and to every node below it.
    DeepScan,
    /// `[?(...)]`: array elements (or an object itself) for which the filter holds.
    Filter(Box<Filter>),
    /// A trailing function such as `.length()`, applied to the result of the rest.
    Function(Function),
}

/// The path functions of Jayway that make sense on JSON documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Function {
    Length,
    Min,
    Max,
    Avg,
    Sum,
    Stddev,
    Keys,
    First,
    Last,
}

impl Function {
    pub(crate) fn from_name(name: &str) -> Option<Function> {
        Some(match name {
            "length" | "size" => Function::Length,
            "min" => Function::Min,
            "max" => Function::Max,
            "avg" => Function::Avg,
            "sum" => Function::Sum,
            "stddev" => Function::Stddev,
            "keys" => Function::Keys,
            "first" => Function::First,
            "last" => Function::Last,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Function::Length => "length",
            Function::Min => "min",
            Function::Max => "max",
            Function::Avg => "avg",
            Function::Sum => "sum",
            Function::Stddev => "stddev",
            Function::Keys => "keys",
            Function::First => "first",
            Function::Last => "last",
        }
    }
}

impl Token {
    /// Whether this token selects at most one node (Jayway's `isTokenDefinite`). Several
    /// names are definite only as the leaf, where Jayway merges them into one object.
    pub(crate) fn is_definite(&self, is_leaf: bool) -> bool {
        match self {
            Token::Property(names) => names.len() == 1 || is_leaf,
            Token::Index(indices) => indices.len() == 1,
            Token::Function(_) => true,
            Token::Slice { .. } | Token::Wildcard | Token::DeepScan | Token::Filter(_) => false,
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Property(names) => {
                f.write_char('[')?;
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "'{name}'")?;
                }
                f.write_char(']')
            }
            Token::Index(indices) => {
                f.write_char('[')?;
                for (i, index) in indices.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{index}")?;
                }
                f.write_char(']')
            }
            Token::Slice { start, end } => match (start, end) {
                (Some(s), Some(e)) => write!(f, "[{s}:{e}]"),
                (Some(s), None) => write!(f, "[{s}:]"),
                (None, Some(e)) => write!(f, "[:{e}]"),
                (None, None) => f.write_str("[:]"),
            },
            Token::Wildcard => f.write_str("[*]"),
            Token::DeepScan => f.write_str(".."),
            Token::Filter(_) => f.write_str("[?]"),
            Token::Function(function) => write!(f, ".{}()", function.name()),
        }
    }
}

/// `$` followed by the rendered tokens: Jayway's `toString` of a path.
pub(crate) fn render(tokens: &[Token]) -> String {
    let mut text = String::from("$");
    for token in tokens {
        let _ = write!(text, "{token}");
    }
    text
}
