//! Map runs on the worker fleet (DESIGN.md §3), end to end over loopback gRPC: three
//! coordinators in fleet mode (a `Dispatcher` with 1 s leases, the `FleetMapRunExecutor`, the
//! `Workers` service next to the `States` service) and *virtual workers*: test code that speaks
//! the Workers protocol through a `LeaderChannel` and behaves as it is told — run its units for
//! real and report (succeed), report every item failed (fail), take leases and keep renewing
//! them without ever reporting (hang), or stop polling altogether (vanish).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use stepmap_asl::clock::SystemClock;
use stepmap_asl::interpreter::Environment;
use stepmap_coordinator::api::{ChildArchive, StatesClient, StatesService, WorkersService};
use stepmap_coordinator::dispatch::{DispatchConfig, Dispatcher, FleetMapRunExecutor};
use stepmap_coordinator::driver::{ExecutionDriver, MapRunConfig};
use stepmap_coordinator::state::{ArnScope, ReplicatedState};
use stepmap_coordinator::transport::{GrpcTransport, RaftTransportService};
use stepmap_coordinator::{CoordinatorNode, RaftConfig, RaftNode};
use stepmap_proto::leader::LeaderChannel;
use stepmap_proto::v1 as pb;
use stepmap_proto::v1::workers_client::WorkersClient;
use stepmap_storage::{StoreConfig, Stores};
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;
use stepmap_worker::map_run::{StatusCounts, UnitOutcome, UnitRunner, WorkUnit};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use super::harness::eventually;
use super::map_runs::{create, map_run_of, start};
use super::network::ids;

/// Short, so that a vanished worker's units run again soon.
const LEASE: Duration = Duration::from_secs(1);
/// The bucket STANDARD children are archived in.
const ARCHIVE: &str = "archive";

// ---------------------------------------------------------------------------------------------
// The deployment
// ---------------------------------------------------------------------------------------------

struct Deployment {
    nodes: Vec<(CoordinatorNode, ExecutionDriver)>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    /// Where clients start (they follow leader hints from there).
    endpoint: String,
    stores: Arc<Stores>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Deployment {
    /// Three fleet-mode coordinators sharing the object store in `objects`.
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
            let dispatcher = Dispatcher::new(node.clone(), DispatchConfig::with_lease(LEASE));
            let executor = FleetMapRunExecutor::new(dispatcher.clone(), stores.clone()).with_child_archive(ARCHIVE);
            let map_runs = MapRunConfig::fleet(executor);
            let driver = ExecutionDriver::start_with_map_runs(node.clone(), invoker.clone(), Some(map_runs));
            let archive = ChildArchive { stores: stores.clone(), bucket: ARCHIVE.into() };
            let states = StatesService::new(node.clone(), driver.clone(), ArnScope::default(), invoker)
                .with_child_archive(archive);
            let workers = WorkersService::new(dispatcher);
            servers.push(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(transport.into_server())
                    .add_service(states.into_server())
                    .add_service(workers.into_server())
                    .serve_with_incoming(TcpListenerStream::new(listener)),
            ));
            nodes.push((node, driver));
        }
        let endpoint = peers.values().next().cloned().expect("a peer");
        Self { nodes, servers, endpoint, stores, _dirs: dirs }
    }

    fn client(&self) -> StatesClient {
        StatesClient::new(&self.endpoint).expect("client")
    }

    /// A virtual worker with `slots` slots, registered and polling (unless `Vanish`).
    async fn worker(&self, name: &str, slots: u32, behaviour: Behaviour) -> VirtualWorker {
        self.worker_with(name, slots, behaviour, FunctionRegistry::new()).await
    }

    /// [`Self::worker`], whose children's Task states call `functions`.
    async fn worker_with(
        &self,
        name: &str,
        slots: u32,
        behaviour: Behaviour,
        functions: FunctionRegistry,
    ) -> VirtualWorker {
        VirtualWorker::start(&self.endpoint, self.stores.clone(), name, slots, behaviour, functions).await
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

// ---------------------------------------------------------------------------------------------
// Virtual workers
// ---------------------------------------------------------------------------------------------

/// What a virtual worker does with the units it is given (and, when it changes, with the
/// units it holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Runs each unit for real (a `UnitRunner`) and reports its outcome.
    Succeed,
    /// Reports every item and child of each unit as failed, without running it.
    #[allow(dead_code)]
    Fail,
    /// Takes units and keeps their leases by polling, but never runs or reports them.
    Hang,
    /// Stops polling (its leases lapse) and reports nothing.
    Vanish,
}

/// What a virtual worker saw and did.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// Every unit it was given, in order.
    taken: Vec<pb::Work>,
    /// Leases it holds now: units hanging or running, not reported yet.
    held: Vec<pb::Lease>,
    /// Units taken while hanging: run once the worker succeeds (or fails).
    hanging: Vec<pb::Work>,
    /// The most leases it ever held at once.
    max_held: usize,
    /// Leases given up to be reported (no longer renewed).
    released: Vec<pb::Lease>,
    /// Leases revoked while the worker still held them: they lapsed (the worker renewed them
    /// too late, e.g. on a machine stalled by load). A lease revoked after it was given up
    /// for its report (a poll racing the report) is not one.
    lapsed: Vec<pb::Lease>,
    /// Polls answered.
    polls: u64,
    /// Reports and whether they were accepted.
    reports: Vec<(pb::Lease, bool)>,
}

struct Shared {
    worker_id: String,
    slots: u32,
    poll_wait: Duration,
    channel: LeaderChannel,
    runner: UnitRunner,
    seen: Mutex<Seen>,
    /// A unit finished: a slot is free again.
    freed: Notify,
}

