//! JSON documents: the items are the elements of an array, or the members of an object, found
//! at `ItemsPointer` (a JSON Pointer, RFC 6901; the whole document when absent)
//! (features.md §2.3).
//!
//! The document is never held in memory: a token-level navigator walks to the container the
//! pointer names, an element framer then cuts the container's elements out one by one (each is
//! parsed by serde_json on its own), and the navigator checks the rest of the document for
//! balance. A value that is neither array nor object at the pointer fails with AWS's cause
//! "Attempting to map over non-iterable node." [OBS 2023-09].
//!
//! A batch descriptor for JSON is a byte range holding whole elements separated by commas; the
//! framer reads such a range directly ([`JsonFramer::range`]).

use serde::Deserialize;
use serde_json::Value;

use super::text::{Frame, FrameError, Framer, Step};

/// AWS's cause when the ItemsPointer (or the document) is not an array or object.
pub const NON_ITERABLE: &str = "Attempting to map over non-iterable node.";

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Splits an RFC 6901 pointer into unescaped reference tokens.
pub(crate) fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("ItemsPointer {pointer:?} is not a JSON Pointer: it must start with '/'"));
    };
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Open(u8),
    Close(u8),
    Colon,
    Comma,
    Str,
    Scalar,
}

/// The next token at or after `pos`: `Ok(None)` when the buffer holds no complete token.
fn lex(buf: &[u8], pos: usize, eof: bool) -> Result<Option<(Tok, usize, usize)>, FrameError> {
    let mut i = pos;
    while i < buf.len() && is_ws(buf[i]) {
        i += 1;
    }
    if i == buf.len() {
        return Ok(None);
    }
    let start = i;
    let tok = match buf[i] {
        b'{' | b'[' => Tok::Open(buf[i]),
        b'}' | b']' => Tok::Close(buf[i]),
        b':' => Tok::Colon,
        b',' => Tok::Comma,
        b'"' => {
            let mut j = i + 1;
            loop {
                match memchr::memchr2(b'"', b'\\', &buf[j..]) {
                    Some(n) if buf[j + n] == b'\\' => j += n + 2,
                    Some(n) => return Ok(Some((Tok::Str, start, j + n + 1))),
                    None => return Ok(None),
                }
                if j >= buf.len() {
                    return Ok(None);
                }
            }
        }
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            let mut j = i + 1;
            while j < buf.len() && !is_delimiter(buf[j]) {
                j += 1;
            }
            if j == buf.len() && !eof {
                return Ok(None);
            }
            return Ok(Some((Tok::Scalar, start, j)));
        }
        other => return Err(FrameError::new(i, format!("unexpected character {:?}", other as char))),
    };
    Ok(Some((tok, start, start + 1)))
}

#[inline]
fn is_delimiter(b: u8) -> bool {
    is_ws(b) || matches!(b, b',' | b':' | b']' | b'}' | b'[' | b'{' | b'"')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// After `{`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    Colon,
    Value,
    /// After `[`.
    ValueOrEnd,
    CommaOrEnd,
}

#[derive(Clone, Debug)]
struct Container {
    object: bool,
    /// Every container from the root down to this one is on the pointer's path.
    on_path: bool,
    /// Elements seen so far (arrays).
    index: u64,
    /// The last member name equals the pointer's next token (objects).
    key_matches: bool,
    expect: Expect,
}

/// Where the framer is in the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Walking to the target container (or, once `found`, checking the rest).
    Navigate,
    /// Inside the target container.
    Elements,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Before,
    Key,
    AfterKey,
    BeforeValue,
    Container,
    Str,
    Scalar,
}

pub(crate) struct JsonFramer {
    pointer: Vec<String>,
    mode: Mode,
    stack: Vec<Container>,
    root_done: bool,
    found: bool,
    /// The target container is an object: items are its members.
    members: bool,
    /// Reading a byte range of elements: no brackets, the input's end ends the elements.
    range: bool,
    pos: usize,
    // Element framing state.
    phase: Phase,
    start: usize,
    value_start: usize,
    depth: u32,
    in_string: bool,
    escape: bool,
    need_comma: bool,
    seen: bool,
}

impl JsonFramer {
    /// Frames a whole document, iterating the container at `pointer`.
    pub fn document(pointer: Vec<String>) -> Self {
        Self::with(pointer, Mode::Navigate, false, false)
    }

