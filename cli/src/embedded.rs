//! The embedded default: a single-node cluster in this process, which is what `stepmap run`
//! runs. A coordinator (a lone Raft voter whose log lives in a temporary directory for the
//! length of the run) drives the execution as any cluster's leader does, every history event
//! committed; its Distributed Maps are planned into the work ledger and run by a fleet worker
//! in this process that polls the coordinator's `Workers` service over loopback gRPC, as
//! `stepmap worker` does from another machine. Nothing here is specific to one machine
//! except where the pieces live.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use serde_json::Value;
use stepmap_asl::failure::Failure;
use stepmap_asl::payload::Payload;
use stepmap_asl::task::{TaskInvoker, TaskRequest};
use stepmap_coordinator::api::{StatesService, WorkersService};
use stepmap_coordinator::dispatch::{DispatchConfig, Dispatcher, FleetMapRunExecutor};
use stepmap_coordinator::driver::{DriverTime, ExecutionDriver, MapRunConfig};
use stepmap_coordinator::state::{ArnScope, ExecutionArn, ExecutionRecord, ExecutionStatus, ReplicatedState};
use stepmap_coordinator::transport::InProcessNetwork;
use stepmap_coordinator::{CoordinatorNode, NodeId, RaftConfig, RaftNode};
use stepmap_proto::v1 as pb;
use stepmap_proto::v1::states_server::States;
use stepmap_storage::Stores;
use stepmap_worker::fleet_worker::{FleetWorker, FleetWorkerConfig};
use stepmap_worker::invoker::LocalInvoker;
use stepmap_worker::map_run::UnitRunner;
use stepmap_worker::ProgressObserver;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A worker's lease in the embedded cluster. Its one worker lives as long as the process,
/// so the lease only matters should a unit hang; a cluster's default.
const LEASE: Duration = Duration::from_secs(30);

/// What the embedded cluster is made of.
pub struct EmbeddedConfig<'a> {
    /// Where the Raft log lives (a temporary directory: the cluster lasts one run).
    pub raft_dir: &'a Path,
    pub stores: Arc<Stores>,
    pub invoker: Arc<LocalInvoker>,
    /// The in-process worker's slots: work units run at once.
    pub slots: usize,
    pub scope: ArnScope,
    pub time: DriverTime,
    pub progress: Option<ProgressObserver>,
}

