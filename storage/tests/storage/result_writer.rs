//! ResultWriter configuration and record shapes (features.md §2.8), without a store.

use std::sync::Arc;

use serde_json::json;
use stepmap_asl::payload::{JsonText, Payload};
use stepmap_storage::result_writer::{ChildExecutionResult, ChildStatus, OutputType, PayloadDetails};
use stepmap_storage::{ResultWriter, ResultWriterSpec, StorageError, StoreConfig, Stores, Transformation};

fn model(value: serde_json::Value) -> stepmap_asl::model::ResultWriter {
    serde_json::from_value(value).unwrap()
}

#[test]
fn writer_config_and_errors() {
    let spec = ResultWriterSpec::new(
        &model(json!({"Resource": "arn:aws:states:::s3:putObject", "WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSONL"}})),
        &json!({"Bucket": "b", "Prefix": "p"}),
    )
    .unwrap();
    assert_eq!((spec.transformation, spec.output_type), (Transformation::Flatten, OutputType::Jsonl));
    assert_eq!(spec.max_file_bytes, 5 * 1024 * 1024 * 1024);
    for (writer, parameters) in [
        (json!({"Resource": "arn:aws:states:::s3:getObject"}), json!({"Bucket": "b"})),
        (json!({"Resource": "arn:aws:states:::s3:putObject"}), json!({"Prefix": "p"})),
        (json!({"WriterConfig": {"OutputType": "CSV"}}), json!({"Bucket": "b"})),
        (json!({"WriterConfig": {"Transformation": "ZIP"}}), json!({"Bucket": "b"})),
    ] {
        let failure = ResultWriterSpec::new(&model(writer), &parameters).unwrap_err().failure();
        assert_eq!(failure.error.as_deref(), Some("States.ResultWriterFailed"));
    }
}

#[test]
fn prefix_layout_and_state_output() {
    let stores = Arc::new(Stores::new(StoreConfig::Memory));
    let arn = "arn:aws:states:us-east-2:123456789012:mapRun:csvProcess/Map:ad9b5f27-090b-3ac6-9beb-243cd77144a7";
    let spec =
        |prefix: &str| ResultWriterSpec::new(&model(json!({})), &json!({"Bucket": "dest", "Prefix": prefix})).unwrap();
    // A `/` is inserted when the Prefix lacks one (sigpwned 2023; LocalStack recordings).
    let garbage = ResultWriter::new(stores.clone(), spec("garbage"), arn, 0);
    assert_eq!(garbage.manifest_key(), "garbage/ad9b5f27-090b-3ac6-9beb-243cd77144a7/manifest.json");
    let slash = ResultWriter::new(stores.clone(), spec("csvProcessJobs/"), arn, 0);
    assert_eq!(
        slash.state_output(),
        json!({
            "MapRunArn": arn,
            "ResultWriterDetails": {"Bucket": "dest", "Key": "csvProcessJobs/ad9b5f27-090b-3ac6-9beb-243cd77144a7/manifest.json"}
        })
    );
    let redriven = ResultWriter::new(stores, spec("jobs"), arn, 2);
    assert_eq!(redriven.directory(), "jobs/ad9b5f27-090b-3ac6-9beb-243cd77144a7/Redrive-2/");
}

#[test]
fn records_follow_aws_schema_and_transformations() {
    let record = ChildExecutionResult {
        cause: None,
        error: None,
        execution_arn: Some("arn:aws:states:us-east-1:1:execution:sm/Map:n1".into()),
        input: json!({"Items": [1]}).to_string(),
        input_details: PayloadDetails { included: true },
        name: Some("n1".into()),
        output: Some(json!([[1, 2], 3]).to_string()),
        output_details: Some(PayloadDetails { included: true }),
        redrive_count: Some(0),
        redrive_status: Some("NOT_REDRIVABLE".into()),
        redrive_status_reason: Some("Execution is SUCCEEDED and cannot be redriven".into()),
        start_date: Some("2025-01-01T00:00:00.000Z".into()),
        state_machine_arn: Some("arn:aws:states:us-east-1:1:stateMachine:sm/Map".into()),
        status: ChildStatus::Succeeded,
        stop_date: Some("2025-01-01T00:00:01.000Z".into()),
    };
    let value = record.to_value();
    let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "ExecutionArn",
            "Input",
            "InputDetails",
            "Name",
            "Output",
            "OutputDetails",
            "RedriveCount",
            "RedriveStatus",
            "RedriveStatusReason",
            "StartDate",
            "StateMachineArn",
            "Status",
            "StopDate"
        ]
    );
    assert_eq!(value["Input"], "{\"Items\":[1]}");
    assert_eq!(value["InputDetails"], json!({"Included": true}));
    assert_eq!(Transformation::None.entries(&record), vec![value]);
    assert_eq!(Transformation::Compact.entries(&record), vec![json!([[1, 2], 3])]);
    assert_eq!(Transformation::Flatten.entries(&record), vec![json!([1, 2]), json!(3)]);
    let pending = ChildExecutionResult::pending(&json!({"Items": [7]}).into()).to_value();
    assert_eq!(pending, json!({"Input": "{\"Items\":[7]}", "InputDetails": {"Included": true}, "Status": "PENDING"}));
    assert_eq!(ChildStatus::TimedOut.category(), "FAILED");
    assert_eq!(ChildStatus::Aborted.category(), "FAILED");
}

