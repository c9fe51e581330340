//! The worker fleet as real processes: three coordinators (`map_runs = "workers"`), three
//! `stepmap worker` processes and an S3 server on loopback (s3s over a temporary directory,
//! started by the test). A 1,000,000-row CSV in batches of 1,000; `kill -9` of one worker and
//! then of the leader while the map run goes on. The run must succeed with every row in the
//! SUCCEEDED files exactly once, and its counters must add up.
//!
//! Lighter: SIGTERM drains a worker (one coordinator, a directory as object store) — its
//! running units finish and are reported, another worker does the rest, no unit runs twice.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use stepmap_coordinator::api::StatesClient;
use stepmap_proto::v1 as pb;

use crate::processes::{eventually, Cluster, WorkerProcess};

const ROWS: usize = 1_000_000;
const ACCESS_KEY: &str = "stepmap-test";
const SECRET_KEY: &str = "stepmap-test-secret";
/// Bound on every wait (the run itself takes about a minute on two cores).
const DEADLINE: Duration = Duration::from_secs(600);

/// Each batch waits a second in its child, so that the run lasts long enough to kill
/// processes under it, then outputs its rows, which FLATTEN writes one per line.
const WORKFLOW: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","Label":"orders",
  "ItemReader":{"Resource":"arn:aws:states:::s3:getObject",
    "ReaderConfig":{"InputType":"CSV","CSVHeaderLocation":"FIRST_ROW"},
    "Parameters":{"Bucket":"data","Key":"orders.csv"}},
  "ItemBatcher":{"MaxItemsPerBatch":1000},
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},
    "StartAt":"W","States":{"W":{"Type":"Wait","Seconds":1,"Next":"P"},
      "P":{"Type":"Pass","OutputPath":"$.Items","End":true}}},
  "ResultWriter":{"Resource":"arn:aws:states:::s3:putObject","Parameters":{"Bucket":"results","Prefix":"fleet"},
    "WriterConfig":{"Transformation":"FLATTEN","OutputType":"JSONL"}},
  "End":true}}}"#;

/// An S3 server (s3s-fs over `dir`, SigV4 with the test's keys) on a loopback port; returns
/// its address. Buckets are `dir`'s subdirectories.
async fn start_s3(dir: &Path) -> anyhow::Result<String> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    use s3s::auth::SimpleAuth;
    use s3s::service::S3ServiceBuilder;

    let mut builder =
        S3ServiceBuilder::new(s3s_fs::FileSystem::new(dir).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    Ok(address)
}

/// `client.call` of `$method` with a request cloned for each attempt.
macro_rules! call {
    ($client:expr, $method:ident, $request:expr) => {{
        let request = $request;
        $client
            .call(|mut c| {
                let request = request.clone();
                async move { c.$method(request).await }
            })
            .await
    }};
}

/// CreateStateMachine `name` (STANDARD) with `definition`: its ARN.
async fn create_machine(client: &mut StatesClient, name: &str, definition: &str) -> anyhow::Result<String> {
    let request = pb::CreateStateMachineRequest {
        name: name.into(),
        definition: definition.into(),
        role_arn: "arn:aws:iam::123456789012:role/stepmap".into(),
        r#type: String::new(),
    };
    Ok(call!(client, create_state_machine, request)?.state_machine_arn)
}

/// DescribeExecution of `execution` once it is no longer RUNNING (within `timeout`).
async fn wait_ended(
    client: &mut StatesClient,
    execution: &str,
    timeout: Duration,
) -> anyhow::Result<pb::DescribeExecutionResponse> {
    eventually("the execution's end", timeout, async || {
        let request = pb::DescribeExecutionRequest { execution_arn: execution.to_owned() };
        let described = call!(client, describe_execution, request)?;
        Ok((described.status != "RUNNING").then_some(described))
    })
    .await
}

async fn describe_map_run(
    client: &mut StatesClient,
    execution: &str,
) -> anyhow::Result<Option<pb::DescribeMapRunResponse>> {
    let request = pb::ListMapRunsRequest { execution_arn: execution.to_owned(), ..Default::default() };
    let listed = call!(client, list_map_runs, request)?;
    let Some(run) = listed.map_runs.first() else { return Ok(None) };
    let request = pb::DescribeMapRunRequest { map_run_arn: run.map_run_arn.clone() };
    Ok(Some(call!(client, describe_map_run, request)?))
}

