//! `stepmap run`, the embedded default: one process that is a single-node cluster with its
//! own worker (a Distributed Map over local files), time skipping, and Ctrl-C.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn stepmap(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stepmap"));
    // The embedded cluster keeps its Raft log in a temporary directory: here, to check that
    // it is gone afterwards.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    command.current_dir(dir).env("TMPDIR", tmp).env_remove("STEPMAP_LOG");
    command
}

/// `run --output json`: its JSON document and exit code.
fn run(dir: &Path, args: &[&str]) -> (Value, i32) {
    let output = stepmap(dir).arg("run").args(args).args(["--output", "json"]).output().expect("stepmap run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let document = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    (document, output.status.code().unwrap_or(-1))
}

fn event_types(document: &Value) -> Vec<String> {
    document["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

fn temp_left(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tmp")).map_or(0, |entries| entries.count())
}

#[test]
fn a_distributed_map_over_a_csv_runs_on_the_embedded_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("in")).expect("bucket");
    let mut csv = String::from("id,qty\n");
    for id in 1..=2500 {
        csv.push_str(&format!("{id},{}\n", id % 7));
    }
    std::fs::write(data.join("in/rows.csv"), csv).expect("csv");
    let definition = r#"{"StartAt":"M","States":{"M":{"Type":"Map","End":true,
      "ItemReader":{"Resource":"arn:aws:states:::s3:getObject",
        "ReaderConfig":{"InputType":"CSV","CSVHeaderLocation":"FIRST_ROW"},
        "Parameters":{"Bucket":"in","Key":"rows.csv"}},
      "ItemSelector":{"id.$":"States.StringToJson($$.Map.Item.Value.id)","index.$":"$$.Map.Item.Index"},
      "ItemBatcher":{"MaxItemsPerBatch":100},
      "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},
        "StartAt":"P","States":{"P":{"Type":"Pass","OutputPath":"$.Items","End":true}}},
      "ResultWriter":{"Resource":"arn:aws:states:::s3:putObject","Parameters":{"Bucket":"out","Prefix":"rows"},
        "WriterConfig":{"OutputType":"JSONL","Transformation":"FLATTEN"}}}}}"#;
    std::fs::write(dir.path().join("map.asl.json"), definition).expect("definition");

    let (document, code) = run(dir.path(), &["map.asl.json", "--data-dir", "data", "--slots", "2"]);
    assert_eq!((document["status"].as_str(), code), (Some("SUCCEEDED"), 0), "{document}");
    let types = event_types(&document);
    for expected in ["ExecutionStarted", "MapRunStarted", "MapRunSucceeded", "ExecutionSucceeded"] {
        assert!(types.iter().any(|t| t == expected), "{expected} missing from {types:?}");
    }
    // Every row once, in order, typed by ItemSelector.
    let manifest = document["output"]["ResultWriterDetails"]["Key"].as_str().expect("manifest key");
    let directory = data.join("out").join(manifest).parent().expect("run directory").to_path_buf();
    let lines = std::fs::read_to_string(directory.join("SUCCEEDED_0.json")).expect("results");
    let ids: Vec<u64> = lines
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line")["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, (1..=2500).collect::<Vec<_>>());
    assert_eq!(temp_left(dir.path()), 0, "the embedded cluster's Raft log is removed");
}

