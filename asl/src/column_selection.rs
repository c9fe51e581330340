//! An ItemSelector compiled against the columns of a CSV source.
//!
//! A CSV item is `{header: field}`, all strings. The usual ItemSelector over such items reads
//! columns by name (`$$.Map.Item.Value.qty`), types some with `States.StringToJson`, and adds
//! the index or literals. Evaluated the general way, every row is first built as an object,
//! then every path looks its column up by name and every result key is hashed into a new
//! object: most of a CSV map run's CPU time. Compiled here against the header once, a row is
//! selected from its fields by column number: into a copy of a prebuilt object, or straight
//! into JSON text when the child's input goes to its Task as text (no object is built at all).
//!
//! Contract: [`ColumnSelection::select`] returns exactly what [`ItemSelection::select`]
//! returns for the row's object, and [`ColumnSelection::render`] its text, or `None` where the
//! general evaluation must decide (a field that is not valid JSON for `States.StringToJson`:
//! the general path produces AWS's failure). Templates this cannot express compile to `None`
//! and are evaluated the general way.

use serde_json::{Map, Value};

use crate::byte_block::has_json_special;
use crate::expr::{PathExpr, PathRoot};
use crate::intrinsic::{parse_json_text, plain_integer};
use crate::map_run::ItemSelection;
use crate::model::PayloadTemplate;
use crate::payload::JsonText;

/// How deep a field's value may nest to be rendered as text. serde_json parses at most 128
/// levels; a rendered row adds one and a batch two (`{"Items":[row]}`), and a text that does
/// not parse back would stand for no value at all.
const MAX_RENDERED_NESTING: usize = 100;

/// The levels of arrays and objects in `value` (0 for a scalar).
fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// One entry of the selected object.
#[derive(Clone, Debug)]
enum Field {
    /// A literal, with its text (nested at most [`MAX_RENDERED_NESTING`] deep).
    Literal { value: Value, text: String },
    /// `$$.Map.Item.Value.<column>`: the field as a string.
    Column(usize),
    /// `States.StringToJson($$.Map.Item.Value.<column>)`.
    ColumnJson(usize),
    /// `$$.Map.Item.Index`.
    Index,
}

/// An ItemSelector over CSV rows with given column names (see the module doc).
#[derive(Clone, Debug)]
pub struct ColumnSelection {
    /// The result's keys in order, with placeholder values: cloning it copies the key index
    /// without hashing a key again.
    shape: Map<String, Value>,
    /// Each entry's text up to its value: `{` or `,`, the key as JSON text, `:`, and for a
    /// column's string its opening quote.
    prefixes: Vec<String>,
    fields: Vec<Field>,
}

impl ItemSelection {
    /// This selection compiled for CSV rows whose columns are `headers`; `None` when its
    /// template is not one [`ColumnSelection`] expresses (or there is none).
    pub fn for_columns(&self, headers: &[String]) -> Option<ColumnSelection> {
        let Some(PayloadTemplate::Object(entries)) = &self.template else { return None };
        let column = |expr: &PathExpr| -> Option<usize> {
            let name = expr.item_value.as_ref()?.single_name()?;
            headers.iter().position(|h| h == name)
        };
        let mut shape = Map::with_capacity(entries.len());
        let mut prefixes = Vec::with_capacity(entries.len());
        let mut fields = Vec::with_capacity(entries.len());
        for (key, entry) in entries {
            let field = match entry {
                PayloadTemplate::Literal(value) if nesting(value) <= MAX_RENDERED_NESTING => {
                    Field::Literal { value: value.clone(), text: value.to_string() }
                }
                PayloadTemplate::Path { expr, .. } if expr.root == PathRoot::Context => {
                    if expr.item_value.is_some() {
                        Field::Column(column(expr)?)
                    } else if expr.map_item.as_ref().and_then(|p| p.single_name()) == Some("Index") {
                        Field::Index
                    } else {
                        return None;
                    }
                }
                PayloadTemplate::Intrinsic { call, .. } => Field::ColumnJson(column(call.string_to_json_of()?)?),
                _ => return None,
            };
            // A key written twice (`"a"` and `"a.$"`) keeps its first place with the last
            // value in the general evaluation; not worth expressing here.
            if shape.insert(key.clone(), Value::Null).is_some() {
                return None;
            }
            let open = if prefixes.is_empty() { '{' } else { ',' };
            let quote = if matches!(field, Field::Column(_)) { "\"" } else { "" };
            prefixes.push(format!("{open}{}:{quote}", Value::String(key.clone())));
            fields.push(field);
        }
        Some(ColumnSelection { shape, prefixes, fields })
    }
}

