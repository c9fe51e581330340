//! The stepmap coordinator: a Raft node whose log lives in raft-engine, driving a replicated,
//! deterministic state machine (DESIGN.md §3). See `docs/coordinator.md` for the mental model.
//!
//! - [`RaftNode`] — start a node, propose commands, read linearizably, watch its status.
//! - [`StateMachine`] — what the log drives; pure `apply`, `snapshot`, `restore`.
//! - [`api`] — the `stepmap.v1.States` gRPC service (AWS operations) and its client.
//! - [`driver`] — the leader's execution driver: runs executions with the `asl` interpreter,
//!   committing every history event, and resumes them by replay after a change of leader.
//! - [`dispatch`] — the worker fleet's leader side: map runs cut into work units, leases with
//!   epochs, results counted once and finalised.
//! - [`transport`] — how Raft messages travel: in process (with fault filters) or over gRPC.
//! - [`state`] — the replicated state: state machines, executions and their history,
//!   activities and task tokens, the Map Run ledger.
//! - [`RaftStorage`] — raft-rs `Storage` over raft-engine, fsynced.

mod admin_service;
pub mod api;
pub mod dispatch;
pub mod driver;
mod error;
mod node_id;
mod node_status;
mod proposal;
mod proposer;
mod raft_config;
mod raft_driver;
mod raft_node;
mod raft_storage;
mod slog_bridge;
pub mod state;
mod state_machine;
pub mod transport;

pub use admin_service::RaftAdminService;
pub use error::{
    exception_name, leader_hint, Error, Result, EXCEPTION_METADATA, LEADER_ADDRESS_METADATA, LEADER_ID_METADATA,
};
pub use node_id::NodeId;
pub use node_status::{NodeStatus, Role};
pub use proposal::{Applied, ProposalId};
pub use proposer::{propose, CoordinatorNode};
pub use raft_config::RaftConfig;
pub use raft_node::RaftNode;
pub use raft_storage::RaftStorage;
pub use slog_bridge::TracingDrain;
pub use state_machine::StateMachine;
