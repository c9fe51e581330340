//! `stepmap coordinator --config <file>`: one coordinator of a 1-, 3- or 5-node cluster,
//! serving the Raft transport, the `stepmap.v1.States` API and `RaftAdmin` on one port.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use stepmap_coordinator::api::{ChildArchive, StatesService, WorkersService};
use stepmap_coordinator::dispatch::{DispatchConfig, Dispatcher, FleetMapRunExecutor};
use stepmap_coordinator::driver::{ExecutionDriver, MapRunConfig};
use stepmap_coordinator::state::{ArnScope, ReplicatedState};
use stepmap_coordinator::transport::{GrpcTransport, RaftTransportService};
use stepmap_coordinator::{NodeId, RaftAdminService, RaftConfig, RaftNode};
use stepmap_storage::{StoreConfig, Stores};
use stepmap_worker::function_registry::FunctionRegistry;
use stepmap_worker::invoker::LocalInvoker;
use stepmap_worker::LocalMapRunExecutor;

#[derive(Args)]
pub struct CoordinatorArgs {
    /// The configuration file (TOML). Without one, the defaults: a single node on 127.0.0.1:7300.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective configuration (file, then STEPMAP_* overrides) as TOML and exit.
    #[arg(long = "dump-config")]
    dump_config: bool,
}

/// The coordinator's configuration file. Every field has a default; unknown fields are
/// refused. Environment overrides: `STEPMAP_NODE_ID`, `STEPMAP_LISTEN`, `STEPMAP_DATA_DIR`,
/// `STEPMAP_PEERS` (`1=host:port,2=host:port,...`), `STEPMAP_REGION`, `STEPMAP_ACCOUNT`,
/// `STEPMAP_FUNCTIONS`, `STEPMAP_OBJECT_STORE`, `STEPMAP_SLOTS`, `STEPMAP_MAP_RUNS`,
/// `STEPMAP_LEASE_SECONDS`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// This node's Raft id (1, 2, ...), a key of `peers`.
    pub node_id: u64,
    /// Where this node serves Raft, the API and administration.
    pub listen: String,
    /// Every voter's address by node id, this node's included (1, 3 or 5). Empty: this node
    /// alone, at `listen`.
    pub peers: BTreeMap<String, String>,
    /// The Raft log and snapshots (raft-engine).
    pub data_dir: PathBuf,
    /// Region and account in the ARNs this cluster mints.
    pub region: String,
    pub account: String,
    /// Function registry (JSON or TOML) for Lambda Task states run by the coordinator.
    pub functions: Option<PathBuf>,
    /// Where Distributed Maps' ItemReader reads and ResultWriter writes: a directory (bucket
    /// B, key K is the file DIR/B/K), `file://`, `s3://` or an S3-compatible `http(s)://`
    /// endpoint (storage crate's store URLs). Default: `<data_dir>/objects`.
    pub object_store: Option<String>,
    /// Distributed Map children the leader runs at once at most (within MaxConcurrency), with
    /// `map_runs = "local"`. Default: one per core.
    pub map_run_slots: Option<usize>,
    /// Where Distributed Map children run: `"local"`, in the leader's process, or
    /// `"workers"`, on the worker fleet (`stepmap worker --coordinators ...`), which this
    /// coordinator then serves with the `stepmap.v1.Workers` service.
    pub map_runs: MapRunPlacement,
    /// With `map_runs = "workers"`: a worker's lease lapses this many seconds after its last
    /// poll (its units then run again elsewhere).
    pub lease_seconds: u64,
    /// With `map_runs = "workers"`: the bucket of `object_store` where the executions of
    /// STANDARD Distributed Map children are archived with their histories (DescribeExecution,
    /// GetExecutionHistory, ListExecutions --map-run-arn). Empty: not archived.
    pub child_executions_bucket: String,
}

/// `map_runs` of [`CoordinatorConfig`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapRunPlacement {
    #[default]
    Local,
    Workers,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        let scope = ArnScope::default();
        Self {
            node_id: 1,
            listen: "127.0.0.1:7300".into(),
            peers: BTreeMap::new(),
            data_dir: PathBuf::from("stepmap-data"),
            region: scope.region,
            account: scope.account,
            functions: None,
            object_store: None,
            map_run_slots: None,
            map_runs: MapRunPlacement::Local,
            lease_seconds: 30,
            child_executions_bucket: "stepmap-executions".into(),
        }
    }
}

