//! CSV records as AWS parses them ("How Step Functions parses input CSV files", features.md
//! §2.3):
//!
//! * fields are separated by `CSVDelimiter` (COMMA, PIPE, SEMICOLON, SPACE, TAB), records by
//!   newlines (`\n`, `\r\n` or `\r`); every value is a string;
//! * a field that starts with `"` is quoted: it may contain delimiters and newlines; `""` is one
//!   literal quote, inside quotes and outside (AWS's own example turns the unquoted field
//!   `{""MyKey"":""MyValue""}` into `{"MyKey":"MyValue"}`);
//! * a backslash escapes a backslash, a double quote or the delimiter, inside or outside
//!   quotes; a backslash before any other character is silently removed (that character keeps
//!   its meaning, so `\` before a newline does not join lines);
//! * fewer fields than headers ⇒ the missing keys get `""`; more ⇒ the extras are dropped;
//! * header values are keys verbatim (`0`, `True`, `{}`, even `""`); duplicates are refused
//!   with AWS's cause "CSV headers cannot contain duplicates.";
//! * an empty line (including the one after a trailing newline) is no record; a line of spaces
//!   is a record.
//!
//! The `csv` crate cannot express these escape rules (its escape character only works inside
//! quotes), so the tokenizer is this small state machine. It frames records (to plan batches
//! without building values) and splits fields; the fast paths that skip it for records quoted
//! the usual way (`usual_run`, `split_leading`, `split_simple`) are held to it by a property
//! test. Interpretations where AWS is silent: text after a closing quote is appended to
//! the field (`"ab"cd` ⇒ `abcd`), a single quote inside an unquoted field is literal, and a file
//! that ends inside quotes is malformed.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use stepmap_asl::byte_block::{prefix_xor, valid_below, Block};

use super::text::{Frame, FrameError, Framer, Step};
use crate::error::{Result, StorageError};

/// AWS's cause text for duplicate header names [OBS 2023-09].
pub const DUPLICATE_HEADERS: &str = "CSV headers cannot contain duplicates.";

/// `CSVDelimiter`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CsvDelimiter {
    #[default]
    Comma,
    Pipe,
    Semicolon,
    Space,
    Tab,
}

impl CsvDelimiter {
    pub fn parse(name: &str) -> Option<CsvDelimiter> {
        Some(match name {
            "COMMA" => CsvDelimiter::Comma,
            "PIPE" => CsvDelimiter::Pipe,
            "SEMICOLON" => CsvDelimiter::Semicolon,
            "SPACE" => CsvDelimiter::Space,
            "TAB" => CsvDelimiter::Tab,
            _ => return None,
        })
    }

    pub fn byte(self) -> u8 {
        match self {
            CsvDelimiter::Comma => b',',
            CsvDelimiter::Pipe => b'|',
            CsvDelimiter::Semicolon => b';',
            CsvDelimiter::Space => b' ',
            CsvDelimiter::Tab => b'\t',
        }
    }
}

/// Where the column names come from (`CSVHeaderLocation`, `CSVHeaders`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CsvHeader {
    /// The first record of each object is the header.
    FirstRow,
    /// Given in the definition (`CSVHeaders`); every record is an item.
    Given(Vec<String>),
}

/// Checks a header row: names are used verbatim, but must be unique.
pub fn check_headers(headers: &[String]) -> Result<()> {
    let mut seen = HashSet::with_capacity(headers.len());
    if headers.iter().all(|h| seen.insert(h.as_str())) {
        Ok(())
    } else {
        Err(StorageError::reader_config(DUPLICATE_HEADERS))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    UnquotedEscape,
    /// A `"` inside an unquoted field: `""` or a literal quote.
    UnquotedQuote,
    Quoted,
    QuotedEscape,
    /// A `"` inside a quoted field: `""` or the closing quote.
    QuotedQuote,
}

/// What the machine did with one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// The byte is field content.
    Keep,
    /// The byte is syntax (an opening quote, an escaping backslash).
    Skip,
    /// The byte ends a field.
    EndField,
    /// The byte (a newline) ends the record.
    EndRecord,
    /// A pending `"` is content; the byte must be stepped again.
    QuoteThenAgain,
}

