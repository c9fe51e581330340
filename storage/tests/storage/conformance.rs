//! The storage conformance suite: every function takes a backend's [`Stores`] and states one
//! contract; `conformance!` runs each against memory, local files and S3 (s3s on loopback).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::{json, Value};
use stepmap_storage::batch_plan::BatchLimits;
use stepmap_storage::result_writer::{ChildExecutionResult, ChildStatus, PayloadDetails, StagedBatch};
use stepmap_storage::{ItemReader, ResultWriter, ResultWriterSpec, ResultsBegun, StorageError, Stores, Transformation};

use super::harness::{gzip, planned_items, put, read_all, spec, values, zstd, Backend, BUCKET};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(&super::Backend::memory().stores).await; })*
        }
        mod local {
            $(#[tokio::test] async fn $name() { let backend = super::Backend::local(); super::$name(&backend.stores).await; })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { let backend = super::Backend::s3().await; super::$name(&backend.stores).await; })*
        }
    };
}

conformance!(
    put_get_head_delete,
    missing_object_is_item_reader_failed,
    listing_is_sorted_with_string_prefixes,
    listing_start_after_and_exact_prefix_key,
    listing_items_have_aws_shape,
    csv_items_plain_gzip_zstd,
    json_and_jsonl_items,
    parquet_items_and_row_group_plan,
    plans_read_back_exactly,
    load_and_flatten_reads_every_object,
    changed_source_is_detected,
    result_writer_layout_and_idempotence,
    result_writer_rollover,
    result_writer_redrive_lists_earlier_successes,
    result_files_written_while_running_or_given_up,
);

