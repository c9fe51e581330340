//! Distributed Map runs in cluster executions, through the real gRPC client: three
//! coordinators whose drivers run map runs (children in process, objects in a temporary
//! directory) and record them in the Map Run ledger. DescribeMapRun / ListMapRuns /
//! UpdateMapRun, their refusals, and UpdateMapRun taking effect on a running map run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stepmap_coordinator::api::{StatesClient, StatesService};
use stepmap_coordinator::driver::{ExecutionDriver, MapRunConfig};
use stepmap_coordinator::state::{ArnScope, ReplicatedState};
use stepmap_coordinator::transport::{GrpcTransport, RaftTransportService};
use stepmap_coordinator::{exception_name, CoordinatorNode, RaftConfig, RaftNode};
use stepmap_proto::v1 as pb;
use stepmap_storage::{StoreConfig, Stores};
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use super::harness::eventually;
use super::network::ids;

/// Reads `data/items.csv` (header row), Pass children, results to `results/out/`.
const CSV_MAP: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","Label":"rows",
  "ItemReader":{"Resource":"arn:aws:states:::s3:getObject","ReaderConfig":{"InputType":"CSV","CSVHeaderLocation":"FIRST_ROW"},
    "Parameters":{"Bucket":"data","Key":"items.csv"}},
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},
    "StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"id.$":"$.id","seen":true},"End":true}}},
  "ResultWriter":{"Resource":"arn:aws:states:::s3:putObject","Parameters":{"Bucket":"results","Prefix":"out"}},
  "End":true}}}"#;

/// Six inline items, each child waits 1 s: 6 s at MaxConcurrency 1.
const SLOW_MAP: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":"$.items","MaxConcurrency":1,
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},
    "StartAt":"W","States":{"W":{"Type":"Wait","Seconds":1,"Next":"P"},"P":{"Type":"Pass","End":true}}},
  "End":true}}}"#;

/// Every child fails after 2 s: with the default tolerance (0) the first failure fails the run.
const FAILING_MAP: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":"$.items","MaxConcurrency":1,
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},
    "StartAt":"W","States":{"W":{"Type":"Wait","Seconds":2,"Next":"F"},"F":{"Type":"Fail","Error":"Bad","Cause":"on purpose"}}},
  "End":true}}}"#;

/// 80 children of about 3.9 KB output each: a result above 256 KiB without ResultWriter.
const BIG_RESULT_MAP: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":"$.items",
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},
    "StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"r.$":"States.ArrayRange(1, 1000, 1)"},"End":true}}},
  "End":true}}}"#;

/// Children the leader runs at once at most: above every MaxConcurrency used here.
const SLOTS: usize = 8;

struct Deployment {
    nodes: Vec<(CoordinatorNode, ExecutionDriver)>,
    servers: Vec<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
    leader_hint: String,
    _dirs: Vec<tempfile::TempDir>,
}

impl Deployment {
    /// Three coordinators sharing the object store in `objects`.
    async fn start(objects: &Path) -> Self {
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for id in ids(3) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
            peers.insert(id, listener.local_addr().expect("address").to_string());
            listeners.push((id, listener));
        }
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("temp dir")).collect();
        let stores = Arc::new(Stores::new(StoreConfig::Local { data_dir: objects.to_path_buf() }));
        let mut nodes = Vec::new();
        let mut servers = Vec::new();
        for ((id, listener), dir) in listeners.into_iter().zip(&dirs) {
            let mut config = RaftConfig::new(id, peers.clone(), dir.path());
            config.tick_interval = Duration::from_millis(20);
            config.heartbeat_ticks = 2;
            let node =
                RaftNode::start(config, ReplicatedState::default(), GrpcTransport::new(id, &peers)).expect("start");
            let transport = RaftTransportService::new();
            transport.attach(node.mailbox());
            let invoker = Arc::new(LocalInvoker::new(FunctionRegistry::new()).expect("invoker"));
            let map_runs = MapRunConfig::local(stores.clone(), SLOTS);
            let driver = ExecutionDriver::start_with_map_runs(node.clone(), invoker.clone(), Some(map_runs));
            let states = StatesService::new(node.clone(), driver.clone(), ArnScope::default(), invoker);
            servers.push(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(transport.into_server())
                    .add_service(states.into_server())
                    .serve_with_incoming(TcpListenerStream::new(listener)),
            ));
            nodes.push((node, driver));
        }
        let leader_hint = peers.values().next().cloned().expect("a peer");
        Self { nodes, servers, leader_hint, _dirs: dirs }
    }

    async fn shutdown(self) {
        for (node, driver) in &self.nodes {
            driver.shutdown();
            node.shutdown().await;
        }
        for server in self.servers {
            server.abort();
        }
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, exception: &str, field: &str) {
    let status = result.expect_err("the request must be refused");
    assert_eq!(exception_name(&status), Some(exception), "{status:?}");
    assert!(status.message().contains(field), "message does not name '{field}': {}", status.message());
}