#[inline(always)]
fn step(state: &mut State, delimiter: u8, b: u8) -> Action {
    let newline = b == b'\n' || b == b'\r';
    match *state {
        State::FieldStart | State::Unquoted => {
            if b == delimiter {
                *state = State::FieldStart;
                Action::EndField
            } else if newline {
                *state = State::FieldStart;
                Action::EndRecord
            } else if b == b'\\' {
                *state = State::UnquotedEscape;
                Action::Skip
            } else if b == b'"' {
                *state = if *state == State::FieldStart { State::Quoted } else { State::UnquotedQuote };
                Action::Skip
            } else {
                *state = State::Unquoted;
                Action::Keep
            }
        }
        State::UnquotedQuote => {
            *state = State::Unquoted;
            if b == b'"' {
                Action::Keep
            } else {
                Action::QuoteThenAgain
            }
        }
        State::UnquotedEscape => {
            if newline {
                // Newlines are not escapable: the backslash is dropped, the record ends.
                *state = State::FieldStart;
                Action::EndRecord
            } else {
                *state = State::Unquoted;
                Action::Keep
            }
        }
        State::Quoted => match b {
            b'"' => {
                *state = State::QuotedQuote;
                Action::Skip
            }
            b'\\' => {
                *state = State::QuotedEscape;
                Action::Skip
            }
            _ => Action::Keep,
        },
        State::QuotedEscape => {
            *state = State::Quoted;
            Action::Keep
        }
        State::QuotedQuote => {
            if b == b'"' {
                *state = State::Quoted;
                Action::Keep
            } else if b == delimiter {
                *state = State::FieldStart;
                Action::EndField
            } else if newline {
                *state = State::FieldStart;
                Action::EndRecord
            } else if b == b'\\' {
                *state = State::UnquotedEscape;
                Action::Skip
            } else {
                *state = State::Unquoted;
                Action::Keep
            }
        }
    }
}

/// Finds record boundaries.
pub(crate) struct CsvFramer {
    delimiter: u8,
    state: State,
    /// Start of the current record in the buffer (after skipped empty lines).
    start: usize,
    /// Scan position in the buffer.
    pos: usize,
}

impl CsvFramer {
    pub fn new(delimiter: CsvDelimiter) -> Self {
        CsvFramer { delimiter: delimiter.byte(), state: State::FieldStart, start: 0, pos: 0 }
    }
}

impl Framer for CsvFramer {
    fn run(&mut self, buf: &[u8], record: &mut dyn FnMut(usize, usize) -> bool) -> usize {
        let between_records = self.start == 0 && self.pos == 0 && self.state == State::FieldStart;
        if between_records {
            usual_run(buf, self.delimiter, record)
        } else {
            0
        }
    }

    fn next(&mut self, buf: &[u8], eof: bool) -> std::result::Result<Step, FrameError> {
        // Empty lines between records are no records.
        if self.pos == self.start {
            while self.start < buf.len() && (buf[self.start] == b'\n' || buf[self.start] == b'\r') {
                self.start += 1;
            }
            self.pos = self.start;
        }
        let delimiter = self.delimiter;
        let mut state = self.state;
        let mut pos = self.pos;
        while pos < buf.len() {
            // Fast path: runs of field bytes, found with vectorised scans. Inside an unquoted
            // field a delimiter matters only where a quote follows it (the quote opens a
            // quoted field), so an unquoted run ends at a newline, backslash or quote only.
            if state == State::Unquoted || state == State::Quoted {
                let stop = if state == State::Quoted {
                    memchr::memchr2(b'"', b'\\', &buf[pos..])
                } else {
                    unquoted_stop(&buf[pos..])
                };
                match stop {
                    Some(n) => {
                        if state == State::Unquoted && n > 0 && buf[pos + n] == b'"' && buf[pos + n - 1] == delimiter {
                            // The delimiter before the quote (run over above) ended a field.
                            state = State::FieldStart;
                        }
                        pos += n;
                    }
                    None => {
                        if state == State::Unquoted && buf.last() == Some(&delimiter) {
                            // As above, for a quote that may start the next buffer.
                            state = State::FieldStart;
                        }
                        pos = buf.len();
                        break;
                    }
                }
            }
            let action = step(&mut state, delimiter, buf[pos]);
            if action == Action::QuoteThenAgain {
                continue;
            }
            pos += 1;
            if action == Action::EndRecord {
                let frame =
                    Frame { start: self.start, end: pos - 1, value_start: self.start, member: false, next: pos };
                self.state = State::FieldStart;
                self.start = 0;
                self.pos = 0;
                return Ok(Step::Record(frame));
            }
        }
        self.state = state;
        self.pos = pos;
        if !eof {
            let consumed = self.start;
            self.start = 0;
            self.pos -= consumed;
            return Ok(Step::NeedMore { consumed });
        }
        if matches!(state, State::Quoted | State::QuotedEscape) {
            return Err(FrameError::new(self.start, "the file ends inside a quoted field"));
        }
        if self.start < buf.len() {
            let frame =
                Frame { start: self.start, end: buf.len(), value_start: self.start, member: false, next: buf.len() };
            self.state = State::FieldStart;
            self.start = 0;
            self.pos = 0;
            return Ok(Step::Record(frame));
        }
        Ok(Step::End { consumed: buf.len() })
    }
}

