//! A JSON payload as a value or as text nobody has needed to parse yet.
//!
//! A Distributed Map child whose only state is a Task calling a function would otherwise
//! build its whole batch as a `serde_json::Value` only to serialise it into the event, and
//! parse the function's response into one only to write it to the result files: every object
//! an `IndexMap` with a hashed, allocated key per field, more CPU than the rest of the
//! child's run. Instead the batch is rendered as text from its source
//! (`column_selection`), goes to the Task as it is when no field of the state reads it, and
//! the response is validated and compacted in one streaming pass ([`JsonText::canonicalize`])
//! and passed on as text when no field reads it; a value is built only if someone asks.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

mod outside;
mod scan;

/// A payload: the value itself, or its JSON text. (`==` compares forms too: compare
/// [`Payload::value`]s for the value.)
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Value(Value),
    Text(JsonText),
}

impl Default for Payload {
    fn default() -> Payload {
        Payload::Value(Value::Null)
    }
}

impl Payload {
    /// The value, parsed from the text if it is text.
    pub fn value(&self) -> std::borrow::Cow<'_, Value> {
        match self {
            Payload::Value(value) => std::borrow::Cow::Borrowed(value),
            Payload::Text(text) => std::borrow::Cow::Owned(text.to_value()),
        }
    }

    /// The size of the compact JSON text.
    pub fn len(&self) -> usize {
        match self {
            Payload::Value(value) => crate::json_size::json_size(value) as usize,
            Payload::Text(text) => text.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value (parsing the text, which cannot fail: it is canonical JSON).
    pub fn into_value(self) -> Value {
        match self {
            Payload::Value(value) => value,
            Payload::Text(text) => text.to_value(),
        }
    }

    /// The compact JSON text, as `Value::to_string` gives it.
    pub fn to_text(&self) -> String {
        match self {
            Payload::Value(value) => value.to_string(),
            Payload::Text(text) => text.as_str().to_owned(),
        }
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Payload {
        Payload::Value(value)
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        match self {
            Payload::Value(value) => value == other,
            Payload::Text(text) => &text.to_value() == other,
        }
    }
}

/// JSON text in canonical compact form: byte for byte what `serde_json::to_string` gives for
/// the value the text denotes (no whitespace, strings escaped and numbers written as serde_json
/// writes them, keys in their order). So its length is the payload's size as AWS's limits
/// count it, and copying it out is the same as serialising the parsed value.
///
/// Cheap to clone; the elements of an array share its text ([`JsonText::array_elements`]).
#[derive(Clone)]
pub struct JsonText {
    /// A `String` behind the `Arc`, not a `str`: taking the writer's buffer costs no copy.
    text: Arc<String>,
    range: std::ops::Range<usize>,
    /// Where the elements end in `text`, when this is a whole array whose elements were found
    /// as it was canonicalised ([`Self::array_elements`] then needs no scan).
    ends: Option<Arc<[usize]>>,
}

impl PartialEq for JsonText {
    fn eq(&self, other: &JsonText) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for JsonText {}

impl JsonText {
    /// Canonicalises `bytes`, or `None` when they are not one JSON value or when canonical text
    /// would not denote the same value as parsing them: an object with a key twice (parsing
    /// keeps the last value, at the first key's place). Callers then parse, as they would have.
    pub fn canonicalize(bytes: &[u8]) -> Option<JsonText> {
        Self::fast_or_general(scan::compact(bytes), bytes)
    }

    /// [`Self::canonicalize`] of bytes the caller gives up: when they are canonical already (as
    /// most programs write JSON), they become the text without a copy. `Err` gives them back
    /// where `canonicalize` gives `None`.
    pub fn canonicalize_owned(bytes: Vec<u8>) -> Result<JsonText, Vec<u8>> {
        match scan::canonical_as_is(&bytes) {
            Some(ends) => {
                // SAFETY: `canonical_as_is` found the bytes to be UTF-8.
                let text = unsafe { String::from_utf8_unchecked(bytes) };
                Ok(Self::with_ends(text, ends))
            }
            // Checked once: what is left is to write it anew.
            None => Self::fast_or_general(scan::rewrite(&bytes), &bytes).ok_or(bytes),
        }
    }

    /// The fast path's text of `bytes` if it found one, else the general path's.
    fn fast_or_general(fast: Option<(String, Option<Vec<usize>>)>, bytes: &[u8]) -> Option<JsonText> {
        match fast {
            Some((text, ends)) => Some(Self::with_ends(text, ends)),
            None => transcode(bytes).map(JsonText::from_canonical),
        }
    }

    fn with_ends(text: String, ends: Option<Vec<usize>>) -> JsonText {
        JsonText { ends: ends.map(Arc::from), ..JsonText::from_canonical(text) }
    }

    /// Text the caller wrote in canonical form (by serde_json, or from canonical pieces).
    pub(crate) fn from_canonical(text: String) -> JsonText {
        JsonText { range: 0..text.len(), text: Arc::new(text), ends: None }
    }

    /// Canonical text at `range` of a text others share (see [`Self::from_canonical`]).
    pub(crate) fn shared(text: Arc<String>, range: std::ops::Range<usize>) -> JsonText {
        JsonText { text, range, ends: None }
    }

    pub fn as_str(&self) -> &str {
        &self.text[self.range.clone()]
    }

    /// Whether `next` follows this text in the text both share, after one comma (elements of
    /// one array, rows rendered side by side): then the two are one slice ([`Self::through`]).
    pub(crate) fn followed_by(&self, next: &JsonText) -> bool {
        Arc::ptr_eq(&self.text, &next.text)
            && next.range.start == self.range.end + 1
            && self.text.as_bytes()[self.range.end] == b','
    }

    /// The shared text from the start of this one to the end of `last` (which follows it).
    pub(crate) fn through(&self, last: &JsonText) -> &str {
        &self.text[self.range.start..last.range.end]
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The value the text denotes.
    pub fn to_value(&self) -> Value {
        // Canonical text always parses: it is a parsed value's text (so within serde_json's
        // nesting limit), or written from pieces that keep within it (`column_selection`).
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }

    /// The elements when the payload is an array, each canonical text too (sharing this one).
    pub fn array_elements(&self) -> Option<Vec<JsonText>> {
        let bytes = self.as_str().as_bytes();
        if bytes.first() != Some(&b'[') {
            return None;
        }
        if bytes == b"[]" {
            return Some(Vec::new());
        }
        let base = self.range.start;
        let element = |start: usize, end: usize| JsonText::shared(self.text.clone(), base + start..base + end);
        if let Some(ends) = &self.ends {
            let starts = std::iter::once(1).chain(ends.iter().map(|end| end + 1));
            return Some(starts.zip(ends.iter()).map(|(start, &end)| element(start, end)).collect());
        }
        // Canonical text has no whitespace: elements are what lies between the commas that
        // are outside strings and one level deep.
        let mut elements = Vec::new();
        let (mut depth, mut start) = (0usize, 1);
        self.for_each_outside_strings([b'[', b'{', b']', b'}', b','], |i, b| match b {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    elements.push(element(start, i));
                }
            }
            _ if depth == 1 => {
                elements.push(element(start, i));
                start = i + 1;
            }
            _ => {}
        });
        Some(elements)
    }

    /// Calls `visit(offset, byte)` in order for each byte of the text that is one of `wanted`
    /// and lies outside strings (offsets in [`Self::as_str`]): its structure, strings skipped.
    pub fn for_each_outside_strings<const N: usize>(&self, wanted: [u8; N], visit: impl FnMut(usize, u8)) {
        outside::for_each(self.as_str().as_bytes(), wanted, visit)
    }
}

/// The text's bytes: a `JsonText` can back a `bytes::Bytes` (an HTTP body) without a copy.
impl AsRef<[u8]> for JsonText {
    fn as_ref(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonText({})", self.as_str())
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The general path of [`JsonText::canonicalize`]: serde_json's parser streaming into its
/// writer, for any JSON (the fast path, [`scan::compact`], takes the usual kinds).
fn transcode(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut serializer = serde_json::Serializer::new(&mut out);
    Transcode(&mut serializer).deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    // The serializer writes only UTF-8 (it escapes nothing else and copies valid strings).
    String::from_utf8(out).ok()
}

/// Streams one JSON value from a deserializer into a serializer, checking object keys for
/// repeats. A serializer error becomes a deserializer error (the caller only needs to know
/// the text was not canonicalised).
struct Transcode<S>(S);

impl<'de, S: Serializer> DeserializeSeed<'de> for Transcode<S> {
    type Value = S::Ok;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Ok, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn failed<E: de::Error>(error: impl fmt::Display) -> E {
    E::custom(error)
}

impl<'de, S: Serializer> Visitor<'de> for Transcode<S> {
    type Value = S::Ok;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<S::Ok, E> {
        self.0.serialize_bool(v).map_err(failed)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<S::Ok, E> {
        self.0.serialize_i64(v).map_err(failed)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<S::Ok, E> {
        self.0.serialize_u64(v).map_err(failed)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<S::Ok, E> {
        // As `Value` does: a finite float is a number (JSON has no others).
        self.0.serialize_f64(v).map_err(failed)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<S::Ok, E> {
        self.0.serialize_str(v).map_err(failed)
    }

    fn visit_unit<E: de::Error>(self) -> Result<S::Ok, E> {
        self.0.serialize_unit().map_err(failed)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<S::Ok, A::Error> {
        let mut out = self.0.serialize_seq(None).map_err(failed)?;
        while seq.next_element_seed(Element(&mut out))?.is_some() {}
        out.end().map_err(failed)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<S::Ok, A::Error> {
        let mut out = self.0.serialize_map(None).map_err(failed)?;
        let mut keys = SeenKeys::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            out.serialize_key(key.as_str()).map_err(failed)?;
            if !keys.insert(key) {
                return Err(failed("an object has a key twice"));
            }
            map.next_value_seed(Entry(&mut out))?;
        }
        out.end().map_err(failed)
    }
}

/// An object key, borrowed from the input unless it had escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(key) => key,
            Key::Owned(key) => key,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// An array element, transcoded into the array being written.
struct Element<'a, S>(&'a mut S);

impl<'de, S: SerializeSeq> DeserializeSeed<'de> for Element<'_, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let value = Deferred::new(deserializer);
        self.0.serialize_element(&value).map_err(failed)?;
        value.finish()
    }
}

/// An object member's value, transcoded into the object being written.
struct Entry<'a, S>(&'a mut S);

impl<'de, S: SerializeMap> DeserializeSeed<'de> for Entry<'_, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let value = Deferred::new(deserializer);
        self.0.serialize_value(&value).map_err(failed)?;
        value.finish()
    }
}

/// A deserializer handed to a serializer as something to serialise: `serialize_element` and
/// `serialize_value` take a `Serialize`, so the nested value is transcoded from inside it. The
/// deserializer's own error is kept aside (a serializer error cannot carry it) and returned
/// by [`Deferred::finish`].
struct Deferred<'de, D: Deserializer<'de>> {
    deserializer: Cell<Option<D>>,
    error: Cell<Option<D::Error>>,
    input: PhantomData<&'de ()>,
}

impl<'de, D: Deserializer<'de>> Deferred<'de, D> {
    fn new(deserializer: D) -> Self {
        Deferred { deserializer: Cell::new(Some(deserializer)), error: Cell::new(None), input: PhantomData }
    }

    fn finish(self) -> Result<(), D::Error> {
        match self.error.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl<'de, D: Deserializer<'de>> Serialize for Deferred<'de, D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let deserializer = self.deserializer.take().ok_or_else(|| ser::Error::custom("value already transcoded"))?;
        deserializer.deserialize_any(Transcode(serializer)).map_err(|error| {
            let message = error.to_string();
            self.error.set(Some(error));
            ser::Error::custom(message)
        })
    }
}

/// The keys of one object so far: the first few borrowed from the input in place (no
/// allocation for the usual small object), the rest, and escaped ones, in a set.
struct SeenKeys<'de> {
    few: [&'de str; SeenKeys::FEW],
    len: usize,
    many: std::collections::HashSet<String>,
}

impl<'de> SeenKeys<'de> {
    const FEW: usize = 16;

    fn new() -> Self {
        SeenKeys { few: [""; SeenKeys::FEW], len: 0, many: std::collections::HashSet::new() }
    }

    /// Adds `key`; false when the object already had it.
    fn insert(&mut self, key: Key<'de>) -> bool {
        let text = key.as_str();
        if self.few[..self.len].contains(&text) || (!self.many.is_empty() && self.many.contains(text)) {
            return false;
        }
        match key {
            Key::Borrowed(key) if self.len < Self::FEW => {
                self.few[self.len] = key;
                self.len += 1;
            }
            key => {
                self.many.insert(key.as_str().to_owned());
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the Value path gives: parse, then write compactly.
    fn via_value(text: &str) -> Option<String> {
        serde_json::from_str::<Value>(text).ok().map(|v| v.to_string())
    }

    #[test]
    fn canonical_text_is_what_parsing_and_writing_give() {
        let cases = [
            r#"[{"order_id": 1, "country": "US", "total": 1234.5, "flag": false}]"#,
            "  {\n \"a\" : [ 1 , 2.50 , -0 , -0.0, 1e-07, 1E5, 12345678901234567890, 123456789012345678901234 ] }\n",
            r#""caf\u00e9 \/ \ud83d\ude00 \" \\ \n \u0001""#,
            r#"{"\u0041": {"b": {"c": [[], {}, null, true, "x"]}}}"#,
            "0.1",
            "-9223372036854775808",
            "\"\"",
            "{\"k\":\"é\"}",
            // An ordinary key (serde_json's `raw_value` feature, not used, would read it specially).
            r#"{"$serde_json::private::RawValue": "{\"a\":1}"}"#,
        ];
        for case in cases {
            let text = JsonText::canonicalize(case.as_bytes()).unwrap_or_else(|| panic!("{case}"));
            assert_eq!(Some(text.as_str().to_owned()), via_value(case), "{case}");
            assert_eq!(text.to_value(), serde_json::from_str::<Value>(case).unwrap());
        }
    }

    #[test]
    fn what_is_not_one_value_or_repeats_a_key_is_left_to_parsing() {
        for case in [
            "",
            "[1,",
            "{\"a\":1}x",
            "nul",
            "{\"a\":1,\"a\":2}",
            "[{\"a\\u0062\":1,\"ab\":2}]",
            "{\"ab\":1,\"a\\u0062\":2}",
            // Rows after a first: a key repeated past the first row's keys, or after one
            // that differs from the first row's.
            r#"[{"a":1,"b":2},{"a":1,"b":2,"a":3}]"#,
            r#"[{"a":1,"b":2},{"b":1,"b":2}]"#,
            r#"[{"a":1,"b":2},{"a":{"a":1,"b":2,"b":3},"b":2}]"#,
            "1e400",
        ] {
            assert_eq!(JsonText::canonicalize(case.as_bytes()), None, "{case}");
        }
        // Keys repeated in a large object are found too (past the short list).
        let many: Vec<String> = (0..40).map(|i| format!("\"k{}\":{i}", i % 39)).collect();
        assert_eq!(JsonText::canonicalize(format!("{{{}}}", many.join(",")).as_bytes()), None);
        let distinct: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(JsonText::canonicalize(format!("{{{}}}", distinct.join(",")).as_bytes()).is_some());
        // An object that departs from its row's keys right after a nested object that departed
        // from its own: the keys before count, the nested ones do not.
        let departed = r#"[{"a":{"x":1,"y":2},"b":1},{"a":{"x":1,"z":2},"c":1,"a":2}]"#;
        assert_eq!(JsonText::canonicalize(departed.as_bytes()), None);
        assert_eq!(JsonText::canonicalize(python_style(departed).as_bytes()), None);
        let distinct = r#"[{"a":{"x":1,"y":2},"b":1},{"a":{"x":1,"z":2},"c":1,"x":2,"z":3}]"#;
        let text = JsonText::canonicalize(distinct.as_bytes()).expect("canonical");
        assert_eq!(Some(text.as_str().to_owned()), via_value(distinct));
        // The same key in sibling objects is fine, in the same order or not, or as a prefix.
        for case in [r#"[{"a":1},{"a":2}]"#, r#"[{"a":1,"b":2},{"b":1,"a":2},{"ab":1,"a":2},{"a":1}]"#] {
            let text = JsonText::canonicalize(case.as_bytes()).unwrap_or_else(|| panic!("{case}"));
            assert_eq!(Some(text.as_str().to_owned()), via_value(case));
        }
    }

    #[test]
    fn owned_bytes_canonicalize_as_borrowed_ones_and_canonical_ones_are_not_copied() {
        let cases: [&[u8]; 7] = [
            br#"[{"a":1,"b":"x"},{"a":2,"b":"y"}]"#,
            b"[1, 2.50, {\"k\": null}]",
            br#""caf\u00e9""#,
            b"{\"a\":1,\"a\":2}",
            b"[1,",
            // Not UTF-8 (what the copy-free path must not take as a `String`).
            b"\"\xff\"",
            b"[\"ok\",\"\xc3\"]",
        ];
        for case in cases {
            let borrowed = JsonText::canonicalize(case);
            let owned = JsonText::canonicalize_owned(case.to_vec());
            match (&borrowed, &owned) {
                (Some(borrowed), Ok(owned)) => {
                    assert_eq!(borrowed.as_str(), owned.as_str(), "{case:?}");
                    assert_eq!(borrowed.ends, owned.ends, "{case:?}");
                }
                (None, Err(given_back)) => assert_eq!(given_back.as_slice(), case),
                _ => panic!("{case:?}: {borrowed:?} vs {owned:?}"),
            }
        }
        let canonical = br#"[{"a":1},{"a":2}]"#.to_vec();
        let address = canonical.as_ptr();
        let text = JsonText::canonicalize_owned(canonical).unwrap();
        assert_eq!(text.as_str().as_ptr(), address, "kept, not copied");
        assert_eq!(text.array_elements().map(|e| e.len()), Some(2));
    }

    #[test]
    fn the_fast_path_takes_what_programs_usually_write() {
        let cases = [
            // Python's json.dumps: ", " and ": " separators.
            r#"[{"order_id": 1, "country": "US", "total": 961.0, "flag": false}, {"order_id": 2, "country": "É", "total": 0.1, "flag": true}]"#,
            "{\n  \"a\": [\n    1,\n    -2.5e-7\n  ],\n  \"b\": null\n}",
            r#"[-9223372036854775808, 18446744073709551615, 1E5, 2.50, "", [], {}]"#,
            "[0.00001, 0.000001, 1e-05, 123456789012345.6, 12345678901234.5, 961.0, 1.10, -0.0, 0.0, 100.0]",
            // Floats serde_json's parser rounds correctly only with `float_roundtrip`.
            "[122.416294033786585, 0.9215686321258545, 0.3]",
        ];
        for case in cases {
            let (fast, _) = scan::compact(case.as_bytes()).unwrap_or_else(|| panic!("{case}"));
            assert_eq!(Some(fast), transcode(case.as_bytes()), "{case}");
        }
        // What it leaves to the general path, which still canonicalises it.
        for case in
            [r#""a\"b""#, "-0", "18446744073709551616", "-9223372036854775809", r#"{"a":1,"a":2}"#, "[1,]", "1e400"]
        {
            assert_eq!(scan::compact(case.as_bytes()), None, "{case}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "(?s).{0,6}".prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                // Short keys from few letters: objects often hold one twice.
                prop::collection::vec(("[a-c]{0,2}", inner), 0..5)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// `value` written compactly, as Python writes it, or pretty.
    fn written(value: &Value, style: u8) -> String {
        match style % 3 {
            0 => value.to_string(),
            1 => python_style(&value.to_string()),
            _ => serde_json::to_string_pretty(value).unwrap(),
        }
    }

    /// Canonical text with a space after every `,` and `:` outside strings.
    fn python_style(text: &str) -> String {
        let mut out = String::new();
        let (mut in_string, mut escaped) = (false, false);
        for c in text.chars() {
            out.push(c);
            match c {
                _ if in_string && escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                ',' | ':' if !in_string => out.push(' '),
                _ => {}
            }
        }
        out
    }

    proptest! {
        /// Whatever the fast path returns is what the general one returns.
        #[test]
        fn the_fast_path_agrees_with_the_general_one(value in json_value(), style in 0u8..3) {
            let text = written(&value, style);
            if let Some((fast, ends)) = scan::compact(text.as_bytes()) {
                prop_assert_eq!(ends.is_some(), value.is_array());
                prop_assert_eq!(Some(fast.clone()), transcode(text.as_bytes()));
                // The elements found while canonicalising are the ones a scan finds.
                let texts = |elements: Option<Vec<JsonText>>| {
                    elements.map(|e| e.iter().map(|e| e.as_str().to_owned()).collect::<Vec<_>>())
                };
                let found = texts(JsonText::canonicalize(text.as_bytes()).unwrap().array_elements());
                prop_assert_eq!(found, texts(JsonText::from_canonical(fast).array_elements()));
            }
        }

        #[test]
        fn the_fast_path_agrees_on_any_number(
            number in r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?|-?0[0-9]|1\.|1e"
        ) {
            prop_assert_eq!(scan::compact(number.as_bytes()).is_some_and(|(fast, _)| Some(fast) != transcode(number.as_bytes())), false);
        }

        /// Broken text (cut short, a byte changed) is never canonicalised by the fast path
        /// alone where the general path would not agree.
        #[test]
        fn the_fast_path_agrees_on_broken_text(value in json_value(), style in 0u8..3, cut in any::<prop::sample::Index>(), byte in any::<u8>(), at in any::<prop::sample::Index>()) {
            let text = written(&value, style).into_bytes();
            let short = &text[..cut.index(text.len() + 1)];
            let mut changed = text.clone();
            if !changed.is_empty() {
                let i = at.index(changed.len());
                changed[i] = byte;
            }
            for case in [short, &changed[..]] {
                if let Some((fast, _)) = scan::compact(case) {
                    prop_assert_eq!(Some(fast), transcode(case));
                }
            }
        }
    }

    proptest! {
        /// Rows of objects whose keys repeat from row to row (the shapes the check pass
        /// compares with), some with a key twice, at the top or one level down: a repeated key
        /// always goes the general way, and whatever the fast path returns is the general
        /// path's text.
        #[test]
        fn repeated_keys_in_rows_are_left_to_parsing(
            rows in prop::collection::vec(prop::collection::vec(prop::sample::select(vec!["a", "b", "ab", "c"]), 0..5), 1..6),
            nested in any::<bool>(),
            spaced in any::<bool>(),
        ) {
            let objects: Vec<String> = rows
                .iter()
                .map(|keys| {
                    let members: Vec<String> = keys.iter().enumerate().map(|(n, k)| format!("\"{k}\":{n}")).collect();
                    format!("{{{}}}", members.join(","))
                })
                .collect();
            let array = format!("[{}]", objects.join(","));
            let text = if nested { format!("[{{\"rows\":{array}}}]") } else { array };
            // Spaced as Python spaces JSON: the pass that writes anew compares the keys.
            let text = if spaced { python_style(&text) } else { text };
            let repeated = rows.iter().any(|keys| (1..keys.len()).any(|i| keys[..i].contains(&keys[i])));
            let fast = scan::compact(text.as_bytes());
            prop_assert_eq!(fast.is_none(), repeated, "{}", text);
            if let Some((fast, _)) = fast {
                prop_assert_eq!(Some(fast), transcode(text.as_bytes()));
            }
        }
    }

    #[test]
    fn array_elements_are_the_texts_of_the_items() {
        let text = JsonText::canonicalize(br#"[ {"a": [1, 2]}, "s,]", 3 ]"#).unwrap();
        let elements = text.array_elements().unwrap();
        let texts: Vec<&str> = elements.iter().map(JsonText::as_str).collect();
        assert_eq!(texts, [r#"{"a":[1,2]}"#, r#""s,]""#, "3"]);
        assert_eq!(elements[0].array_elements(), None);
        assert_eq!(elements[0].to_value(), serde_json::json!({"a": [1, 2]}));
        let nested = JsonText::canonicalize(b"[[1, [2, 3]]]").unwrap().array_elements().unwrap();
        let inner: Vec<String> = nested[0].array_elements().unwrap().iter().map(JsonText::to_string).collect();
        assert_eq!(inner, ["1", "[2,3]"]);
        assert_eq!(JsonText::canonicalize(b"[]").unwrap().array_elements(), Some(vec![]));
        assert_eq!(JsonText::canonicalize(b"{\"a\":1}").unwrap().array_elements(), None);
        assert_eq!(Payload::Text(text.clone()).to_text(), text.as_str());
    }
}