pub(super) async fn create(client: &mut StatesClient, name: &str, definition: &str) -> String {
    let request = pb::CreateStateMachineRequest {
        name: name.into(),
        definition: definition.into(),
        role_arn: String::new(),
        r#type: String::new(),
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.create_state_machine(request).await }
        })
        .await
        .expect("create state machine")
        .state_machine_arn
}

pub(super) async fn start(client: &mut StatesClient, machine: &str, input: &str) -> String {
    let request =
        pb::StartExecutionRequest { state_machine_arn: machine.into(), name: String::new(), input: input.into() };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.start_execution(request).await }
        })
        .await
        .expect("start execution")
        .execution_arn
}

async fn wait_closed(client: &mut StatesClient, arn: &str) -> pb::DescribeExecutionResponse {
    let request = pb::DescribeExecutionRequest { execution_arn: arn.into() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let described = client
            .call(|mut c| {
                let request = request.clone();
                async move { c.describe_execution(request).await }
            })
            .await
            .expect("describe execution");
        if described.status != "RUNNING" {
            return described;
        }
        assert!(tokio::time::Instant::now() < deadline, "{arn} still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn history_types(client: &mut StatesClient, arn: &str) -> Vec<pb::HistoryEvent> {
    let request = pb::GetExecutionHistoryRequest {
        execution_arn: arn.into(),
        max_results: 1000,
        reverse_order: false,
        next_token: String::new(),
    };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.get_execution_history(request).await }
        })
        .await
        .expect("history")
        .events
}

async fn list_map_runs(
    client: &mut StatesClient,
    execution: &str,
    max_results: i32,
) -> Result<pb::ListMapRunsResponse, tonic::Status> {
    let request = pb::ListMapRunsRequest { execution_arn: execution.into(), max_results, next_token: String::new() };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.list_map_runs(request).await }
        })
        .await
}

async fn describe_map_run(client: &mut StatesClient, arn: &str) -> Result<pb::DescribeMapRunResponse, tonic::Status> {
    let request = pb::DescribeMapRunRequest { map_run_arn: arn.into() };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.describe_map_run(request).await }
        })
        .await
}

async fn update_map_run(
    client: &mut StatesClient,
    request: pb::UpdateMapRunRequest,
) -> Result<pb::UpdateMapRunResponse, tonic::Status> {
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.update_map_run(request).await }
        })
        .await
}

/// The ARN of the execution's (first) map run, once it is listed.
pub(super) async fn map_run_of(client: &StatesClient, execution: &str) -> String {
    eventually("the map run to be listed", || {
        let mut client = client.clone();
        async move {
            let listed = list_map_runs(&mut client, execution, 0).await.ok()?;
            listed.map_runs.first().map(|m| m.map_run_arn.clone())
        }
    })
    .await
}

fn update(arn: &str) -> pb::UpdateMapRunRequest {
    pb::UpdateMapRunRequest {
        map_run_arn: arn.into(),
        max_concurrency: None,
        tolerated_failure_percentage: None,
        tolerated_failure_count: None,
    }
}

