//! Property: for generated CSV, JSONL, JSON and Parquet sources (plain or compressed), any batch
//! limits, reading all descriptors of a plan yields exactly the items, in order, of one
//! sequential read — and that read yields the generated records.

use std::sync::Arc;

use futures::StreamExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use stepmap_storage::{BatchLimits, Extent, ItemReader, Records, StoreConfig, Stores};

use super::harness::{block_on, gzip, planned_items, put, read_all, spec, zstd, BUCKET};

/// Encodes fields as AWS's CSV dialect: quote when needed, double quotes, escape backslashes.
fn csv_field(text: &str, delimiter: char, style: u8) -> String {
    let special = text.contains([delimiter, '"', '\n', '\r']) || text.starts_with(' ') || text.is_empty();
    match style % 3 {
        // Quoted; a backslash inside quotes still escapes, so it is doubled.
        0 => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\"\"")),
        // Backslash-escaped where possible (newlines cannot be escaped: quote those).
        1 if !text.contains(['\n', '\r']) && !text.is_empty() && !text.starts_with('"') => text
            .chars()
            .map(|c| if c == delimiter || c == '"' || c == '\\' { format!("\\{c}") } else { c.to_string() })
            .collect(),
        _ if special || text.contains('\\') => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\"\"")),
        _ => text.to_string(),
    }
}

fn field_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a".to_string()),
            Just("b c".to_string()),
            Just(",".to_string()),
            Just("|".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just("é".to_string()),
            Just("{}".to_string()),
            "[0-9]{1,3}",
        ],
        0..4,
    )
    .prop_map(|parts| parts.concat())
}

#[derive(Clone, Debug)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn compress(data: Vec<u8>, compression: &Compression) -> Vec<u8> {
    match compression {
        Compression::None => data,
        Compression::Gzip => gzip(&data),
        Compression::Zstd => zstd(&data),
    }
}

fn limits() -> impl Strategy<Value = BatchLimits> {
    (proptest::option::of(1u64..8), proptest::option::of(20u64..400), 0u64..30).prop_map(
        |(items, bytes, batch_input)| BatchLimits {
            max_items_per_batch: items,
            max_input_bytes_per_batch: bytes,
            batch_input_bytes: batch_input,
        },
    )
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Gzip), Just(Compression::Zstd)]
}

/// Reads sequentially and through a plan; both must equal `expected`.
fn check(body: Vec<u8>, reader_config: Value, limits: BatchLimits, max_items: Option<u64>, expected: Vec<Value>) {
    check_lines(body, None, reader_config, limits, max_items, expected)
}