impl Shared {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct VirtualWorker {
    shared: Arc<Shared>,
    behaviour: watch::Sender<Behaviour>,
    task: JoinHandle<()>,
}

fn same_lease(a: &pb::Lease, b: &pb::Lease) -> bool {
    a.map_run_arn == b.map_run_arn && a.unit == b.unit && a.epoch == b.epoch
}

fn lease_of(work: &pb::Work) -> pb::Lease {
    work.lease.clone().expect("work carries its lease")
}

async fn register(channel: &mut LeaderChannel, name: &str, slots: u32) -> pb::RegisterWorkerResponse {
    let request = pb::RegisterWorkerRequest { name: name.into(), slots };
    channel
        .call(WorkersClient::new, |mut c| {
            let request = request.clone();
            async move { c.register_worker(request).await }
        })
        .await
        .expect("register worker")
}

async fn poll(
    channel: &mut LeaderChannel,
    request: pb::PollWorkRequest,
) -> Result<pb::PollWorkResponse, tonic::Status> {
    channel
        .call(WorkersClient::new, |mut c| {
            let request = request.clone();
            async move { c.poll_work(request).await }
        })
        .await
}

async fn report(channel: &mut LeaderChannel, worker_id: &str, lease: pb::Lease, outcome: &UnitOutcome) -> bool {
    let request = pb::ReportResultRequest {
        worker_id: worker_id.into(),
        lease: Some(lease),
        outcome: serde_json::to_string(outcome).expect("outcome JSON"),
    };
    channel
        .call(WorkersClient::new, |mut c| {
            let request = request.clone();
            async move { c.report_result(request).await }
        })
        .await
        .expect("report result")
        .accepted
}

/// What a failing worker reports: every item and child failed.
fn failed_outcome(unit: &WorkUnit) -> UnitOutcome {
    let record = json!({"Error": "Virtual.Failure", "Cause": "the virtual worker fails every unit"});
    UnitOutcome {
        items: StatusCounts { failed: unit.items, ..StatusCounts::default() },
        executions: StatusCounts { failed: unit.children, ..StatusCounts::default() },
        outputs: Some(vec![record; unit.children as usize]),
        ..UnitOutcome::default()
    }
}

impl VirtualWorker {
    async fn start(
        endpoint: &str,
        stores: Arc<Stores>,
        name: &str,
        slots: u32,
        behaviour: Behaviour,
        functions: FunctionRegistry,
    ) -> Self {
        let mut channel = LeaderChannel::new(endpoint).expect("worker channel");
        let registered = register(&mut channel, name, slots).await;
        assert_eq!(registered.lease_millis, LEASE.as_millis() as u64);
        let invoker = Arc::new(LocalInvoker::new(functions).expect("invoker"));
        let mut environment = Environment::new(Arc::new(SystemClock), invoker);
        environment.history_payloads = false;
        let shared = Arc::new(Shared {
            worker_id: registered.worker_id,
            slots,
            poll_wait: Duration::from_millis(registered.poll_wait_millis),
            channel,
            runner: UnitRunner::new(stores, environment),
            seen: Mutex::new(Seen::default()),
            freed: Notify::new(),
        });
        let (sender, receiver) = watch::channel(behaviour);
        let task = tokio::spawn(work_loop(shared.clone(), receiver));
        Self { shared, behaviour: sender, task }
    }

    fn behave(&self, behaviour: Behaviour) {
        self.behaviour.send_replace(behaviour);
    }

    fn seen(&self) -> Seen {
        self.shared.seen().clone()
    }

    /// Runs `work` for real, as if its lease were current, and reports it: whether the
    /// coordinator accepted the result.
    async fn run_and_report(&self, work: &pb::Work) -> bool {
        let lease = lease_of(work);
        let unit: WorkUnit = serde_json::from_str(&work.unit).expect("unit JSON");
        let outcome = self.shared.runner.run(&work.job, &unit, lease.epoch, work.parallelism).await;
        let mut channel = self.shared.channel.clone();
        let accepted = report(&mut channel, &self.shared.worker_id, lease.clone(), &outcome).await;
        self.shared.seen().reports.push((lease, accepted));
        accepted
    }
}

impl Drop for VirtualWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls as `behaviour` says: with the free slots and the leases held (which renews them),
/// running, failing or keeping what it is given.
async fn work_loop(shared: Arc<Shared>, mut behaviour: watch::Receiver<Behaviour>) {
    let mut channel = shared.channel.clone();
    loop {
        let now = *behaviour.borrow_and_update();
        if now == Behaviour::Vanish {
            if behaviour.changed().await.is_err() {
                return;
            }
            continue;
        }
        if matches!(now, Behaviour::Succeed | Behaviour::Fail) {
            let hanging = std::mem::take(&mut shared.seen().hanging);
            for work in hanging {
                tokio::spawn(run_unit(shared.clone(), work, now));
            }
        }
        let (free_slots, held) = {
            let seen = shared.seen();
            (shared.slots.saturating_sub(seen.held.len() as u32), seen.held.clone())
        };
        let request = pb::PollWorkRequest { worker_id: shared.worker_id.clone(), free_slots, held, prefetch: 0 };
        let response = match poll(&mut channel, request).await {
            Ok(response) => response,
            Err(status) => {
                tracing::warn!(worker = %shared.worker_id, %status, "poll failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // What it does with new work is what it is told now (it may have just vanished).
        let now = *behaviour.borrow();
        {
            let mut seen = shared.seen();
            seen.polls += 1;
            for revoked in &response.revoked {
                if !seen.released.iter().any(|l| same_lease(l, revoked)) {
                    seen.lapsed.push(revoked.clone());
                }
                seen.held.retain(|l| !same_lease(l, revoked));
                seen.hanging.retain(|w| !same_lease(&lease_of(w), revoked));
            }
            for work in response.work {
                seen.taken.push(work.clone());
                seen.held.push(lease_of(&work));
                match now {
                    Behaviour::Hang | Behaviour::Vanish => seen.hanging.push(work),
                    Behaviour::Succeed | Behaviour::Fail => {
                        tokio::spawn(run_unit(shared.clone(), work, now));
                    }
                }
            }
            seen.max_held = seen.max_held.max(seen.held.len());
        }
        if free_slots == 0 {
            // A heartbeat answers at once: renew again well within the lease, or as soon as a
            // slot is free or the behaviour changes.
            tokio::select! {
                _ = shared.freed.notified() => {}
                _ = behaviour.changed() => {}
                _ = tokio::time::sleep(shared.poll_wait) => {}
            }
        }
    }
}

/// Runs (or fails) one unit and reports it.
async fn run_unit(shared: Arc<Shared>, work: pb::Work, behaviour: Behaviour) {
    let lease = lease_of(&work);
    let unit: WorkUnit = serde_json::from_str(&work.unit).expect("unit JSON");
    let outcome = match behaviour {
        Behaviour::Fail => failed_outcome(&unit),
        _ => shared.runner.run(&work.job, &unit, lease.epoch, work.parallelism).await,
    };
    // No longer held from here: the coordinator counts the lease until the report commits,
    // so the worker never holds more than the coordinator counts.
    {
        let mut seen = shared.seen();
        seen.held.retain(|l| !same_lease(l, &lease));
        seen.released.push(lease.clone());
    }
    let mut channel = shared.channel.clone();
    let accepted = report(&mut channel, &shared.worker_id, lease.clone(), &outcome).await;
    shared.seen().reports.push((lease, accepted));
    shared.freed.notify_one();
}

// ---------------------------------------------------------------------------------------------
// States client helpers (create, start and map_run_of are map_runs.rs's)
// ---------------------------------------------------------------------------------------------

async fn describe(client: &mut StatesClient, arn: &str) -> pb::DescribeExecutionResponse {
    let request = pb::DescribeExecutionRequest { execution_arn: arn.into() };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.describe_execution(request).await }
        })
        .await
        .expect("describe execution")
}

async fn wait_closed(client: &StatesClient, arn: &str) -> pb::DescribeExecutionResponse {
    eventually(&format!("{arn} to close"), || {
        let mut client = client.clone();
        async move { Some(describe(&mut client, arn).await).filter(|d| d.status != "RUNNING") }
    })
    .await
}

async fn describe_map_run(client: &mut StatesClient, arn: &str) -> pb::DescribeMapRunResponse {
    let request = pb::DescribeMapRunRequest { map_run_arn: arn.into() };
    client
        .call(|mut c| {
            let request = request.clone();
            async move { c.describe_map_run(request).await }
        })
        .await
        .expect("describe map run")
}

// ---------------------------------------------------------------------------------------------
// Items and result files
// ---------------------------------------------------------------------------------------------

/// `<objects>/data/<key>`: a CSV file `id,name` with ids `1..=rows`.
fn write_csv(objects: &Path, key: &str, rows: u64) {
    std::fs::create_dir_all(objects.join("data")).expect("bucket dir");
    let mut text = String::from("id,name\n");
    for id in 1..=rows {
        text.push_str(&format!("{id},row-{id}\n"));
    }
    std::fs::write(objects.join("data").join(key), text).expect("items");
}

/// A Distributed Map over `data/<key>` (CSV with a header row) with `settings` (extra fields
/// of the Map state, e.g. `"ItemBatcher":{...},`), `states` as its processor, results to
/// `results/<prefix>/`.
fn csv_map(key: &str, settings: &str, start_at: &str, states: &str, prefix: &str) -> String {
    format!(
        r#"{{"StartAt":"M","States":{{"M":{{"Type":"Map","Label":"rows",{settings}
  "ItemReader":{{"Resource":"arn:aws:states:::s3:getObject","ReaderConfig":{{"InputType":"CSV","CSVHeaderLocation":"FIRST_ROW"}},
    "Parameters":{{"Bucket":"data","Key":"{key}"}}}},
  "ItemProcessor":{{"ProcessorConfig":{{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"}},
    "StartAt":"{start_at}","States":{states}}},
  "ResultWriter":{{"Resource":"arn:aws:states:::s3:putObject","Parameters":{{"Bucket":"results","Prefix":"{prefix}"}}}},
  "End":true}}}}}}"#
    )
}