/// The README's main command: the orders example (its CSV, workflow and Python handler, kept
/// warm through the Lambda Runtime API) runs to SUCCEEDED with the default slots, and its
/// result files account for every row: transformed rows in SUCCEEDED, batches with a bad row
/// (the example's 1%) in FAILED.
#[test]
fn the_readme_orders_example_succeeds_and_accounts_for_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/orders");
    let copy = dir.path().join("examples/orders");
    std::fs::create_dir_all(copy.join("data/orders")).expect("example dir");
    for file in [
        "workflow.asl.json",
        "input.json",
        "functions.json",
        "handler.py",
        "lambda_runtime.py",
        "data/orders/orders.csv",
    ] {
        std::fs::copy(example.join(file), copy.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let rows = std::fs::read_to_string(copy.join("data/orders/orders.csv")).expect("csv").lines().count() - 1;

    let mut child = stepmap(dir.path())
        .args(["run", "examples/orders/workflow.asl.json", "--input", "@examples/orders/input.json"])
        .args(["--functions", "examples/orders/functions.json", "--data-dir", "examples/orders/data"])
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stepmap run");
    // A liveness guard, not a timing: the job takes about a second, and a run that stalls
    // (a worker waiting out its polls) should fail here rather than at the harness's limit.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the orders example did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let document: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(document["status"].as_str(), Some("SUCCEEDED"), "{document}");

    let manifest = document["output"]["manifest"].as_str().expect("manifest");
    let data = copy.join("data");
    let manifest: Value = serde_json::from_slice(&std::fs::read(data.join(manifest)).expect("manifest")).expect("JSON");
    let lines = |category: &str| -> Vec<Value> {
        let files = manifest["ResultFiles"][category].as_array().expect("result files");
        files
            .iter()
            .flat_map(|f| {
                let path = data.join(manifest["DestinationBucket"].as_str().unwrap()).join(f["Key"].as_str().unwrap());
                let text = std::fs::read_to_string(path).expect("result file");
                text.lines().map(|l| serde_json::from_str::<Value>(l).expect("JSON line")).collect::<Vec<_>>()
            })
            .collect()
    };
    let succeeded = lines("SUCCEEDED");
    assert!(succeeded.iter().all(|row| row["total"].is_number() && row["country"].is_string()), "transformed rows");
    let failed_rows: usize = lines("FAILED")
        .iter()
        .map(|record| {
            let input: Value = serde_json::from_str(record["Input"].as_str().expect("Input")).expect("JSON input");
            input["Items"].as_array().expect("a batch").len()
        })
        .sum();
    assert!(failed_rows > 0, "the example has bad rows");
    assert_eq!(succeeded.len() + failed_rows, rows);
    assert!(lines("PENDING").is_empty());
}

#[test]
fn time_skipping_lets_an_hour_pass_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let definition = r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":3600,"Next":"P"},
      "P":{"Type":"Pass","Parameters":{"now.$":"$$.State.EnteredTime"},"End":true}}}"#;
    std::fs::write(dir.path().join("wait.asl.json"), definition).expect("definition");
    let (document, code) = run(dir.path(), &["wait.asl.json", "--time-skipping"]);
    assert_eq!((document["status"].as_str(), code), (Some("SUCCEEDED"), 0), "{document}");
    let history = document["history"].as_array().expect("history");
    let stamp = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(history[i]["timestamp"].as_str().expect("timestamp")).expect("date")
    };
    // The Wait's exit is an hour after its entry, in virtual time.
    let waited = stamp(2) - stamp(1);
    assert!(waited >= chrono::TimeDelta::seconds(3600), "{waited:?}: {history:?}");
}

/// A reader that stops reading (`stepmap run … | head -1`) costs the output, not the run: the
/// exit code is still the execution's, and there is no panic on the broken pipe.
#[test]
fn a_closed_standard_output_leaves_the_exit_code_to_the_execution() {
    let dir = tempfile::tempdir().expect("temp dir");
    let definition = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#;
    std::fs::write(dir.path().join("pass.asl.json"), definition).expect("definition");
    let mut child = stepmap(dir.path())
        .args(["run", "pass.asl.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stepmap run");
    // Closed before the run can have finished (it starts a cluster first).
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn ctrl_c_stops_the_execution_and_cleans_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let definition = r#"{"StartAt":"W","States":{"W":{"Type":"Wait","Seconds":600,"End":true}}}"#;
    std::fs::write(dir.path().join("wait.asl.json"), definition).expect("definition");
    let child = stepmap(dir.path())
        .args(["run", "wait.asl.json", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("stepmap run");
    // Interrupt once the execution is under way (its Raft log exists).
    let deadline = Instant::now() + Duration::from_secs(30);
    while temp_left(dir.path()) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("exit");
    let document: Value = serde_json::from_slice(&output.stdout).expect("JSON document");
    assert_eq!((document["status"].as_str(), output.status.code()), (Some("ABORTED"), Some(130)), "{document}");
    assert_eq!(temp_left(dir.path()), 0, "the embedded cluster's Raft log is removed");
}