/// [`check`], and where the source's decompressed `text` is given: each text extent of the
/// plan starts on the line it says (what a worker's errors name).
fn check_lines(
    body: Vec<u8>,
    text: Option<&[u8]>,
    reader_config: Value,
    limits: BatchLimits,
    max_items: Option<u64>,
    expected: Vec<Value>,
) {
    block_on(async {
        let stores = Arc::new(Stores::new(StoreConfig::Memory));
        put(&stores, BUCKET, "data", body).await;
        let spec = spec("getObject", reader_config, json!({"Bucket": BUCKET, "Key": "data"}), max_items);
        let reader = ItemReader::open(stores, spec).await.unwrap();
        let sequential = read_all(&reader).await.unwrap();
        let values: Vec<Value> = sequential.iter().map(|i| i.value.clone()).collect();
        let take = max_items.map_or(expected.len(), |m| (m as usize).min(expected.len()));
        assert_eq!(values, expected[..take].to_vec());
        for (n, item) in sequential.iter().enumerate() {
            assert_eq!(item.index, n as u64);
        }
        let planned = planned_items(&reader, &limits).await;
        assert_eq!(planned, sequential);
        // Records (CSV rows split into fields, built into items here) read as the items.
        let plan = reader.plan(&limits, None).await.unwrap();
        let mut from_records = Vec::new();
        for batch in &plan {
            let mut records = reader.batch_records(batch);
            while let Some(chunk) = records.next().await {
                match chunk.unwrap() {
                    Records::Item(item) => from_records.push(item),
                    Records::Csv(rows) => from_records.extend((0..rows.len()).map(|r| rows.item(r))),
                }
            }
        }
        assert_eq!(from_records, sequential);
        for batch in &plan {
            assert_eq!(batch.extents.iter().map(Extent::items).sum::<u64>(), batch.items, "{batch:?}");
        }
        if let Some(text) = text {
            for extent in plan.iter().flat_map(|batch| &batch.extents) {
                if let Extent::Text { start, first_line, .. } = extent {
                    let line = 1 + text[..*start as usize].iter().filter(|&&b| b == b'\n').count() as u64;
                    assert_eq!(*first_line, line, "the extent at byte {start}");
                }
            }
        }
        // The whole plan appended into one descriptor reads the same items.
        if let Some((first, rest)) = plan.split_first() {
            let mut whole = first.clone();
            for batch in rest {
                whole.append(batch.clone());
            }
            let items: Vec<_> = reader.batch_items(&whole).map(|item| item.unwrap()).collect().await;
            assert_eq!(items, sequential);
        }
        if let Some(max_bytes) = limits.max_input_bytes_per_batch {
            let plan = reader.plan(&limits, None).await.unwrap();
            for batch in plan.iter().filter(|b| b.items > 1) {
                let items = &sequential[batch.first_index as usize..(batch.first_index + batch.items) as usize];
                let bytes: u64 =
                    items.iter().map(|i| serde_json::to_vec(&i.value).unwrap().len() as u64 + 1).sum::<u64>()
                        + 11
                        + limits.batch_input_bytes;
                assert!(bytes <= max_bytes, "batch of {bytes} bytes over {max_bytes}");
            }
        }
    });
}

/// A CSV object longer than a reader's chunk: its header row is read with the first records
/// one by one, and the plan counts the rest in runs that continue the batch those left open.
#[test]
fn long_csv_plans_read_back() {
    let mut text = String::from("id,name\n");
    let mut expected = Vec::new();
    for i in 0..1000 {
        text.push_str(&format!("{i},\"n, {i}\"\n"));
        expected.push(json!({"id": i.to_string(), "name": format!("n, {i}")}));
    }
    for (items, compression) in [(7, Compression::None), (300, Compression::Gzip), (1000, Compression::None)] {
        let body = compress(text.clone().into_bytes(), &compression);
        let config = json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"});
        check_lines(body, Some(text.as_bytes()), config, BatchLimits::items(items), None, expected.clone());
        let config = json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"});
        let body = compress(text.clone().into_bytes(), &compression);
        check_lines(body, Some(text.as_bytes()), config, BatchLimits::items(items), Some(555), expected.clone());
    }
}

/// A batch's CSV rows are checked as UTF-8 in bulk: rows of multi-byte characters read as
/// the sequential read gives them, one that is UTF-8 only once unescaped is kept, and one that
/// is not UTF-8 fails its batch, naming its line; the batches before it read whole.
#[test]
fn csv_batches_check_utf8_and_name_the_row_that_is_not() {
    block_on(async {
        let mut text = b"id,name\n".to_vec();
        for i in 0..300 {
            match i {
                100 => text.extend_from_slice(b"100,\xC3\\\xA9\n"),
                200 => text.extend_from_slice(b"200,bad \xff here\n"),
                _ => text.extend_from_slice(format!("{i},\u{e9}t\u{e9} {i}\n").as_bytes()),
            }
        }
        let stores = Arc::new(Stores::new(StoreConfig::Memory));
        put(&stores, BUCKET, "data", text).await;
        let config = json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"});
        let reader =
            ItemReader::open(stores, spec("getObject", config, json!({"Bucket": BUCKET, "Key": "data"}), None))
                .await
                .unwrap();
        let plan = reader.plan(&BatchLimits::items(150), None).await.unwrap();
        assert_eq!(plan.len(), 2);
        let mut rows = Vec::new();
        let mut records = reader.batch_records(&plan[0]);
        while let Some(chunk) = records.next().await {
            let Records::Csv(chunk) = chunk.unwrap() else { panic!("CSV rows expected") };
            rows.extend((0..chunk.len()).map(|r| chunk.item(r).value));
        }
        assert_eq!(rows.len(), 150);
        assert_eq!(rows[7], json!({"id": "7", "name": "\u{e9}t\u{e9} 7"}));
        assert_eq!(rows[100], json!({"id": "100", "name": "\u{e9}"}));
        let mut records = reader.batch_records(&plan[1]);
        let mut error = None;
        while let Some(chunk) = records.next().await {
            if let Err(e) = chunk {
                error = Some(e.to_string());
                break;
            }
        }
        let error = error.expect("the row that is not UTF-8 fails its batch");
        // The header is line 1: row 200 is on line 202.
        assert!(error.contains("line 202") && error.contains("not valid UTF-8"), "{error}");
    });
}

