//! The coordinator's one error type, and its one mapping to gRPC status (DESIGN.md §6).

use std::path::PathBuf;
use std::time::Duration;

use prost::Message as _;
use stepmap_proto::v1::LeaderHint;

use crate::node_id::NodeId;
use crate::state::ApiError;

pub use stepmap_proto::leader::{
    exception_name, leader_hint, EXCEPTION_METADATA, LEADER_ADDRESS_METADATA, LEADER_ID_METADATA,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request or command was refused with an AWS exception (a response of the
    /// replicated state, or a request that failed validation before reaching it).
    #[error(transparent)]
    Api(#[from] ApiError),

    /// This node is not the leader. Followers answer with a hint instead of forwarding
    /// (DESIGN.md §3); `leader_id`/`leader_address` are `None` while no leader is known
    /// (e.g. during an election).
    #[error("node {node_id} is not the leader (leader: {})", leader_display(*.leader_id, .leader_address))]
    NotLeader { node_id: NodeId, leader_id: Option<NodeId>, leader_address: Option<String> },

    /// The proposal was appended to this node's log but a different entry was committed at its
    /// index (leadership changed before it was replicated to a majority). It will never apply.
    #[error("proposal {proposal} was dropped: another entry was committed at index {index}")]
    ProposalDropped { proposal: String, index: u64 },

    /// It is unknown whether the proposal was applied: the node installed a snapshot covering
    /// its index, or stopped, before learning the outcome. Commands must be idempotent so a
    /// client can retry (DESIGN.md §3).
    #[error("outcome of proposal {proposal} is unknown: {reason}")]
    ProposalOutcomeUnknown { proposal: String, reason: String },

    /// A request did not complete in time. For proposals the outcome is unknown.
    #[error("{operation} timed out after {after:?}")]
    Timeout { operation: &'static str, after: Duration },

    /// The node's driver has stopped (shutdown or a fatal storage error).
    #[error("raft node {node_id} is stopped")]
    Stopped { node_id: NodeId },

    #[error("invalid raft configuration: {field}: {message}")]
    Config { field: &'static str, message: String },

    #[error("raft-engine at {path}: {source}")]
    Engine {
        path: PathBuf,
        #[source]
        source: raft_engine::Error,
    },

    #[error("raft: {source}")]
    Raft {
        #[source]
        source: raft::Error,
    },

    /// A rust-protobuf message (raft-rs's types) could not be encoded or decoded.
    #[error("cannot encode or decode {what}: {source}")]
    Codec {
        what: &'static str,
        #[source]
        source: protobuf::ProtobufError,
    },

    #[error("state machine cannot restore snapshot at index {index}: {message}")]
    Restore { index: u64, message: String },

    /// The object store the coordinator reads (the children's archive) failed.
    #[error(transparent)]
    Storage(#[from] stepmap_storage::StorageError),
}

fn leader_display(leader_id: Option<NodeId>, leader_address: &Option<String>) -> String {
    match (leader_id, leader_address) {
        (Some(id), Some(addr)) => format!("{id} at {addr}"),
        (Some(id), None) => id.to_string(),
        _ => "unknown".to_owned(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    /// The single mapping from coordinator errors to gRPC status. A not-leader status is
    /// `FAILED_PRECONDITION` with a [`LeaderHint`] in its details and the leader's address in
    /// the `x-stepmap-leader-address` metadata; `UNAVAILABLE` marks retryable conditions.
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Api(api) => {
                let code = match &api {
                    ApiError::StateMachineDoesNotExist { .. }
                    | ApiError::ExecutionDoesNotExist { .. }
                    | ApiError::ActivityDoesNotExist { .. }
                    | ApiError::TaskDoesNotExist
                    | ApiError::ResourceNotFound { .. } => tonic::Code::NotFound,
                    ApiError::StateMachineAlreadyExists { .. }
                    | ApiError::ExecutionAlreadyExists { .. }
                    | ApiError::ActivityAlreadyExists { .. } => tonic::Code::AlreadyExists,
                    ApiError::ExecutionNotRunning { .. } | ApiError::TaskTimedOut => tonic::Code::FailedPrecondition,
                    _ => tonic::Code::InvalidArgument,
                };
                let mut status = tonic::Status::new(code, message);
                status
                    .metadata_mut()
                    .insert(EXCEPTION_METADATA, tonic::metadata::MetadataValue::from_static(api.exception_name()));
                status
            }
            Error::NotLeader { leader_id, leader_address, .. } => {
                let hint = LeaderHint {
                    leader_id: leader_id.map_or(0, NodeId::get),
                    leader_address: leader_address.clone().unwrap_or_default(),
                };
                let mut status =
                    tonic::Status::with_details(tonic::Code::FailedPrecondition, message, hint.encode_to_vec().into());
                if let Some(id) = leader_id {
                    if let Ok(value) = id.get().to_string().parse() {
                        status.metadata_mut().insert(LEADER_ID_METADATA, value);
                    }
                }
                if let Some(value) = leader_address.and_then(|addr| addr.parse().ok()) {
                    status.metadata_mut().insert(LEADER_ADDRESS_METADATA, value);
                }
                status
            }
            Error::ProposalDropped { .. } | Error::Stopped { .. } => tonic::Status::unavailable(message),
            Error::ProposalOutcomeUnknown { .. } | Error::Timeout { .. } => tonic::Status::deadline_exceeded(message),
            Error::Config { .. } => tonic::Status::invalid_argument(message),
            Error::Engine { .. } | Error::Raft { .. } | Error::Codec { .. } | Error::Restore { .. } => {
                tonic::Status::internal(message)
            }
            Error::Storage(_) => tonic::Status::unavailable(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_maps_to_failed_precondition_with_hint() {
        let error = Error::NotLeader {
            node_id: NodeId::new(2).unwrap(),
            leader_id: NodeId::new(1),
            leader_address: Some("127.0.0.1:7300".to_owned()),
        };
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        let hint = leader_hint(&status).unwrap();
        assert_eq!(hint.leader_id, 1);
        assert_eq!(hint.leader_address, "127.0.0.1:7300");
        assert_eq!(status.metadata().get(LEADER_ADDRESS_METADATA).unwrap(), "127.0.0.1:7300");
        assert_eq!(exception_name(&status), None);
    }

    #[test]
    fn api_errors_carry_the_aws_exception_name() {
        let status = tonic::Status::from(Error::from(ApiError::ExecutionDoesNotExist { arn: "arn:x".into() }));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(exception_name(&status), Some("ExecutionDoesNotExist"));
        assert!(status.message().starts_with("ExecutionDoesNotExist: "), "{}", status.message());
        let status = tonic::Status::from(Error::from(ApiError::validation("maxResults", "must be at most 1000")));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(exception_name(&status), Some("ValidationException"));
    }

    /// A refusal sent as FAILED_PRECONDITION is not a redirect (clients would retry it).
    #[test]
    fn failed_precondition_exceptions_carry_no_leader_hint() {
        let status = tonic::Status::from(Error::from(ApiError::TaskTimedOut));
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(leader_hint(&status), None);
    }
}