/// A run of records quoted in the usual way (records of most files), framed 64 bytes at a time
/// ([`stepmap_asl::byte_block`]) without the state machine: no backslash, and every quote
/// that opens a quoted field does so at the field's start, or is the second of a pair (`""`)
/// inside one. Inside quotes is then the prefix XOR of the quotes (an opening quote is one
/// inside), and the records end at the newlines outside quotes, as the machine would find.
/// (A closing quote may be followed by anything: the machine reads on unquoted, where a
/// quote opens nothing, and the parity sees that quote as a stray opening one.)
///
/// `record(start, end)` is called for each record of `buf` in turn (empty lines skipped)
/// until it returns false; the run stops before the first record holding anything else (the
/// machine frames that one) and before a record not ended in `buf`. Returns the bytes to
/// consume: up to the newline of the last record visited or empty line skipped (0 if none).
fn usual_run(buf: &[u8], delimiter: u8, record: &mut dyn FnMut(usize, usize) -> bool) -> usize {
    // Carried from one block to the next: inside quotes at its end (all ones); whether its
    // last byte closed a quote; whether it ended a field or record (or is before the start).
    let (mut inside_before, mut close_before, mut field_end_before) = (0u64, 0u64, 1u64);
    let (mut record_start, mut at) = (0, 0);
    while at < buf.len() {
        let (block, valid) = Block::at(buf, at);
        let quotes = block.equal(b'"') & valid;
        let newlines = block.equal_any([b'\n', b'\r']) & valid;
        let delimiters = block.equal(delimiter) & valid;
        let backslashes = block.equal(b'\\') & valid;
        let inside = prefix_xor(quotes) ^ inside_before;
        let ends = newlines & !inside;
        let field_ends = delimiters | ends;
        let (open, close) = (quotes & inside, quotes & !inside);
        let after_close = (close << 1) | close_before;
        let stray_open = open & !((field_ends << 1) | field_end_before | after_close);
        let stray = (backslashes | stray_open) & valid;
        let mut usable = if stray == 0 { ends } else { ends & valid_below(stray.trailing_zeros() as usize) };
        while usable != 0 {
            let end = at + usable.trailing_zeros() as usize;
            usable &= usable - 1;
            if end > record_start && !record(record_start, end) {
                return end + 1;
            }
            record_start = end + 1;
        }
        if stray != 0 {
            break;
        }
        inside_before = 0u64.wrapping_sub(inside >> 63);
        close_before = close >> 63;
        field_end_before = field_ends >> 63;
        at += 64;
    }
    record_start
}

/// Where an unquoted run stops for the framer: at the first newline, carriage return,
/// backslash or quote.
fn unquoted_stop(bytes: &[u8]) -> Option<usize> {
    let stop = memchr::memchr3(b'\n', b'\\', b'"', bytes);
    memchr::memchr(b'\r', &bytes[..stop.unwrap_or(bytes.len())]).or(stop)
}

