//! A cluster of `RaftNode<Kv>` over some `Network`, with data directories that survive node
//! restarts, and helpers that await conditions with bounded deadlines (never fixed sleeps).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use stepmap_coordinator::{Applied, Error, NodeId, NodeStatus, RaftConfig, RaftNode};
use tempfile::TempDir;

use super::kv::{put, Kv};
use super::network::{ids, Network};

/// Long enough for elections under a loaded 2-core CI machine; only reached on failure.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Between two looks at a condition that has no change notification.
const POLL: Duration = Duration::from_millis(10);

#[derive(Clone, Copy)]
pub struct Options {
    pub snapshot_interval: u64,
    pub log_retention: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { snapshot_interval: 1_000, log_retention: 100 }
    }
}

pub struct Cluster<N: Network> {
    pub net: N,
    options: Options,
    dirs: BTreeMap<NodeId, TempDir>,
    nodes: BTreeMap<NodeId, RaftNode<Kv>>,
}

/// Awaits `check` until it yields `Some`, or panics after `DEADLINE` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

impl<N: Network> Cluster<N> {
    /// Starts `size` nodes on fresh data directories.
    pub async fn start(net: N, size: u64, options: Options) -> Self {
        let mut cluster = Self { net, options, dirs: BTreeMap::new(), nodes: BTreeMap::new() };
        for id in ids(size) {
            cluster.dirs.insert(id, tempfile::tempdir().expect("temp dir"));
            cluster.start_node(id);
        }
        cluster
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.dirs.keys().copied().collect()
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn config(&self, id: NodeId) -> RaftConfig {
        let mut config = RaftConfig::new(id, self.net.peers(), self.dirs[&id].path());
        // Fast ticks keep the tests short; timeouts stay many heartbeats long.
        config.tick_interval = Duration::from_millis(20);
        config.election_ticks = 10;
        config.heartbeat_ticks = 2;
        config.snapshot_interval = self.options.snapshot_interval;
        config.log_retention = self.options.log_retention;
        config.request_timeout = Duration::from_secs(3);
        config
    }

    /// Starts (or restarts, on its existing data directory) node `id`.
    pub fn start_node(&mut self, id: NodeId) {
        assert!(!self.nodes.contains_key(&id), "{id} is already running");
        let node = RaftNode::start(self.config(id), Kv::default(), self.net.transport(id)).expect("start node");
        self.net.attach(&node);
        self.nodes.insert(id, node);
    }

    /// Stops node `id`, keeping its data directory. Returns its last published status (its
    /// log may hold less than `last_index`: unpersisted entries count there, never more).
    pub async fn stop_node(&mut self, id: NodeId) -> NodeStatus {
        let node = self.nodes.remove(&id).expect("node is running");
        self.net.detach(id);
        node.shutdown().await;
        node.status()
    }

    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.stop_node(id).await;
        }
    }

    pub fn node(&self, id: NodeId) -> &RaftNode<Kv> {
        &self.nodes[&id]
    }

    pub fn status(&self, id: NodeId) -> NodeStatus {
        self.node(id).status()
    }

    /// Waits until one of `among` leads and all of `among` agree on it in the same term.
    pub async fn leader_among(&self, among: &[NodeId]) -> NodeId {
        eventually("an agreed leader", || async {
            let statuses: Vec<NodeStatus> = among.iter().map(|id| self.status(*id)).collect();
            let leader = statuses.iter().find(|s| s.is_leader())?;
            statuses.iter().all(|s| s.leader == Some(leader.node_id) && s.term == leader.term).then_some(leader.node_id)
        })
        .await
    }

    pub async fn leader(&self) -> NodeId {
        self.leader_among(&self.running()).await
    }

    /// Proposes through whichever of `among` leads, retrying on the errors a client retries
    /// on (`put` is idempotent, so a retry after an unknown outcome is safe).
    pub async fn propose_among(&self, among: &[NodeId], command: Vec<u8>) -> Applied {
        eventually("a committed proposal", || {
            let command = command.clone();
            async move {
                let leader = self.leader_among(among).await;
                match self.node(leader).propose(command).await {
                    Ok(applied) => Some(applied),
                    Err(
                        Error::NotLeader { .. }
                        | Error::ProposalDropped { .. }
                        | Error::ProposalOutcomeUnknown { .. }
                        | Error::Timeout { .. },
                    ) => None,
                    Err(other) => panic!("proposal failed: {other}"),
                }
            }
        })
        .await
    }

    pub async fn propose(&self, command: Vec<u8>) -> Applied {
        self.propose_among(&self.running(), command).await
    }

    /// Puts `key{i} = value{i}` for `i` in `range`, one after another; returns the last index.
    pub async fn put_range(&self, among: &[NodeId], prefix: &str, range: std::ops::Range<u64>) -> u64 {
        let mut last = 0;
        for i in range {
            last = self.propose_among(among, put(&format!("{prefix}{i}"), &format!("v{i}"))).await.index;
        }
        last
    }

    /// Waits until node `id` has applied `index`.
    pub async fn wait_applied(&self, id: NodeId, index: u64) -> NodeStatus {
        self.node(id)
            .wait_for(DEADLINE, |status| status.applied_index >= index)
            .await
            .unwrap_or_else(|error| panic!("{id} did not apply {index}: {error}"))
    }

    /// Node `id`'s key-value pairs as applied locally.
    pub async fn local_state(&self, id: NodeId) -> BTreeMap<String, String> {
        self.node(id).local_read(|kv| kv.entries.clone()).await.expect("local read").1
    }

    /// Asserts that every running node holds `key{i} = v{i}` for all `i` in `range`.
    pub async fn assert_all_have(&self, prefix: &str, range: std::ops::Range<u64>) {
        for id in self.running() {
            let state = self.local_state(id).await;
            for i in range.clone() {
                assert_eq!(
                    state.get(&format!("{prefix}{i}")).map(String::as_str),
                    Some(format!("v{i}").as_str()),
                    "{id} lacks {prefix}{i}"
                );
            }
        }
    }

    /// Waits until every running node has applied everything committed so far (as a ReadIndex
    /// on the leader tells) and all hold the same state; returns that state.
    pub async fn converged(&self) -> BTreeMap<String, String> {
        let (leader, index) = eventually("a linearizable read on the leader", || async {
            let leader = self.leader().await;
            self.node(leader).read(|_| ()).await.ok().map(|(index, ())| (leader, index))
        })
        .await;
        for id in self.running() {
            self.wait_applied(id, index).await;
        }
        let reference = self.local_state(leader).await;
        for id in self.running() {
            assert_eq!(self.local_state(id).await, reference, "{id} diverges from leader {leader}");
        }
        reference
    }
}
