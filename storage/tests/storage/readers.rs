//! Reader behaviour from features.md §2.3 (CSV rules, JSON/JSONL shapes, MaxItems, manifests,
//! error texts), on the memory backend; and "nothing panics on any input".

use std::sync::Arc;

use futures::TryStreamExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use stepmap_storage::item_reader::resolve_max_items;
use stepmap_storage::{BatchLimits, ItemReader, ItemReaderSpec, StorageError, Stores};

use super::harness::{block_on, gzip, planned_items, put, read_all, spec, values, Backend, BUCKET};

async fn csv_values(body: &str, config: Value) -> Result<Vec<Value>, StorageError> {
    let backend = Backend::memory();
    put(&backend.stores, BUCKET, "f.csv", body.to_string()).await;
    let mut config = config;
    config["InputType"] = json!("CSV");
    let config = serde_json::from_value(config).unwrap();
    let spec = ItemReaderSpec::new(
        "arn:aws:states:::s3:getObject",
        &config,
        &json!({"Bucket": BUCKET, "Key": "f.csv"}),
        None,
    )?;
    let reader = ItemReader::open(backend.stores.clone(), spec).await?;
    Ok(read_all(&reader).await?.into_iter().map(|i| i.value).collect())
}

#[tokio::test]
async fn csv_values_are_strings_missing_columns_empty_extra_dropped() {
    let body = "Col1,Col2,Col3\nValue1,Value2,Value3\n,,,\ntrue,1,'HelloWorld'\nNull,None,\n   \n";
    let items = csv_values(body, json!({"CSVHeaderLocation": "FIRST_ROW"})).await.unwrap();
    assert_eq!(
        items,
        vec![
            json!({"Col1": "Value1", "Col2": "Value2", "Col3": "Value3"}),
            json!({"Col1": "", "Col2": "", "Col3": ""}),
            json!({"Col1": "true", "Col2": "1", "Col3": "'HelloWorld'"}),
            json!({"Col1": "Null", "Col2": "None", "Col3": ""}),
            json!({"Col1": "   ", "Col2": "", "Col3": ""}),
        ]
    );
    let given = csv_values("a,b\nc\n", json!({"CSVHeaderLocation": "GIVEN", "CSVHeaders": ["H1"]})).await.unwrap();
    assert_eq!(given, vec![json!({"H1": "a"}), json!({"H1": "c"})]);
}

#[tokio::test]
async fn csv_headers_are_verbatim_and_unique() {
    let items = csv_values("0,True,{},\n1,2,3,4\n", json!({})).await.unwrap();
    assert_eq!(items, vec![json!({"0": "1", "True": "2", "{}": "3", "": "4"})]);
    for (body, config) in [
        ("a,b,a\n1,2,3\n", json!({"CSVHeaderLocation": "FIRST_ROW"})),
        ("1,2\n", json!({"CSVHeaderLocation": "GIVEN", "CSVHeaders": ["x", "x"]})),
    ] {
        let error = csv_values(body, config).await.unwrap_err();
        let failure = error.failure();
        assert_eq!(failure.error.as_deref(), Some("States.ItemReaderFailed"));
        assert_eq!(failure.cause.as_deref(), Some("CSV headers cannot contain duplicates."));
    }
}

#[tokio::test]
async fn csv_quotes_backslashes_and_delimiters() {
    // AWS's own example (example-csv-parse-dist-map): commas, doubled quotes and a newline in a
    // quoted field, JSON-looking text.
    let body = "a,b,c,d,e\nabc,123,\"This string contains commas, a double quotation marks (\"\"), and a newline (\n)\",{\"\"MyKey\"\":\"\"MyValue\"\"},\"[1,2,3]\"\n";
    let items = csv_values(body, json!({})).await.unwrap();
    assert_eq!(
        items,
        vec![json!({"a": "abc", "b": "123",
            "c": "This string contains commas, a double quotation marks (\"), and a newline (\n)",
            "d": "{\"MyKey\":\"MyValue\"}", "e": "[1,2,3]"})]
    );
    // Backslash escapes itself, the quote and the delimiter; before anything else it is dropped.
    let items =
        csv_values("path,size\nC:\\\\Program Files\\\\MyApp.exe,6534512\na\\,b,\\x\\\"y\n", json!({})).await.unwrap();
    assert_eq!(
        items,
        vec![
            json!({"path": "C:\\Program Files\\MyApp.exe", "size": "6534512"}),
            json!({"path": "a,b", "size": "x\"y"})
        ]
    );
    for (delimiter, byte) in [("PIPE", '|'), ("SEMICOLON", ';'), ("SPACE", ' '), ("TAB", '\t'), ("COMMA", ',')] {
        let body = format!("x{byte}y\n1{byte}\"2{byte}3\"\n4\\{byte}5{byte}6\n");
        let items = csv_values(&body, json!({"CSVDelimiter": delimiter})).await.unwrap();
        assert_eq!(
            items,
            vec![json!({"x": "1", "y": format!("2{byte}3")}), json!({"x": format!("4{byte}5"), "y": "6"})],
            "{delimiter}"
        );
    }
    // A UTF-8 BOM is not part of the first header; CRLF records work.
    let items = csv_values("\u{feff}h1,h2\r\n1,2\r\n", json!({})).await.unwrap();
    assert_eq!(items, vec![json!({"h1": "1", "h2": "2"})]);
}