async fn put_get_head_delete(stores: &Arc<Stores>) {
    let bucket = stores.bucket(BUCKET).unwrap();
    bucket.put("dir/a.txt", Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(bucket.get_bytes("dir/a.txt").await.unwrap(), Bytes::from_static(b"hello"));
    let meta = bucket.head("dir/a.txt").await.unwrap();
    assert_eq!(meta.size, 5);
    bucket.delete("dir/a.txt").await.unwrap();
    assert!(matches!(bucket.head("dir/a.txt").await, Err(StorageError::NotFound { .. })));
    // Deleting what is gone is fine (idempotent writers rely on it).
    bucket.delete("dir/a.txt").await.unwrap();
    for key in ["a//b", "a/", "/a", "a/../b", ""] {
        assert!(matches!(bucket.path(key), Err(StorageError::InvalidKey { .. })), "{key:?}");
    }
}

async fn missing_object_is_item_reader_failed(stores: &Arc<Stores>) {
    let spec = spec("getObject", json!({"InputType": "JSON"}), json!({"Bucket": BUCKET, "Key": "nope.json"}), None);
    let reader = ItemReader::open(stores.clone(), spec).await.unwrap();
    let error = read_all(&reader).await.unwrap_err();
    assert!(matches!(error, StorageError::NotFound { .. }), "{error:?}");
    let failure = error.failure();
    assert_eq!(failure.error.as_deref(), Some("States.ItemReaderFailed"));
    assert!(failure.cause.unwrap().contains("nope.json"));
}

async fn listing_is_sorted_with_string_prefixes(stores: &Arc<Stores>) {
    for key in ["folder10/b", "folder1/z", "folder1/a/deep", "folder1/a-c", "folder1.txt", "other", "folder1/a/b"] {
        put(stores, BUCKET, key, "x").await;
    }
    let bucket = stores.bucket(BUCKET).unwrap();
    let keys = |prefix: &'static str, after: Option<&'static str>| {
        let bucket = bucket.clone();
        async move {
            let metas: Vec<_> = bucket.list_sorted(prefix, after).try_collect().await.unwrap();
            metas.into_iter().map(|m| m.location.to_string()).collect::<Vec<_>>()
        }
    };
    // S3 semantics: a plain string prefix, ascending byte order.
    assert_eq!(
        keys("folder1", None).await,
        ["folder1.txt", "folder1/a-c", "folder1/a/b", "folder1/a/deep", "folder1/z", "folder10/b"]
    );
    assert_eq!(keys("folder1/", None).await, ["folder1/a-c", "folder1/a/b", "folder1/a/deep", "folder1/z"]);
    assert_eq!(keys("folder1/a", None).await, ["folder1/a-c", "folder1/a/b", "folder1/a/deep"]);
    assert_eq!(keys("", Some("folder1/a/deep")).await, ["folder1/z", "folder10/b", "other"]);
    assert!(keys("nothing", None).await.is_empty());
}

async fn listing_start_after_and_exact_prefix_key(stores: &Arc<Stores>) {
    for key in ["logs", "logs2", "logsX/1"] {
        put(stores, BUCKET, key, "x").await;
    }
    let bucket = stores.bucket(BUCKET).unwrap();
    let metas: Vec<_> = bucket.list_sorted("logs", None).try_collect().await.unwrap();
    let keys: Vec<_> = metas.iter().map(|m| m.location.to_string()).collect();
    assert_eq!(keys, ["logs", "logs2", "logsX/1"]);
    let metas: Vec<_> = bucket.list_sorted("logs", Some("logs")).try_collect().await.unwrap();
    assert_eq!(metas.len(), 2);
}

async fn listing_items_have_aws_shape(stores: &Arc<Stores>) {
    put(stores, BUCKET, "in/a.csv", "a,b\n1,2\n").await;
    put(stores, BUCKET, "in/b.csv", "a,b\n3,4\n").await;
    let spec = spec("listObjectsV2", json!({}), json!({"Bucket": BUCKET, "Prefix": "in/"}), None);
    let reader = ItemReader::open(stores.clone(), spec).await.unwrap();
    let items = read_all(&reader).await.unwrap();
    assert_eq!(items.len(), 2);
    let first = &items[0].value;
    assert_eq!(first["Key"], "in/a.csv");
    assert_eq!(first["Size"], 8);
    assert_eq!(first["StorageClass"], "STANDARD");
    let etag = first["Etag"].as_str().unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let modified = first["LastModified"].as_i64().unwrap();
    assert!(modified > 1_600_000_000, "epoch seconds: {modified}");
    assert_eq!(&*items[0].source, format!("S3://{BUCKET}"));
    let keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["Etag", "Key", "LastModified", "Size", "StorageClass"]);
}

async fn csv_items_plain_gzip_zstd(stores: &Arc<Stores>) {
    let text = "Col1,Col2\r\nv1,\"quoted, with \"\"comma\"\"\"\n\nv3,C:\\\\x\\,y\n";
    let expected = json!([
        {"Col1": "v1", "Col2": "quoted, with \"comma\""},
        {"Col1": "v3", "Col2": "C:\\x,y"},
    ]);
    put(stores, BUCKET, "data.csv", text.to_string()).await;
    put(stores, BUCKET, "data.csv.gz", gzip(text.as_bytes())).await;
    put(stores, BUCKET, "data.csv.zstd", zstd(text.as_bytes())).await;
    for key in ["data.csv", "data.csv.gz", "data.csv.zstd"] {
        let spec = spec(
            "getObject",
            json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}),
            json!({"Bucket": BUCKET, "Key": key}),
            None,
        );
        assert_eq!(Value::Array(values(stores, spec.clone()).await), expected, "{key}");
        let reader = ItemReader::open(stores.clone(), spec).await.unwrap();
        let items = planned_items(&reader, &BatchLimits::items(1)).await;
        assert_eq!(Value::Array(items.into_iter().map(|i| i.value).collect()), expected, "{key} through a plan");
    }
}