/// The ids of the rows a result record's child ran (one row, or a batch's `Items`).
fn record_ids(record: &Value) -> Vec<u64> {
    let input: Value =
        serde_json::from_str(record["Input"].as_str().expect("Input is a JSON text")).expect("Input is JSON");
    let rows = match input.get("Items") {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![input],
    };
    rows.iter()
        .map(|row| row["id"].as_str().and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("no id in {row}")))
        .collect()
}

/// The ids in the result files of `map_run_arn` under `results/<prefix>/`, by category
/// (SUCCEEDED, FAILED, PENDING), each in the order the files hold them.
fn result_ids(objects: &Path, prefix: &str, map_run_arn: &str) -> BTreeMap<String, Vec<u64>> {
    let id = map_run_arn.rsplit(':').next().expect("map run id");
    result_ids_in(&objects.join("results").join(prefix).join(id))
}

/// [`result_ids`] of the result files in `directory` (e.g. a redrive's `Redrive-<k>/`).
fn result_ids_in(directory: &Path) -> BTreeMap<String, Vec<u64>> {
    assert!(directory.join("manifest.json").is_file(), "no manifest in {}", directory.display());
    let mut by_category: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(directory)
        .expect("result directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("file name").to_owned();
        let Some((category, _)) = name.split_once('_') else { continue };
        if !["SUCCEEDED", "FAILED", "PENDING"].contains(&category) {
            continue;
        }
        let records: Vec<Value> =
            serde_json::from_slice(&std::fs::read(&path).expect("result file")).expect("a JSON array of records");
        let ids = by_category.entry(category.to_owned()).or_default();
        for record in &records {
            assert_eq!(
                record["Status"].as_str().map(|s| s == category || category == "FAILED"),
                Some(true),
                "{record}"
            );
            ids.extend(record_ids(record));
        }
    }
    by_category
}

fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// A Pass child per batch.
const PASS: &str = r#"{"P":{"Type":"Pass","End":true}}"#;
/// Batches of 100 rows, one unit each: batches measured by size are never grouped into units
/// of several (`UnitGrouping::Single`).
const ONE_BATCH_PER_UNIT: &str = r#""ItemBatcher":{"MaxItemsPerBatch":100,"MaxInputBytesPerBatch":262144},"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_runs_a_csv_map_run_on_virtual_workers() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    write_csv(objects.path(), "items.csv", 1000);
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    let definition = csv_map("items.csv", ONE_BATCH_PER_UNIT, "P", PASS, "fleet");
    let machine = create(&mut client.clone(), "fleet", &definition).await;
    let a = deployment.worker("a", 4, Behaviour::Succeed).await;
    let b = deployment.worker("b", 4, Behaviour::Succeed).await;

    let execution = start(&mut client.clone(), &machine, "{}").await;
    let closed = wait_closed(&client, &execution).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let map_run = map_run_of(&client, &execution).await;

    // Ten units of 100 rows, each accepted once, whoever ran it (the last report may be
    // answered after the run ended).
    let accepted = eventually("ten accepted reports", || async {
        let (seen_a, seen_b) = (a.seen(), b.seen());
        let accepted: Vec<u64> = seen_a
            .reports
            .iter()
            .chain(&seen_b.reports)
            .filter(|(_, accepted)| *accepted)
            .map(|(lease, _)| lease.unit)
            .collect();
        (accepted.len() >= 10).then_some(accepted)
    })
    .await;
    assert_eq!(sorted(&accepted), (0..10).collect::<Vec<_>>(), "one accepted report per unit");

    let results = result_ids(objects.path(), "fleet", &map_run);
    let succeeded = results.get("SUCCEEDED").cloned().unwrap_or_default();
    assert_eq!(sorted(&succeeded), (1..=1000).collect::<Vec<_>>(), "every row exactly once");
    assert!(!results.contains_key("FAILED") && !results.contains_key("PENDING"), "{results:?}");

    let described = describe_map_run(&mut client.clone(), &map_run).await;
    assert_eq!(described.status, "SUCCEEDED");
    let items = described.item_counts.expect("itemCounts");
    assert_eq!(
        (items.succeeded, items.total, items.failed, items.pending, items.running),
        (1000, 1000, 0, 0, 0),
        "{items:?}"
    );
    let children = described.execution_counts.expect("executionCounts");
    assert_eq!((children.succeeded, children.total), (10, 10), "{children:?}");

    // The STANDARD children are executions of their own: listed by map run, described, and
    // with their histories, whichever worker ran them.
    let listed = list_children(&client, &map_run).await;
    assert_eq!(listed.len(), 10, "{listed:?}");
    assert!(listed
        .iter()
        .all(|c| c.status == "SUCCEEDED" && c.state_machine_arn.ends_with(":stateMachine:fleet/rows")));
    let first = describe(&mut client.clone(), &listed[0].execution_arn).await;
    assert_eq!((first.status.as_str(), first.map_run_arn.as_deref()), ("SUCCEEDED", Some(map_run.as_str())));
    let input: Value = serde_json::from_str(&first.input).expect("input JSON");
    assert_eq!(input["Items"].as_array().map(Vec::len), Some(100), "{input}");
    let history = history_types(&client, &listed[0].execution_arn).await;
    assert_eq!(history.first().map(String::as_str), Some("ExecutionStarted"), "{history:?}");
    assert_eq!(history.last().map(String::as_str), Some("ExecutionSucceeded"), "{history:?}");
    assert!(history.contains(&"PassStateEntered".to_owned()), "{history:?}");

    drop((a, b));
    deployment.shutdown().await;
}