#[tokio::test]
async fn malformed_inputs_name_object_line_and_problem() {
    let error = csv_values("a,b\n1,2\n3,\"unterminated\n4,5\n", json!({})).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("s3://test-bucket/f.csv") && text.contains("line 3") && text.contains("quoted field"),
        "{text}"
    );

    let backend = Backend::memory();
    put(&backend.stores, BUCKET, "bad.jsonl", "{\"a\":1}\n{\"a\":\n").await;
    let reader = ItemReader::open(
        backend.stores.clone(),
        spec("getObject", json!({"InputType": "JSONL"}), json!({"Bucket": BUCKET, "Key": "bad.jsonl"}), None),
    )
    .await
    .unwrap();
    let text = read_all(&reader).await.unwrap_err().to_string();
    assert!(text.contains("bad.jsonl") && text.contains("line 2"), "{text}");

    for (body, needle) in [
        ("[1, 2,]", "trailing ','"),
        ("[1 2]", "expected ','"),
        ("[1, {\"a\": }]", "line 1"),
        ("", "no JSON document"),
        ("[1] 2", "after the JSON document"),
        ("{\"a\": 1", "end of the JSON document"),
    ] {
        put(&backend.stores, BUCKET, "bad.json", body).await;
        let reader = ItemReader::open(
            backend.stores.clone(),
            spec("getObject", json!({"InputType": "JSON"}), json!({"Bucket": BUCKET, "Key": "bad.json"}), None),
        )
        .await
        .unwrap();
        let error = read_all(&reader).await.unwrap_err();
        assert!(error.to_string().contains(needle), "{body:?}: {error}");
        assert_eq!(error.failure().error.as_deref(), Some("States.ItemReaderFailed"));
    }
}

#[tokio::test]
async fn json_non_iterable_and_missing_pointer() {
    let backend = Backend::memory();
    put(&backend.stores, BUCKET, "scalar.json", "42").await;
    put(&backend.stores, BUCKET, "doc.json", "{\"a\": {\"b\": 1}, \"list\": [[\"x\"], [\"y\", \"z\"]]}").await;
    let read = |key: &'static str, pointer: Option<&'static str>| {
        let stores = backend.stores.clone();
        async move {
            let mut config = json!({"InputType": "JSON"});
            if let Some(p) = pointer {
                config["ItemsPointer"] = json!(p);
            }
            let reader =
                ItemReader::open(stores, spec("getObject", config, json!({"Bucket": BUCKET, "Key": key}), None))
                    .await?;
            read_all(&reader).await
        }
    };
    let error = read("scalar.json", None).await.unwrap_err();
    assert!(error.to_string().ends_with("Attempting to map over non-iterable node."), "{error}");
    let error = read("doc.json", Some("/a/b")).await.unwrap_err();
    assert!(error.to_string().ends_with("Attempting to map over non-iterable node."), "{error}");
    let error = read("doc.json", Some("/a/c")).await.unwrap_err();
    assert!(error.to_string().contains("ItemsPointer /a/c does not refer"), "{error}");
    let items = read("doc.json", Some("/list/1")).await.unwrap();
    assert_eq!(items.iter().map(|i| i.value.clone()).collect::<Vec<_>>(), vec![json!("y"), json!("z")]);
}