    /// Frames a byte range of elements of an array (`members == false`) or object.
    pub fn range(members: bool) -> Self {
        Self::with(Vec::new(), Mode::Elements, members, true)
    }

    fn with(pointer: Vec<String>, mode: Mode, members: bool, range: bool) -> Self {
        JsonFramer {
            pointer,
            mode,
            stack: Vec::new(),
            root_done: false,
            found: false,
            members,
            range,
            pos: 0,
            phase: Phase::Before,
            start: 0,
            value_start: 0,
            depth: 0,
            in_string: false,
            escape: false,
            need_comma: false,
            seen: false,
        }
    }

    fn pointer_text(&self) -> String {
        self.pointer.iter().map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1"))).collect()
    }

    /// Marks the end of a value in the current container.
    fn after_value(&mut self) {
        match self.stack.last_mut() {
            Some(top) => {
                top.expect = Expect::CommaOrEnd;
                top.index += 1;
            }
            None => self.root_done = true,
        }
    }

    /// A value begins with token `tok` (at `at`); returns true when it is the target container.
    fn begin_value(&mut self, tok: Tok, at: usize) -> Result<bool, FrameError> {
        if !matches!(tok, Tok::Open(_) | Tok::Str | Tok::Scalar) {
            return Err(FrameError::new(at, "expected a value"));
        }
        let on_path = match self.stack.last() {
            None => true,
            Some(top) if !top.on_path => false,
            Some(top) if top.object => top.key_matches,
            Some(top) => self.pointer.get(self.stack.len() - 1).is_some_and(|t| *t == top.index.to_string()),
        };
        if !self.found && on_path && self.stack.len() == self.pointer.len() {
            self.found = true;
            return match tok {
                Tok::Open(b) => {
                    self.members = b == b'{';
                    Ok(true)
                }
                _ => Err(FrameError::new(at, NON_ITERABLE)),
            };
        }
        match tok {
            Tok::Open(b) => self.stack.push(Container {
                object: b == b'{',
                on_path: on_path && !self.found,
                index: 0,
                key_matches: false,
                expect: if b == b'{' { Expect::KeyOrEnd } else { Expect::ValueOrEnd },
            }),
            _ => self.after_value(),
        }
        Ok(false)
    }