async fn json_and_jsonl_items(stores: &Arc<Stores>) {
    put(stores, BUCKET, "nested.json", r#"{"meta": {"n": [1, {"x": "]"}]}, "inventory": {"products": {"featured": [{"id": 1}, {"id": 2}], "other": []}}}"#).await;
    let spec_nested = spec(
        "getObject",
        json!({"InputType": "JSON", "ItemsPointer": "/inventory/products/featured"}),
        json!({"Bucket": BUCKET, "Key": "nested.json"}),
        None,
    );
    assert_eq!(values(stores, spec_nested).await, vec![json!({"id": 1}), json!({"id": 2})]);

    put(stores, BUCKET, "object.json", r#"{"a": 1, "b": {"c": [true]}}"#).await;
    let reader = ItemReader::open(
        stores.clone(),
        spec("getObject", json!({"InputType": "JSON"}), json!({"Bucket": BUCKET, "Key": "object.json"}), None),
    )
    .await
    .unwrap();
    let items = read_all(&reader).await.unwrap();
    assert_eq!(items.iter().map(|i| i.key.clone().unwrap()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(items[1].value, json!({"c": [true]}));
    assert_eq!(&*items[0].source, format!("S3://{BUCKET}/object.json"));
    let planned = planned_items(&reader, &BatchLimits::items(1)).await;
    assert_eq!(planned, items);

    put(stores, BUCKET, "lines.jsonl", "{\"a\":1}\r\n\n  \n[2]\n\"three\"").await;
    let spec_lines =
        spec("getObject", json!({"InputType": "JSONL"}), json!({"Bucket": BUCKET, "Key": "lines.jsonl"}), None);
    assert_eq!(values(stores, spec_lines).await, vec![json!({"a": 1}), json!([2]), json!("three")]);
}

fn parquet_bytes(rows_per_group: usize, groups: usize) -> Vec<u8> {
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let n = rows_per_group * groups;
    let id: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
    let name: ArrayRef = Arc::new(StringArray::from_iter((0..n).map(|i| (i % 3 != 0).then(|| format!("name-{i}")))));
    let score: ArrayRef = Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64 / 2.0)));
    let flag: ArrayRef = Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 2 == 0))));
    let batch = RecordBatch::try_from_iter([("id", id), ("name", name), ("score", score), ("flag", flag)]).unwrap();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.into_inner().unwrap()
}

async fn parquet_items_and_row_group_plan(stores: &Arc<Stores>) {
    put(stores, BUCKET, "rows.parquet", parquet_bytes(7, 3)).await;
    let spec =
        spec("getObject", json!({"InputType": "PARQUET"}), json!({"Bucket": BUCKET, "Key": "rows.parquet"}), None);
    let reader = ItemReader::open(stores.clone(), spec).await.unwrap();
    let items = read_all(&reader).await.unwrap();
    assert_eq!(items.len(), 21);
    assert_eq!(items[0].value, json!({"id": 0, "name": null, "score": 0.0, "flag": true}));
    assert_eq!(items[4].value, json!({"id": 4, "name": "name-4", "score": 2.0, "flag": true}));
    for limits in [BatchLimits::items(5), BatchLimits::items(7), BatchLimits::items(100)] {
        assert_eq!(planned_items(&reader, &limits).await, items);
    }
    // With a byte limit the rows are measured.
    let limits = BatchLimits { max_input_bytes_per_batch: Some(200), ..BatchLimits::default() };
    assert_eq!(planned_items(&reader, &limits).await, items);
}

