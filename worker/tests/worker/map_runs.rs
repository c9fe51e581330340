//! Map runs in this process over real files: items read from a CSV under a data directory,
//! children run by the interpreter, the tolerated-failure threshold, and the ResultWriter's
//! files, which must list every item exactly once.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use stepmap_asl::clock::SystemClock;
use stepmap_asl::failure::Failure;
use stepmap_asl::interpreter::{run_execution, Environment, ExecutionOutcome, ExecutionSpec, ExecutionStatus};
use stepmap_asl::model::{StateMachine, StateMachineType};
use stepmap_asl::task::{TaskInvoker, TaskRequest};
use stepmap_storage::{StoreConfig, Stores};
use stepmap_worker::LocalMapRunExecutor;

/// No Task states run in these workflows.
struct NoTasks;

impl TaskInvoker for NoTasks {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<stepmap_asl::payload::Payload, Failure>> {
        Box::pin(async move { Err(Failure::new("Unexpected", request.resource_arn)) })
    }
}

/// `rows` rows `id,bad`; every row whose id is a multiple of `bad_every` is marked bad.
fn write_csv(dir: &Path, rows: u64, bad_every: u64) -> Result<()> {
    let mut text = String::from("id,bad\n");
    for id in 1..=rows {
        let bad = bad_every > 0 && id % bad_every == 0;
        text.push_str(&format!("{id},{}\n", if bad { "yes" } else { "no" }));
    }
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(dir.join("data/rows.csv"), text)?;
    Ok(())
}

/// A Distributed Map over the CSV whose children fail for bad rows.
fn workflow(tolerance: Value, batch: Option<u64>, max_concurrency: u64) -> Value {
    let mut map = json!({
        "Type": "Map",
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
            "Parameters": {"Bucket": "data", "Key": "rows.csv"}
        },
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Check",
            "States": {
                "Check": {"Type": "Choice", "Choices": [
                    {"Variable": "$.bad", "StringEquals": "yes", "Next": "Reject"}
                ], "Default": "Accept"},
                "Reject": {"Type": "Fail", "Error": "BadRow", "Cause": "the row is marked bad"},
                "Accept": {"Type": "Pass", "End": true}
            }
        },
        "MaxConcurrency": max_concurrency,
        "ResultWriter": {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "data", "Prefix": "out"},
            "WriterConfig": {"OutputType": "JSONL", "Transformation": "NONE"}
        },
        "End": true
    });
    if let Some(size) = batch {
        map["ItemBatcher"] = json!({"MaxItemsPerBatch": size});
        map["ItemProcessor"]["States"]["Check"]["Choices"][0]["Variable"] = json!("$.Items[0].bad");
    }
    for (key, value) in tolerance.as_object().into_iter().flatten() {
        map[key] = value.clone();
    }
    json!({"StartAt": "Rows", "States": {"Rows": map}})
}

async fn run(dir: &Path, definition: Value, slots: usize) -> Result<ExecutionOutcome> {
    let machine = Arc::new(StateMachine::from_value(definition)?);
    let stores = Arc::new(Stores::new(StoreConfig::Local { data_dir: dir.to_path_buf() }));
    let env = Environment::new(Arc::new(SystemClock), Arc::new(NoTasks))
        .with_map_runs(Arc::new(LocalMapRunExecutor::new(stores, slots, true)));
    let spec = ExecutionSpec::new("rows", "run-1", StateMachineType::Standard, "111111111111", "us-east-1", json!({}));
    Ok(run_execution(machine, spec, env).await)
}

/// The result files of the one map run under `data/out/`: records per category.
fn result_files(dir: &Path) -> Result<(Vec<Value>, Vec<Value>, Vec<Value>)> {
    let out = dir.join("data/out");
    let run_dir = std::fs::read_dir(&out)?.next().context("no map run directory")??.path();
    let manifest: Value = serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json"))?)?;
    let read = |category: &str| -> Result<Vec<Value>> {
        let mut records = Vec::new();
        for file in manifest["ResultFiles"][category].as_array().context("manifest lists files")? {
            let key = file["Key"].as_str().context("file key")?;
            let text = std::fs::read_to_string(dir.join("data").join(key))?;
            for line in text.lines().filter(|l| !l.is_empty()) {
                records.push(serde_json::from_str(line)?);
            }
        }
        Ok(records)
    };
    Ok((read("SUCCEEDED")?, read("FAILED")?, read("PENDING")?))
}