/// A running single-node cluster with its in-process worker.
pub struct EmbeddedCluster {
    node: CoordinatorNode,
    driver: ExecutionDriver,
    states: StatesService,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl EmbeddedCluster {
    /// Starts the coordinator, its gRPC services on a loopback port, and the worker. Call on
    /// a tokio runtime.
    pub async fn start(config: EmbeddedConfig<'_>) -> anyhow::Result<Self> {
        let id = NodeId::new(1).context("node id")?;
        let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot listen on a loopback port")?;
        let address: SocketAddr = listener.local_addr()?;
        let peers = [(id, address.to_string())].into();
        // A lone voter sends no Raft messages: the in-process transport is only a formality.
        let transport = InProcessNetwork::new().transport();
        // The log lives in a temporary directory for this process only: no fsync (see
        // `RaftConfig::sync_log`).
        let raft_config = RaftConfig { sync_log: false, ..RaftConfig::new(id, peers, config.raft_dir) };
        let node = RaftNode::start(raft_config, ReplicatedState::default(), transport)
            .context("cannot start the embedded coordinator")?;
        let invoker: Arc<dyn TaskInvoker> =
            Arc::new(OnRuntime { inner: config.invoker.clone(), runtime: tokio::runtime::Handle::current() });

        let dispatcher = Dispatcher::new(node.clone(), DispatchConfig::with_lease(LEASE));
        let mut fleet = FleetMapRunExecutor::new(dispatcher.clone(), config.stores.clone());
        if let Some(observer) = config.progress {
            fleet = fleet.with_progress(observer);
        }
        let map_runs = MapRunConfig::fleet(fleet);
        let driver = ExecutionDriver::start_with(node.clone(), invoker.clone(), Some(map_runs), config.time);
        let states = StatesService::new(node.clone(), driver.clone(), config.scope, invoker);
        let server = tokio::spawn({
            let workers = WorkersService::new(dispatcher).into_server();
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            async move {
                if let Err(error) =
                    tonic::transport::Server::builder().add_service(workers).serve_with_incoming(incoming).await
                {
                    tracing::error!(%error, "the embedded coordinator's gRPC server stopped");
                }
            }
        });

        // The worker runs units as `stepmap worker` does.
        let runner = Arc::new(UnitRunner::for_worker(config.stores, config.invoker, config.slots));
        let worker_config = FleetWorkerConfig::new(vec![format!("http://{address}")], config.slots, "embedded");
        let worker = FleetWorker::new(worker_config, runner)
            .map_err(|status| anyhow::anyhow!("the embedded worker: {}", status.message()))?;
        let worker = tokio::spawn(async move {
            worker.run(std::future::pending()).await;
        });
        Ok(Self { node, driver, states, server, worker })
    }

    /// Creates a state machine and starts an execution of it; returns the execution's ARN.
    pub async fn start_execution(
        &self,
        machine: pb::CreateStateMachineRequest,
        name: String,
        input: &Value,
    ) -> Result<ExecutionArn, tonic::Status> {
        let created = self.states.create_state_machine(tonic::Request::new(machine)).await?.into_inner();
        let request =
            pb::StartExecutionRequest { state_machine_arn: created.state_machine_arn, name, input: input.to_string() };
        let started = self.states.start_execution(tonic::Request::new(request)).await?.into_inner();
        ExecutionArn::parse("executionArn", &started.execution_arn).map_err(|e| tonic::Status::internal(e.to_string()))
    }

    /// Stops `arn` (StopExecution): it closes ABORTED with `cause`.
    pub async fn stop_execution(&self, arn: &ExecutionArn, cause: &str) -> Result<(), tonic::Status> {
        let request =
            pb::StopExecutionRequest { execution_arn: arn.to_string(), error: None, cause: Some(cause.to_owned()) };
        self.states.stop_execution(tonic::Request::new(request)).await.map(|_| ())
    }

    /// Waits until `arn` has closed and returns its record.
    pub async fn wait_closed(&self, arn: &ExecutionArn) -> anyhow::Result<ExecutionRecord> {
        let mut status = self.node.watch_status();
        loop {
            let lookup = arn.clone();
            let (_, record) = self
                .node
                .local_read(move |state| {
                    state.executions.get(&lookup).filter(|r| r.status != ExecutionStatus::Running).cloned()
                })
                .await?;
            if let Some(record) = record {
                return Ok(record);
            }
            // Every applied command publishes a new status.
            status.changed().await.context("the embedded coordinator stopped")?;
        }
    }

    /// Stops the cluster. The worker is stopped without a drain: once the execution has
    /// closed no unit runs, and a drain would wait for the long poll in flight to return.
    pub async fn shutdown(self) {
        self.worker.abort();
        self.driver.shutdown();
        self.node.shutdown().await;
        self.server.abort();
    }
}

/// Runs invocations on the tokio runtime, whatever polls the execution (under time skipping,
/// a thread of its own).
struct OnRuntime {
    inner: Arc<LocalInvoker>,
    runtime: tokio::runtime::Handle,
}

impl TaskInvoker for OnRuntime {
    fn invoke(&self, request: TaskRequest) -> BoxFuture<'static, Result<Payload, Failure>> {
        let task = self.runtime.spawn({
            let inner = self.inner.clone();
            async move { inner.run(request).await }
        });
        Box::pin(async move {
            task.await.unwrap_or_else(|error| {
                Err(Failure::new("States.TaskFailed", format!("the task invocation crashed: {error}")))
            })
        })
    }
}
