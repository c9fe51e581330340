//! Compiles path text into [`Token`]s, following Jayway's `PathCompiler`: dot and bracket
//! notation, `..` deep scans, `*`, indices, slices, unions, filters and trailing functions.

use super::filter::Filter;
use super::token::{Function, Token};
use super::PathSyntaxError;

/// Parses `text`, which must start with `root` (`$`, or `@` inside a filter), into tokens.
pub(crate) fn parse_tokens(text: &str, root: char) -> Result<Vec<Token>, PathSyntaxError> {
    let mut cursor = Cursor { chars: text.chars().collect(), pos: 0, text };
    cursor.skip_spaces();
    if cursor.peek() != Some(root) {
        return Err(cursor.error(format!("Path must start with '{root}'")));
    }
    cursor.pos += 1;
    let mut tokens = Vec::new();
    while cursor.skip_spaces_then_more() {
        let token = cursor.next_token(tokens.last() == Some(&Token::DeepScan))?;
        if matches!(tokens.last(), Some(Token::Function(_))) {
            return Err(cursor.error("A function must be the last element of a path".into()));
        }
        tokens.push(token);
    }
    if tokens.last() == Some(&Token::DeepScan) {
        return Err(cursor.error("Path must not end with a '.' or '..'".into()));
    }
    Ok(tokens)
}