/// Splits one record (without its newline) into fields, calling `field(index, text)` for each.
/// `scratch` is reused between records; a field without quotes or escapes is passed straight
/// from the record.
pub(crate) fn split_fields(
    record: &[u8],
    delimiter: u8,
    scratch: &mut Vec<u8>,
    field: &mut dyn FnMut(usize, &str) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    // Fast path: plain and simply quoted fields (not UTF-8: the field-by-field path below
    // names the field).
    if quoted_whole(record, delimiter) {
        if let Ok(text) = std::str::from_utf8(record) {
            return split_simple(text, delimiter, field);
        }
    }
    let mut state = State::FieldStart;
    let mut index = 0;
    // Start of the current field when it is still a plain slice of the record.
    let mut plain: Option<usize> = Some(0);
    scratch.clear();
    let emit = |index: usize, bytes: &[u8], field: &mut dyn FnMut(usize, &str) -> std::result::Result<(), String>| {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("field {} is not valid UTF-8: {e}", index + 1))?;
        field(index, text)
    };
    // Validated once: a plain slice of a valid record is valid (it is cut at ASCII bytes), so
    // only fields built in `scratch` are checked again.
    let valid = std::str::from_utf8(record).ok();
    let emit_plain =
        |index: usize,
         range: std::ops::Range<usize>,
         field: &mut dyn FnMut(usize, &str) -> std::result::Result<(), String>| match valid {
            Some(text) => field(index, &text[range]),
            None => emit(index, &record[range], field),
        };
    let mut i = 0;
    while i < record.len() {
        // Runs of plain content.
        let run_end = match state {
            // A framed record has no newline outside quotes.
            State::Unquoted => memchr::memchr3(delimiter, b'\\', b'"', &record[i..]).map_or(record.len(), |n| i + n),
            State::Quoted => memchr::memchr2(b'"', b'\\', &record[i..]).map_or(record.len(), |n| i + n),
            _ => i,
        };
        if run_end > i {
            if plain.is_none() {
                scratch.extend_from_slice(&record[i..run_end]);
            }
            i = run_end;
            if i == record.len() {
                break;
            }
        }
        let b = record[i];
        let action = step(&mut state, delimiter, b);
        match action {
            Action::Keep => {
                if plain.is_none() {
                    scratch.push(b);
                }
            }
            Action::Skip | Action::QuoteThenAgain => {
                // Syntax inside the field: from here on, the field is built in `scratch`.
                if let Some(start) = plain.take() {
                    scratch.extend_from_slice(&record[start..i]);
                }
                if action == Action::QuoteThenAgain {
                    scratch.push(b'"');
                    continue;
                }
            }
            Action::EndField => {
                match plain {
                    Some(start) => emit_plain(index, start..i, field)?,
                    None => emit(index, scratch, field)?,
                }
                scratch.clear();
                index += 1;
                plain = Some(i + 1);
            }
            // A record handed to this function has no record-ending newline.
            Action::EndRecord => return Err("unexpected end of record".into()),
        }
        i += 1;
    }
    if state == State::UnquotedQuote {
        if let Some(start) = plain.take() {
            scratch.extend_from_slice(&record[start..i]);
        }
        scratch.push(b'"');
    }
    match plain {
        Some(start) => emit_plain(index, start..record.len(), field),
        None => emit(index, scratch, field),
    }
}

/// Whether `record` is quoted simply: no backslash, and every quote opens a field or closes
/// one (a delimiter or the end follows). Its fields are then what lies between the
/// delimiters outside quotes, without the quotes. `false` means "not sure": the machine
/// decides.
fn quoted_whole(record: &[u8], delimiter: u8) -> bool {
    if memchr::memchr(b'\\', record).is_some() {
        return false;
    }
    let mut quotes = memchr::memchr_iter(b'"', record);
    while let Some(open) = quotes.next() {
        if open > 0 && record[open - 1] != delimiter {
            return false;
        }
        let Some(close) = quotes.next() else { return false };
        if close + 1 < record.len() && record[close + 1] != delimiter {
            return false;
        }
    }
    true
}

/// Splits the first `columns` fields of `record` into their ranges (fewer if the record has
/// fewer) when each of them is plain (no quote, no backslash) or quoted whole (`"…"` with
/// no quote or backslash inside, then a delimiter or the end): whatever follows them does
/// not change them. `None` where one is not: the caller splits the record the general way.
fn split_leading(
    record: &str,
    delimiter: u8,
    columns: usize,
    mut field: impl FnMut(std::ops::Range<usize>),
) -> Option<()> {
    let bytes = record.as_bytes();
    let mut needles = Needles::new(bytes, delimiter);
    let (mut start, plain) = needles.plain_fields(columns, &mut field);
    for _ in plain..columns {
        if start > bytes.len() {
            break;
        }
        let (range, end) = if bytes.get(start) == Some(&b'"') {
            let close = needles.first(start + 1, false);
            if bytes.get(close) != Some(&b'"') {
                return None;
            }
            (start + 1..close, close + 1)
        } else {
            let end = needles.first(start, true);
            (start..end, end)
        };
        if end < bytes.len() && bytes[end] != delimiter {
            return None;
        }
        field(range);
        start = end + 1;
    }
    Some(())
}

/// Finds a record's quotes, backslashes and delimiters, comparing each of its 64-byte blocks
/// once ([`stepmap_asl::byte_block`]) however many fields the block holds.
struct Needles<'a> {
    bytes: &'a [u8],
    delimiter: u8,
    /// The offset of the block compared last (`usize::MAX`: none yet), and its masks.
    block: usize,
    quotes_and_backslashes: u64,
    delimiters: u64,
}