/// A local CSV file of several read chunks (1 MiB each, read straight into the scan buffer),
/// with a two-byte character across the first chunk's end: its batches read the rows the
/// sequential read gives, and those are the rows written.
#[test]
fn a_local_csv_of_several_chunks_reads_back_across_chunk_ends() {
    block_on(async {
        let mut text = String::from("id,name\n");
        let mut expected = Vec::new();
        let row = |text: &mut String, expected: &mut Vec<Value>, name: String| {
            let id = expected.len();
            text.push_str(&format!("{id},{name}\n"));
            expected.push(json!({"id": id.to_string(), "name": name}));
        };
        while text.len() < (1 << 20) - 100 {
            let name = format!("\u{e9}l\u{e8}ve {}", expected.len());
            row(&mut text, &mut expected, name);
        }
        // The `é` of this row starts at the last byte of the first MiB.
        let prefix = format!("{},", expected.len()).len();
        let pad = (1 << 20) - 1 - text.len() - prefix;
        row(&mut text, &mut expected, format!("{}\u{e9}t\u{e9}", "a".repeat(pad)));
        assert_eq!(&text.as_bytes()[(1 << 20) - 1..(1 << 20) + 1], "\u{e9}".as_bytes());
        while text.len() < (5 << 20) / 2 {
            let name = format!("\u{e0} {}", expected.len());
            row(&mut text, &mut expected, name);
        }
        let backend = super::harness::Backend::local();
        put(&backend.stores, BUCKET, "data.csv", text.into_bytes()).await;
        let config = json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"});
        let reader = ItemReader::open(
            backend.stores.clone(),
            spec("getObject", config, json!({"Bucket": BUCKET, "Key": "data.csv"}), None),
        )
        .await
        .unwrap();
        let sequential: Vec<Value> = read_all(&reader).await.unwrap().into_iter().map(|i| i.value).collect();
        assert_eq!(sequential, expected);
        let plan = reader.plan(&BatchLimits::items(7_000), None).await.unwrap();
        let mut from_records = Vec::new();
        for batch in &plan {
            let mut records = reader.batch_records(batch);
            while let Some(chunk) = records.next().await {
                let Records::Csv(rows) = chunk.unwrap() else { panic!("CSV rows expected") };
                from_records.extend((0..rows.len()).map(|r| rows.item(r).value));
            }
        }
        assert_eq!(from_records, expected);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn csv_plans_read_back(
        rows in proptest::collection::vec(proptest::collection::vec(field_text(), 1..4), 0..25),
        style in any::<u8>(),
        delimiter in prop_oneof![Just((',', "COMMA")), Just(('|', "PIPE")), Just(('\t', "TAB"))],
        first_row in any::<bool>(),
        compression in compression(),
        limits in limits(),
        max_items in proptest::option::of(1u64..30),
    ) {
        let (delimiter, name) = delimiter;
        let headers = vec!["h1".to_string(), "h2".to_string(), "h3".to_string()];
        let mut text = String::new();
        if first_row {
            text.push_str(&headers.join(&delimiter.to_string()));
            text.push('\n');
        }
        let mut expected = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            // A record of one empty field is an empty line, which is no record: quote it.
            let line: Vec<String> = row.iter().enumerate().map(|(i, f)| {
                let style = style.wrapping_add((r * 3 + i) as u8);
                if row.len() == 1 && f.is_empty() { "\"\"".to_string() } else { csv_field(f, delimiter, style) }
            }).collect();
            text.push_str(&line.join(&delimiter.to_string()));
            text.push_str(if r % 2 == 0 { "\n" } else { "\r\n" });
            let mut item = serde_json::Map::new();
            for (i, header) in headers.iter().enumerate() {
                item.insert(header.clone(), json!(row.get(i).cloned().unwrap_or_default()));
            }
            expected.push(Value::Object(item));
        }
        let config = if first_row {
            json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW", "CSVDelimiter": name})
        } else {
            json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": headers, "CSVDelimiter": name})
        };
        let body = compress(text.clone().into_bytes(), &compression);
        check_lines(body, Some(text.as_bytes()), config, limits, max_items, expected);
    }

    #[test]
    fn jsonl_plans_read_back(
        values in proptest::collection::vec(any_json(), 0..30),
        blank in proptest::collection::vec(any::<bool>(), 30),
        compression in compression(),
        limits in limits(),
    ) {
        let mut text = String::new();
        for (i, value) in values.iter().enumerate() {
            if blank[i] {
                text.push_str("  \n");
            }
            text.push_str(&value.to_string());
            text.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
        }
        let body = compress(text.clone().into_bytes(), &compression);
        check_lines(body, Some(text.as_bytes()), json!({"InputType": "JSONL"}), limits, None, values);
    }

    #[test]
    fn json_plans_read_back(
        values in proptest::collection::vec(any_json(), 0..30),
        as_object in any::<bool>(),
        nested in any::<bool>(),
        pretty in any::<bool>(),
        compression in compression(),
        limits in limits(),
    ) {
        let container = if as_object {
            Value::Object(values.iter().enumerate().map(|(i, v)| (format!("k\"{i}"), v.clone())).collect())
        } else {
            Value::Array(values.clone())
        };
        let (document, pointer) = if nested {
            (json!({"before": [1, {"x": "]}"}], "data": {"items~/": container}, "after": "}"}), Some("/data/items~0~1"))
        } else {
            (container, None)
        };
        let text = if pretty { serde_json::to_string_pretty(&document).unwrap() } else { document.to_string() };
        let mut config = json!({"InputType": "JSON"});
        if let Some(pointer) = pointer {
            config["ItemsPointer"] = json!(pointer);
        }
        check(compress(text.into_bytes(), &compression), config, limits, None, values);
    }

    #[test]
    fn parquet_plans_read_back(
        groups in proptest::collection::vec(0usize..9, 1..5),
        limits in limits(),
        max_items in proptest::option::of(1u64..40),
    ) {
        use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
        use parquet::arrow::ArrowWriter;
        let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
        let mut expected = Vec::new();
        let mut next = 0i64;
        for rows in &groups {
            let ids: Vec<i64> = (next..next + *rows as i64).collect();
            next += *rows as i64;
            let id: ArrayRef = Arc::new(Int64Array::from(ids.clone()));
            let text: ArrayRef = Arc::new(StringArray::from_iter(ids.iter().map(|i| (i % 4 != 1).then(|| format!("t{i}")))));
            let batch = RecordBatch::try_from_iter_with_nullable([("id", id, false), ("text", text, true)]).unwrap();
            let w = writer.get_or_insert_with(|| ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap());
            w.write(&batch).unwrap();
            w.flush().unwrap();
            for i in ids {
                expected.push(json!({"id": i, "text": if i % 4 != 1 { json!(format!("t{i}")) } else { Value::Null }}));
            }
        }
        let body = writer.unwrap().into_inner().unwrap();
        check(body, json!({"InputType": "PARQUET"}), limits, max_items, expected);
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        "[a-z\\]\\[{}\",:\\\\ \n]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z\"\\]]{0,3}", inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}
