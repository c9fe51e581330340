//! What a node says about itself: role, term, leader, and how far its log has got.

use raft::StateRole;
use stepmap_proto::v1::{LeaderHint, RaftRole, StatusResponse};

use crate::node_id::NodeId;

/// A node's Raft role (Raft paper §5.1, plus the pre-candidate of pre-vote, thesis §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl From<StateRole> for Role {
    fn from(role: StateRole) -> Self {
        match role {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

/// A snapshot of a node's Raft progress, published after every pass of the Ready loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub term: u64,
    /// The leader this node believes in, if any.
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    /// Index of the latest state-machine snapshot recorded in this node's storage (0: none).
    pub snapshot_index: u64,
}

impl NodeStatus {
    pub(crate) fn initial(node_id: NodeId) -> Self {
        Self {
            node_id,
            role: Role::Follower,
            term: 0,
            leader: None,
            commit_index: 0,
            applied_index: 0,
            first_index: 0,
            last_index: 0,
            snapshot_index: 0,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The wire form, with the leader's address looked up by the caller.
    pub fn to_proto(&self, leader_address: Option<&str>) -> StatusResponse {
        let role = match self.role {
            Role::Follower => RaftRole::Follower,
            Role::PreCandidate => RaftRole::PreCandidate,
            Role::Candidate => RaftRole::Candidate,
            Role::Leader => RaftRole::Leader,
        };
        StatusResponse {
            node_id: self.node_id.get(),
            role: role.into(),
            term: self.term,
            leader: Some(LeaderHint {
                leader_id: self.leader.map_or(0, NodeId::get),
                leader_address: leader_address.unwrap_or_default().to_owned(),
            }),
            commit_index: self.commit_index,
            applied_index: self.applied_index,
            first_index: self.first_index,
            last_index: self.last_index,
            snapshot_index: self.snapshot_index,
        }
    }
}
