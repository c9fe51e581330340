//! Filter expressions, `[?(@.price < 10 && @.category == 'fiction')]`, as Jayway's
//! `FilterCompiler` reads them and its evaluators judge them: a relation between two operands
//! (`== != < <= > >= =~ in nin subsetof anyof noneof size empty contains`), a bare path as an
//! existence test, `!`, `&&`, `||` and parentheses. A missing path is its own value: it equals
//! nothing, so `@.missing != 1` holds, and orders with nothing.

use regex::Regex;
use serde_json::Value;

use super::parser::parse_tokens;
use super::select::{is_definite, select_all};
use super::token::Token;

#[derive(Clone, Debug)]
pub(crate) enum Filter {
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Not(Box<Filter>),
    Exists(Operand),
    Relation { left: Operand, op: RelOp, right: Operand },
}

impl PartialEq for Filter {
    /// Filters compare by structure only where tokens are compared (tests); two filters
    /// are never needed to be equal at run time.
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Matches,
    In,
    Nin,
    SubsetOf,
    AnyOf,
    NoneOf,
    Size,
    Empty,
    Contains,
}

#[derive(Clone, Debug)]
pub(crate) enum Operand {
    /// `@...` relative to the element under test.
    Current {
        tokens: Vec<Token>,
        definite: bool,
    },
    /// `$...` relative to the document root.
    Root {
        tokens: Vec<Token>,
        definite: bool,
    },
    Literal(Value),
    Regex(Regex),
}

impl Filter {
    pub(crate) fn parse(text: &str) -> Result<Filter, String> {
        let mut parser = Parser { chars: text.chars().collect(), pos: 0 };
        let filter = parser.or()?;
        parser.skip_spaces();
        if parser.pos < parser.chars.len() {
            return Err(format!("unexpected '{}' at position {}", parser.chars[parser.pos], parser.pos));
        }
        Ok(filter)
    }

    /// Whether the filter holds for `current`, with `root` the whole document.
    pub(crate) fn holds(&self, current: &Value, root: &Value) -> bool {
        match self {
            Filter::Or(parts) => parts.iter().any(|f| f.holds(current, root)),
            Filter::And(parts) => parts.iter().all(|f| f.holds(current, root)),
            Filter::Not(inner) => !inner.holds(current, root),
            Filter::Exists(operand) => match operand.value(current, root) {
                Some(Value::Array(items)) if !operand.is_definite() => !items.is_empty(),
                Some(Value::Bool(b)) if matches!(operand, Operand::Literal(_)) => b,
                Some(_) => true,
                None => false,
            },
            Filter::Relation { left, op, right } => {
                if let (RelOp::Matches, Operand::Regex(regex)) = (op, right) {
                    return match left.value(current, root) {
                        Some(Value::String(s)) => regex.is_match(&s),
                        _ => false,
                    };
                }
                relate(left.value(current, root).as_ref(), *op, right.value(current, root).as_ref())
            }
        }
    }
}

impl Operand {
    fn is_definite(&self) -> bool {
        match self {
            Operand::Current { definite, .. } | Operand::Root { definite, .. } => *definite,
            _ => true,
        }
    }

    /// The operand's value; `None` when a definite path selects nothing.
    fn value(&self, current: &Value, root: &Value) -> Option<Value> {
        let (tokens, definite, base) = match self {
            Operand::Current { tokens, definite } => (tokens, *definite, current),
            Operand::Root { tokens, definite } => (tokens, *definite, root),
            Operand::Literal(value) => return Some(value.clone()),
            Operand::Regex(regex) => return Some(Value::String(regex.as_str().to_string())),
        };
        let found = select_all(tokens, base, root);
        if definite {
            found.into_iter().next()
        } else {
            Some(Value::Array(found))
        }
    }
}