/// ListExecutions by map run, every page.
async fn list_children(client: &StatesClient, map_run: &str) -> Vec<pb::ExecutionListItem> {
    let mut children = Vec::new();
    let mut next_token = String::new();
    loop {
        let request = pb::ListExecutionsRequest {
            map_run_arn: map_run.into(),
            max_results: 4,
            next_token: next_token.clone(),
            ..Default::default()
        };
        let page = client
            .clone()
            .call(|mut c| {
                let request = request.clone();
                async move { c.list_executions(request).await }
            })
            .await
            .expect("list executions by map run");
        children.extend(page.executions);
        if page.next_token.is_empty() {
            return children;
        }
        next_token = page.next_token;
    }
}

/// The event types of an execution's history.
async fn history_types(client: &StatesClient, arn: &str) -> Vec<String> {
    events(client, arn).await.into_iter().map(|(_, _, kind, _)| kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_runs_again_and_the_stale_result_is_refused() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    write_csv(objects.path(), "items.csv", 1000);
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    let definition = csv_map("items.csv", ONE_BATCH_PER_UNIT, "P", PASS, "lapsed");
    let machine = create(&mut client.clone(), "lapsed", &definition).await;
    let execution = start(&mut client.clone(), &machine, "{}").await;

    // A takes three units, then vanishes with them.
    let a = deployment.worker("a", 3, Behaviour::Hang).await;
    let lost = eventually("worker A to hold three leases", || async {
        let seen = a.seen();
        (seen.held.len() == 3).then_some(seen.taken)
    })
    .await;
    a.behave(Behaviour::Vanish);
    assert!(lost.iter().all(|w| lease_of(w).epoch == 1), "{lost:?}");

    // B gets them again, under epoch 2, once A's leases lapse; it holds on to them.
    let b = deployment.worker("b", 10, Behaviour::Hang).await;
    eventually("worker B to hold A's units under epoch 2", || async {
        let seen = b.seen();
        lost.iter()
            .all(|w| {
                let lease = lease_of(w);
                seen.held.iter().any(|l| l.unit == lease.unit && l.epoch >= 2 && l.map_run_arn == lease.map_run_arn)
            })
            .then_some(())
    })
    .await;

    // A comes back with the results of its old leases: refused.
    for work in &lost {
        assert!(!a.run_and_report(work).await, "the stale result of {:?} was accepted", lease_of(work));
    }

    // B runs everything: the run succeeds with every row once.
    b.behave(Behaviour::Succeed);
    let closed = wait_closed(&client, &execution).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    // Every unit accepted once, from B (the last report may be answered after the run ended;
    // a lease of B's that lapsed under load would only add a refused report).
    let accepted = eventually("worker B's ten accepted reports", || async {
        let seen = b.seen();
        let accepted: BTreeSet<u64> =
            seen.reports.iter().filter(|(_, accepted)| *accepted).map(|(lease, _)| lease.unit).collect();
        (accepted.len() == 10).then_some(accepted)
    })
    .await;
    assert_eq!(accepted, (0..10).collect::<BTreeSet<_>>());
    let map_run = map_run_of(&client, &execution).await;
    let results = result_ids(objects.path(), "lapsed", &map_run);
    let succeeded = results.get("SUCCEEDED").cloned().unwrap_or_default();
    assert_eq!(sorted(&succeeded), (1..=1000).collect::<Vec<_>>(), "every row exactly once");
    assert!(!results.contains_key("FAILED") && !results.contains_key("PENDING"), "{results:?}");
    let items = describe_map_run(&mut client.clone(), &map_run).await.item_counts.expect("itemCounts");
    assert_eq!((items.succeeded, items.total, items.failed), (1000, 1000, 0), "{items:?}");

    drop((a, b));
    deployment.shutdown().await;
}

/// 20 inline items, one per batch (so one per unit), at most 2 at once.
const NARROW_MAP: &str = r#"{"StartAt":"M","States":{"M":{"Type":"Map","ItemsPath":"$.items","MaxConcurrency":2,
  "ItemBatcher":{"MaxItemsPerBatch":1},
  "ItemProcessor":{"ProcessorConfig":{"Mode":"DISTRIBUTED","ExecutionType":"STANDARD"},
    "StartAt":"P","States":{"P":{"Type":"Pass","End":true}}},
  "End":true}}}"#;

/// What `worker` saw once it held `leases` leases and polled three more times with free
/// slots (so that a lease more would have been granted by now).
async fn leases_held_steadily(worker: &VirtualWorker, leases: usize) -> Seen {
    let polls = eventually(&format!("{leases} leases"), || async {
        let seen = worker.seen();
        (seen.held.len() == leases).then_some(seen.polls)
    })
    .await;
    eventually("three more polls with free slots", || async { (worker.seen().polls >= polls + 3).then_some(()) }).await;
    worker.seen()
}

/// UpdateMapRun of `map_run_arn`'s MaxConcurrency alone.
async fn update_max_concurrency(client: &StatesClient, map_run_arn: &str, max_concurrency: i64) {
    let request = pb::UpdateMapRunRequest {
        map_run_arn: map_run_arn.to_owned(),
        max_concurrency: Some(max_concurrency),
        tolerated_failure_percentage: None,
        tolerated_failure_count: None,
    };
    client
        .clone()
        .call(|mut c| {
            let request = request.clone();
            async move { c.update_map_run(request).await }
        })
        .await
        .expect("UpdateMapRun");
}