impl ColumnSelection {
    /// The child input of the row at `index` whose field in column `c` is `field(c)` (`""`
    /// for a column the row lacks, as AWS fills it); `None`: evaluate the row the general way.
    pub fn select<'r>(&self, index: u64, field: impl Fn(usize) -> &'r str) -> Option<Value> {
        let mut selected = self.shape.clone();
        for (slot, spec) in selected.values_mut().zip(&self.fields) {
            *slot = match spec {
                Field::Literal { value, .. } => value.clone(),
                Field::Column(c) => Value::String(field(*c).to_owned()),
                Field::ColumnJson(c) => parse_json_text(field(*c)).ok()?,
                Field::Index => Value::from(index),
            };
        }
        Some(Value::Object(selected))
    }

    /// [`Self::select`] as JSON text, written without building the value.
    pub fn render<'r>(&self, index: u64, field: impl Fn(usize) -> &'r str) -> Option<JsonText> {
        let mut out = String::with_capacity(16 * self.prefixes.len() + 2);
        self.render_into(&mut out, index, field).then(|| JsonText::from_canonical(out))
    }

    /// Appends [`Self::render`]'s text to `out`; `false` (and `out` as it was) where it
    /// returns `None`.
    fn render_into<'r>(&self, out: &mut String, index: u64, field: impl Fn(usize) -> &'r str) -> bool {
        let start = out.len();
        if self.prefixes.is_empty() {
            out.push('{');
        }
        for (prefix, spec) in self.prefixes.iter().zip(&self.fields) {
            push_short(out, prefix);
            let written = match spec {
                Field::Literal { text, .. } => {
                    out.push_str(text);
                    true
                }
                Field::Column(c) => {
                    write_str_after_quote(out, field(*c));
                    true
                }
                Field::ColumnJson(c) => write_json_text(out, field(*c)),
                Field::Index => {
                    out.push_str(itoa::Buffer::new().format(index));
                    true
                }
            };
            if !written {
                out.truncate(start);
                return false;
            }
        }
        out.push('}');
        true
    }

    /// Starts rendering `rows` rows into one text of about `bytes` (see [`RenderedRows`]).
    pub fn rendered_rows(&self, rows: usize, bytes: usize) -> RenderedRows<'_> {
        RenderedRows { selection: self, text: String::with_capacity(bytes), rows: Vec::with_capacity(rows) }
    }

    /// How many leading columns of a row the selection reads: the fields after them need not
    /// be split.
    pub fn columns_read(&self) -> usize {
        let column = |field: &Field| match field {
            Field::Column(c) | Field::ColumnJson(c) => c + 1,
            Field::Literal { .. } | Field::Index => 0,
        };
        self.fields.iter().map(column).max().unwrap_or(0)
    }
}

/// Rows rendered one after the other into one text, separated by commas: each row's
/// [`JsonText`] shares that text, and a batch of consecutive rows is copied into its child's
/// input as one slice (see `map_run::batch_input`): no allocation per row, but for fields
/// that need escaping or a typed column that is not a plain integer.
pub struct RenderedRows<'s> {
    selection: &'s ColumnSelection,
    text: String,
    /// Each row's range in `text`; `None`: the general evaluation decides.
    rows: Vec<Option<std::ops::Range<usize>>>,
}

impl RenderedRows<'_> {
    /// Renders the next row, as [`ColumnSelection::render`] does.
    pub fn push<'r>(&mut self, index: u64, field: impl Fn(usize) -> &'r str) {
        if !self.text.is_empty() {
            self.text.push(',');
        }
        let start = self.text.len();
        let rendered = self.selection.render_into(&mut self.text, index, field);
        self.rows.push(rendered.then_some(start..self.text.len()));
    }

    /// Each row's text in order, `None` for a row the general evaluation must decide.
    pub fn finish(self) -> Vec<Option<JsonText>> {
        let text = std::sync::Arc::new(self.text);
        self.rows.into_iter().map(|range| range.map(|range| JsonText::shared(text.clone(), range))).collect()
    }
}