struct Cursor<'t> {
    chars: Vec<char>,
    pos: usize,
    text: &'t str,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn error(&self, message: String) -> PathSyntaxError {
        PathSyntaxError { message: format!("Invalid path '{}': {message}", self.text) }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Trailing white space ends the path; white space inside it is an error later.
    fn skip_spaces_then_more(&mut self) -> bool {
        let start = self.pos;
        self.skip_spaces();
        if self.peek().is_none() {
            return false;
        }
        self.pos = start;
        true
    }

    fn next_token(&mut self, after_scan: bool) -> Result<Token, PathSyntaxError> {
        match self.peek() {
            Some('.') if self.peek_at(1) == Some('.') => {
                if after_scan {
                    return Err(self.error(format!("Character '.' on position {} is not valid", self.pos + 1)));
                }
                self.pos += 2;
                if self.peek().is_none() {
                    return Err(self.error("Path must not end with a '.' or '..'".into()));
                }
                Ok(Token::DeepScan)
            }
            Some('.') => {
                self.pos += 1;
                match self.peek() {
                    None => Err(self.error("Path must not end with a '.' or '..'".into())),
                    Some('[') => self.bracket(),
                    Some('.') => Err(self.error(format!("Character '.' on position {} is not valid", self.pos))),
                    _ => self.dotted(),
                }
            }
            Some('[') => self.bracket(),
            // Right after `..` a name or `*` needs no dot: `$..name`, `$..*`.
            Some(_) if after_scan => self.dotted(),
            Some(c) => Err(self.error(format!("Character '{c}' on position {} is not valid", self.pos))),
            None => Err(self.error("Unexpected end of path".into())),
        }
    }

    /// A dot-notation name, `*`, or a trailing function `name()`.
    fn dotted(&mut self) -> Result<Token, PathSyntaxError> {
        if self.peek() == Some('*') {
            self.pos += 1;
            return Ok(Token::Wildcard);
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '.' || c == '[' || c == '(' || c.is_whitespace() {
                break;
            }
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        if name.is_empty() {
            return Err(self.error(format!("Empty property name at position {start}")));
        }
        if self.peek() == Some('(') {
            self.pos += 1;
            self.skip_spaces();
            if self.peek() != Some(')') {
                return Err(self.error(format!("Function '{name}()' takes no arguments here")));
            }
            self.pos += 1;
            let function =
                Function::from_name(&name).ok_or_else(|| self.error(format!("Function '{name}()' is not known")))?;
            return Ok(Token::Function(function));
        }
        if self.peek().is_some_and(char::is_whitespace) && self.skip_spaces_then_more() {
            return Err(self.error(format!("White space in the name '{name}'; use bracket notation")));
        }
        Ok(Token::Property(vec![name]))
    }

    /// Everything between `[` and `]`.
    fn bracket(&mut self) -> Result<Token, PathSyntaxError> {
        self.pos += 1; // '['
        self.skip_spaces();
        let token = match self.peek() {
            Some('?') => self.filter()?,
            Some('\'') | Some('"') => self.names()?,
            Some('*') => {
                self.pos += 1;
                Token::Wildcard
            }
            Some(c) if c == '-' || c == ':' || c.is_ascii_digit() => self.indices()?,
            Some(c) => return Err(self.error(format!("Character '{c}' on position {} is not valid", self.pos))),
            None => return Err(self.error("Unclosed '['".into())),
        };
        self.skip_spaces();
        if self.peek() != Some(']') {
            return Err(self.error(format!("Expected ']' at position {}", self.pos)));
        }
        self.pos += 1;
        Ok(token)
    }

    /// `'a'`, `"a"`, or `'a', 'b'`; `\` escapes the next character.
    fn names(&mut self) -> Result<Token, PathSyntaxError> {
        let mut names = Vec::new();
        loop {
            self.skip_spaces();
            let Some(quote @ ('\'' | '"')) = self.peek() else {
                return Err(self.error(format!("Expected a quoted property name at position {}", self.pos)));
            };
            self.pos += 1;
            let mut name = String::new();
            loop {
                match self.peek() {
                    None => return Err(self.error("Property name is not closed".into())),
                    Some('\\') => {
                        self.pos += 1;
                        match self.peek() {
                            Some(c) => name.push(c),
                            None => return Err(self.error("Property name is not closed".into())),
                        }
                    }
                    Some(c) if c == quote => break,
                    Some(c) => name.push(c),
                }
                self.pos += 1;
            }
            self.pos += 1; // closing quote
            names.push(name);
            self.skip_spaces();
            if self.peek() == Some(',') {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(Token::Property(names))
    }

    /// `0`, `-1`, `0,2,4`, `1:5`, `:2`, `-2:`.
    fn indices(&mut self) -> Result<Token, PathSyntaxError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c != ']') {
            self.pos += 1;
        }
        let body: String = self.chars[start..self.pos].iter().collect();
        let number = |s: &str| -> Result<Option<i64>, PathSyntaxError> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<i64>().map(Some).map_err(|_| self.error(format!("'{s}' is not an array index")))
        };
        if let Some((from, to)) = body.split_once(':') {
            if to.contains(':') {
                return Err(self.error("Slices with a step are not supported".into()));
            }
            return Ok(Token::Slice { start: number(from)?, end: number(to)? });
        }
        let indices = body
            .split(',')
            .map(|part| number(part)?.ok_or_else(|| self.error("Empty array index".into())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Token::Index(indices))
    }

    /// `?(expression)`.
    fn filter(&mut self) -> Result<Token, PathSyntaxError> {
        self.pos += 1; // '?'
        self.skip_spaces();
        if self.peek() != Some('(') {
            return Err(self.error("Expected '(' after '?' in a filter".into()));
        }
        let open = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        let mut in_regex = false;
        while let Some(c) = self.peek() {
            match (quote, c) {
                (Some(_), '\\') => self.pos += 1,
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '/') if !in_regex && self.regex_may_start() => in_regex = true,
                (None, '/') if in_regex => in_regex = false,
                (None, '\\') if in_regex => self.pos += 1,
                (None, '(') if !in_regex => depth += 1,
                (None, ')') if !in_regex => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        if self.peek() != Some(')') {
            return Err(self.error("Filter is not closed".into()));
        }
        let body: String = self.chars[open + 1..self.pos].iter().collect();
        self.pos += 1;
        let filter = Filter::parse(&body).map_err(|message| self.error(format!("Bad filter '{body}': {message}")))?;
        Ok(Token::Filter(Box::new(filter)))
    }

    /// A `/` opens a regex literal only where an operand may start (after `=~`).
    fn regex_may_start(&self) -> bool {
        let before: String = self.chars[..self.pos].iter().collect();
        before.trim_end().ends_with("=~")
    }
}