/// The worker never held more than `cap` leases at once. A lease that lapsed (the worker was
/// too slow to renew it) stays in the worker's list until a poll revokes it, while the
/// coordinator may already have leased its unit again: the bound is only checked without
/// lapses.
fn assert_max_held(seen: &Seen, cap: usize) {
    if seen.lapsed.is_empty() {
        assert!(seen.max_held <= cap, "held {} leases at once (MaxConcurrency {cap})", seen.max_held);
    } else {
        eprintln!("leases lapsed ({:?}): the bound of {cap} leases is not checked", seen.lapsed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_caps_leases_and_update_map_run_raises_it() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    let machine = create(&mut client.clone(), "narrow", NARROW_MAP).await;
    let items: Vec<u64> = (1..=20).collect();
    let execution = start(&mut client.clone(), &machine, &json!({ "items": items }).to_string()).await;
    let map_run = map_run_of(&client, &execution).await;

    // Ten free slots, but only two leases, however often it asks.
    let worker = deployment.worker("greedy", 10, Behaviour::Hang).await;
    let seen = leases_held_steadily(&worker, 2).await;
    assert_eq!(seen.held.len(), 2, "MaxConcurrency 2: {:?}", seen.held);
    assert_max_held(&seen, 2);

    // UpdateMapRun MaxConcurrency 4: two more, and no more than that.
    update_max_concurrency(&client, &map_run, 4).await;
    let seen = leases_held_steadily(&worker, 4).await;
    assert_eq!(seen.held.len(), 4, "MaxConcurrency 4: {:?}", seen.held);
    assert_max_held(&seen, 4);
    let described = describe_map_run(&mut client.clone(), &map_run).await;
    assert_eq!((described.status.as_str(), described.max_concurrency), ("RUNNING", 4));

    // Now it runs everything, still four at a time at most.
    worker.behave(Behaviour::Succeed);
    let closed = wait_closed(&client, &execution).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let output: Value = serde_json::from_str(closed.output.as_deref().expect("output")).expect("JSON output");
    let expected: Vec<Value> = items.iter().map(|i| json!({ "Items": [i] })).collect();
    assert_eq!(output, Value::Array(expected));
    let seen = worker.seen();
    assert_max_held(&seen, 4);
    let taken: BTreeSet<u64> = seen.taken.iter().map(|w| lease_of(w).unit).collect();
    assert_eq!(taken, (0..20).collect::<BTreeSet<_>>());
    let items = describe_map_run(&mut client.clone(), &map_run).await.item_counts.expect("itemCounts");
    assert_eq!((items.succeeded, items.total), (20, 20), "{items:?}");

    drop(worker);
    deployment.shutdown().await;
}

/// Batches of a processor that calls something (here a Wait) are grouped into units whose
/// children run at once, by half the MaxConcurrency: 1,000 rows in batches of 50 under
/// MaxConcurrency 8 make five units of four batches, and two leases fill the eight. Lowered
/// below four, one lease at a time runs, granted as many children at once as it allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_of_batches_run_at_once_count_as_their_children_against_max_concurrency() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    write_csv(objects.path(), "items.csv", 1000);
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    let settings = r#""ItemBatcher":{"MaxItemsPerBatch":50},"MaxConcurrency":8,"#;
    let wait = r#"{"P":{"Type":"Wait","Seconds":0,"End":true}}"#;
    let machine = create(&mut client.clone(), "grouped", &csv_map("items.csv", settings, "P", wait, "grouped")).await;
    let execution = start(&mut client.clone(), &machine, "{}").await;
    let map_run = map_run_of(&client, &execution).await;

    let worker = deployment.worker("greedy", 10, Behaviour::Hang).await;
    let seen = leases_held_steadily(&worker, 2).await;
    assert_eq!(seen.held.len(), 2, "two units of four children fill MaxConcurrency 8: {:?}", seen.held);
    assert_max_held(&seen, 2);
    assert!(seen.taken.iter().all(|w| w.parallelism == 4), "{:?}", seen.taken);

    // UpdateMapRun MaxConcurrency 3, below a unit's four: one lease at a time, whose grant
    // lets three of its children run at once.
    update_max_concurrency(&client, &map_run, 3).await;
    worker.behave(Behaviour::Succeed);
    let closed = wait_closed(&client, &execution).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let seen = worker.seen();
    assert_max_held(&seen, 2);
    let taken: BTreeSet<u64> = seen.taken.iter().map(|w| lease_of(w).unit).collect();
    assert_eq!(taken, (0..5).collect::<BTreeSet<_>>(), "five units of 200 rows");
    let after: Vec<u64> = seen.taken[2..].iter().map(|w| w.parallelism).collect();
    assert_eq!(after, [3, 3, 3], "granted after the update");
    let results = result_ids(objects.path(), "grouped", &map_run);
    let succeeded = results.get("SUCCEEDED").cloned().unwrap_or_default();
    assert_eq!(sorted(&succeeded), (1..=1000).collect::<Vec<_>>(), "every row exactly once");
    let executions = describe_map_run(&mut client.clone(), &map_run).await.execution_counts.expect("executionCounts");
    assert_eq!((executions.succeeded, executions.total), (20, 20), "a child per batch: {executions:?}");

    drop(worker);
    deployment.shutdown().await;
}

/// A poll's prefetch (units a worker queues behind its busy slots) is leased beyond its free
/// slots from runs without a MaxConcurrency only, and renewed like any held lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_is_leased_beyond_free_slots_from_runs_without_max_concurrency() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    let items: Vec<u64> = (1..=20).collect();
    let input = json!({ "items": items }).to_string();
    let capped = create(&mut client.clone(), "capped", NARROW_MAP).await;
    let capped_run = map_run_of(&client, &start(&mut client.clone(), &capped, &input).await).await;

    let channel = LeaderChannel::new(&deployment.endpoint).expect("worker channel");
    let worker_id = register(&mut channel.clone(), "prefetching", 1).await.worker_id;
    let granted = |free_slots: u32, prefetch: u32, held: Vec<pb::Lease>| {
        let request = pb::PollWorkRequest { worker_id: worker_id.clone(), free_slots, prefetch, held };
        let channel = channel.clone();
        eventually("a grant", move || {
            let (mut channel, request) = (channel.clone(), request.clone());
            async move {
                let work = poll(&mut channel, request).await.ok()?.work;
                (!work.is_empty()).then(|| work.iter().map(lease_of).collect::<Vec<_>>())
            }
        })
    };
    let first = granted(1, 2, Vec::new()).await;
    let units: Vec<(&str, u64)> = first.iter().map(|l| (l.map_run_arn.as_str(), l.unit)).collect();
    assert_eq!(units, [(capped_run.as_str(), 0)], "MaxConcurrency 2: the free slot only, no prefetch");

    // A poll that only prefetches renews what is held and gets nothing of the capped run.
    let again = pb::PollWorkRequest { worker_id: worker_id.clone(), free_slots: 0, prefetch: 2, held: first.clone() };
    let answer = poll(&mut channel.clone(), again).await.expect("poll");
    assert!(answer.work.is_empty() && answer.revoked.is_empty(), "{answer:?}");

    // A run without MaxConcurrency: the same prefetch is granted.
    let open = create(&mut client.clone(), "open", &NARROW_MAP.replace(r#""MaxConcurrency":2,"#, "")).await;
    let open_run = map_run_of(&client, &start(&mut client.clone(), &open, &input).await).await;
    let second = granted(0, 2, first.clone()).await;
    let units: Vec<(&str, u64)> = second.iter().map(|l| (l.map_run_arn.as_str(), l.unit)).collect();
    assert_eq!(units, [(open_run.as_str(), 0), (open_run.as_str(), 1)]);

    // Renewed by these polls past the lease: still current, so its report is accepted.
    tokio::time::sleep(LEASE / 2).await;
    let held: Vec<pb::Lease> = first.iter().chain(&second).cloned().collect();
    let renew = pb::PollWorkRequest { worker_id: worker_id.clone(), free_slots: 0, prefetch: 0, held };
    assert!(poll(&mut channel.clone(), renew).await.expect("heartbeat").revoked.is_empty());
    let one = StatusCounts { succeeded: 1, ..StatusCounts::default() };
    let outcome = UnitOutcome {
        items: one,
        executions: one,
        outputs: Some(vec![json!({ "Items": [1] })]),
        ..UnitOutcome::default()
    };
    assert!(report(&mut channel.clone(), &worker_id, first[0].clone(), &outcome).await, "the lease lapsed");

    deployment.shutdown().await;
}

/// Rows whose id ends in 0 (10% of them) fail; the others pass.
const CHOOSY: &str = r#"{
  "C":{"Type":"Choice","Choices":[{"Variable":"$.id","StringMatches":"*0","Next":"F"}],"Default":"P"},
  "F":{"Type":"Fail","Error":"Round","Cause":"the id is a multiple of ten"},
  "P":{"Type":"Pass","End":true}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerated_failures_decide_the_run_and_fill_failed_and_pending_files() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    write_csv(objects.path(), "ids.csv", 200);
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    let all: Vec<u64> = (1..=200).collect();
    let failing: BTreeSet<u64> = all.iter().copied().filter(|id| id % 10 == 0).collect();
    // MaxConcurrency 20 without an ItemBatcher: ten units of 20 rows, each row a child.
    let tolerant =
        csv_map("ids.csv", r#""MaxConcurrency":20,"ToleratedFailurePercentage":15,"#, "C", CHOOSY, "tolerant");
    let strict = csv_map("ids.csv", r#""MaxConcurrency":20,"ToleratedFailureCount":0,"#, "C", CHOOSY, "strict");
    let tolerant = create(&mut client.clone(), "tolerant", &tolerant).await;
    let strict = create(&mut client.clone(), "strict", &strict).await;
    let a = deployment.worker("a", 2, Behaviour::Succeed).await;
    let b = deployment.worker("b", 2, Behaviour::Succeed).await;

    // 10% failed, 15% tolerated: the run succeeds, the FAILED files name the failing rows.
    let execution = start(&mut client.clone(), &tolerant, "{}").await;
    let closed = wait_closed(&client, &execution).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let map_run = map_run_of(&client, &execution).await;
    let results = result_ids(objects.path(), "tolerant", &map_run);
    let failed = results.get("FAILED").cloned().unwrap_or_default();
    let succeeded = results.get("SUCCEEDED").cloned().unwrap_or_default();
    assert_eq!(sorted(&failed), failing.iter().copied().collect::<Vec<_>>());
    let passing: Vec<u64> = all.iter().copied().filter(|id| !failing.contains(id)).collect();
    assert_eq!(sorted(&succeeded), passing);
    assert!(!results.contains_key("PENDING"), "{results:?}");
    let described = describe_map_run(&mut client.clone(), &map_run).await;
    assert_eq!(described.status, "SUCCEEDED");
    let items = described.item_counts.expect("itemCounts");
    assert_eq!((items.succeeded, items.failed, items.total), (180, 20, 200), "{items:?}");

    // No failure tolerated: the run fails; no row is lost from the result files.
    let execution = start(&mut client.clone(), &strict, "{}").await;
    let closed = wait_closed(&client, &execution).await;
    assert_eq!(
        (closed.status.as_str(), closed.error.as_deref()),
        ("FAILED", Some("States.ExceedToleratedFailureThreshold")),
        "{closed:?}"
    );
    let map_run = map_run_of(&client, &execution).await;
    let results = result_ids(objects.path(), "strict", &map_run);
    let failed = results.get("FAILED").cloned().unwrap_or_default();
    assert!(!failed.is_empty(), "no FAILED records: {results:?}");
    assert!(failed.iter().all(|id| failing.contains(id)), "FAILED holds rows that pass: {failed:?}");
    let every: Vec<u64> = results.values().flatten().copied().collect();
    assert_eq!(sorted(&every), all, "SUCCEEDED + FAILED + PENDING must hold every row exactly once: {results:?}");
    let described = describe_map_run(&mut client.clone(), &map_run).await;
    assert_eq!(described.status, "FAILED");

    drop((a, b));
    deployment.shutdown().await;
}

/// Rows whose id is a multiple of ten call `flaky`, which fails while `<dir>/broken` exists.
const FLAKY: &str = r#"{
  "C":{"Type":"Choice","Choices":[{"Variable":"$.id","StringMatches":"*0","Next":"T"}],"Default":"P"},
  "T":{"Type":"Task","Resource":"arn:aws:lambda:us-east-1:123456789012:function:flaky","End":true},
  "P":{"Type":"Pass","End":true}}"#;

/// A function that fails (Lambda-style) while `marker` exists, and echoes its event after.
fn flaky(marker: &Path) -> FunctionRegistry {
    let script = format!(
        r#"event=$(cat); if [ -e '{}' ]; then echo '{{"errorType":"Flaky","errorMessage":"broken"}}'; exit 1; fi; echo "$event""#,
        marker.display()
    );
    let mut functions = FunctionRegistry::new();
    functions.insert("flaky", stepmap_worker::function_registry::FunctionSpec::command(["sh", "-c", script.as_str()]));
    functions
}

/// Every event of `arn`'s history: (id, previous id, type, details).
async fn events(client: &StatesClient, arn: &str) -> Vec<(u64, u64, String, Value)> {
    let request = pb::GetExecutionHistoryRequest { execution_arn: arn.into(), max_results: 1000, ..Default::default() };
    let page = call(client, request, |mut c, r| async move { c.get_execution_history(r).await }).await;
    page.events
        .into_iter()
        .map(|e| {
            let details =
                if e.details.is_empty() { Value::Null } else { serde_json::from_str(&e.details).expect("details") };
            (e.id, e.previous_event_id, e.r#type, details)
        })
        .collect()
}

/// RedriveExecution of a parent whose Distributed Map failed re-runs only the children that
/// did not succeed — the failed ones and those never started — under the same map run ARN
/// (features.md §2.12): `MapRunRedriven` in the history, `Redrive-1/` result files holding just
/// those rows, a manifest listing the SUCCEEDED files of both attempts, the redriven children
/// keeping their execution ARNs, and DescribeMapRun counting the redrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_reruns_only_the_unsuccessful_children_of_the_same_map_run() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    write_csv(objects.path(), "ids.csv", 300);
    let marker = objects.path().join("broken");
    std::fs::write(&marker, "").expect("marker");
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    let all: Vec<u64> = (1..=300).collect();
    // No failure tolerated: the first failure stops the run, leaving some rows unstarted.
    let definition = csv_map("ids.csv", r#""MaxConcurrency":2,"ToleratedFailureCount":0,"#, "C", FLAKY, "redrive");
    let machine = create(&mut client.clone(), "redriven", &definition).await;
    let a = deployment.worker_with("a", 1, Behaviour::Succeed, flaky(&marker)).await;
    let b = deployment.worker_with("b", 1, Behaviour::Succeed, flaky(&marker)).await;

    let execution = start(&mut client.clone(), &machine, "{}").await;
    let failed = wait_closed(&client, &execution).await;
    assert_eq!(
        (failed.status.as_str(), failed.error.as_deref()),
        ("FAILED", Some("States.ExceedToleratedFailureThreshold")),
        "{failed:?}"
    );
    let map_run = map_run_of(&client, &execution).await;
    let first = result_ids(objects.path(), "redrive", &map_run);
    let first_succeeded = first.get("SUCCEEDED").cloned().unwrap_or_default();
    let unsuccessful: Vec<u64> = sorted(
        &first.iter().filter(|(c, _)| c.as_str() != "SUCCEEDED").flat_map(|(_, ids)| ids.clone()).collect::<Vec<_>>(),
    );
    assert!(!first.get("FAILED").cloned().unwrap_or_default().is_empty(), "{first:?}");
    assert!(!first.get("PENDING").cloned().unwrap_or_default().is_empty(), "units left unstarted: {first:?}");
    let failed_arns: BTreeSet<String> = {
        let id = map_run.rsplit(':').next().expect("id");
        let failed_file = objects.path().join("results/redrive").join(id).join("FAILED_0.json");
        let records: Vec<Value> = serde_json::from_slice(&std::fs::read(failed_file).expect("FAILED_0")).expect("JSON");
        records.iter().map(|r| r["ExecutionArn"].as_str().expect("ExecutionArn").to_owned()).collect()
    };

    // Mended: the redrive runs exactly the rows that did not succeed.
    std::fs::remove_file(&marker).expect("mend");
    redrive(&client, &execution).await;
    let redriven = wait_closed(&client, &execution).await;
    assert_eq!(redriven.status, "SUCCEEDED", "{redriven:?}");
    let output: Value = serde_json::from_str(redriven.output.as_deref().expect("output")).expect("output JSON");
    let id = map_run.rsplit(':').next().expect("id");
    assert_eq!(output["MapRunArn"], json!(map_run), "the same map run: {output}");
    assert_eq!(output["ResultWriterDetails"]["Key"], json!(format!("redrive/{id}/Redrive-1/manifest.json")));

    let directory = objects.path().join("results/redrive").join(id).join("Redrive-1");
    let second = result_ids_in(&directory);
    let again = second.get("SUCCEEDED").cloned().unwrap_or_default();
    assert_eq!(sorted(&again), unsuccessful, "only the unsuccessful rows ran again");
    assert!(!second.contains_key("FAILED") && !second.contains_key("PENDING"), "{second:?}");
    let mut every = first_succeeded.clone();
    every.extend(&again);
    assert_eq!(sorted(&every), all, "every row succeeded exactly once across the attempts");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(directory.join("manifest.json")).expect("manifest")).expect("JSON");
    let listed: Vec<&str> = manifest["ResultFiles"]["SUCCEEDED"]
        .as_array()
        .expect("SUCCEEDED")
        .iter()
        .filter_map(|f| f["Key"].as_str())
        .collect();
    assert!(listed.contains(&format!("redrive/{id}/SUCCEEDED_0.json").as_str()), "{manifest}");
    assert!(listed.contains(&format!("redrive/{id}/Redrive-1/SUCCEEDED_0.json").as_str()), "{manifest}");
    // A redriven child keeps its execution ARN.
    let succeeded_file = directory.join("SUCCEEDED_0.json");
    let records: Vec<Value> = serde_json::from_slice(&std::fs::read(succeeded_file).expect("SUCCEEDED")).expect("JSON");
    let redriven_arns: BTreeSet<String> =
        records.iter().map(|r| r["ExecutionArn"].as_str().expect("ExecutionArn").to_owned()).collect();
    assert!(failed_arns.is_subset(&redriven_arns), "failed children keep their ARNs");

    let described = describe_map_run(&mut client.clone(), &map_run).await;
    assert_eq!((described.status.as_str(), described.redrive_count), ("SUCCEEDED", 1), "{described:?}");
    assert!(described.redrive_date.is_some());
    let items = described.item_counts.expect("itemCounts");
    assert_eq!((items.succeeded, items.failed, items.pending, items.total), (300, 0, 0, 300), "{items:?}");

    // The parent's history: the map run redriven, not a new one started.
    let history = events(&client, &execution).await;
    let redrive_at = history.iter().position(|e| e.2 == "ExecutionRedriven").expect("ExecutionRedriven");
    let after: Vec<&str> = history[redrive_at + 1..].iter().map(|e| e.2.as_str()).collect();
    assert_eq!(after.first(), Some(&"MapRunRedriven"), "{after:?}");
    assert!(!after.contains(&"MapRunStarted") && !after.contains(&"MapStateStarted"), "{after:?}");
    assert!(after.contains(&"MapRunSucceeded"), "{after:?}");
    let details = &history[redrive_at + 1].3;
    assert_eq!(details["mapRunArn"], json!(map_run));
    assert_eq!(details["redriveCount"], json!(1));
    assert_eq!(map_runs_listed(&client, &execution).await, 1, "no second map run");

    // Its STANDARD children: every row's once, all SUCCEEDED now.
    let children = list_children(&client, &map_run).await;
    assert_eq!(children.len(), 300);
    assert!(children.iter().all(|c| c.status == "SUCCEEDED"));

    drop((a, b));
    deployment.shutdown().await;
}

async fn map_runs_listed(client: &StatesClient, execution: &str) -> usize {
    let request = pb::ListMapRunsRequest { execution_arn: execution.into(), ..Default::default() };
    call(client, request, |mut c, r| async move { c.list_map_runs(r).await }).await.map_runs.len()
}

/// RedriveExecution of `execution`.
async fn redrive(client: &StatesClient, execution: &str) {
    let request = pb::RedriveExecutionRequest { execution_arn: execution.into(), client_token: None };
    call(client, request, |mut c, r| async move { c.redrive_execution(r).await }).await;
}

/// One States call of `request` through `method`, following the leader; panics on an error.
async fn call<Req, Resp, Fut>(
    client: &StatesClient,
    request: Req,
    method: impl Fn(stepmap_proto::v1::states_client::StatesClient<tonic::transport::Channel>, Req) -> Fut,
) -> Resp
where
    Req: Clone,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    client.clone().call(|c| method(c, request.clone())).await.unwrap_or_else(|status| panic!("{status:?}"))
}

/// A parent execution's Lambda Task runs on the fleet, not on the coordinator (whose function
/// registry is empty here): a worker that takes the invocation and goes silent loses its
/// lease at expiry, and the invocation runs again on another worker, whose result is the
/// Task's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_task_state_runs_on_a_worker_and_moves_when_its_worker_vanishes() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    let definition = r#"{"StartAt":"T","States":{"T":{"Type":"Task",
        "Resource":"arn:aws:lambda:us-east-1:123456789012:function:echo","ResultPath":"$.echoed","End":true}}}"#;
    let machine = create(&mut client.clone(), "tasks", definition).await;
    let echo = || {
        let mut functions = FunctionRegistry::new();
        functions.insert("echo", stepmap_worker::function_registry::FunctionSpec::command(["cat"]));
        functions
    };
    let a = deployment.worker_with("a", 1, Behaviour::Hang, echo()).await;

    let execution = start(&mut client.clone(), &machine, r#"{"x":1}"#).await;
    let taken = eventually("worker a to take the task", || async {
        a.seen().taken.first().cloned().filter(|work| work.job.starts_with(r#"{"Task":"#))
    })
    .await;
    let task: Value = serde_json::from_str(&taken.job).expect("job JSON");
    assert_eq!(task["Task"]["Parameters"], json!({"x": 1}), "{task}");
    assert_eq!(describe(&mut client.clone(), &execution).await.status, "RUNNING");

    // a goes silent; b takes the invocation once a's lease lapsed.
    let b = deployment.worker_with("b", 1, Behaviour::Succeed, echo()).await;
    a.behave(Behaviour::Vanish);
    let closed = wait_closed(&client, &execution).await;
    assert_eq!(closed.status, "SUCCEEDED", "{closed:?}");
    let output: Value = serde_json::from_str(closed.output.as_deref().expect("output")).expect("output JSON");
    assert_eq!(output, json!({"x": 1, "echoed": {"x": 1}}));
    let accepted: Vec<_> = b.seen().reports.iter().filter(|(_, accepted)| *accepted).map(|(l, _)| l.clone()).collect();
    assert_eq!(accepted.len(), 1, "b's report is the Task's result");
    assert!(accepted[0].epoch > lease_of(&taken).epoch, "under a later epoch than a's lapsed lease");
    let history = history_types(&client, &execution).await;
    assert!(history.contains(&"LambdaFunctionSucceeded".to_owned()), "{history:?}");

    drop((a, b));
    deployment.shutdown().await;
}

/// A parent stopped while its map run ran, then redriven: the units that had succeeded are
/// not run again, the ones that never finished are, and since the stopped attempt wrote no
/// result files, the redrive's files hold every row — the carried successes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_parent_redriven_finishes_its_map_run_without_rerunning_what_succeeded() {
    init_tracing();
    let objects = tempfile::tempdir().expect("temp dir");
    write_csv(objects.path(), "ids.csv", 300);
    let deployment = Deployment::start(objects.path()).await;
    let client = deployment.client();
    // Three units of 100 rows, one leased at a time.
    let definition = csv_map("ids.csv", r#""MaxConcurrency":1,"#, "P", PASS, "stopped");
    let machine = create(&mut client.clone(), "stopped", &definition).await;
    let a = deployment.worker("a", 1, Behaviour::Hang).await;
    let execution = start(&mut client.clone(), &machine, "{}").await;
    let first = eventually("a to take unit 0", || async { a.seen().taken.first().cloned() }).await;
    assert!(a.run_and_report(&first).await, "unit 0 accepted");
    eventually("a to take unit 1", || async { (a.seen().taken.len() >= 2).then_some(()) }).await;
    let request = pb::StopExecutionRequest { execution_arn: execution.clone(), ..Default::default() };
    call(&client, request, |mut c, r| async move { c.stop_execution(r).await }).await;
    assert_eq!(wait_closed(&client, &execution).await.status, "ABORTED");
    let map_run = map_run_of(&client, &execution).await;
    assert_eq!(describe_map_run(&mut client.clone(), &map_run).await.status, "ABORTED");

    a.behave(Behaviour::Vanish);
    let b = deployment.worker("b", 1, Behaviour::Succeed).await;
    redrive(&client, &execution).await;
    let redriven = wait_closed(&client, &execution).await;
    assert_eq!(redriven.status, "SUCCEEDED", "{redriven:?}");
    let ran: Vec<u64> =
        sorted(&b.seen().reports.iter().filter(|(_, accepted)| *accepted).map(|(l, _)| l.unit).collect::<Vec<_>>());
    assert_eq!(ran, [1, 2], "unit 0 succeeded before and is not run again");
    let id = map_run.rsplit(':').next().expect("id");
    let results = result_ids_in(&objects.path().join("results/stopped").join(id).join("Redrive-1"));
    let succeeded = results.get("SUCCEEDED").cloned().unwrap_or_default();
    assert_eq!(sorted(&succeeded), (1..=300).collect::<Vec<_>>(), "every row once, unit 0's carried");
    let described = describe_map_run(&mut client.clone(), &map_run).await;
    assert_eq!((described.status.as_str(), described.redrive_count), ("SUCCEEDED", 1));
    let children = list_children(&client, &map_run).await;
    assert_eq!(children.len(), 300, "one child per row");
    assert!(children.iter().all(|c| c.status == "SUCCEEDED"));

    drop((a, b));
    deployment.shutdown().await;
}
