//! The template of `States.Format`: literal text and `{}` placeholders.
//!
//! AWS reads the template when the call is evaluated, not when the definition is created:
//! a template that is not well formed fails the execution with "Invalid template in
//! States.Format: matching '}' not found for '{'." (aws/aws-cdk#29261, where a doubly
//! escaped `\\{` reached AWS as an unescaped `{`). Rules:
//!
//! * `{` must be followed directly by `}`; together they are a placeholder;
//! * a `}` that does not close a `{` is an error;
//! * `\{`, `\}`, `\'`, `\\` stand for the character after the backslash, so `\{\}` is a
//!   literal `{}` [DG-intr "Reserved characters"]; a backslash before any other character
//!   is kept as it is; a backslash that ends the template is an open escape, an error
//!   [DG-intr: "If an open escape backslash \ is found ... the interpreter will throw a
//!   runtime error"].
//!
//! A template written as a literal is read with its escapes intact (the parser keeps the
//! raw text); a template coming from a path is read the same way.

/// A piece of a template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Placeholder,
}

/// Splits a template into text and placeholders. The error is AWS's wording after
/// "Invalid template in States.Format: ".
pub(crate) fn parse(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('{' | '}' | '\'' | '\\')) => text.push(escaped),
                Some(other) => {
                    text.push('\\');
                    text.push(other);
                }
                None => return Err("open escape '\\' at the end of the template.".to_string()),
            },
            '{' => {
                if chars.next() != Some('}') {
                    return Err("matching '}' not found for '{'.".to_string());
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Placeholder);
            }
            '}' => return Err("matching '{' not found for '}'.".to_string()),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}
