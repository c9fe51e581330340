//! What a Raft node needs to know to start: who it is, who its peers are, where its data
//! lives, and how fast its clock ticks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::node_id::NodeId;

/// Configuration of one [`crate::RaftNode`].
///
/// Membership is static: every node of the group is started with the same `peers` (1, 3 or
/// 5 voters, including itself). A fresh data directory is initialised with that voter set at
/// log index 0, the same on every node (the first bootstrap method described in raft-rs
/// `MemStorage::initialize_with_conf_state`); a used one keeps the voter set it recorded.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    pub node_id: NodeId,
    /// Every voter's client address, this node's included. Addresses are only used as leader
    /// hints in not-leader errors; the transport is configured separately.
    pub peers: BTreeMap<NodeId, String>,
    /// Holds the raft-engine log (entries, hard state, conf state, snapshot).
    pub data_dir: PathBuf,
    /// One Raft tick. Election and heartbeat timeouts are counted in ticks.
    pub tick_interval: Duration,
    /// Election timeout in ticks; raft-rs randomises it in `[election_ticks, 2 * election_ticks)`
    /// (Raft paper §5.2).
    pub election_ticks: usize,
    /// Heartbeat interval in ticks; must be well below `election_ticks` (Raft paper §5.6:
    /// broadcastTime ≪ electionTimeout).
    pub heartbeat_ticks: usize,
    /// Take a state-machine snapshot and compact the log after this many applied entries
    /// (Raft paper §7).
    pub snapshot_interval: u64,
    /// Entries kept in the log behind a snapshot, so that a follower that is only a little
    /// behind catches up from the log instead of receiving a whole snapshot.
    pub log_retention: u64,
    /// Upper bound on the bytes of entries in one append message.
    pub max_size_per_msg: u64,
    /// Upper bound on in-flight append messages per follower.
    pub max_inflight_msgs: usize,
    /// How long a proposal or linearizable read may wait before failing with `Timeout`.
    pub request_timeout: Duration,
    /// Fsync the log before Raft relies on a write (Raft paper §5). Only a node whose log does
    /// not outlive its process may turn it off: the single-node cluster of `stepmap run`,
    /// whose log is in a temporary directory that goes with it. Nothing could recover from
    /// that log after a crash, so its fsyncs bought nothing (orders, 1M rows: ~370 of them,
    /// about 3% of the engine's CPU).
    pub sync_log: bool,
}

impl RaftConfig {
    /// A configuration with production defaults: 100 ms ticks, a 1–2 s election timeout,
    /// heartbeats every 300 ms, a snapshot every 10,000 entries.
    pub fn new(node_id: NodeId, peers: BTreeMap<NodeId, String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            peers,
            data_dir: data_dir.into(),
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 3,
            snapshot_interval: 10_000,
            log_retention: 1_000,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            request_timeout: Duration::from_secs(10),
            sync_log: true,
        }
    }

    /// Checks the configuration, naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let voters = self.peers.len();
        if ![1, 3, 5].contains(&voters) {
            return Err(Error::Config { field: "peers", message: format!("expected 1, 3 or 5 voters, got {voters}") });
        }
        if !self.peers.contains_key(&self.node_id) {
            return Err(Error::Config {
                field: "node_id",
                message: format!("{} is not one of the peers", self.node_id),
            });
        }
        if !self.sync_log && voters > 1 {
            return Err(Error::Config {
                field: "sync_log",
                message: "only a single-node cluster may write its log without fsync".to_owned(),
            });
        }
        if self.tick_interval.is_zero() {
            return Err(Error::Config { field: "tick_interval", message: "must be positive".to_owned() });
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(Error::Config {
                field: "election_ticks",
                message: format!(
                    "must exceed heartbeat_ticks ({}) which must be positive, got {}",
                    self.heartbeat_ticks, self.election_ticks
                ),
            });
        }
        if self.snapshot_interval == 0 {
            return Err(Error::Config { field: "snapshot_interval", message: "must be positive".to_owned() });
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::Config { field: "max_inflight_msgs", message: "must be positive".to_owned() });
        }
        Ok(())
    }

    /// The raft-rs configuration this node runs with: pre-vote (Raft thesis §9.6) so that a
    /// node rejoining after a partition does not disrupt a healthy leader, and check-quorum so
    /// that a leader cut off from a majority steps down instead of serving stale reads.
    pub(crate) fn to_raft(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.node_id.get(),
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            read_only_option: raft::ReadOnlyOption::Safe,
            ..raft::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: u64) -> BTreeMap<NodeId, String> {
        (1..=n).map(|i| (NodeId::new(i).unwrap(), format!("127.0.0.1:{}", 7300 + i))).collect()
    }

    #[test]
    fn voter_counts() {
        for n in [1, 3, 5] {
            RaftConfig::new(NodeId::new(1).unwrap(), peers(n), "/tmp/x").validate().unwrap();
        }
        for n in [2, 4, 6] {
            let error = RaftConfig::new(NodeId::new(1).unwrap(), peers(n), "/tmp/x").validate().unwrap_err();
            assert!(matches!(error, Error::Config { field: "peers", .. }), "{error}");
        }
    }

    #[test]
    fn node_must_be_a_peer() {
        let error = RaftConfig::new(NodeId::new(4).unwrap(), peers(3), "/tmp/x").validate().unwrap_err();
        assert!(matches!(error, Error::Config { field: "node_id", .. }), "{error}");
    }
}