pub async fn map_runs_through_the_grpc_client() {
    let objects = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(objects.path().join("data")).expect("bucket dir");
    std::fs::write(objects.path().join("data/items.csv"), "id,name\n1,a\n2,b\n3,c\n4,d\n5,e\n").expect("items");
    let deployment = Deployment::start(objects.path()).await;
    let mut client = StatesClient::new(&deployment.leader_hint).expect("client");

    // Two slow runs go on while the CSV run is checked: one to widen, one to tolerate.
    let slow_machine = create(&mut client, "slow", SLOW_MAP).await;
    let failing_machine = create(&mut client, "failing", FAILING_MAP).await;
    let items = r#"{"items":[1,2,3,4,5,6]}"#;
    let slow = start(&mut client, &slow_machine, items).await;
    let failing = start(&mut client, &failing_machine, r#"{"items":[1,2,3]}"#).await;

    // UpdateMapRun of running map runs, at once: MaxConcurrency 1 -> 4, tolerance 0 -> 100%.
    let slow_run = map_run_of(&client, &slow).await;
    let failing_run = map_run_of(&client, &failing).await;
    let mut raise = update(&failing_run);
    raise.tolerated_failure_percentage = Some(100.0);
    update_map_run(&mut client, raise).await.expect("update the tolerance");
    let before = describe_map_run(&mut client, &slow_run).await.expect("describe the slow run");
    assert_eq!((before.status.as_str(), before.max_concurrency), ("RUNNING", 1));
    let mut widen = update(&slow_run);
    widen.max_concurrency = Some(4);
    update_map_run(&mut client, widen).await.expect("update MaxConcurrency");
    let after = describe_map_run(&mut client, &slow_run).await.expect("describe the slow run");
    assert_eq!((after.status.as_str(), after.max_concurrency), ("RUNNING", 4));
    // Bad values name their field.
    let mut negative = update(&slow_run);
    negative.max_concurrency = Some(-1);
    assert_refused(update_map_run(&mut client, negative).await, "ValidationException", "maxConcurrency");
    let mut too_much = update(&slow_run);
    too_much.tolerated_failure_percentage = Some(100.5);
    assert_refused(update_map_run(&mut client, too_much).await, "ValidationException", "toleratedFailurePercentage");

    // A Distributed Map over a CSV file.
    let csv_machine = create(&mut client, "csv", CSV_MAP).await;
    let csv = start(&mut client, &csv_machine, "{}").await;
    let closed = wait_closed(&mut client, &csv).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let output: Value = serde_json::from_str(closed.output.as_deref().expect("output")).expect("JSON output");
    let events = history_types(&mut client, &csv).await;
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    let started = events.iter().find(|e| e.r#type == "MapRunStarted").expect("MapRunStarted");
    assert!(types.contains(&"MapRunSucceeded"), "{types:?}");
    let position = |t: &str| types.iter().position(|x| *x == t).unwrap_or_else(|| panic!("no {t} in {types:?}"));
    assert!(position("MapRunStarted") < position("MapRunSucceeded"));
    assert!(position("MapRunSucceeded") < position("MapStateExited"));
    let details: Value = serde_json::from_str(&started.details).expect("details");
    let map_run_arn = details["mapRunArn"].as_str().expect("mapRunArn").to_owned();
    assert_eq!(output["MapRunArn"], map_run_arn.as_str());

    let listed = list_map_runs(&mut client, &csv, 0).await.expect("ListMapRuns");
    assert_eq!(listed.map_runs.len(), 1);
    let item = &listed.map_runs[0];
    assert_eq!((item.map_run_arn.as_str(), item.execution_arn.as_str()), (map_run_arn.as_str(), csv.as_str()));
    assert!(item.state_machine_arn.ends_with(":stateMachine:csv/rows"), "{}", item.state_machine_arn);
    assert!(item.stop_date.is_some() && listed.next_token.is_empty());

    let described = describe_map_run(&mut client, &map_run_arn).await.expect("DescribeMapRun");
    assert_eq!((described.status.as_str(), described.execution_arn.as_str()), ("SUCCEEDED", csv.as_str()));
    assert!(described.stop_date.is_some());
    let items = described.item_counts.expect("itemCounts");
    let children = described.execution_counts.expect("executionCounts");
    for counts in [&items, &children] {
        assert_eq!((counts.succeeded, counts.total, counts.results_written), (5, 5, 5), "{counts:?}");
        assert_eq!(
            counts.pending + counts.running + counts.failed + counts.timed_out + counts.aborted,
            0,
            "{counts:?}"
        );
    }
    let id = map_run_arn.rsplit(':').next().expect("map run id");
    let manifest = objects.path().join(format!("results/out/{id}/manifest.json"));
    assert!(manifest.is_file(), "no manifest at {}", manifest.display());

    // Refusals: ended runs are not updated; unknown and malformed ARNs; unknown executions.
    let mut late = update(&map_run_arn);
    late.max_concurrency = Some(2);
    assert_refused(update_map_run(&mut client, late).await, "ValidationException", "mapRunArn");
    let unknown = map_run_arn.replace(id, "00000000-0000-4000-8000-000000000000");
    assert_refused(describe_map_run(&mut client, &unknown).await, "ResourceNotFound", &unknown);
    assert_refused(update_map_run(&mut client, update(&unknown)).await, "ResourceNotFound", &unknown);
    assert_refused(describe_map_run(&mut client, "garbage").await, "InvalidArn", "garbage");
    assert_refused(describe_map_run(&mut client, &csv).await, "InvalidArn", "mapRunArn");
    let nobody = csv.replace(csv.rsplit(':').next().expect("name"), "nobody");
    assert_refused(list_map_runs(&mut client, &nobody, 0).await, "ExecutionDoesNotExist", "nobody");
    assert_refused(list_map_runs(&mut client, &csv, 1001).await, "ValidationException", "maxResults");

    // A result above 256 KiB without ResultWriter fails the map run (features.md §2.8).
    let big_machine = create(&mut client, "big", BIG_RESULT_MAP).await;
    let eighty: Vec<u32> = (1..=80).collect();
    let big = start(&mut client, &big_machine, &serde_json::json!({ "items": eighty }).to_string()).await;
    let closed = wait_closed(&mut client, &big).await;
    assert_eq!((closed.status.as_str(), closed.error.as_deref()), ("FAILED", Some("States.DataLimitExceeded")));
    let big_run = map_run_of(&client, &big).await;
    let failed_run = describe_map_run(&mut client, &big_run).await.expect("describe the big run");
    assert_eq!(failed_run.status, "FAILED");
    assert_eq!(failed_run.item_counts.expect("itemCounts").succeeded, 80);

    // Stopping the parent aborts its running map run, which can no longer be updated.
    let stopped = start(&mut client, &slow_machine, r#"{"items":[1,2,3]}"#).await;
    let stopped_run = map_run_of(&client, &stopped).await;
    let request = pb::StopExecutionRequest { execution_arn: stopped.clone(), error: None, cause: None };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.stop_execution(request).await }
        })
        .await
        .expect("stop execution");
    let aborted = describe_map_run(&mut client, &stopped_run).await.expect("describe the stopped run");
    assert_eq!(aborted.status, "ABORTED");
    assert!(aborted.stop_date.is_some());
    let mut too_late = update(&stopped_run);
    too_late.max_concurrency = Some(2);
    assert_refused(update_map_run(&mut client, too_late).await, "ValidationException", "mapRunArn");

    // The widened run: more than one child ran at once after the update.
    let mut most_running = 0;
    loop {
        let now = describe_map_run(&mut client, &slow_run).await.expect("describe the slow run");
        let running = now.execution_counts.as_ref().map_or(0, |c| c.running);
        most_running = most_running.max(running);
        if now.status != "RUNNING" {
            assert_eq!(now.status, "SUCCEEDED");
            assert_eq!(now.item_counts.expect("itemCounts").succeeded, 6);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(most_running >= 2, "MaxConcurrency 4 never ran two children at once");
    assert_eq!(wait_closed(&mut client, &slow).await.status, "SUCCEEDED");

    // The tolerant run: every child failed, the map run (and its parent) succeeded.
    assert_eq!(wait_closed(&mut client, &failing).await.status, "SUCCEEDED");
    let tolerant = describe_map_run(&mut client, &failing_run).await.expect("describe the failing run");
    assert_eq!(tolerant.status, "SUCCEEDED");
    assert_eq!(tolerant.tolerated_failure_percentage, 100.0);
    let failed = tolerant.item_counts.expect("itemCounts");
    assert_eq!((failed.failed, failed.total), (3, 3));

    deployment.shutdown().await;
}

/// Three inline items through Pass children, then a 2 s Wait: the map run ends well before
/// its parent does.
const MAP_THEN_WAIT: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":"$.items","ResultPath":"$.mapped",
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},
    "StartAt":"P","States":{"P":{"Type":"Pass","Parameters":{"twice.$":"States.MathAdd($, $)"},"End":true}}},
  "Next":"W"},"W":{"Type":"Wait","Seconds":2,"End":true}}}"#;

