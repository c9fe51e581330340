//! The fast path of [`super::JsonText::canonicalize`]: a pass over the bytes that checks
//! they are canonical already (then they are copied whole), else one that copies what is
//! canonical token by token and drops whitespace, for JSON as programs usually write it
//! (`json.dumps`, `JSON.stringify`, serde): unescaped strings, integers that fit 64 bits,
//! floats, objects without repeated keys.
//!
//! Contract: [`compact`] returns `Some(text)` only where the general path (serde_json's
//! parser feeding its writer) returns the same text; `None` means "not sure", never "not
//! JSON": strings with escapes, `-0`, integers past 64 bits, objects of many keys, deep
//! nesting and every malformed input go the general way, which decides. A response of a
//! thousand rows then costs a copy instead of a parse and a write per token.

use serde::Serializer as _;

use crate::byte_block::{ascii_digits, first_json_special};

/// Deeper values go the general way (serde_json's parser stops at 128 levels).
const MAX_DEPTH: usize = 100;

/// Objects with more keys go the general way, which checks repeats with a set; under this,
/// comparing a key with the object's earlier ones is cheaper than hashing it.
const MAX_KEYS: usize = 32;

/// `Some(ends)` when `bytes` are canonical text already (UTF-8 included), with the end offsets
/// of its elements when it is an array (as [`compact`] gives them).
pub(super) fn canonical_as_is(bytes: &[u8]) -> Option<Option<Vec<usize>>> {
    simdutf8::basic::from_utf8(bytes).ok()?;
    Scan::<false>::run(bytes).map(|(_, ends)| ends)
}

/// The canonical text of `bytes` (see the module doc), with the end offsets of its elements
/// when it is an array; `None`: take the general path.
pub(super) fn compact(bytes: &[u8]) -> Option<(String, Option<Vec<usize>>)> {
    // Text that is canonical already (compact JSON, as most programs send it) is checked
    // without writing token by token, then copied whole; text with whitespace or floats to
    // rewrite is written anew.
    match canonical_as_is(bytes) {
        // SAFETY: `canonical_as_is` found the bytes to be UTF-8.
        Some(ends) => Some((unsafe { std::str::from_utf8_unchecked(bytes) }.to_owned(), ends)),
        None => rewrite(bytes),
    }
}

/// The canonical text of `bytes` written anew (see [`compact`]), for text that is not
/// canonical as it is.
pub(super) fn rewrite(bytes: &[u8]) -> Option<(String, Option<Vec<usize>>)> {
    // Strings are copied as they are: what is not UTF-8 fails at the end, for the general
    // path to reject.
    let (out, ends) = Scan::<true>::run(bytes)?;
    Some((String::from_utf8(out).ok()?, ends))
}

/// One pass over `input`. `WRITE`: the canonical text goes to `out`; without, the pass only
/// checks that `input` is that text already, and fails (`None`) where it is not.
struct Scan<'a, const WRITE: bool> {
    input: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    /// Where each element of a top-level array ends in the canonical text (a FLATTEN
    /// ResultWriter's lines, found without another pass); `None` for other values.
    ends: Option<Vec<usize>>,
    /// The keys of the objects being scanned, with their quotes, outer ones first: an object's
    /// own are those from where it started (one allocation for all the objects of a
    /// response). Keys without escapes are equal when their quoted texts are. An object
    /// whose keys so far are its shape's (below) has none here yet: they are pushed only when
    /// one differs, for the check of repeats that then begins.
    keys: Vec<&'a [u8]>,
    /// By depth, the keys of the last object scanned there, in order, each with its quotes.
    /// Rows of a response mostly have the keys of the row before: a key that is the known one
    /// at its place is compared with it, not scanned and checked against the others again.
    shapes: Vec<Vec<&'a [u8]>>,
}

impl<'a, const WRITE: bool> Scan<'a, WRITE> {
    fn run(input: &'a [u8]) -> Option<(Vec<u8>, Option<Vec<usize>>)> {
        let out = Vec::with_capacity(if WRITE { input.len() } else { 0 });
        let mut scan = Scan::<WRITE> { input, pos: 0, out, ends: None, keys: Vec::new(), shapes: Vec::new() };
        scan.skip_whitespace();
        scan.value(0)?;
        scan.skip_whitespace();
        (scan.pos == input.len()).then_some((scan.out, scan.ends))
    }