#[test]
fn max_items_follows_aws() {
    assert_eq!(resolve_max_items(&json!(0), "$.MaxItems").unwrap(), None);
    assert_eq!(resolve_max_items(&json!(2), "$.MaxItems").unwrap(), Some(2));
    assert_eq!(resolve_max_items(&json!("2"), "$maxItems").unwrap(), Some(2));
    assert_eq!(resolve_max_items(&json!(100_000_001), "$.MaxItems").unwrap(), Some(100_000_001));
    let negative = resolve_max_items(&json!(-1), "$.MaxItems").unwrap_err().failure();
    assert_eq!(negative.error.as_deref(), Some("States.ItemReaderFailed"));
    assert_eq!(negative.cause.as_deref(), Some("field MaxItems must be positive"));
    let fraction = resolve_max_items(&json!(1.5), "$.MaxItems").unwrap_err().failure();
    assert_eq!(fraction.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        fraction.cause.as_deref(),
        Some("The MaxItemsPath field refers to value \"1.5\" which is not a valid integer: $.MaxItems")
    );
    let text = resolve_max_items(&json!("NoNumber"), "$.M").unwrap_err().to_string();
    assert_eq!(text, "The MaxItemsPath field refers to value \"NoNumber\" which is not a valid integer: $.M");
    let object = resolve_max_items(&json!({}), "$.M").unwrap_err().to_string();
    assert!(object.contains("value \"{}\""), "{object}");
}

#[tokio::test]
async fn max_items_limits_reads_and_plans() {
    let backend = Backend::memory();
    put(&backend.stores, BUCKET, "n.jsonl", (0..10).map(|i| format!("{i}\n")).collect::<String>()).await;
    let spec = spec("getObject", json!({"InputType": "JSONL"}), json!({"Bucket": BUCKET, "Key": "n.jsonl"}), Some(3));
    assert_eq!(values(&backend.stores, spec.clone()).await, vec![json!(0), json!(1), json!(2)]);
    let reader = ItemReader::open(backend.stores.clone(), spec).await.unwrap();
    let plan = reader.plan(&stepmap_storage::BatchLimits::items(2), None).await.unwrap();
    assert_eq!(plan.iter().map(|b| b.items).collect::<Vec<_>>(), [2, 1]);
}