/// The row ids in records' `Input` (one item per record, or a batch's items).
fn ids(records: &[Value]) -> Vec<u64> {
    let mut ids = Vec::new();
    for record in records {
        let input: Value = serde_json::from_str(record["Input"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        let items = match input.get("Items") {
            Some(Value::Array(items)) => items.clone(),
            _ => vec![input],
        };
        ids.extend(items.iter().filter_map(|item| item["id"].as_str()?.parse::<u64>().ok()));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerated_percentage_decides_the_run() -> Result<()> {
    // 200 rows, every 20th bad: 5% of the items fail.
    for (tolerated, succeeds) in [(4.9, false), (5.0, true), (10.0, true)] {
        let dir = tempfile::tempdir()?;
        write_csv(dir.path(), 200, 20)?;
        let outcome = run(dir.path(), workflow(json!({"ToleratedFailurePercentage": tolerated}), None, 0), 4).await?;
        assert_eq!(outcome.status == ExecutionStatus::Succeeded, succeeds, "{tolerated}%: {:?}", outcome.cause);
        if !succeeds {
            assert_eq!(outcome.error.as_deref(), Some("States.ExceedToleratedFailureThreshold"));
        }
        let (succeeded, failed, pending) = result_files(dir.path())?;
        let failed_ids: BTreeSet<u64> = ids(&failed).into_iter().collect();
        assert_eq!(failed_ids, (1..=10).map(|i| i * 20).collect::<BTreeSet<_>>(), "{tolerated}%");
        assert_eq!(ids(&succeeded).len() + failed.len() + pending.len(), 200);
        assert!(failed.iter().all(|r| r["Error"] == "BadRow" && r["Status"] == "FAILED"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeded_count_stops_the_run_and_leaves_pending_items() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_csv(dir.path(), 100, 10)?;
    // One child at a time: after the third failure (row 30) nothing else starts.
    let outcome = run(dir.path(), workflow(json!({"ToleratedFailureCount": 2}), None, 1), 1).await?;
    assert_eq!(outcome.status, ExecutionStatus::Failed);
    assert_eq!(outcome.error.as_deref(), Some("States.ExceedToleratedFailureThreshold"));
    let (succeeded, failed, pending) = result_files(dir.path())?;
    assert_eq!(ids(&failed), vec![10, 20, 30]);
    let mut all: Vec<u64> = ids(&succeeded).into_iter().chain(ids(&failed)).chain(ids(&pending)).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<_>>(), "every item exactly once");
    assert_eq!(ids(&pending), (31..=100).collect::<Vec<_>>());
    assert!(pending.iter().all(|r| r["Status"] == "PENDING"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_all_its_items() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Batches of 10; the first item of batch 3 (row 21) is bad: 10 of 100 items fail.
    let mut text = String::from("id,bad\n");
    for id in 1..=100 {
        text.push_str(&format!("{id},{}\n", if id == 21 { "yes" } else { "no" }));
    }
    std::fs::create_dir_all(dir.path().join("data"))?;
    std::fs::write(dir.path().join("data/rows.csv"), text)?;
    for (tolerated, succeeds) in [(9.0, false), (10.0, true)] {
        let outcome =
            run(dir.path(), workflow(json!({"ToleratedFailurePercentage": tolerated}), Some(10), 0), 2).await?;
        assert_eq!(outcome.status == ExecutionStatus::Succeeded, succeeds, "{tolerated}%: {:?}", outcome.cause);
        std::fs::remove_dir_all(dir.path().join("data/out"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_writer_the_result_is_the_child_outputs_in_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_csv(dir.path(), 50, 0)?;
    let mut definition = workflow(json!({}), None, 0);
    definition["States"]["Rows"].as_object_mut().context("map")?.remove("ResultWriter");
    definition["States"]["Rows"]["ItemSelector"] =
        json!({"id.$": "$$.Map.Item.Value.id", "n.$": "$$.Map.Item.Index", "bad": "no"});
    let outcome = run(dir.path(), definition, 3).await?;
    assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{:?}", outcome.cause);
    let output = outcome.output.context("output")?.into_value();
    let rows = output.as_array().context("array")?;
    assert_eq!(rows.len(), 50);
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(row, &json!({"id": (n + 1).to_string(), "n": n, "bad": "no"}));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_threshold_breached_fails_the_run() -> Result<()> {
    // 100 rows, 10 bad: within 50% but over a count of 5, and the other way round.
    for (tolerance, succeeds) in [
        (json!({"ToleratedFailurePercentage": 50, "ToleratedFailureCount": 5}), false),
        (json!({"ToleratedFailurePercentage": 5, "ToleratedFailureCount": 50}), false),
        (json!({"ToleratedFailurePercentage": 10, "ToleratedFailureCount": 10}), true),
    ] {
        let dir = tempfile::tempdir()?;
        write_csv(dir.path(), 100, 10)?;
        let outcome = run(dir.path(), workflow(tolerance.clone(), None, 0), 2).await?;
        assert_eq!(outcome.status == ExecutionStatus::Succeeded, succeeds, "{tolerance}: {:?}", outcome.cause);
        let (succeeded, failed, pending) = result_files(dir.path())?;
        let mut all: Vec<u64> = ids(&succeeded).into_iter().chain(ids(&failed)).chain(ids(&pending)).collect();
        all.sort_unstable();
        assert_eq!(all, (1..=100).collect::<Vec<_>>(), "{tolerance}: every item exactly once");
    }
    Ok(())
}