    /// The offset in the canonical text that the input has reached.
    fn written(&self) -> usize {
        if WRITE {
            self.out.len()
        } else {
            self.pos
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if WRITE {
            self.out.extend_from_slice(bytes);
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Skips whitespace where the pass writes. The check pass need not look: whitespace is
    /// none of the bytes it expects next, nor the end, so there the text is not canonical.
    fn skip_whitespace(&mut self) {
        if WRITE {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
                self.pos += 1;
            }
        }
    }

    /// Consumes `byte` (after whitespace) and writes it.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        (self.peek()? == byte).then(|| {
            self.pos += 1;
            self.write(&[byte]);
        })
    }

    /// Inlined into [`Self::object`] and [`Self::array`] (the recursion goes through them): a
    /// string or literal member costs no call.
    #[inline(always)]
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.input[self.pos..].starts_with(word).then(|| {
            self.pos += word.len();
            self.write(word);
        })
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if self.open(b'{', b'}', depth)? {
            return Some(());
        }
        let base = self.keys.len();
        if self.shapes.len() <= depth {
            self.shapes.resize_with(depth + 1, Vec::new);
        }
        let mut shape = std::mem::take(&mut self.shapes[depth]);
        // While `same`, every key so far was the shape's at its place (the shape's keys are
        // distinct, so these are) and `keys` holds none of this object's.
        let mut same = true;
        let mut count = 0;
        loop {
            self.skip_whitespace();
            if self.peek()? != b'"' || count == MAX_KEYS {
                return None;
            }
            let known = if same { shape.get(count).copied() } else { None };
            match known {
                Some(known) if self.known_string(known) => {}
                _ => {
                    if same {
                        same = false;
                        self.keys.extend_from_slice(&shape[..count]);
                    }
                    let start = self.pos;
                    self.string()?;
                    let key = &self.input[start..self.pos];
                    // A repeated key: parsing keeps the last value at the first key's place,
                    // which the text as written does not say. The general path reports it.
                    if self.keys[base..].contains(&key) {
                        return None;
                    }
                    self.keys.push(key);
                }
            }
            count += 1;
            self.expect(b':')?;
            self.skip_whitespace();
            self.value(depth)?;
            if self.next_or_end(b'}')? {
                if !same {
                    shape.clear();
                    shape.extend_from_slice(&self.keys[base..]);
                } else if count != shape.len() {
                    shape.truncate(count);
                }
                self.shapes[depth] = shape;
                self.keys.truncate(base);
                return Some(());
            }
        }
    }

    /// Copies the string at the input's position when it is `known` (with its quotes: a key
    /// [`Self::string`] took before, so without escapes or control characters).
    fn known_string(&mut self, known: &[u8]) -> bool {
        let found = self.input.get(self.pos..self.pos + known.len()).is_some_and(|text| short_eq(text, known));
        if found {
            self.write(known);
            self.pos += known.len();
        }
        found
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        let top = depth == 1;
        if top {
            self.ends = Some(Vec::new());
        }
        if self.open(b'[', b']', depth)? {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            self.value(depth)?;
            if top {
                let end = self.written();
                self.ends.get_or_insert_with(Vec::new).push(end);
            }
            if self.next_or_end(b']')? {
                return Some(());
            }
        }
    }

    /// Writes the `open` bracket of a container at `depth`; `true` when it is empty (its
    /// `close` written too).
    fn open(&mut self, open: u8, close: u8, depth: usize) -> Option<bool> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(open)?;
        self.skip_whitespace();
        let empty = self.peek()? == close;
        if empty {
            self.pos += 1;
            self.write(&[close]);
        }
        Some(empty)
    }

    /// After a member or an element: writes the `,` before the next one (`false`) or the
    /// container's `close` (`true`).
    fn next_or_end(&mut self, close: u8) -> Option<bool> {
        self.skip_whitespace();
        let byte = self.peek()?;
        if byte != b',' && byte != close {
            return None;
        }
        self.pos += 1;
        self.write(&[byte]);
        Some(byte == close)
    }

    /// Copies a string without escapes (serde_json writes such a string as it is); `None` for
    /// an escape or a control character.
    #[inline]
    fn string(&mut self) -> Option<()> {
        let end = string_end(self.input, self.pos + 1)?;
        let input = self.input;
        self.write(&input[self.pos..=end]);
        self.pos = end + 1;
        Some(())
    }

    /// A number: an integer that fits 64 bits is written as it is (JSON has no leading zeros,
    /// so that is what serde_json writes); a float is parsed by serde_json and written as it
    /// writes it, or copied where that is the same text ([`written_as_is`]).
    #[inline]
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        let bytes = self.input;
        let mut i = start + usize::from(bytes[start] == b'-');
        let whole = ascii_digits(bytes, i);
        if whole == 0 || (bytes[i] == b'0' && whole > 1) {
            return None;
        }
        let whole_digits = i..i + whole;
        i += whole;
        let (mut float, mut exponent_mark) = (false, false);
        let mut fraction_digits = i..i;
        if bytes.get(i) == Some(&b'.') {
            let fraction = ascii_digits(bytes, i + 1);
            if fraction == 0 {
                return None;
            }
            fraction_digits = i + 1..i + 1 + fraction;
            i += 1 + fraction;
            float = true;
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            let exponent = ascii_digits(bytes, i);
            if exponent == 0 {
                return None;
            }
            i += exponent;
            (float, exponent_mark) = (true, true);
        }
        let token = &bytes[start..i];
        self.pos = i;
        if !float {
            // `-0` is a float to serde_json (`-0.0`); longer integers may not fit.
            // Digit strings of the same length compare as their numbers.
            let within =
                |limit: &[u8]| whole < limit.len() || (whole == limit.len() && &token[token.len() - whole..] <= limit);
            let fits = match token[0] {
                b'-' => token != b"-0" && within(b"9223372036854775808"),
                _ => within(b"18446744073709551615"),
            };
            if !fits {
                return None;
            }
            self.write(token);
            return Some(());
        }
        if !exponent_mark && written_as_is(&bytes[whole_digits], &bytes[fraction_digits]) {
            self.write(token);
            return Some(());
        }
        if !WRITE {
            // Rewritten: the text is not canonical as it is.
            return None;
        }
        self.rewrite_float(token)
    }

    /// Writes the float `token` as the general path does: serde_json's own parser gives its
    /// value, whatever its rounding (out of range, not infinite, past f64). Kept out of
    /// [`Self::number`], which runs for every number of a response.
    #[inline(never)]
    fn rewrite_float(&mut self, token: &[u8]) -> Option<()> {
        let value: f64 = serde_json::from_slice(token).ok()?;
        serde_json::Serializer::new(&mut self.out).serialize_f64(value).ok()
    }
}