fn record(status: ChildStatus, input: serde_json::Value, output: Option<serde_json::Value>) -> ChildExecutionResult {
    ChildExecutionResult {
        cause: None,
        error: (status != ChildStatus::Succeeded).then(|| "Boom".to_string()),
        execution_arn: Some("arn:aws:states:us-east-1:1:execution:m/l:c".into()),
        input: input.to_string(),
        input_details: PayloadDetails { included: true },
        name: Some("c".into()),
        output: output.as_ref().map(|o| o.to_string()),
        output_details: output.as_ref().map(|_| PayloadDetails { included: true }),
        redrive_count: Some(0),
        redrive_status: None,
        redrive_status_reason: None,
        start_date: None,
        state_machine_arn: None,
        status,
        stop_date: None,
    }
}

/// Writing results directly (the in-process executor) gives the files that staging then
/// finalising gives, for every transformation and output type, however a child's output is
/// handed over: only in its record, as a value, or as canonical text; for a batch of every
/// category and for one whose entries all succeeded (staged in a form of its own).
#[tokio::test]
async fn direct_results_match_staged_results() {
    let mixed = [
        record(ChildStatus::Succeeded, json!({"Items": [1, 2]}), Some(json!([{"a": 1}, {"a": [2, "x,]"]}]))),
        record(ChildStatus::Failed, json!({"Items": [3]}), None),
        record(ChildStatus::Succeeded, json!({"Items": [4]}), Some(json!({"b": 4}))),
        ChildExecutionResult::pending(&json!({"Items": [5]}).into()),
    ];
    let succeeded = [mixed[0].clone(), mixed[2].clone()];
    direct_matches_staged(&mixed).await;
    direct_matches_staged(&succeeded).await;
}