impl<'a> Needles<'a> {
    fn new(bytes: &'a [u8], delimiter: u8) -> Self {
        Needles { bytes, delimiter, block: usize::MAX, quotes_and_backslashes: 0, delimiters: 0 }
    }

    /// Compares the block at `at` (a multiple of 64 below the length), unless it was last.
    fn load(&mut self, at: usize) {
        if self.block != at {
            let (block, valid) = Block::at(self.bytes, at);
            self.quotes_and_backslashes = block.equal_any([b'"', b'\\']) & valid;
            self.delimiters = block.equal(self.delimiter) & valid;
            self.block = at;
        }
    }

    /// The record's leading plain fields (no quote, no backslash), up to `columns`: their
    /// ranges go to `field`, found from the delimiters' bits alone. Returns where the next
    /// field starts (past the end when the record ended) and how many were found; it stops at
    /// a field holding a quote or backslash, which [`Self::first`] then takes.
    fn plain_fields(&mut self, columns: usize, field: &mut impl FnMut(std::ops::Range<usize>)) -> (usize, usize) {
        let (mut start, mut found) = (0, 0);
        if columns == 0 {
            return (start, found);
        }
        for at in (0..self.bytes.len()).step_by(64) {
            self.load(at);
            let specials = self.quotes_and_backslashes;
            // The fields that end before the first quote or backslash.
            let before = if specials == 0 { u64::MAX } else { valid_below(specials.trailing_zeros() as usize) };
            let mut delimiters = self.delimiters & before;
            while delimiters != 0 {
                let end = at + delimiters.trailing_zeros() as usize;
                delimiters &= delimiters - 1;
                field(start..end);
                (start, found) = (end + 1, found + 1);
                if found == columns {
                    return (start, found);
                }
            }
            if specials != 0 {
                return (start, found);
            }
        }
        // The record ends the last field.
        field(start..self.bytes.len());
        (self.bytes.len() + 1, found + 1)
    }

    /// The offset of the first quote or backslash (or, with `delimiters`, delimiter) from
    /// `from` on; `bytes.len()` if none.
    fn first(&mut self, from: usize, delimiters: bool) -> usize {
        let mut at = from & !63;
        while at < self.bytes.len() {
            self.load(at);
            let wanted = self.quotes_and_backslashes | if delimiters { self.delimiters } else { 0 };
            let wanted = wanted & !valid_below(from.saturating_sub(at));
            if wanted != 0 {
                return at + wanted.trailing_zeros() as usize;
            }
            at += 64;
        }
        self.bytes.len()
    }
}

/// Splits a record [`quoted_whole`] says is simple.
fn split_simple(
    record: &str,
    delimiter: u8,
    field: &mut dyn FnMut(usize, &str) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let bytes = record.as_bytes();
    let (mut start, mut index) = (0, 0);
    loop {
        let (text, end) = if bytes.get(start) == Some(&b'"') {
            // The closing quote, which a delimiter or the end follows.
            let close = start + 1 + memchr::memchr(b'"', &bytes[start + 1..]).unwrap_or(0);
            (&record[start + 1..close], close + 1)
        } else {
            let end = memchr::memchr(delimiter, &bytes[start..]).map_or(bytes.len(), |n| start + n);
            (&record[start..end], end)
        };
        field(index, text)?;
        if end >= bytes.len() {
            return Ok(());
        }
        (start, index) = (end + 1, index + 1);
    }
}

/// Turns records into items: `{header: value}` with AWS's missing / extra column rules.
#[derive(Clone, Debug)]
pub(crate) struct CsvRows {
    pub delimiter: u8,
    pub headers: Arc<[String]>,
    scratch: Vec<u8>,
}

impl CsvRows {
    pub fn new(delimiter: CsvDelimiter, headers: Arc<[String]>) -> Self {
        CsvRows { delimiter: delimiter.byte(), headers, scratch: Vec::new() }
    }

    pub fn item(&mut self, record: &[u8]) -> std::result::Result<Value, String> {
        let headers = &self.headers;
        let mut map = Map::with_capacity(headers.len());
        split_fields(record, self.delimiter, &mut self.scratch, &mut |index, text| {
            if let Some(header) = headers.get(index) {
                map.insert(header.clone(), Value::String(text.to_string()));
            }
            Ok(())
        })?;
        for header in headers.iter().skip(map.len()) {
            map.insert(header.clone(), Value::String(String::new()));
        }
        Ok(Value::Object(map))
    }
}