impl CoordinatorConfig {
    /// Reads `path` (if any), then applies the environment overrides.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the configuration '{}'", path.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid configuration '{}'", path.display()))?
            }
            None => CoordinatorConfig::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(id) = var("STEPMAP_NODE_ID") {
            self.node_id = id.parse().with_context(|| format!("STEPMAP_NODE_ID '{id}' is not a number"))?;
        }
        if let Some(listen) = var("STEPMAP_LISTEN") {
            self.listen = listen;
        }
        if let Some(dir) = var("STEPMAP_DATA_DIR") {
            self.data_dir = dir.into();
        }
        if let Some(peers) = var("STEPMAP_PEERS") {
            self.peers = peers
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|peer| {
                    peer.split_once('=')
                        .map(|(id, address)| (id.trim().to_owned(), address.trim().to_owned()))
                        .with_context(|| format!("STEPMAP_PEERS entry '{peer}' is not ID=HOST:PORT"))
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(region) = var("STEPMAP_REGION") {
            self.region = region;
        }
        if let Some(account) = var("STEPMAP_ACCOUNT") {
            self.account = account;
        }
        if let Some(functions) = var("STEPMAP_FUNCTIONS") {
            self.functions = Some(functions.into());
        }
        if let Some(store) = var("STEPMAP_OBJECT_STORE") {
            self.object_store = Some(store);
        }
        if let Some(placement) = var("STEPMAP_MAP_RUNS") {
            self.map_runs = match placement.as_str() {
                "local" => MapRunPlacement::Local,
                "workers" => MapRunPlacement::Workers,
                other => anyhow::bail!("STEPMAP_MAP_RUNS '{other}' is neither 'local' nor 'workers'"),
            };
        }
        if let Some(seconds) = var("STEPMAP_LEASE_SECONDS") {
            self.lease_seconds =
                seconds.parse().with_context(|| format!("STEPMAP_LEASE_SECONDS '{seconds}' is not a number"))?;
        }
        if let Some(slots) = var("STEPMAP_SLOTS") {
            self.map_run_slots =
                Some(slots.parse().with_context(|| format!("STEPMAP_SLOTS '{slots}' is not a number"))?);
        }
        Ok(())
    }

    /// The voters by id; `{node_id: listen}` when none are configured.
    pub fn peers(&self) -> anyhow::Result<BTreeMap<NodeId, String>> {
        if self.peers.is_empty() {
            let id = NodeId::new(self.node_id).context("node_id must not be 0")?;
            return Ok(BTreeMap::from([(id, self.listen.clone())]));
        }
        self.peers
            .iter()
            .map(|(id, address)| {
                let id = id
                    .parse()
                    .ok()
                    .and_then(NodeId::new)
                    .with_context(|| format!("peers: '{id}' is not a node id (1, 2, ...)"))?;
                Ok((id, address.clone()))
            })
            .collect()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let id = NodeId::new(self.node_id).context("node_id must not be 0")?;
        anyhow::ensure!(
            self.listen.parse::<std::net::SocketAddr>().is_ok(),
            "listen: '{}' is not HOST:PORT with an IP address",
            self.listen
        );
        RaftConfig::new(id, self.peers()?, &self.data_dir).validate()?;
        anyhow::ensure!(!self.region.is_empty() && !self.account.is_empty(), "region and account must not be empty");
        anyhow::ensure!(
            self.map_run_slots.is_none_or(|n| (1..=10_000).contains(&n)),
            "map_run_slots must be between 1 and 10000"
        );
        anyhow::ensure!((1..=86_400).contains(&self.lease_seconds), "lease_seconds must be between 1 and 86400");
        self.stores()?;
        Ok(())
    }

    /// The object stores of ItemReader and ResultWriter.
    pub fn stores(&self) -> anyhow::Result<Stores> {
        match &self.object_store {
            Some(url) => Stores::from_url(url).with_context(|| format!("object_store: '{url}'")),
            None => Ok(Stores::new(StoreConfig::Local { data_dir: self.data_dir.join("objects") })),
        }
    }
}