async fn plans_read_back_exactly(stores: &Arc<Stores>) {
    let mut csv = String::from("id,text\n");
    for i in 0..120 {
        csv.push_str(&format!("{i},\"line {i}\nwith a quoted newline, and \"\"quotes\"\"\"\n"));
    }
    put(stores, BUCKET, "big.csv", csv.clone()).await;
    put(stores, BUCKET, "big.csv.gz", gzip(csv.as_bytes())).await;
    for key in ["big.csv", "big.csv.gz"] {
        let spec = spec("getObject", json!({"InputType": "CSV"}), json!({"Bucket": BUCKET, "Key": key}), Some(100));
        let reader = ItemReader::open(stores.clone(), spec).await.unwrap();
        let items = read_all(&reader).await.unwrap();
        assert_eq!(items.len(), 100);
        assert_eq!(items[99].value["text"], "line 99\nwith a quoted newline, and \"quotes\"");
        for limits in [
            BatchLimits::items(7),
            BatchLimits::items(64),
            BatchLimits { max_input_bytes_per_batch: Some(2000), ..BatchLimits::default() },
            BatchLimits { max_items_per_batch: Some(10), max_input_bytes_per_batch: Some(600), batch_input_bytes: 20 },
        ] {
            assert_eq!(planned_items(&reader, &limits).await, items, "{key} {limits:?}");
        }
    }
}