async fn direct_matches_staged(records: &[ChildExecutionResult]) {
    type Given = fn(&str) -> Payload;
    let given: [(&str, Option<Given>); 3] = [
        ("in the record", None),
        ("as a value", Some(|t| Payload::Value(serde_json::from_str(t).unwrap()))),
        ("as text", Some(|t| Payload::Text(JsonText::canonicalize(t.as_bytes()).unwrap()))),
    ];
    for (transformation, output_type) in
        ["NONE", "COMPACT", "FLATTEN"].into_iter().flat_map(|t| [(t, "JSONL"), (t, "JSON")])
    {
        let writer_model = model(json!({"Resource": "arn:aws:states:::s3:putObject",
            "WriterConfig": {"Transformation": transformation, "OutputType": output_type}}));
        let read_all = |stores: Arc<Stores>, manifest: stepmap_storage::ResultManifest| async move {
            let store = stores.bucket("dest").unwrap();
            let mut texts = Vec::new();
            for file in manifest
                .result_files
                .succeeded
                .iter()
                .chain(&manifest.result_files.failed)
                .chain(&manifest.result_files.pending)
            {
                texts.push(String::from_utf8(store.get_bytes(&file.key).await.unwrap().to_vec()).unwrap());
            }
            texts
        };
        let spec = ResultWriterSpec::new(&writer_model, &json!({"Bucket": "dest", "Prefix": "out"})).unwrap();
        let arn = "arn:aws:states:us-east-1:1:mapRun:m/l:run-1";
        let mut expected = None;
        for (how, output) in given {
            let outputs = || records.iter().map(move |r| r.output.as_deref().and_then(|t| output.map(|f| f(t))));
            let case = format!("{transformation} {output_type}, outputs given {how}");
            let staged_stores = Arc::new(Stores::new(StoreConfig::Memory));
            let staged = ResultWriter::new(staged_stores.clone(), spec.clone(), arn, 0);
            let batch = stepmap_storage::StagedBatch { batch: 0, attempt: 0 };
            staged.stage_batch(batch, records.iter().cloned().zip(outputs())).await.unwrap();
            let staged_manifest = staged.finalize(&[batch], &[]).await.unwrap();
            let direct_stores = Arc::new(Stores::new(StoreConfig::Memory));
            let direct = ResultWriter::new(direct_stores.clone(), spec.clone(), arn, 0);
            let mut results = direct.direct().unwrap();
            for (r, output) in records.iter().zip(outputs()) {
                results.push(r, output).await.unwrap();
            }
            let direct_manifest = results.finish().await.unwrap();
            assert_eq!(direct_manifest, staged_manifest, "{case}");
            let files = read_all(direct_stores, direct_manifest).await;
            let staged_files = read_all(staged_stores, staged_manifest.clone()).await;
            assert_eq!(files, staged_files, "{case}");
            // Stores that keep what they stage for their finaliser instead of writing it: the
            // same files, from the kept bytes (no object was written to give them).
            let kept_stores = Arc::new(Stores::new(StoreConfig::Memory).keeping_staged_batches());
            let kept = ResultWriter::new(kept_stores.clone(), spec.clone(), arn, 0);
            let key = kept.stage_batch(batch, records.iter().cloned().zip(outputs())).await.unwrap();
            let written = kept_stores.bucket("dest").unwrap().get_bytes(&key).await;
            assert!(matches!(written, Err(StorageError::NotFound { .. })), "{case}: kept, not written");
            let kept_manifest = kept.finalize(&[batch], &[]).await.unwrap();
            assert_eq!(kept_manifest, staged_manifest, "{case}");
            assert_eq!(read_all(kept_stores, kept_manifest).await, staged_files, "{case}");
            let expected = expected.get_or_insert_with(|| files.clone());
            assert_eq!(&files, expected, "{case}");
        }
    }
}

/// Stores that keep staged batches keep them up to a bound: beyond it the batches are written
/// as objects, as everywhere else, and the finaliser reads those back. No batch is lost.
#[tokio::test]
async fn staged_batches_beyond_what_is_kept_are_written() {
    let stores = Arc::new(Stores::new(StoreConfig::Memory).keeping_staged_batches());
    let writer_model = model(json!({"Resource": "arn:aws:states:::s3:putObject",
        "WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSONL"}}));
    let spec = ResultWriterSpec::new(&writer_model, &json!({"Bucket": "dest", "Prefix": "out"})).unwrap();
    let writer = ResultWriter::new(stores.clone(), spec, "arn:aws:states:us-east-1:1:mapRun:m/l:run-1", 0);
    let store = stores.bucket("dest").unwrap();
    // Four batches of 6 MiB each: the cache holds 16 MiB, so the last two are written.
    let big = "x".repeat(6 << 20);
    let mut batches = Vec::new();
    let mut written = Vec::new();
    for batch in 0..4 {
        let output = json!([{"batch": batch, "pad": big}]).to_string();
        let record = record(ChildStatus::Succeeded, json!({"Items": [batch]}), Some(output.parse().unwrap()));
        let output = Payload::Text(JsonText::canonicalize(output.as_bytes()).unwrap());
        let staged = stepmap_storage::StagedBatch { batch, attempt: 0 };
        let key = writer.stage_batch(staged, [(record, Some(output))]).await.unwrap();
        written.push(store.get_bytes(&key).await.is_ok());
        batches.push(staged);
    }
    assert_eq!(written, [false, false, true, true], "kept while there is room, then written");
    let manifest = writer.finalize(&batches, &[]).await.unwrap();
    let mut lines = Vec::new();
    for file in &manifest.result_files.succeeded {
        let text = store.get_bytes(&file.key).await.unwrap();
        for line in String::from_utf8(text.to_vec()).unwrap().lines() {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            lines.push(entry["batch"].as_u64().unwrap());
        }
    }
    assert_eq!(lines, [0, 1, 2, 3], "every batch once, in order");
}