#[tokio::test]
async fn reader_config_errors() {
    let config = |v: Value| serde_json::from_value::<stepmap_asl::model::ReaderConfig>(v).unwrap();
    let params = json!({"Bucket": BUCKET, "Key": "k"});
    let get = "arn:aws:states:::s3:getObject";
    for (c, p) in [
        (json!({"InputType": "XML"}), params.clone()),
        (json!({"InputType": "CSV", "CSVDelimiter": "COLON"}), params.clone()),
        (json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN"}), params.clone()),
        (json!({"InputType": "JSON", "ItemsPointer": "a/b"}), params.clone()),
        (json!({"InputType": "PARQUET"}), json!({"Bucket": BUCKET, "Key": "k", "VersionId": "v1"})),
        (json!({"InputType": "CSV", "ManifestType": "S3_INVENTORY"}), params.clone()),
        (json!({"InputType": "JSON", "ManifestType": "ATHENA_DATA"}), params.clone()),
        (json!({"InputType": "JSON"}), json!({"Bucket": BUCKET})),
        (json!({"InputType": "JSON"}), json!({"Bucket": 1, "Key": "k"})),
    ] {
        let error = ItemReaderSpec::new(get, &config(c.clone()), &p, None).unwrap_err();
        assert_eq!(error.failure().error.as_deref(), Some("States.ItemReaderFailed"), "{c} {p}");
    }
    let listing = ItemReaderSpec::new(
        "arn:aws:states:::s3:listObjectsV2",
        &config(json!({"Transformation": "LOAD_AND_FLATTEN"})),
        &json!({"Bucket": BUCKET}),
        None,
    );
    assert!(listing.is_err(), "LOAD_AND_FLATTEN needs an InputType");
    assert!(ItemReaderSpec::new("arn:aws:states:::s3:putObject", &config(json!({})), &params, None).is_err());
}

#[tokio::test]
async fn s3_inventory_and_athena_manifests() {
    let backend = Backend::memory();
    let stores = &backend.stores;
    let data1 = "\"source\",\"csvDataset/titles.csv\",\"3399671\",\"2022-11-16T00:29:32.000Z\"\n\"source\",\"b.csv\",\"12\",\"2022-11-16T00:29:33.000Z\"\n";
    let data2 = "\"source\",\"c.csv\",\"7\",\"2022-11-17T00:00:00.000Z\"\n";
    put(stores, "inventory", "inv/data/1.csv.gz", gzip(data1.as_bytes())).await;
    put(stores, "inventory", "inv/data/2.csv.gz", gzip(data2.as_bytes())).await;
    let manifest = json!({
        "sourceBucket": "source",
        "destinationBucket": "arn:aws:s3:::inventory",
        "version": "2016-11-30",
        "creationTimestamp": "1668560400000",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate",
        "files": [
            {"key": "inv/data/1.csv.gz", "size": 100, "MD5checksum": "x"},
            {"key": "inv/data/2.csv.gz", "size": 100, "MD5checksum": "y"}
        ]
    });
    put(stores, BUCKET, "inv/manifest.json", manifest.to_string()).await;
    let spec_inventory = spec(
        "getObject",
        json!({"InputType": "MANIFEST"}),
        json!({"Bucket": BUCKET, "Key": "inv/manifest.json"}),
        None,
    );
    let reader = ItemReader::open(stores.clone(), spec_inventory).await.unwrap();
    let items = read_all(&reader).await.unwrap();
    assert_eq!(
        items[0].value,
        json!({"Bucket": "source", "Key": "csvDataset/titles.csv", "Size": "3399671", "LastModifiedDate": "2022-11-16T00:29:32.000Z"})
    );
    assert_eq!(items.len(), 3);
    assert_eq!(&*items[2].source, "S3://inventory/inv/data/2.csv.gz");
    assert_eq!(super::harness::planned_items(&reader, &stepmap_storage::BatchLimits::items(2)).await, items);
    let same = spec(
        "getObject",
        json!({"ManifestType": "S3_INVENTORY"}),
        json!({"Bucket": BUCKET, "Key": "inv/manifest.json"}),
        None,
    );
    assert_eq!(values(stores, same).await.len(), 3);

    put(stores, "athena", "unload/a.gz", gzip(b"1,x\n2,y\n")).await;
    put(stores, "athena", "unload/b.gz", gzip(b"3,z\n")).await;
    put(stores, BUCKET, "athena-manifest.csv", "s3://athena/unload/a.gz\ns3://athena/unload/b.gz\n").await;
    // An Athena manifest of CSV files with the columns `n`, `s`.
    let athena_spec = |key: &str| {
        spec(
            "getObject",
            json!({"ManifestType": "ATHENA_DATA", "InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["n", "s"]}),
            json!({"Bucket": BUCKET, "Key": key}),
            None,
        )
    };
    let athena = athena_spec("athena-manifest.csv");
    assert_eq!(
        values(stores, athena).await,
        vec![json!({"n": "1", "s": "x"}), json!({"n": "2", "s": "y"}), json!({"n": "3", "s": "z"})]
    );
    // One file listed twice: two units of the same object whose records share a batch. Each
    // unit gets its own extent, and the plan reads back as the sequential read.
    put(stores, BUCKET, "twice.csv", "s3://athena/unload/a.gz\ns3://athena/unload/a.gz\n").await;
    let twice = athena_spec("twice.csv");
    let reader = ItemReader::open(stores.clone(), twice).await.unwrap();
    let sequential = read_all(&reader).await.unwrap();
    assert_eq!(sequential.len(), 4);
    let limits = BatchLimits { max_items_per_batch: Some(10), max_input_bytes_per_batch: None, batch_input_bytes: 0 };
    let plan = reader.plan(&limits, None).await.unwrap();
    assert_eq!((plan.len(), plan[0].extents.len()), (1, 2));
    assert_eq!(planned_items(&reader, &limits).await, sequential);
}

#[test]
fn store_urls() {
    use stepmap_storage::{S3Config, StoreConfig};
    assert_eq!(StoreConfig::from_url("memory://").unwrap(), StoreConfig::Memory);
    assert_eq!(StoreConfig::from_url("/data").unwrap(), StoreConfig::Local { data_dir: "/data".into() });
    assert_eq!(StoreConfig::from_url("file:///data/x").unwrap(), StoreConfig::Local { data_dir: "/data/x".into() });
    assert_eq!(
        StoreConfig::from_url("http://127.0.0.1:9000?region=eu-west-1&virtual_hosted_style=true").unwrap(),
        StoreConfig::S3(S3Config {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-1".into()),
            virtual_hosted_style: true,
            ..S3Config::default()
        })
    );
    assert!(matches!(StoreConfig::from_url("s3://").unwrap(), StoreConfig::S3(_)));
    assert!(StoreConfig::from_url("s3://bucket").is_err());
    assert!(StoreConfig::from_url("ftp://x").is_err());
    assert!(StoreConfig::from_url("http://h?colour=blue").is_err());
    let toml_config: StoreConfig =
        serde_json::from_value(json!({"kind": "s3", "endpoint": "http://h:1", "region": "r"})).unwrap();
    assert!(matches!(toml_config, StoreConfig::S3(S3Config { endpoint: Some(_), .. })));
    let stores = Stores::new(StoreConfig::Memory);
    for bad in ["", "..", "a/b"] {
        assert!(matches!(stores.bucket(bad), Err(StorageError::InvalidBucket { .. })), "{bad:?}");
    }
}

fn read_bytes(stores: &Arc<Stores>, body: Vec<u8>, config: Value) -> Result<usize, StorageError> {
    block_on(async {
        put(stores, BUCKET, "fuzz", body).await;
        let config = serde_json::from_value(config).unwrap();
        let spec = ItemReaderSpec::new(
            "arn:aws:states:::s3:getObject",
            &config,
            &json!({"Bucket": BUCKET, "Key": "fuzz"}),
            None,
        )?;
        let reader = ItemReader::open(stores.clone(), spec).await?;
        let items: Vec<_> = reader.items().try_collect().await?;
        let plan = reader.plan(&stepmap_storage::BatchLimits::items(3), None).await?;
        let _ = super::harness::read_plan(&reader, &plan).await;
        Ok(items.len())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes in any format end in items or an error, never a panic.
    #[test]
    fn nothing_panics(body in proptest::collection::vec(prop_oneof![
        Just(b'"'), Just(b','), Just(b'\n'), Just(b'\r'), Just(b'\\'), Just(b'['), Just(b']'), Just(b'{'), Just(b'}'),
        Just(b':'), Just(b' '), Just(b'1'), Just(b'a'), Just(0x1f), Just(0x8b), Just(0xff), any::<u8>()
    ], 0..200), format in 0..6usize) {
        let stores = Arc::new(Stores::new(stepmap_storage::StoreConfig::Memory));
        let config = [
            json!({"InputType": "CSV"}),
            json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["a", "b"]}),
            json!({"InputType": "JSON"}),
            json!({"InputType": "JSON", "ItemsPointer": "/a/0"}),
            json!({"InputType": "JSONL"}),
            json!({"InputType": "PARQUET"}),
        ][format].clone();
        let _ = read_bytes(&stores, body, config);
    }
}

#[tokio::test]
async fn parquet_typed_columns_become_json_values() {
    use arrow_array::builder::{Int32Builder, ListBuilder};
    use arrow_array::{ArrayRef, Date32Array, RecordBatch, StringArray, UInt8Array};
    use parquet::arrow::ArrowWriter;
    let mut list = ListBuilder::new(Int32Builder::new());
    list.values().append_value(1);
    list.values().append_value(2);
    list.append(true);
    list.append(false);
    let columns: [(&str, ArrayRef); 4] = [
        ("day", Arc::new(Date32Array::from(vec![Some(19724), None]))),
        ("numbers", Arc::new(list.finish())),
        ("small", Arc::new(UInt8Array::from(vec![7, 255]))),
        ("text", Arc::new(StringArray::from(vec![Some("é\"x"), None]))),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    let backend = Backend::memory();
    put(&backend.stores, BUCKET, "typed.parquet", writer.into_inner().unwrap()).await;
    let spec =
        spec("getObject", json!({"InputType": "PARQUET"}), json!({"Bucket": BUCKET, "Key": "typed.parquet"}), None);
    assert_eq!(
        values(&backend.stores, spec).await,
        vec![
            json!({"day": "2024-01-02", "numbers": [1, 2], "small": 7, "text": "é\"x"}),
            json!({"day": null, "numbers": null, "small": 255, "text": null}),
        ]
    );
}