async fn load_and_flatten_reads_every_object(stores: &Arc<Stores>) {
    put(stores, BUCKET, "parts/1.jsonl", "{\"n\":1}\n{\"n\":2}\n").await;
    put(stores, BUCKET, "parts/2.jsonl", gzip(b"{\"n\":3}\n")).await;
    put(stores, BUCKET, "parts/3.jsonl", "").await;
    put(stores, BUCKET, "parts/4.jsonl", "{\"n\":4}").await;
    let spec = spec(
        "listObjectsV2",
        json!({"InputType": "JSONL", "Transformation": "LOAD_AND_FLATTEN"}),
        json!({"Bucket": BUCKET, "Prefix": "parts/"}),
        None,
    );
    let reader = ItemReader::open(stores.clone(), spec).await.unwrap();
    let items = read_all(&reader).await.unwrap();
    let numbers: Vec<_> = items.iter().map(|i| i.value["n"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(&*items[2].source, format!("S3://{BUCKET}/parts/2.jsonl"));
    assert_eq!(planned_items(&reader, &BatchLimits::items(3)).await, items);
    // Listing without transformation, planned in pages.
    let listing = ItemReader::open(stores.clone(), spec_listing()).await.unwrap();
    let listed = read_all(&listing).await.unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(planned_items(&listing, &BatchLimits::items(3)).await, listed);
}

fn spec_listing() -> stepmap_storage::ItemReaderSpec {
    spec("listObjectsV2", json!({}), json!({"Bucket": BUCKET, "Prefix": "parts/"}), None)
}

async fn changed_source_is_detected(stores: &Arc<Stores>) {
    put(stores, BUCKET, "changing.jsonl", "1\n2\n3\n").await;
    let spec =
        spec("getObject", json!({"InputType": "JSONL"}), json!({"Bucket": BUCKET, "Key": "changing.jsonl"}), None);
    let reader = ItemReader::open(stores.clone(), spec).await.unwrap();
    let plan = reader.plan(&BatchLimits::items(2), None).await.unwrap();
    // Wait until the store's clock moved on so that even mtime-based ETags change.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    put(stores, BUCKET, "changing.jsonl", "10\n20\n30\n40\n").await;
    let result: Result<Vec<_>, _> = reader.batch_items(&plan[0]).try_collect().await;
    assert!(matches!(result, Err(StorageError::SourceChanged { .. })), "{result:?}");
}

fn child(i: u64, status: ChildStatus) -> ChildExecutionResult {
    let mut record = ChildExecutionResult::pending(&json!({"Items": [i]}).into());
    record.status = status;
    record.execution_arn = Some(format!("arn:aws:states:us-east-1:111111111111:execution:sm/Map:{i}"));
    record.name = Some(format!("child-{i}"));
    if status == ChildStatus::Succeeded {
        record.output = Some(json!([i, i + 1]).to_string());
        record.output_details = Some(PayloadDetails { included: true });
    } else {
        record.error = Some("States.TaskFailed".into());
        record.cause = Some("boom".into());
    }
    record
}

async fn result_writer_layout_and_idempotence(stores: &Arc<Stores>) {
    let arn = "arn:aws:states:us-east-1:111111111111:mapRun:sm/Map:0b2f-run";
    for (transformation, output_type) in
        [("NONE", "JSON"), ("COMPACT", "JSONL"), ("FLATTEN", "JSON"), ("NONE", "PARQUET")]
    {
        let model = serde_json::from_value(json!({
            "Resource": "arn:aws:states:::s3:putObject",
            "WriterConfig": {"Transformation": transformation, "OutputType": output_type}
        }))
        .unwrap();
        let prefix = format!("out-{transformation}-{output_type}");
        let spec = ResultWriterSpec::new(&model, &json!({"Bucket": "results", "Prefix": prefix})).unwrap();
        let writer = ResultWriter::new(stores.clone(), spec, arn, 0);
        let batch0 = StagedBatch { batch: 0, attempt: 0 };
        let batch1 = StagedBatch { batch: 1, attempt: 2 };
        let records0 = [child(0, ChildStatus::Succeeded), child(1, ChildStatus::Failed)];
        // The same attempt staged twice leaves one copy.
        writer.stage_batch(batch0, records0.iter().map(|r| (r.clone(), None))).await.unwrap();
        writer.stage_batch(batch0, records0.iter().map(|r| (r.clone(), None))).await.unwrap();
        writer
            .stage_batch(StagedBatch { batch: 1, attempt: 1 }, [(child(9, ChildStatus::Succeeded), None)])
            .await
            .unwrap();
        writer.stage_batch(batch1, [(child(2, ChildStatus::Succeeded), None)]).await.unwrap();
        let pending = [ChildExecutionResult::pending(&json!({"Items": [3]}).into())];
        let manifest = writer.finalize(&[batch1, batch0, batch0], &pending).await.unwrap();
        // Finalising again (a new leader repeating the effect) gives the same manifest.
        assert_eq!(writer.finalize(&[batch0, batch1], &pending).await.unwrap(), manifest);

        assert_eq!(manifest.map_run_arn, arn);
        assert_eq!(manifest.destination_bucket, "results");
        let extension = if output_type == "PARQUET" { "parquet" } else { "json" };
        let directory = format!("{prefix}/0b2f-run/");
        assert_eq!(manifest.result_files.succeeded.len(), 1);
        assert_eq!(manifest.result_files.succeeded[0].key, format!("{directory}SUCCEEDED_0.{extension}"));
        assert_eq!(manifest.result_files.failed[0].key, format!("{directory}FAILED_0.{extension}"));
        assert_eq!(manifest.result_files.pending[0].key, format!("{directory}PENDING_0.{extension}"));
        assert_eq!(
            writer.state_output(),
            json!({"MapRunArn": arn, "ResultWriterDetails": {"Bucket": "results", "Key": format!("{directory}manifest.json")}})
        );
        let bucket = stores.bucket("results").unwrap();
        let stored: Value =
            serde_json::from_slice(&bucket.get_bytes(&format!("{directory}manifest.json")).await.unwrap()).unwrap();
        assert_eq!(stored["ResultFiles"]["SUCCEEDED"][0]["Size"], json!(manifest.result_files.succeeded[0].size));
        // Staging objects are gone; only AWS's files remain.
        let listed: Vec<_> = bucket.list_sorted(&directory, None).try_collect().await.unwrap();
        let mut names: Vec<_> =
            listed.iter().map(|m| m.location.to_string().trim_start_matches(&directory).to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                format!("FAILED_0.{extension}"),
                format!("PENDING_0.{extension}"),
                format!("SUCCEEDED_0.{extension}"),
                "manifest.json".to_string()
            ]
        );
        if output_type == "PARQUET" {
            continue;
        }
        let succeeded = bucket.get_bytes(&manifest.result_files.succeeded[0].key).await.unwrap();
        assert_eq!(succeeded.len() as u64, manifest.result_files.succeeded[0].size);
        let entries: Vec<Value> = if output_type == "JSONL" {
            succeeded
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect()
        } else {
            serde_json::from_slice(&succeeded).unwrap()
        };
        match transformation {
            "NONE" => {
                assert_eq!(entries.len(), 2);
                assert_eq!(entries[0]["Name"], "child-0");
                assert_eq!(entries[0]["Output"], json!([0, 1]).to_string());
                assert_eq!(entries[1]["Name"], "child-2", "batch 1's accepted attempt, not attempt 1");
            }
            "COMPACT" => assert_eq!(entries, vec![json!([0, 1]), json!([2, 3])]),
            _ => assert_eq!(entries, vec![json!(0), json!(1), json!(2), json!(3)]),
        }
        let failed: Value = {
            let bytes = bucket.get_bytes(&manifest.result_files.failed[0].key).await.unwrap();
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            let first = if output_type == "JSONL" { text.lines().next().unwrap().to_string() } else { text };
            let value: Value = serde_json::from_str(&first).unwrap();
            if value.is_array() {
                value[0].clone()
            } else {
                value
            }
        };
        assert_eq!(failed["Status"], "FAILED");
        assert_eq!(failed["Error"], "States.TaskFailed");
        assert_eq!(failed["Input"], json!({"Items": [1]}).to_string());
    }
}

/// Result files roll over at the size limit, whether entries are copied one by one (JSON) or
/// a staged batch's lines at once where they fit (JSON Lines): no file over the limit, every
/// entry once, in order.
async fn result_writer_rollover(stores: &Arc<Stores>) {
    // AWS names JSON Lines result files `.json` too.
    for output_type in ["JSON", "JSONL"] {
        let model = serde_json::from_value(json!({"Resource": "arn:aws:states:::s3:putObject",
            "WriterConfig": {"OutputType": output_type, "Transformation": "NONE"}}))
        .unwrap();
        let prefix = format!("roll-{output_type}/");
        let mut spec = ResultWriterSpec::new(&model, &json!({"Bucket": "results", "Prefix": prefix})).unwrap();
        assert_eq!(spec.transformation, Transformation::None);
        spec.max_file_bytes = 1500;
        let writer = ResultWriter::new(stores.clone(), spec, "arn:aws:states:us-east-1:1:mapRun:sm/Map:run2", 1);
        // Two entries that fit a file, then one, then more than a file holds.
        let mut batches = Vec::new();
        for (batch, range) in [(0, 0..2), (1, 2..3), (2, 3..20)] {
            let records: Vec<_> = range.map(|i| (child(i, ChildStatus::Succeeded), None)).collect();
            writer.stage_batch(StagedBatch { batch, attempt: 0 }, records).await.unwrap();
            batches.push(StagedBatch { batch, attempt: 0 });
        }
        let manifest = writer.finalize(&batches, &[]).await.unwrap();
        let files = &manifest.result_files.succeeded;
        assert!(files.len() > 2, "{files:?}");
        assert!(manifest.result_files.failed.is_empty() && manifest.result_files.pending.is_empty());
        let bucket = stores.bucket("results").unwrap();
        let mut names = Vec::new();
        for (n, file) in files.iter().enumerate() {
            assert_eq!(file.key, format!("roll-{output_type}/run2/Redrive-1/SUCCEEDED_{n}.json"));
            let bytes = bucket.get_bytes(&file.key).await.unwrap();
            assert!(file.size <= 1500 && file.size == bytes.len() as u64, "{file:?}");
            let entries: Vec<Value> = if output_type == "JSON" {
                serde_json::from_slice(&bytes).unwrap()
            } else {
                bytes
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap())
                    .collect()
            };
            names.extend(entries.into_iter().map(|e| e["Name"].as_str().unwrap().to_string()));
        }
        assert_eq!(names, (0..20).map(|i| format!("child-{i}")).collect::<Vec<_>>(), "{output_type}");
    }
}