    /// Processes tokens until the target container opens, the input runs out or ends.
    fn navigate(&mut self, buf: &[u8], eof: bool) -> Result<Option<Step>, FrameError> {
        loop {
            let Some((tok, start, end)) = lex(buf, self.pos, eof)? else {
                if !eof {
                    let consumed = self.pos;
                    self.pos = 0;
                    return Ok(Some(Step::NeedMore { consumed }));
                }
                // End of input.
                let trailing = buf[self.pos..].iter().all(|&b| is_ws(b));
                if !trailing || !self.stack.is_empty() || (!self.root_done && !self.found) {
                    let what = if self.stack.is_empty() && !self.root_done {
                        "the object holds no JSON document"
                    } else {
                        "unexpected end of the JSON document"
                    };
                    return Err(FrameError::new(buf.len(), what));
                }
                if !self.found {
                    return Err(FrameError::new(
                        buf.len(),
                        format!("ItemsPointer {} does not refer to a node of the document", self.pointer_text()),
                    ));
                }
                return Ok(Some(Step::End { consumed: buf.len() }));
            };
            self.pos = end;
            if self.stack.is_empty() && self.root_done {
                return Err(FrameError::new(start, "unexpected content after the JSON document"));
            }
            let Some(top) = self.stack.last_mut() else {
                if self.begin_value(tok, start)? {
                    return Ok(None);
                }
                continue;
            };
            match (top.expect, tok) {
                (Expect::KeyOrEnd, Tok::Close(b'}')) | (Expect::CommaOrEnd, Tok::Close(b'}')) if top.object => {
                    self.stack.pop();
                    self.after_value();
                }
                (Expect::ValueOrEnd, Tok::Close(b']')) | (Expect::CommaOrEnd, Tok::Close(b']')) if !top.object => {
                    self.stack.pop();
                    self.after_value();
                }
                (Expect::KeyOrEnd | Expect::Key, Tok::Str) => {
                    if top.on_path {
                        let name: String = serde_json::from_slice(&buf[start..end])
                            .map_err(|e| FrameError::new(start, format!("invalid member name: {e}")))?;
                        let depth = self.stack.len() - 1;
                        let matches = self.pointer.get(depth).is_some_and(|t| *t == name);
                        if let Some(top) = self.stack.last_mut() {
                            top.key_matches = matches;
                            top.expect = Expect::Colon;
                        }
                    } else {
                        top.expect = Expect::Colon;
                    }
                }
                (Expect::KeyOrEnd | Expect::Key, _) => return Err(FrameError::new(start, "expected a member name")),
                (Expect::Colon, Tok::Colon) => top.expect = Expect::Value,
                (Expect::Colon, _) => return Err(FrameError::new(start, "expected ':'")),
                (Expect::CommaOrEnd, Tok::Comma) => {
                    top.expect = if top.object { Expect::Key } else { Expect::Value };
                }
                (Expect::CommaOrEnd, _) => {
                    let close = if top.object { '}' } else { ']' };
                    return Err(FrameError::new(start, format!("expected ',' or '{close}'")));
                }
                (Expect::Value | Expect::ValueOrEnd, _) => {
                    if self.begin_value(tok, start)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn need_more(&mut self, buf_len: usize) -> Step {
        let consumed = if self.phase == Phase::Before { self.pos.min(buf_len) } else { self.start };
        self.pos -= consumed;
        self.start -= consumed.min(self.start);
        self.value_start -= consumed.min(self.value_start);
        Step::NeedMore { consumed }
    }

    /// Frames the next element of the target container.
    fn element(&mut self, buf: &[u8], eof: bool) -> Result<Option<Step>, FrameError> {
        let close = if self.members { b'}' } else { b']' };
        loop {
            match self.phase {
                Phase::Before => {
                    while self.pos < buf.len() {
                        let b = buf[self.pos];
                        if is_ws(b) {
                            self.pos += 1;
                        } else if b == b',' {
                            if !self.need_comma {
                                return Err(FrameError::new(self.pos, "unexpected ','"));
                            }
                            self.need_comma = false;
                            self.pos += 1;
                        } else if b == close && !self.range {
                            if self.seen && !self.need_comma {
                                return Err(FrameError::new(self.pos, "trailing ',' before the end of the container"));
                            }
                            // The container is complete: back to checking the document.
                            self.pos += 1;
                            self.mode = Mode::Navigate;
                            self.after_value();
                            return Ok(None);
                        } else {
                            if self.need_comma {
                                return Err(FrameError::new(self.pos, "expected ',' between elements"));
                            }
                            self.start = self.pos;
                            self.value_start = self.pos;
                            if self.members {
                                if b != b'"' {
                                    return Err(FrameError::new(self.pos, "expected a member name"));
                                }
                                self.phase = Phase::Key;
                                self.pos += 1;
                            } else {
                                self.begin_element_value(b)?;
                            }
                            break;
                        }
                    }
                    if self.phase == Phase::Before {
                        if !eof {
                            return Ok(Some(self.need_more(buf.len())));
                        }
                        if self.range {
                            if self.seen && !self.need_comma {
                                return Err(FrameError::new(self.pos, "trailing ','"));
                            }
                            return Ok(Some(Step::End { consumed: buf.len() }));
                        }
                        return Err(FrameError::new(buf.len(), "unexpected end of the JSON document"));
                    }
                }
                Phase::Key | Phase::Str => {
                    if !self.scan_string(buf) {
                        return self.incomplete(buf, eof);
                    }
                    if self.phase == Phase::Key {
                        self.phase = Phase::AfterKey;
                    } else {
                        return Ok(Some(self.record()));
                    }
                }
                Phase::AfterKey => {
                    while self.pos < buf.len() && is_ws(buf[self.pos]) {
                        self.pos += 1;
                    }
                    if self.pos == buf.len() {
                        return self.incomplete(buf, eof);
                    }
                    if buf[self.pos] != b':' {
                        return Err(FrameError::new(self.pos, "expected ':' after the member name"));
                    }
                    self.pos += 1;
                    self.phase = Phase::BeforeValue;
                }
                Phase::BeforeValue => {
                    while self.pos < buf.len() && is_ws(buf[self.pos]) {
                        self.pos += 1;
                    }
                    if self.pos == buf.len() {
                        return self.incomplete(buf, eof);
                    }
                    self.value_start = self.pos;
                    self.begin_element_value(buf[self.pos])?;
                }
                Phase::Container => {
                    if !self.scan_container(buf) {
                        return self.incomplete(buf, eof);
                    }
                    return Ok(Some(self.record()));
                }
                Phase::Scalar => {
                    while self.pos < buf.len() && !is_delimiter(buf[self.pos]) {
                        self.pos += 1;
                    }
                    if self.pos == buf.len() && !eof {
                        return Ok(Some(self.need_more(buf.len())));
                    }
                    return Ok(Some(self.record()));
                }
            }
        }
    }

    fn incomplete(&mut self, buf: &[u8], eof: bool) -> Result<Option<Step>, FrameError> {
        if eof {
            return Err(FrameError::new(self.start, "the element is cut off by the end of the input"));
        }
        Ok(Some(self.need_more(buf.len())))
    }

    fn begin_element_value(&mut self, b: u8) -> Result<(), FrameError> {
        self.phase = match b {
            b'{' | b'[' => {
                self.depth = 1;
                Phase::Container
            }
            b'"' => Phase::Str,
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => Phase::Scalar,
            other => return Err(FrameError::new(self.pos, format!("unexpected character {:?}", other as char))),
        };
        self.pos += 1;
        Ok(())
    }

    /// Scans to the end of the string whose opening quote was consumed; false: need more.
    fn scan_string(&mut self, buf: &[u8]) -> bool {
        if self.escape {
            if self.pos >= buf.len() {
                return false;
            }
            self.pos += 1;
            self.escape = false;
        }
        loop {
            match memchr::memchr2(b'"', b'\\', &buf[self.pos..]) {
                Some(n) if buf[self.pos + n] == b'\\' => {
                    self.pos += n + 1;
                    if self.pos >= buf.len() {
                        self.escape = true;
                        return false;
                    }
                    self.pos += 1;
                }
                Some(n) => {
                    self.pos += n + 1;
                    return true;
                }
                None => {
                    self.pos = buf.len();
                    return false;
                }
            }
        }
    }

    /// Scans to the end of the container value being framed; false: need more.
    fn scan_container(&mut self, buf: &[u8]) -> bool {
        while self.pos < buf.len() {
            if self.in_string {
                if !self.scan_string(buf) {
                    return false;
                }
                self.in_string = false;
                continue;
            }
            let b = buf[self.pos];
            self.pos += 1;
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }

    fn record(&mut self) -> Step {
        let frame = Frame {
            start: self.start,
            end: self.pos,
            value_start: self.value_start,
            member: self.members,
            next: self.pos,
        };
        self.phase = Phase::Before;
        self.need_comma = true;
        self.seen = true;
        self.pos = 0;
        self.start = 0;
        self.value_start = 0;
        Step::Record(frame)
    }
}

impl Framer for JsonFramer {
    fn next(&mut self, buf: &[u8], eof: bool) -> Result<Step, FrameError> {
        loop {
            match self.mode {
                Mode::Navigate => match self.navigate(buf, eof)? {
                    Some(step) => return Ok(step),
                    // Entered the target container: frame its elements from here.
                    None => {
                        self.mode = Mode::Elements;
                        self.phase = Phase::Before;
                    }
                },
                // `None`: the container closed and `element` went back to navigating, which
                // checks the rest of the document.
                Mode::Elements => {
                    if let Some(step) = self.element(buf, eof)? {
                        return Ok(step);
                    }
                }
            }
        }
    }
}

/// Parses one framed element: `(member name, value)` for objects, `(None, value)` for arrays.
pub(crate) fn parse_element(
    record: &[u8],
    value_start: usize,
    members: bool,
) -> Result<(Option<String>, Value), String> {
    let key = if members {
        let mut de = serde_json::Deserializer::from_slice(&record[..value_start]);
        Some(String::deserialize(&mut de).map_err(|e| format!("invalid member name: {e}"))?)
    } else {
        None
    };
    let value = serde_json::from_slice(&record[value_start..]).map_err(|e| e.to_string())?;
    Ok((key, value))
}