/// `out.push_str(text)`, with the bytes of a short text (a key, a CSV field) moved by two
/// overlapping loads and stores: a row is a dozen such pieces, and a call to `memcpy` for each
/// cost more than the copying (a tenth of the engine's instructions on a CSV map run).
#[inline(always)]
fn push_short(out: &mut String, text: &str) {
    let n = text.len();
    if n > 16 {
        out.push_str(text);
        return;
    }
    out.reserve(n);
    let src = text.as_ptr();
    // SAFETY: `reserve` made room for `n` more bytes, and every store below is inside
    // `len..len + n` of the buffer, every load inside `text` (the pairs overlap where `n` is
    // under twice their width). Whole UTF-8 text is appended, so the string stays UTF-8.
    unsafe {
        let bytes = out.as_mut_vec();
        let len = bytes.len();
        let dst = bytes.as_mut_ptr().add(len);
        match n {
            8..=16 => {
                let (head, tail) = (src.cast::<u64>().read_unaligned(), src.add(n - 8).cast::<u64>().read_unaligned());
                dst.cast::<u64>().write_unaligned(head);
                dst.add(n - 8).cast::<u64>().write_unaligned(tail);
            }
            4..=7 => {
                let (head, tail) = (src.cast::<u32>().read_unaligned(), src.add(n - 4).cast::<u32>().read_unaligned());
                dst.cast::<u32>().write_unaligned(head);
                dst.add(n - 4).cast::<u32>().write_unaligned(tail);
            }
            1..=3 => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            _ => {}
        }
        bytes.set_len(len + n);
    }
}

/// Writes `value` as `Value::to_string` does; `false` for a value nested too deep to be
/// rendered (see [`MAX_RENDERED_NESTING`]).
fn write_value(out: &mut String, value: &Value) -> bool {
    if nesting(value) > MAX_RENDERED_NESTING {
        return false;
    }
    out.push_str(&value.to_string());
    true
}

/// Writes `text` as a JSON string as serde_json does, its opening quote written already: most
/// fields need no escape and are copied whole.
fn write_str_after_quote(out: &mut String, text: &str) {
    if !has_json_special(text.as_bytes()) {
        push_short(out, text);
        out.push('"');
    } else {
        write_escaped_after_quote(out, text);
    }
}

/// [`write_str_after_quote`] for a field that needs escapes (apart, so that the usual field's
/// path stays short).
#[cold]
#[inline(never)]
fn write_escaped_after_quote(out: &mut String, text: &str) {
    out.push_str(&Value::from(text).to_string()[1..]);
}