/// Result files begun before the last batch is known (`begin_results` while a map run runs)
/// end as `finalize` would write them; given up, they leave no object behind but the staging
/// (on S3 no multipart upload either: the open file's is aborted).
async fn result_files_written_while_running_or_given_up(stores: &Arc<Stores>) {
    let model = serde_json::from_value(json!({"Resource": "arn:aws:states:::s3:putObject",
        "WriterConfig": {"OutputType": "JSONL", "Transformation": "NONE"}}))
    .unwrap();
    let listed = |prefix: &'static str| async move {
        let objects: Vec<_> = stores.bucket("results").unwrap().list_sorted(prefix, None).try_collect().await.unwrap();
        objects.into_iter().map(|o| o.location.to_string()).collect::<Vec<_>>()
    };
    for (prefix, give_up) in [("streamed/", false), ("given-up/", true)] {
        let mut spec = ResultWriterSpec::new(&model, &json!({"Bucket": "results", "Prefix": prefix})).unwrap();
        spec.max_file_bytes = 1500;
        let writer = ResultWriter::new(stores.clone(), spec, "arn:aws:states:us-east-1:1:mapRun:sm/Map:run4", 0);
        let batches: Vec<StagedBatch> = (0..3).map(|batch| StagedBatch { batch, attempt: 1 }).collect();
        for staged in &batches {
            let records: Vec<_> = (staged.batch * 4..staged.batch * 4 + 4)
                .map(|i| (child(i, if i == 5 { ChildStatus::Failed } else { ChildStatus::Succeeded }), None))
                .collect();
            writer.stage_batch(*staged, records).await.unwrap();
        }
        let ResultsBegun::InProgress(mut results) = writer.begin_results(&[]).await.unwrap() else {
            panic!("no manifest yet")
        };
        results.copy(batches[0]).await.unwrap();
        results.copy(batches[1]).await.unwrap();
        if give_up {
            results.abort().await;
            let left = listed(prefix).await;
            assert!(left.iter().all(|key| key.contains("/.stepmap-staging/")), "{left:?}");
            assert_eq!(left.len(), 3, "the staging stays: {left:?}");
            continue;
        }
        results.copy(batches[2]).await.unwrap();
        let manifest = results.finish(&[]).await.unwrap();
        assert!(manifest.result_files.succeeded.len() > 1, "rolled over: {manifest:?}");
        assert_eq!(writer.finalize(&batches, &[]).await.unwrap(), manifest, "as a finaliser would write it");
        let bucket = stores.bucket("results").unwrap();
        let mut names = Vec::new();
        for file in &manifest.result_files.succeeded {
            let bytes = bucket.get_bytes(&file.key).await.unwrap();
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let entry: Value = serde_json::from_slice(line).unwrap();
                names.push(entry["Name"].as_str().unwrap().to_string());
            }
        }
        let expected: Vec<String> = (0..12).filter(|i| *i != 5).map(|i| format!("child-{i}")).collect();
        assert_eq!(names, expected);
        assert_eq!(manifest.result_files.failed.len(), 1);
        assert!(listed(prefix).await.iter().all(|key| !key.contains("/.stepmap-staging/")), "staging removed");
    }
}