/// A chunk of CSV records as the object holds them, not yet split: a chunk of
/// [`ItemReader::batch_records`](super::ItemReader::batch_records). A reader that selects
/// columns (a compiled ItemSelector) splits each record once, with [`CsvRecords::fields`],
/// and takes fields by column number; [`CsvRecords::item`] is the item AWS would build.
#[derive(Clone, Debug)]
pub struct CsvRecords {
    pub headers: Arc<[String]>,
    /// `$$.Map.Item.Source`.
    pub source: Arc<str>,
    /// `$$.Map.Item.Index` of the first record.
    pub first_index: u64,
    delimiter: u8,
    /// The records' text (each checked as UTF-8 when pushed), one after the other.
    text: String,
    /// The end in `text` of each record.
    record_ends: Vec<usize>,
}

impl CsvRecords {
    pub(crate) fn new(headers: Arc<[String]>, source: Arc<str>, first_index: u64, delimiter: u8) -> Self {
        CsvRecords { headers, source, first_index, delimiter, text: String::new(), record_ends: Vec::new() }
    }

    /// Appends `record` (without its newline), known to be UTF-8.
    pub(crate) fn push_str(&mut self, record: &str) {
        self.text.push_str(record);
        self.record_ends.push(self.text.len());
    }

    /// Appends `record` (without its newline); fails as splitting it would (a field that is
    /// not UTF-8), naming the field.
    pub(crate) fn push(&mut self, record: &[u8]) -> std::result::Result<(), String> {
        // Checked with SIMD: this is every byte of the CSV's records.
        match simdutf8::basic::from_utf8(record) {
            Ok(text) => self.text.push_str(text),
            // Fields are UTF-8 once unescaped, which the record may not be (a backslash inside
            // a character): kept as the same fields, each quoted, so that it splits alike.
            Err(_) => {
                let mut fields = Vec::new();
                split_fields(record, self.delimiter, &mut Vec::new(), &mut |_, field| {
                    fields.push(format!("\"{}\"", field.replace('\\', "\\\\").replace('"', "\"\"")));
                    Ok(())
                })?;
                self.text.push_str(&fields.join(std::str::from_utf8(&[self.delimiter]).unwrap_or(",")));
            }
        }
        self.record_ends.push(self.text.len());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.record_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record_ends.is_empty()
    }

    /// Makes room for `bytes` more of the records' text, and `records` more records.
    pub(crate) fn reserve(&mut self, bytes: usize, records: usize) {
        self.text.reserve(bytes);
        self.record_ends.reserve(records);
    }

    /// The records' text in bytes (for sizing what is built from them).
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The first `columns` fields of `record` (or all, if fewer), split into `buffer`
    /// (reused from record to record): the fields after them are not split.
    pub fn fields<'a>(&'a self, record: usize, columns: usize, buffer: &'a mut FieldBuffer) -> CsvFields<'a> {
        let start = if record == 0 { 0 } else { self.record_ends[record - 1] };
        let text = &self.text[start..self.record_ends[record]];
        let FieldBuffer { spans, built, scratch } = buffer;
        spans.clear();
        built.clear();
        let columns = columns.min(self.headers.len());
        let leading = split_leading(text, self.delimiter, columns, |range| {
            spans.push(FieldSpan { built: false, range });
        });
        if leading.is_none() {
            spans.clear();
            // A field is a slice of the record, or (unescaped) built in `built`.
            let base = text.as_ptr() as usize;
            let mut keep = |index: usize, field: &str| {
                if index < columns {
                    let at = (field.as_ptr() as usize).wrapping_sub(base);
                    spans.push(if at <= text.len() && at + field.len() <= text.len() {
                        FieldSpan { built: false, range: at..at + field.len() }
                    } else {
                        built.push_str(field);
                        FieldSpan { built: true, range: built.len() - field.len()..built.len() }
                    });
                }
                Ok(())
            };
            // The record is UTF-8 (pushed as such), the only thing splitting can fail on.
            let result = split_fields(text.as_bytes(), self.delimiter, scratch, &mut keep);
            debug_assert!(result.is_ok(), "a pushed record splits");
        }
        CsvFields { record: text, built, spans }
    }

    /// The item of `record`: `{header: field}`, as [`CsvRows::item`] builds it.
    pub fn item(&self, record: usize) -> crate::Item {
        let mut buffer = FieldBuffer::default();
        let fields = self.fields(record, self.headers.len(), &mut buffer);
        let value: Map<String, Value> = self
            .headers
            .iter()
            .enumerate()
            .map(|(column, header)| (header.clone(), Value::String(fields.get(column).to_owned())))
            .collect();
        crate::Item {
            index: self.first_index + record as u64,
            key: None,
            value: Value::Object(value),
            source: self.source.clone(),
        }
    }
}