/// Waits until the map run of `execution` has `rows` succeeded items; fails if the execution
/// ended before (the kills would not be under a running map run).
async fn wait_for_progress(client: &mut StatesClient, execution: &str, rows: u64) -> anyhow::Result<()> {
    eventually(&format!("{rows} rows done"), DEADLINE, async || {
        let Some(run) = describe_map_run(client, execution).await? else { return Ok(None) };
        anyhow::ensure!(run.status == "RUNNING", "the map run ended ({}) before {rows} rows were done", run.status);
        Ok((run.item_counts.as_ref().is_some_and(|c| c.succeeded >= rows)).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_fleet_survives_kill_9_of_a_worker_and_the_leader() -> anyhow::Result<()> {
    let s3_dir = tempfile::tempdir()?;
    for bucket in ["data", "results"] {
        std::fs::create_dir_all(s3_dir.path().join(bucket))?;
    }
    let mut csv = String::with_capacity(ROWS * 16);
    csv.push_str("id,amount\n");
    for id in 0..ROWS {
        csv.push_str(&format!("{id},{}\n", id % 997));
    }
    std::fs::write(s3_dir.path().join("data/orders.csv"), csv)?;
    let s3 = start_s3(s3_dir.path()).await?;
    let store = format!("http://{s3}?region=us-east-1&access_key_id={ACCESS_KEY}&secret_access_key={SECRET_KEY}");

    let extra = format!("object_store = \"{store}\"\nmap_runs = \"workers\"\nlease_seconds = 3\n");
    let mut cluster = Cluster::start_with(3, &extra)?;
    let leader = cluster.leader().await?;
    let coordinators = cluster.addresses();
    let mut workers = (0..3)
        .map(|i| {
            let log = cluster.dir().join(format!("worker-{i}.log"));
            WorkerProcess::start(
                &[
                    "--coordinators",
                    &coordinators,
                    "--slots",
                    "8",
                    "--object-store",
                    &store,
                    "--name",
                    &format!("w{i}"),
                ],
                log,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut client = cluster.node(leader).client()?;
    let machine = create_machine(&mut client, "fleet", WORKFLOW).await?;
    let request =
        pb::StartExecutionRequest { state_machine_arn: machine.clone(), name: "million".into(), input: "{}".into() };
    let execution = call!(client, start_execution, request)?.execution_arn;

    wait_for_progress(&mut client, &execution, 150_000).await?;
    eprintln!("killing worker 0");
    workers[0].kill()?;
    wait_for_progress(&mut client, &execution, 400_000).await?;
    eprintln!("killing the leader, coordinator {leader}");
    cluster.node(leader).kill()?;
    let survivor = cluster.others(leader)[0];
    let mut client = cluster.node(survivor).client()?;

    let described = wait_ended(&mut client, &execution, DEADLINE).await?;
    anyhow::ensure!(described.status == "SUCCEEDED", "the execution ended {}: {:?}", described.status, described.cause);

    // Every row exactly once in the SUCCEEDED files, none FAILED or PENDING.
    let output: Value = serde_json::from_str(described.output.as_deref().context("an output")?)?;
    let manifest_key = output["ResultWriterDetails"]["Key"].as_str().context("the manifest key")?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(s3_dir.path().join("results").join(manifest_key))?)?;
    let files = &manifest["ResultFiles"];
    for category in ["FAILED", "PENDING"] {
        let listed = files[category].as_array().map_or(0, Vec::len);
        anyhow::ensure!(listed == 0, "{category} files listed: {}", files[category]);
    }
    let mut seen = vec![0u8; ROWS];
    for file in files["SUCCEEDED"].as_array().context("SUCCEEDED files")? {
        let key = file["Key"].as_str().context("a result file key")?;
        let text = std::fs::read_to_string(s3_dir.path().join("results").join(key))?;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let row: Value = serde_json::from_str(line)?;
            let id: usize = row["id"].as_str().context("an id")?.parse()?;
            seen[id] += 1;
        }
    }
    let missing = seen.iter().filter(|n| **n == 0).count();
    let repeated = seen.iter().filter(|n| **n > 1).count();
    anyhow::ensure!(missing == 0 && repeated == 0, "{missing} rows missing, {repeated} rows written more than once");

    // The counters add up.
    let run = describe_map_run(&mut client, &execution).await?.context("the map run")?;
    let items = run.item_counts.context("item counts")?;
    let sum = items.pending + items.running + items.succeeded + items.failed + items.timed_out + items.aborted;
    anyhow::ensure!(run.status == "SUCCEEDED", "map run {}", run.status);
    anyhow::ensure!(items.total == ROWS as u64 && sum == items.total, "item counts do not add up: {items:?}");
    anyhow::ensure!(items.succeeded == ROWS as u64 && items.results_written == ROWS as u64, "{items:?}");
    let children = run.execution_counts.context("execution counts")?;
    anyhow::ensure!(children.succeeded == 1000 && children.total == 1000, "{children:?}");
    drop(workers);
    Ok(())
}

/// Items of the drain test's map run.
const DRAIN_ITEMS: u64 = 40;
/// A lease long enough that a unit the drain dropped would hold the run up for all to see.
const DRAIN_LEASE: Duration = Duration::from_secs(30);

/// One item per unit (a batch of one), each child records its start with the `record`
/// function (its input appended to a file), waits a second and outputs its item.
const DRAIN_WORKFLOW: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":"$.items",
  "MaxConcurrency":0,"ItemBatcher":{"MaxItemsPerBatch":1},
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"EXPRESS"},
    "StartAt":"R","States":{
      "R":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:123456789012:function:record",
        "ResultPath":null,"Next":"W"},
      "W":{"Type":"Wait","Seconds":1,"Next":"P"},
      "P":{"Type":"Pass","OutputPath":"$.Items[0]","End":true}}},
  "End":true}}}"#;