/// A redrive writes its own files under `Redrive-<k>/`; its manifest lists the SUCCEEDED
/// files of every attempt, but FAILED and PENDING files only of its own.
async fn result_writer_redrive_lists_earlier_successes(stores: &Arc<Stores>) {
    let model = serde_json::from_value(json!({"Resource": "arn:aws:states:::s3:putObject"})).unwrap();
    let spec = ResultWriterSpec::new(&model, &json!({"Bucket": "results", "Prefix": "redrive"})).unwrap();
    let arn = "arn:aws:states:us-east-1:1:mapRun:sm/Map:run3";
    let attempt = |k: u32, statuses: Vec<(u64, ChildStatus)>| {
        let writer = ResultWriter::new(stores.clone(), spec.clone(), arn, k);
        async move {
            let records: Vec<_> = statuses.into_iter().map(|(i, s)| (child(i, s), None)).collect();
            writer.stage_batch(StagedBatch { batch: 0, attempt: 1 }, records).await.unwrap();
            writer.finalize(&[StagedBatch { batch: 0, attempt: 1 }], &[]).await.unwrap()
        }
    };
    let first = attempt(0, vec![(0, ChildStatus::Succeeded), (1, ChildStatus::Failed), (2, ChildStatus::Failed)]).await;
    let keys = |files: &[stepmap_storage::result_writer::ResultFileRef]| {
        files.iter().map(|f| f.key.clone()).collect::<Vec<_>>()
    };
    assert_eq!(keys(&first.result_files.failed), ["redrive/run3/FAILED_0.json"]);
    let second = attempt(1, vec![(1, ChildStatus::Succeeded), (2, ChildStatus::Failed)]).await;
    assert_eq!(
        keys(&second.result_files.succeeded),
        ["redrive/run3/SUCCEEDED_0.json", "redrive/run3/Redrive-1/SUCCEEDED_0.json"]
    );
    assert_eq!(keys(&second.result_files.failed), ["redrive/run3/Redrive-1/FAILED_0.json"]);
    let third = attempt(2, vec![(2, ChildStatus::Succeeded)]).await;
    assert_eq!(
        keys(&third.result_files.succeeded),
        [
            "redrive/run3/SUCCEEDED_0.json",
            "redrive/run3/Redrive-1/SUCCEEDED_0.json",
            "redrive/run3/Redrive-2/SUCCEEDED_0.json"
        ]
    );
    assert!(third.result_files.failed.is_empty());
    let bucket = stores.bucket("results").unwrap();
    let manifest: Value =
        serde_json::from_slice(&bucket.get_bytes("redrive/run3/Redrive-2/manifest.json").await.unwrap()).unwrap();
    assert_eq!(manifest["ResultFiles"]["SUCCEEDED"].as_array().unwrap().len(), 3);

    // An attempt that ended without writing its files (its parent was stopped): the next one
    // writes the successes it carries, not its failures, and removes its staging.
    let arn = "arn:aws:states:us-east-1:1:mapRun:sm/Map:run4";
    let stopped = ResultWriter::new(stores.clone(), spec.clone(), arn, 0);
    let staged = |i, status| (child(i, status), None);
    let batch = StagedBatch { batch: 0, attempt: 1 };
    stopped.stage_batch(batch, vec![staged(0, ChildStatus::Succeeded), staged(1, ChildStatus::Failed)]).await.unwrap();
    let redrive = ResultWriter::new(stores.clone(), spec.clone(), arn, 1);
    let again = StagedBatch { batch: 0, attempt: 2 };
    redrive.stage_batch(again, vec![staged(1, ChildStatus::Succeeded)]).await.unwrap();
    let manifest = redrive.finalize_redrive(&[again], &[(0, batch)], &[]).await.unwrap();
    assert_eq!(keys(&manifest.result_files.succeeded), ["redrive/run4/Redrive-1/SUCCEEDED_0.json"]);
    assert!(manifest.result_files.failed.is_empty(), "the carried attempt's failure was redriven");
    let entries: Vec<Value> =
        serde_json::from_slice(&bucket.get_bytes("redrive/run4/Redrive-1/SUCCEEDED_0.json").await.unwrap()).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["child-0", "child-1"]);
    let left = bucket.list_sorted("redrive/run4/.stepmap-staging/", None).try_collect::<Vec<_>>().await.unwrap().len();
    assert_eq!(left, 0, "the carried attempt's staging is removed");
}