/// Jayway's evaluators for each relation.
fn relate(left: Option<&Value>, op: RelOp, right: Option<&Value>) -> bool {
    let contains = |items: &[Value], v: &Value| items.iter().any(|item| values_equal(item, v));
    match op {
        RelOp::Eq => matches!((left, right), (Some(l), Some(r)) if values_equal(l, r)),
        RelOp::Ne => !relate(left, RelOp::Eq, right),
        RelOp::Lt | RelOp::Le | RelOp::Gt | RelOp::Ge => {
            let ordering = match (left, right) {
                (Some(Value::Number(l)), Some(Value::Number(r))) => {
                    l.as_f64().unwrap_or(f64::NAN).partial_cmp(&r.as_f64().unwrap_or(f64::NAN))
                }
                (Some(Value::String(l)), Some(Value::String(r))) => Some(l.cmp(r)),
                _ => None,
            };
            ordering.is_some_and(|o| match op {
                RelOp::Lt => o.is_lt(),
                RelOp::Le => o.is_le(),
                RelOp::Gt => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        RelOp::Matches => match (left, right) {
            (Some(Value::String(l)), Some(Value::String(pattern))) => {
                Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(l))
            }
            _ => false,
        },
        RelOp::In => matches!((left, right), (Some(l), Some(Value::Array(r))) if contains(r, l)),
        RelOp::Nin => match (left, right) {
            (Some(l), Some(Value::Array(r))) => !contains(r, l),
            (None, Some(Value::Array(_))) => true,
            _ => false,
        },
        RelOp::SubsetOf => match (left, right) {
            (Some(Value::Array(l)), Some(Value::Array(r))) => l.iter().all(|v| contains(r, v)),
            _ => false,
        },
        RelOp::AnyOf => match (left, right) {
            (Some(Value::Array(l)), Some(Value::Array(r))) => l.iter().any(|v| contains(r, v)),
            _ => false,
        },
        RelOp::NoneOf => match (left, right) {
            (Some(Value::Array(l)), Some(Value::Array(r))) => !l.iter().any(|v| contains(r, v)),
            _ => false,
        },
        RelOp::Size => {
            let size = match left {
                Some(Value::Array(items)) => items.len(),
                Some(Value::String(s)) => s.chars().count(),
                _ => return false,
            };
            right.and_then(Value::as_f64).is_some_and(|n| n == size as f64)
        }
        RelOp::Empty => {
            let empty = match left {
                Some(Value::Array(items)) => items.is_empty(),
                Some(Value::String(s)) => s.is_empty(),
                _ => return false,
            };
            right.and_then(Value::as_bool).is_some_and(|want| want == empty)
        }
        RelOp::Contains => match (left, right) {
            (Some(Value::String(l)), Some(Value::String(r))) => l.contains(r.as_str()),
            (Some(Value::Array(l)), Some(r)) => contains(l, r),
            _ => false,
        },
    }
}

/// JSON equality where numbers compare by value (`1 == 1.0`).
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, text: &str) -> bool {
        self.skip_spaces();
        let n = text.chars().count();
        if self.chars.len() >= self.pos + n && self.chars[self.pos..self.pos + n].iter().copied().eq(text.chars()) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut parts = vec![self.and()?];
        while self.eat("||") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap_or(Filter::Or(Vec::new())) } else { Filter::Or(parts) })
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut parts = vec![self.unary()?];
        while self.eat("&&") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap_or(Filter::And(Vec::new())) } else { Filter::And(parts) })
    }

    fn unary(&mut self) -> Result<Filter, String> {
        self.skip_spaces();
        if self.peek() == Some('!') && self.chars.get(self.pos + 1) != Some(&'=') {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some('(') {
            self.pos += 1;
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(format!("expected ')' at position {}", self.pos));
            }
            return Ok(inner);
        }
        let left = self.operand()?;
        let Some(op) = self.operator() else {
            return Ok(Filter::Exists(left));
        };
        let right = self.operand()?;
        Ok(Filter::Relation { left, op, right })
    }

    fn operator(&mut self) -> Option<RelOp> {
        self.skip_spaces();
        const SYMBOLS: [(&str, RelOp); 7] = [
            ("==", RelOp::Eq),
            ("!=", RelOp::Ne),
            ("<=", RelOp::Le),
            (">=", RelOp::Ge),
            ("=~", RelOp::Matches),
            ("<", RelOp::Lt),
            (">", RelOp::Gt),
        ];
        for (text, op) in SYMBOLS {
            if self.eat(text) {
                return Some(op);
            }
        }
        const WORDS: [(&str, RelOp); 8] = [
            ("subsetof", RelOp::SubsetOf),
            ("anyof", RelOp::AnyOf),
            ("noneof", RelOp::NoneOf),
            ("contains", RelOp::Contains),
            ("empty", RelOp::Empty),
            ("size", RelOp::Size),
            ("nin", RelOp::Nin),
            ("in", RelOp::In),
        ];
        for (word, op) in WORDS {
            let start = self.pos;
            if self.eat(word) && self.peek().is_none_or(|c| !c.is_alphanumeric()) {
                return Some(op);
            }
            self.pos = start;
        }
        None
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_spaces();
        match self.peek() {
            Some(root @ ('@' | '$')) => {
                let text = self.path_text();
                let tokens = parse_tokens(&text, root).map_err(|e| e.message)?;
                let definite = is_definite(&tokens);
                Ok(if root == '@' { Operand::Current { tokens, definite } } else { Operand::Root { tokens, definite } })
            }
            Some('/') => self.regex(),
            Some(_) => self.literal().map(Operand::Literal),
            None => Err("expected an operand".into()),
        }
    }

    /// A path operand runs until white space, an operator or a closing parenthesis at its
    /// own bracket depth.
    fn path_text(&mut self) -> String {
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            match (quote, c) {
                (Some(_), '\\') => self.pos += 1,
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[') => depth += 1,
                (None, ']') => depth = depth.saturating_sub(1),
                (None, '(') if depth == 0 && self.chars.get(self.pos + 1) == Some(&')') => self.pos += 1,
                (None, c) if depth == 0 && (c.is_whitespace() || "=!<>&|)".contains(c)) => break,
                _ => {}
            }
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn regex(&mut self) -> Result<Operand, String> {
        self.pos += 1; // '/'
        let mut pattern = String::new();
        loop {
            match self.peek() {
                None => return Err("regular expression is not closed".into()),
                Some('\\') if self.chars.get(self.pos + 1) == Some(&'/') => {
                    pattern.push('/');
                    self.pos += 2;
                }
                Some('\\') => {
                    pattern.push('\\');
                    if let Some(&next) = self.chars.get(self.pos + 1) {
                        pattern.push(next);
                    }
                    self.pos += 2;
                }
                Some('/') => {
                    self.pos += 1;
                    break;
                }
                Some(c) => {
                    pattern.push(c);
                    self.pos += 1;
                }
            }
        }
        let mut flags = String::new();
        while let Some(c @ ('i' | 'm' | 's' | 'x' | 'u')) = self.peek() {
            if c != 'u' {
                flags.push(c);
            }
            self.pos += 1;
        }
        let full = if flags.is_empty() { format!("^(?:{pattern})$") } else { format!("(?{flags})^(?:{pattern})$") };
        Regex::new(&full).map(Operand::Regex).map_err(|e| format!("bad regular expression /{pattern}/: {e}"))
    }

    fn literal(&mut self) -> Result<Value, String> {
        self.skip_spaces();
        match self.peek() {
            Some(quote @ ('\'' | '"')) => {
                self.pos += 1;
                let mut text = String::new();
                loop {
                    match self.peek() {
                        None => return Err("string is not closed".into()),
                        Some('\\') => {
                            self.pos += 1;
                            if let Some(c) = self.peek() {
                                text.push(c);
                            }
                        }
                        Some(c) if c == quote => break,
                        Some(c) => text.push(c),
                    }
                    self.pos += 1;
                }
                self.pos += 1;
                Ok(Value::String(text))
            }
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.eat("]") {
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.literal()?);
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Value::Array(items));
                    }
                    return Err(format!("expected ',' or ']' at position {}", self.pos));
                }
            }
            Some('{') => {
                let start = self.pos;
                let mut depth = 0usize;
                let mut in_string = false;
                while let Some(c) = self.peek() {
                    self.pos += 1;
                    match c {
                        '\\' if in_string => self.pos += 1,
                        '"' => in_string = !in_string,
                        '{' if !in_string => depth += 1,
                        '}' if !in_string => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                serde_json::from_str(&text).map_err(|e| format!("bad JSON object {text}: {e}"))
            }
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || "+-._".contains(c)) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    "null" => Ok(Value::Null),
                    "" => Err(format!("expected a value at position {start}")),
                    number => serde_json::from_str::<serde_json::Number>(number)
                        .map(Value::Number)
                        .map_err(|_| format!("'{number}' is not a value")),
                }
            }
        }
    }
}
