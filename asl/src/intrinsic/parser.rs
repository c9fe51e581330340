//! The call syntax, checked when the definition is loaded.
//!
//! ```text
//! call     = "States." name ws "(" ws [ arg ( ws "," ws arg )* ] ws ")"
//! arg      = string | number | "true" | "false" | "null" | path | call
//! string   = "'" ( char | "\'" | "\{" | "\}" | "\\" )* "'"
//! number   = JSON number ("-"? int frac? exp?)
//! path     = "$" … up to the next "," or ")" outside brackets, parentheses and quotes
//! ```
//!
//! Whitespace may surround arguments and the whole call. What AWS rejects when the state
//! machine is created is rejected here: an unknown function name, unbalanced parentheses or
//! quotes, a missing argument (`f(a, )`), an escape other than the four reserved ones
//! (`\"` and `\n` are invalid: AWS rejects `States.StringToJson('{"a":"\"b\""}')`), trailing
//! text after the call, more than [`MAX_NESTING`] nested calls. The argument count and
//! types are checked at run time, as AWS does (see [`Function::arity`]).

use serde_json::Number;

use crate::expr::PathExpr;

use super::ast::{Arg, Call, Function};
use super::IntrinsicSyntaxError;

/// Calls may be nested up to 10 deep in one field (the outermost call counts as one)
/// [DG-intr: "You can nest up to 10 intrinsic functions within a field"].
pub(crate) const MAX_NESTING: usize = 10;

const PREFIX: &str = "States.";