/// Space for splitting records, reused from record to record ([`CsvRecords::fields`]).
#[derive(Debug, Default)]
pub struct FieldBuffer {
    spans: Vec<FieldSpan>,
    /// Fields with quotes or escapes taken out.
    built: String,
    scratch: Vec<u8>,
}

#[derive(Clone, Debug)]
struct FieldSpan {
    built: bool,
    range: std::ops::Range<usize>,
}

/// One record's fields (a record's fields beyond the headers are dropped).
pub struct CsvFields<'a> {
    record: &'a str,
    built: &'a str,
    spans: &'a [FieldSpan],
}

impl<'a> CsvFields<'a> {
    /// The field in `column`: `""` where the record has fewer fields (AWS's rule).
    pub fn get(&self, column: usize) -> &'a str {
        match self.spans.get(column) {
            Some(FieldSpan { built: false, range }) => &self.record[range.clone()],
            Some(FieldSpan { built: true, range }) => &self.built[range.clone()],
            None => "",
        }
    }
}

/// Reads a header record into names.
pub(crate) fn header_names(record: &[u8], delimiter: CsvDelimiter) -> std::result::Result<Vec<String>, String> {
    let mut names = Vec::new();
    split_fields(record, delimiter.byte(), &mut Vec::new(), &mut |_, text| {
        names.push(text.to_string());
        Ok(())
    })?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Records as the state machine alone frames them, one byte at a time.
    fn reference_records(text: &[u8], delimiter: u8) -> std::result::Result<Vec<Vec<u8>>, ()> {
        let (mut records, mut state, mut start) = (Vec::new(), State::FieldStart, None);
        let mut i = 0;
        while i < text.len() {
            let b = text[i];
            if start.is_none() {
                if b == b'\n' || b == b'\r' {
                    i += 1;
                    continue;
                }
                start = Some(i);
            }
            match step(&mut state, delimiter, b) {
                Action::QuoteThenAgain => continue,
                Action::EndRecord => records.push(text[start.take().unwrap()..i].to_vec()),
                _ => {}
            }
            i += 1;
        }
        if matches!(state, State::Quoted | State::QuotedEscape) {
            return Err(());
        }
        if let Some(start) = start {
            records.push(text[start..].to_vec());
        }
        Ok(records)
    }

    /// Records as [`CsvFramer`] frames them when the text arrives in pieces of `piece` bytes.
    /// The records framed from `text` fed `piece` bytes at a time, by `next` alone or, with
    /// `runs`, as `TextScan` frames them: a run first (paused after every third record), then
    /// `next`.
    fn framed_records(text: &[u8], delimiter: u8, piece: usize, runs: bool) -> std::result::Result<Vec<Vec<u8>>, ()> {
        let mut framer = CsvFramer::new(match delimiter {
            b'|' => CsvDelimiter::Pipe,
            _ => CsvDelimiter::Comma,
        });
        let (mut buf, mut fed, mut records) = (Vec::new(), 0, Vec::new());
        loop {
            if runs {
                let consumed = framer.run(&buf, &mut |start, end| {
                    records.push(buf[start..end].to_vec());
                    records.len() % 3 != 0
                });
                buf.drain(..consumed);
            }
            let eof = fed == text.len();
            match framer.next(&buf, eof).map_err(|_| ())? {
                Step::Record(frame) => {
                    records.push(buf[frame.start..frame.end].to_vec());
                    buf.drain(..frame.next.min(buf.len()));
                }
                Step::NeedMore { consumed } => {
                    buf.drain(..consumed);
                    let more = piece.min(text.len() - fed);
                    buf.extend_from_slice(&text[fed..fed + more]);
                    fed += more;
                }
                Step::End { .. } => return Ok(records),
            }
        }
    }

    /// Fields as the state machine alone splits them.
    fn reference_fields(record: &[u8], delimiter: u8) -> Vec<String> {
        let (mut fields, mut field, mut state) = (Vec::new(), Vec::new(), State::FieldStart);
        let mut i = 0;
        while i < record.len() {
            match step(&mut state, delimiter, record[i]) {
                Action::Keep => field.push(record[i]),
                Action::QuoteThenAgain => {
                    field.push(b'"');
                    continue;
                }
                Action::EndField => fields.push(String::from_utf8(std::mem::take(&mut field)).unwrap()),
                Action::Skip | Action::EndRecord => {}
            }
            i += 1;
        }
        if state == State::UnquotedQuote {
            field.push(b'"');
        }
        fields.push(String::from_utf8(field).unwrap());
        fields
    }

    proptest! {
        /// The framer's and splitter's vectorised runs agree with the byte-at-a-time machine,
        /// wherever the input is cut into buffers.
        #[test]
        fn fast_paths_agree_with_the_state_machine(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("a"), Just("bc"), Just(","), Just("|"), Just("\""), Just("\\"), Just("\n"), Just("\r\n"), Just("\r"), Just("\r\""), Just("é"),
                    Just("\"a,|\""), Just(",\"\","), Just("\"a\"\"b,\""), Just("\"\"\"\""),
                    Just("a-long-run-of-field-bytes-that-carries-records-across-64-byte-blocks"),
                ],
                0..40,
            ),
            pipe in any::<bool>(),
            piece in 1usize..12,
        ) {
            let text = parts.concat().into_bytes();
            let delimiter = if pipe { b'|' } else { b',' };
            let expected = reference_records(&text, delimiter);
            prop_assert_eq!(&framed_records(&text, delimiter, piece, true), &expected);
            prop_assert_eq!(&framed_records(&text, delimiter, piece, false), &expected);
            prop_assert_eq!(&framed_records(&text, delimiter, text.len().max(1), true), &expected);
            // All the records in one chunk, each split in full or only its leading columns.
            let headers: Arc<[String]> = (0..6).map(|c| format!("h{c}")).collect();
            let mut chunk = CsvRecords::new(headers, Arc::from("S3://b/k"), 0, delimiter);
            let mut buffer = FieldBuffer::default();
            for (n, record) in expected.unwrap_or_default().into_iter().enumerate() {
                let mut fields = Vec::new();
                split_fields(&record, delimiter, &mut Vec::new(), &mut |_, text| {
                    fields.push(text.to_string());
                    Ok(())
                })
                .unwrap();
                let reference = reference_fields(&record, delimiter);
                prop_assert_eq!(&fields, &reference);
                chunk.push(&record).unwrap();
                for columns in [0, 1, 2, 3, 6, 9] {
                    let split = chunk.fields(n, columns, &mut buffer);
                    for column in 0..columns.min(6) {
                        let expected = reference.get(column).map_or("", String::as_str);
                        prop_assert_eq!(split.get(column), expected, "column {} of {}", column, columns);
                    }
                }
            }
        }
    }

    proptest! {
        /// `Needles` finds what a byte-by-byte search finds, wherever it starts, in blocks
        /// compared once and asked again.
        #[test]
        fn needles_are_the_first_found_byte_by_byte(
            bytes in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b','), Just(b'"'), Just(b'\\'), Just(0u8), Just(0xFFu8), Just(0x81u8)], 0..200),
            starts in proptest::collection::vec((0usize..201, any::<bool>()), 1..6),
        ) {
            let mut needles = Needles::new(&bytes, b',');
            for (from, delimiters) in starts {
                let from = from.min(bytes.len());
                let wanted: &[u8] = if delimiters { b"\"\\," } else { b"\"\\" };
                let expected = bytes[from..].iter().position(|b| wanted.contains(b)).map_or(bytes.len(), |n| from + n);
                prop_assert_eq!(needles.first(from, delimiters), expected);
            }
        }
    }

    /// A record that is not UTF-8 is refused when it is pushed, naming its field.
    #[test]
    fn a_record_that_is_not_utf8_is_refused_naming_the_field() {
        let headers: Arc<[String]> = ["a", "b"].iter().map(|h| h.to_string()).collect();
        let mut chunk = CsvRecords::new(headers, Arc::from("S3://b/k"), 0, b',');
        let error = chunk.push(b"ok,\xff").unwrap_err();
        assert!(error.starts_with("field 2 is not valid UTF-8"), "{error}");
        assert!(chunk.is_empty());
        chunk.push(b"x,\"y,z\"").unwrap();
        assert_eq!(chunk.item(0).value, serde_json::json!({"a": "x", "b": "y,z"}));
        // Not UTF-8 as it stands, but its fields are once unescaped: kept, as the sequential
        // read keeps it.
        chunk.push(b"\xC3\\\xA9,\"\\\\ \"\"q\"\"\"").unwrap();
        let expected = CsvRows::new(CsvDelimiter::Comma, chunk.headers.clone()).item(b"\xC3\\\xA9,\"\\\\ \"\"q\"\"\"");
        assert_eq!(chunk.item(1).value, expected.unwrap());
        assert_eq!(chunk.item(1).value, serde_json::json!({"a": "é", "b": "\\ \"q\""}));
    }
}