/// Writes `States.StringToJson(text)`'s value; `false` where the general evaluation must
/// decide (text that is not JSON, a value nested too deep).
fn write_json_text(out: &mut String, text: &str) -> bool {
    // A plain non-negative integer (ids, counts) is its own canonical text.
    if plain_integer(text) {
        push_short(out, text);
        return true;
    }
    match parse_json_text(text) {
        Ok(value) => write_value(out, &value),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::json;

    use super::*;
    use crate::interpreter::context_object::ExecutionContext;
    use crate::interpreter::Scope;
    use crate::map_run::MapItem;

    fn selection(template: Value) -> ItemSelection {
        ItemSelection {
            template: Some(PayloadTemplate::compile(&template).unwrap()),
            input: json!({"run": "r1"}),
            execution: ExecutionContext { execution: json!({}), redrive_count: None, state_machine: json!({}) },
            state_name: "Map".into(),
            entered_time: "2026-01-01T00:00:00Z".into(),
            variables: Scope::default(),
            cause_prefix: String::new(),
            reads_whole_item: OnceLock::new(),
        }
    }

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// The general evaluation of the row `fields` under `headers`.
    fn general(selection: &ItemSelection, headers: &[String], index: u64, fields: &[&str]) -> Value {
        let row: Map<String, Value> =
            headers.iter().zip(fields).map(|(h, f)| (h.clone(), Value::String(f.to_string()))).collect();
        let item = MapItem { index, value: Value::Object(row), key: None, source: Some("S3://b/k.csv".into()) };
        selection.select(item).unwrap()
    }

    #[test]
    fn a_compiled_selection_selects_as_the_general_one() {
        let selection = selection(json!({
            "id.$": "States.StringToJson($$.Map.Item.Value.id)",
            "name.$": "$$.Map.Item.Value['name']",
            "price.$": "States.StringToJson($$.Map.Item.Value.price)",
            "blank.$": "States.StringToJson($$.Map.Item.Value.note)",
            "at.$": "$$.Map.Item.Index",
            "kind": "order",
            "quo\"ted ké": true,
            "nested": {"a": [1, 2]},
        }));
        let headers = headers(&["id", "name", "price", "note"]);
        let compiled = selection.for_columns(&headers).expect("compiles");
        let rows = [
            ["7", "Ann", "12.50", " "],
            ["-0", "Bo \"B\"", "1e3", ""],
            ["0", "", "123456789012345678", "18446744073709551616"],
            ["0012", "", "-0.0", "x"],
        ];
        for (index, row) in rows.iter().enumerate() {
            let index = index as u64 + 40;
            match compiled.select(index, |c| row[c]) {
                Some(value) => {
                    let general = general(&selection, &headers, index, row);
                    assert_eq!(value, general);
                    // Same keys in the same order; the text is that of the same value.
                    assert_eq!(value.to_string(), general.to_string());
                    assert_eq!(compiled.render(index, |c| row[c]).unwrap().as_str(), general.to_string());
                }
                // `0012` is not JSON: the general evaluation decides (and fails).
                None => assert_eq!(row[0], "0012"),
            }
        }
        // Rendered side by side: each row's text as it renders alone.
        let mut rendered = compiled.rendered_rows(rows.len(), 0);
        for (index, row) in rows.iter().enumerate() {
            rendered.push(index as u64 + 40, |c| row[c]);
        }
        let rendered = rendered.finish();
        for (index, (text, row)) in rendered.iter().zip(&rows).enumerate() {
            let alone = compiled.render(index as u64 + 40, |c| row[c]);
            assert_eq!(text.as_ref().map(JsonText::as_str), alone.as_ref().map(JsonText::as_str));
        }
        // Neighbouring rows are one slice of the shared text.
        let (first, second) = (rendered[0].as_ref().unwrap(), rendered[1].as_ref().unwrap());
        assert!(first.followed_by(second) && !second.followed_by(first));
        assert_eq!(first.through(second), format!("{first},{second}"));
        assert_eq!(compiled.columns_read(), 4);
        assert_eq!(
            selection.for_columns(&self::headers(&["price", "id", "name", "note", "x"])).unwrap().columns_read(),
            4
        );
    }

    /// A column first (its prefix opens the object and the string), fields that need escapes.
    #[test]
    fn columns_render_as_the_general_text() {
        let headers = headers(&["name", "n"]);
        for template in [json!({"name.$": "$$.Map.Item.Value.name", "n.$": "$$.Map.Item.Value.n"}), json!({})] {
            let selection = selection(template);
            // `{}` is a literal, left to the general evaluation.
            let Some(compiled) = selection.for_columns(&headers) else { continue };
            for row in [["plain", "1"], ["tab\there \\ \"q\"", "\u{1}"], ["", "é"]] {
                let general = general(&selection, &headers, 3, &row).to_string();
                assert_eq!(compiled.render(3, |c| row[c]).unwrap().as_str(), general);
            }
        }
    }

    /// Short texts of every length (and of two- and three-byte characters) append as
    /// `push_str` appends them, at every fill of the buffer.
    #[test]
    fn short_texts_append_as_push_str_does() {
        let pieces = "aé€bcdefghijklmnopqrstuvwxyz0123";
        for start in 0..pieces.len() {
            for end in start..=pieces.len() {
                let Some(text) = pieces.get(start..end) else { continue };
                for before in ["", "{", "{\"order_id\":12345,"] {
                    let mut expected = before.to_string();
                    expected.push_str(text);
                    let mut out = String::with_capacity(before.len());
                    out.push_str(before);
                    push_short(&mut out, text);
                    assert_eq!(out, expected);
                }
            }
        }
    }

    /// A typed column nested too deep to be rendered (its row's text, in a batch, would not
    /// parse back) is left to the general evaluation; selecting it as a value still works.
    #[test]
    fn deep_values_are_not_rendered() {
        let typed = selection(json!({"j.$": "States.StringToJson($$.Map.Item.Value.j)"}));
        let compiled = typed.for_columns(&headers(&["j"])).expect("compiles");
        let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
        assert!(compiled.render(0, |_| &deep).is_none());
        assert_eq!(compiled.select(0, |_| &deep), Some(general(&typed, &headers(&["j"]), 0, &[&deep])));
        let shallow = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(compiled.render(0, |_| &shallow).is_some());
        let literal = json!({"deep": serde_json::from_str::<Value>(&deep).unwrap()});
        assert!(selection(literal).for_columns(&headers(&["j"])).is_none());
    }

    #[test]
    fn templates_it_cannot_express_are_left_to_the_general_evaluation() {
        let headers = headers(&["id", "name"]);
        for template in [
            json!({"id.$": "$$.Map.Item.Value.missing"}),
            json!({"id.$": "$$.Map.Item.Value"}),
            json!({"id.$": "$.run"}),
            json!({"id.$": "$$.Map.Item.Value.id.deeper"}),
            json!({"id.$": "States.Format('{}', $$.Map.Item.Value.id)"}),
            json!({"id.$": "States.StringToJson($.run)"}),
            json!({"n": {"id.$": "$$.Map.Item.Value.id"}}),
            json!({"id": 1, "id.$": "$$.Map.Item.Value.id"}),
            json!(["$$.Map.Item.Value.id"]),
        ] {
            assert!(selection(template.clone()).for_columns(&headers).is_none(), "{template}");
        }
    }
}