/// The item ids of the children started so far, one per start, from the `record` file.
fn recorded_starts(path: &Path) -> anyhow::Result<Vec<u64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let event: Value = serde_json::from_str(line).with_context(|| format!("a recorded event: {line}"))?;
            event["Items"][0]["id"].as_u64().with_context(|| format!("an item id in {line}"))
        })
        .collect()
}

/// SIGTERM drains a worker: the units it runs finish and are reported (not left to lapse:
/// the lease is 30 s, and the whole run must end sooner), it exits 0 saying "drained", and
/// another worker does the rest. Every unit starts exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_drains_on_sigterm() -> anyhow::Result<()> {
    let store = tempfile::tempdir()?;
    let store_path = store.path().to_str().context("temp dir path is not UTF-8")?.to_owned();
    let extra =
        format!("object_store = {store_path:?}\nmap_runs = \"workers\"\nlease_seconds = {}\n", DRAIN_LEASE.as_secs());
    let mut cluster = Cluster::start_with(1, &extra)?;
    let leader = cluster.leader().await?;
    let coordinators = cluster.addresses();

    // `record` appends its event to a file, one line per call (an O_APPEND write each).
    let starts = cluster.dir().join("starts.jsonl");
    let functions = cluster.dir().join("functions.json");
    let registry = serde_json::json!({"functions": {"record": {"command": [
        "sh", "-c", "printf '%s\\n' \"$(cat)\" >> \"$0\"", starts.to_str().context("UTF-8 path")?
    ]}}});
    std::fs::write(&functions, registry.to_string())?;
    let functions = functions.to_str().context("UTF-8 path")?.to_owned();
    let start_worker = |name: &str, log: std::path::PathBuf| {
        WorkerProcess::start(
            &[
                "--coordinators",
                &coordinators,
                "--slots",
                "4",
                "--object-store",
                &store_path,
                "--functions",
                &functions,
                "--name",
                name,
            ],
            log,
        )
    };

    let log_a = cluster.dir().join("worker-a.log");
    let mut worker_a = start_worker("a", log_a.clone())?;

    let mut client = cluster.node(leader).client()?;
    let machine = create_machine(&mut client, "drain", DRAIN_WORKFLOW).await?;
    let items: Vec<Value> = (0..DRAIN_ITEMS).map(|id| serde_json::json!({ "id": id })).collect();
    let request = pb::StartExecutionRequest {
        state_machine_arn: machine.clone(),
        name: "drain".into(),
        input: serde_json::json!({ "items": items }).to_string(),
    };
    // No lease of this run is older than this: one that lapsed would do so after it + 30 s.
    let started = std::time::Instant::now();
    let execution = call!(client, start_execution, request)?.execution_arn;

    // Children started on A (the only worker), in their Wait: drain it while they run.
    let running = eventually("children started on worker A", Duration::from_secs(20), async || {
        let so_far = recorded_starts(&starts)?;
        Ok((!so_far.is_empty()).then_some(so_far))
    })
    .await?;
    let terminated = std::time::Instant::now();
    eprintln!("SIGTERM to worker A, children {running:?} started");
    worker_a.terminate()?;
    let exit = worker_a.wait_exit(Duration::from_secs(20))?;
    let drain_time = terminated.elapsed();
    let log = std::fs::read_to_string(&log_a)?;
    anyhow::ensure!(exit.success(), "worker A exited with {exit}; its log:\n{log}");
    anyhow::ensure!(
        log.contains("drained") && !log.contains("aborted"),
        "worker A did not drain cleanly; its log:\n{log}"
    );

    // Every unit A started was reported: none still leased, none back to pending.
    let started_on_a = recorded_starts(&starts)?;
    let on_a = started_on_a.len() as u64;
    anyhow::ensure!(on_a > 0 && on_a < DRAIN_ITEMS, "worker A started {on_a} units: {started_on_a:?}");
    let counts = eventually("worker A's units counted", Duration::from_secs(5), async || {
        let run = describe_map_run(&mut client, &execution).await?.context("the map run")?;
        let counts = run.item_counts.context("item counts")?;
        Ok((counts.succeeded == on_a && counts.running == 0).then_some(counts))
    })
    .await
    .with_context(|| format!("worker A started {on_a} units"))?;
    anyhow::ensure!(counts.pending == DRAIN_ITEMS - on_a, "after the drain: {counts:?}");
    eprintln!("worker A drained in {drain_time:?} with {on_a} units done");

    let _worker_b = start_worker("b", cluster.dir().join("worker-b.log"))?;
    let described = wait_ended(&mut client, &execution, Duration::from_secs(60)).await?;
    let ended = started.elapsed();
    eprintln!("the execution ended {ended:?} after its start, {:?} after the SIGTERM", terminated.elapsed());
    anyhow::ensure!(described.status == "SUCCEEDED", "the execution ended {}: {:?}", described.status, described.cause);
    // Not a performance bound: a unit of A's whose lease had to lapse would end the run later.
    anyhow::ensure!(ended < DRAIN_LEASE, "the execution took {ended:?}: a lease of worker A lapsed?");

    // Each unit started once (none ran again after the drain), and the output is in order.
    let mut all = recorded_starts(&starts)?;
    all.sort_unstable();
    anyhow::ensure!(all == (0..DRAIN_ITEMS).collect::<Vec<_>>(), "children started: {all:?}");
    let output: Value = serde_json::from_str(described.output.as_deref().context("an output")?)?;
    anyhow::ensure!(output == Value::Array(items), "the Map's output: {output}");

    let run = describe_map_run(&mut client, &execution).await?.context("the map run")?;
    anyhow::ensure!(run.status == "SUCCEEDED", "map run {}", run.status);
    let items = run.item_counts.context("item counts")?;
    anyhow::ensure!(items.succeeded == DRAIN_ITEMS && items.total == DRAIN_ITEMS, "{items:?}");
    let children = run.execution_counts.context("execution counts")?;
    anyhow::ensure!(children.succeeded == DRAIN_ITEMS && children.total == DRAIN_ITEMS, "{children:?}");
    Ok(())
}

