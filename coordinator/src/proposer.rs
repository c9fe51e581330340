//! Proposing a [`Command`] to the replicated state and reading back its [`Response`].

use crate::error::{Error, Result};
use crate::raft_node::RaftNode;
use crate::state::{decode_outcome, Command, ReplicatedState, Response};

/// The node type of a coordinator.
pub type CoordinatorNode = RaftNode<ReplicatedState>;

/// Commits `command` and returns the state's response; a refusal comes back as
/// [`Error::Api`]. On a follower: [`Error::NotLeader`] with the hint.
pub async fn propose(node: &CoordinatorNode, command: &Command) -> Result<Response> {
    let applied = node.propose(command.encode()).await?;
    let outcome = decode_outcome(&applied.response)
        .map_err(|error| Error::ProposalOutcomeUnknown { proposal: "command".into(), reason: error.to_string() })?;
    Ok(outcome?)
}