pub fn coordinator(args: CoordinatorArgs) -> anyhow::Result<u8> {
    let config = CoordinatorConfig::load(args.config.as_deref())?;
    if args.dump_config {
        outln!("{}", toml::to_string(&config)?.trim_end());
        return Ok(0);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config))?;
    Ok(0)
}

async fn serve(config: CoordinatorConfig) -> anyhow::Result<()> {
    let id = NodeId::new(config.node_id).context("node_id must not be 0")?;
    let peers = config.peers()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data directory '{}'", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let raft = RaftConfig::new(id, peers.clone(), &config.data_dir);
    let node = RaftNode::start(raft, ReplicatedState::default(), GrpcTransport::new(id, &peers))?;
    let transport = RaftTransportService::new();
    transport.attach(node.mailbox());
    let registry = match &config.functions {
        Some(path) => FunctionRegistry::load(path)?,
        None => FunctionRegistry::new(),
    };
    let invoker = Arc::new(LocalInvoker::new(registry)?);
    let stores = Arc::new(config.stores()?);
    let (map_runs, workers) = match config.map_runs {
        MapRunPlacement::Local => {
            let slots = config.map_run_slots.unwrap_or_else(LocalMapRunExecutor::default_slots);
            (MapRunConfig::local(stores.clone(), slots), None)
        }
        MapRunPlacement::Workers => {
            let lease = std::time::Duration::from_secs(config.lease_seconds);
            let dispatcher = Dispatcher::new(node.clone(), DispatchConfig::with_lease(lease));
            let mut runner = FleetMapRunExecutor::new(dispatcher.clone(), stores.clone());
            if !config.child_executions_bucket.is_empty() {
                runner = runner.with_child_archive(config.child_executions_bucket.clone());
            }
            (MapRunConfig::fleet(runner), Some(WorkersService::new(dispatcher)))
        }
    };
    let driver = ExecutionDriver::start_with_map_runs(node.clone(), invoker.clone(), Some(map_runs));
    let scope = ArnScope { region: config.region.clone(), account: config.account.clone() };
    let mut states = StatesService::new(node.clone(), driver, scope, invoker);
    if config.map_runs == MapRunPlacement::Workers && !config.child_executions_bucket.is_empty() {
        states = states.with_child_archive(ChildArchive { stores, bucket: config.child_executions_bucket.clone() });
    }
    tracing::info!(node = %id, listen = %config.listen, "coordinator serving");
    eprintln!("stepmap coordinator {id} listening on {}", config.listen);
    tonic::transport::Server::builder()
        .add_service(transport.into_server())
        .add_service(states.into_server())
        .add_service(RaftAdminService::new(node).into_server())
        .add_optional_service(workers.map(WorkersService::into_server))
        // TCP_NODELAY on accepted connections: without it a response written in more than one
        // segment waits for the client's delayed ACK (Nagle), about 40 ms per call.
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_environment() {
        let config: CoordinatorConfig = toml::from_str(
            "node_id = 2\n[peers]\n1 = \"127.0.0.1:7301\"\n2 = \"127.0.0.1:7302\"\n3 = \"127.0.0.1:7303\"\n",
        )
        .unwrap();
        assert_eq!(config.node_id, 2);
        assert_eq!(config.listen, "127.0.0.1:7300");
        assert_eq!(config.peers().unwrap().len(), 3);
        assert!(toml::from_str::<CoordinatorConfig>("nodeid = 2").is_err(), "unknown fields are refused");
        let mut config = CoordinatorConfig::default();
        config
            .apply_env(|name| match name {
                "STEPMAP_PEERS" => Some("1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3".into()),
                "STEPMAP_LISTEN" => Some("127.0.0.1:1".into()),
                _ => None,
            })
            .unwrap();
        config.validate().unwrap();
        let round_trip: CoordinatorConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(round_trip, config);
        config.node_id = 4;
        assert!(config.validate().is_err(), "a node outside its peers is refused");
    }
}