/// Parses a whole intrinsic invocation.
pub(crate) fn parse(text: &str) -> Result<Call, IntrinsicSyntaxError> {
    let mut parser = Parser { text, pos: 0 };
    parser.skip_ws();
    let call = parser.call(1)?;
    parser.skip_ws();
    if parser.pos < text.len() {
        return Err(parser.error(format!("unexpected text after the call: '{}'", &text[parser.pos..])));
    }
    Ok(call)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn error(&self, message: impl Into<String>) -> IntrinsicSyntaxError {
        IntrinsicSyntaxError { message: format!("Invalid intrinsic function call '{}': {}", self.text, message.into()) }
    }

    fn call(&mut self, depth: usize) -> Result<Call, IntrinsicSyntaxError> {
        if depth > MAX_NESTING {
            return Err(self.error(format!("intrinsic functions may be nested at most {MAX_NESTING} deep")));
        }
        if !self.rest().starts_with(PREFIX) {
            return Err(self.error("expected 'States.<function>('"));
        }
        self.pos += PREFIX.len();
        let name_len = self.rest().find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(self.rest().len());
        let name = &self.rest()[..name_len];
        let function = Function::from_short_name(name)
            .ok_or_else(|| self.error(format!("unknown intrinsic function 'States.{name}'")))?;
        self.pos += name_len;
        self.skip_ws();
        if self.bump() != Some('(') {
            return Err(self.error(format!("expected '(' after {}", function.name())));
        }
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.bump();
            return Ok(Call { function, args });
        }
        loop {
            self.skip_ws();
            args.push(self.arg(depth)?);
            self.skip_ws();
            match self.bump() {
                Some(',') => continue,
                Some(')') => return Ok(Call { function, args }),
                Some(c) => return Err(self.error(format!("expected ',' or ')' in {}, found '{c}'", function.name()))),
                None => return Err(self.error(format!("missing ')' to close {}", function.name()))),
            }
        }
    }

    fn arg(&mut self, depth: usize) -> Result<Arg, IntrinsicSyntaxError> {
        match self.peek() {
            None => Err(self.error("unexpected end of text where an argument was expected")),
            Some(',' | ')') => Err(self.error("missing argument")),
            Some('\'') => self.string(),
            Some('$') => self.path(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(_) if self.rest().starts_with(PREFIX) => Ok(Arg::Call(Box::new(self.call(depth + 1)?))),
            Some(c) if c.is_alphabetic() => {
                let len = self.rest().find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(self.rest().len());
                let word = &self.rest()[..len];
                let arg = match word {
                    "true" => Arg::Bool(true),
                    "false" => Arg::Bool(false),
                    "null" => Arg::Null,
                    _ => return Err(self.error(format!("unexpected argument '{word}' (strings are single-quoted)"))),
                };
                self.pos += len;
                Ok(arg)
            }
            Some(c) => Err(self.error(format!("unexpected character '{c}' where an argument was expected"))),
        }
    }

    /// A single-quoted string. Only `\'`, `\{`, `\}` and `\\` are escapes [DG-intr "Reserved
    /// characters"]; other characters, control characters included, stand for themselves.
    fn string(&mut self) -> Result<Arg, IntrinsicSyntaxError> {
        self.bump();
        let start = self.pos;
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated string literal")),
                Some('\'') => break,
                Some('\\') => match self.bump() {
                    Some(c @ ('\'' | '{' | '}' | '\\')) => value.push(c),
                    Some(c) => {
                        return Err(self.error(format!(
                            "invalid escape '\\{c}' in a string literal (only \\', \\{{, \\}} and \\\\ are allowed)"
                        )))
                    }
                    None => return Err(self.error("unterminated escape in a string literal")),
                },
                Some(c) => value.push(c),
            }
        }
        let raw = self.text[start..self.pos - 1].to_string();
        Ok(Arg::String { raw, value })
    }

    /// A JSON number; it must end where the argument ends (`1.`, `01`, `1x` are invalid).
    fn number(&mut self) -> Result<Arg, IntrinsicSyntaxError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.bump();
            }
            p.pos - from
        };
        if self.peek() == Some('-') {
            self.bump();
        }
        let int_start = self.pos;
        let int_len = digits(self);
        let mut valid = int_len > 0 && !(int_len > 1 && self.text[int_start..].starts_with('0'));
        if valid && self.peek() == Some('.') {
            self.bump();
            valid = digits(self) > 0;
        }
        if valid && matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            valid = digits(self) > 0;
        }
        let ends_here = self.peek().is_none_or(|c| c.is_whitespace() || c == ',' || c == ')');
        let token = &self.text[start..self.pos];
        if !valid || !ends_here {
            let end = self.rest().find([',', ')']).map_or(self.text.len(), |i| self.pos + i);
            return Err(self.error(format!("invalid number '{}'", self.text[start..end].trim_end())));
        }
        Ok(Arg::Number(number_from_token(token)))
    }

    /// A path runs to the next `,` or `)` that is not inside brackets, parentheses (filters,
    /// Jayway functions) or quotes, and stops at whitespace outside them.
    fn path(&mut self) -> Result<Arg, IntrinsicSyntaxError> {
        let start = self.pos;
        let mut nesting: Vec<char> = Vec::new();
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            if let Some(q) = quote {
                self.bump();
                if c == '\\' {
                    self.bump();
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '\'' | '"' if !nesting.is_empty() => quote = Some(c),
                '[' => nesting.push(']'),
                '(' => nesting.push(')'),
                ']' | ')' if nesting.last() == Some(&c) => {
                    nesting.pop();
                }
                ')' | ',' if nesting.is_empty() => break,
                ']' | ')' => {
                    return Err(self.error(format!("unbalanced '{c}' in path '{}'", &self.text[start..=self.pos])))
                }
                c if c.is_whitespace() && nesting.is_empty() => break,
                _ => {}
            }
            self.bump();
        }
        let text = &self.text[start..self.pos];
        if quote.is_some() || !nesting.is_empty() {
            return Err(self.error(format!("unterminated bracket or quote in path '{text}'")));
        }
        PathExpr::parse(text).map(Arg::Path).map_err(|e| self.error(format!("invalid path '{text}': {e}")))
    }
}

/// A number token as JSON reads it. A literal beyond the range of a double (`1e309`) is
/// accepted by AWS; it saturates to the largest double here.
fn number_from_token(token: &str) -> Number {
    token.parse::<Number>().unwrap_or_else(|_| {
        let max = if token.starts_with('-') { f64::MIN } else { f64::MAX };
        Number::from_f64(max).unwrap_or_else(|| Number::from(0))
    })
}