fn count(events: &[pb::HistoryEvent], event_type: &str) -> usize {
    events.iter().filter(|e| e.r#type == event_type).count()
}

/// A new leader continues both parents by replay: the ended map run is answered from the
/// ledger (not run again), the running one is started again under its ARN and ends once.
pub async fn map_runs_across_a_change_of_leader() {
    let objects = tempfile::tempdir().expect("temp dir");
    let deployment = Deployment::start(objects.path()).await;
    let mut client = StatesClient::new(&deployment.leader_hint).expect("client");
    let ended_machine = create(&mut client, "ended", MAP_THEN_WAIT).await;
    let running_machine = create(&mut client, "running", SLOW_MAP).await;
    let ended = start(&mut client, &ended_machine, r#"{"items":[1,2,3]}"#).await;
    let running = start(&mut client, &running_machine, r#"{"items":[1,2,3]}"#).await;
    eventually("the first map run to end", || {
        let mut client = client.clone();
        let ended = ended.clone();
        async move { (count(&history_types(&mut client, &ended).await, "MapRunSucceeded") == 1).then_some(()) }
    })
    .await;
    let ended_run = map_run_of(&client, &ended).await;
    let running_run = map_run_of(&client, &running).await;
    let before = describe_map_run(&mut client, &ended_run).await.expect("describe the ended run");
    assert_eq!(before.status, "SUCCEEDED");
    assert_eq!(describe_map_run(&mut client, &running_run).await.expect("describe").status, "RUNNING");

    let (leader, _) = deployment.nodes.iter().find(|(n, _)| n.status().is_leader()).expect("a leader");
    let old = leader.status().node_id;
    let to = deployment.nodes.iter().map(|(n, _)| n.status().node_id).find(|id| *id != old).expect("another node");
    leader.transfer_leadership(to).await.expect("transfer leadership");
    eventually("the new leader", || async {
        deployment.nodes.iter().any(|(n, _)| n.status().is_leader() && n.status().node_id == to).then_some(())
    })
    .await;

    let closed = wait_closed(&mut client, &ended).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let output: Value = serde_json::from_str(closed.output.as_deref().expect("output")).expect("JSON");
    assert_eq!(output["mapped"], serde_json::json!([{"twice": 2}, {"twice": 4}, {"twice": 6}]));
    let events = history_types(&mut client, &ended).await;
    assert_eq!((count(&events, "MapRunStarted"), count(&events, "MapRunSucceeded")), (1, 1));
    let after = describe_map_run(&mut client, &ended_run).await.expect("describe the ended run");
    assert_eq!((after.stop_date, after.item_counts), (before.stop_date, before.item_counts), "it ran again");

    let closed = wait_closed(&mut client, &running).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let events = history_types(&mut client, &running).await;
    assert_eq!((count(&events, "MapRunStarted"), count(&events, "MapRunSucceeded")), (1, 1));
    let listed = list_map_runs(&mut client, &running, 0).await.expect("ListMapRuns");
    assert_eq!(listed.map_runs.len(), 1);
    let rerun = describe_map_run(&mut client, &running_run).await.expect("describe the re-run");
    let items = rerun.item_counts.expect("itemCounts");
    assert_eq!((rerun.status.as_str(), items.succeeded, items.total), ("SUCCEEDED", 3, 3));

    deployment.shutdown().await;
}