/// A parent execution's Lambda Task and its activity Task both run on a `stepmap worker`
/// process: the coordinator has no function registry, the worker runs the Lambda as fleet
/// work and serves the activity (`--activity approve=approver`) with its registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_parent_tasks_and_serves_activities() -> anyhow::Result<()> {
    let store = tempfile::tempdir()?;
    let store_path = store.path().to_str().context("temp dir path is not UTF-8")?.to_owned();
    let extra = format!("object_store = {store_path:?}\nmap_runs = \"workers\"\n");
    let mut cluster = Cluster::start_with(1, &extra)?;
    let leader = cluster.leader().await?;
    let functions = cluster.dir().join("functions.json");
    let registry = serde_json::json!({"functions": {
        "echo": {"command": ["cat"]},
        "approver": {"command": ["sh", "-c", "cat >/dev/null; echo '{\"approved\":true}'"]}
    }});
    std::fs::write(&functions, registry.to_string())?;
    let _worker = WorkerProcess::start(
        &[
            "--coordinators",
            &cluster.addresses(),
            "--object-store",
            &store_path,
            "--functions",
            functions.to_str().context("UTF-8 path")?,
            "--activity",
            "approve=approver",
        ],
        cluster.dir().join("worker.log"),
    )?;

    let mut client = cluster.node(leader).client()?;
    call!(client, create_activity, pb::CreateActivityRequest { name: "approve".into() })?;
    let definition = r#"{"StartAt":"L","States":{
        "L":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:123456789012:function:echo","ResultPath":"$.echoed","Next":"A"},
        "A":{"Type":"Task","Resource":"arn:aws:states:us-east-1:123456789012:activity:approve",
             "HeartbeatSeconds":30,"ResultPath":"$.approval","End":true}}}"#;
    let machine = create_machine(&mut client, "tasks", definition).await?;
    let request =
        pb::StartExecutionRequest { state_machine_arn: machine, name: "tasks".into(), input: r#"{"x":1}"#.into() };
    let execution = call!(client, start_execution, request)?.execution_arn;
    let described = wait_ended(&mut client, &execution, Duration::from_secs(60)).await?;
    anyhow::ensure!(described.status == "SUCCEEDED", "the execution ended {}: {:?}", described.status, described.cause);
    let output: Value = serde_json::from_str(described.output.as_deref().context("an output")?)?;
    anyhow::ensure!(
        output == serde_json::json!({"x": 1, "echoed": {"x": 1}, "approval": {"approved": true}}),
        "output {output}"
    );
    Ok(())
}