/// `a == b` for slices of the same length, short ones (keys) compared eight or four bytes at a
/// time without a call to `memcmp`, whose setup costs more than such a key takes.
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    debug_assert_eq!(n, b.len());
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or_default());
    match n {
        // Two loads from each end cover every byte (overlapping in the middle).
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
}

/// The offset of the quote that ends the string whose contents start at `from`, when they
/// hold no backslash and no control character (serde_json writes such a string as it is);
/// `None` otherwise, or without a closing quote.
fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let found = first_json_special(bytes, from);
    (bytes.get(found) == Some(&b'"')).then_some(found)
}

/// Whether serde_json writes the float `-?whole.fraction` (digits, no exponent) as it is:
/// when it has at most 15 significant digits (then no shorter decimal reads as the same
/// double, and serde_json writes the shortest), no trailing zero but in `.0`, and a magnitude
/// from 1e-5 and below 1e14 (15 digits with one after the point), where serde_json writes
/// plain decimals; Python's `repr` does too from 1e-4, so `json.dumps` floats mostly qualify.
/// This needs serde_json's `float_roundtrip` feature (the workspace's): its default parser
/// can land a step off the nearest double, whose shortest text is then another.
#[inline]
fn written_as_is(whole: &[u8], fraction: &[u8]) -> bool {
    debug_assert!(!fraction.is_empty(), "a float without an exponent has a fraction");
    if fraction.len() > 1 && fraction.ends_with(b"0") {
        return false;
    }
    let significant = if whole == b"0" {
        let zeros = fraction.iter().take_while(|&&b| b == b'0').count();
        // 0.0000x is 1e-5 at least; a zero fraction is the value 0, written `0.0`.
        if zeros > 4 && zeros != fraction.len() {
            return false;
        }
        fraction.len() - zeros
    } else {
        whole.len() + fraction.len()
    };
    significant <= 15
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of every length from empty to past the word compares: equal ones are equal, and a
    /// change of any one byte (the middle ones of a long key too) is seen.
    #[test]
    fn keys_compare_eight_and_four_bytes_at_a_time() {
        let text = b"\"0123456789abcdefghijklmnopqrstuvwxyz\"";
        for n in 0..=24 {
            let key = &text[..n];
            let mut changed = key.to_vec();
            assert!(short_eq(key, &changed), "{n}");
            for i in 0..n {
                changed[i] ^= 1;
                assert!(!short_eq(key, &changed), "byte {i} of {n}");
                changed[i] ^= 1;
            }
        }
    }
}
