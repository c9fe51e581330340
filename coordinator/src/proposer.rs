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

/// Between retries of a proposal whose outcome is unknown.
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// [`propose`] for the leader's own effects (history events, task tokens, map runs): retried
/// while the outcome is unknown (timeout, dropped, snapshot) and this node still leads, so
/// `command` must be idempotent. Any other error ends it: a refusal, or leadership lost.
pub async fn propose_while_leader(node: &CoordinatorNode, command: &Command) -> Result<Response> {
    loop {
        match propose(node, command).await {
            Err(Error::Timeout { .. } | Error::ProposalDropped { .. } | Error::ProposalOutcomeUnknown { .. })
                if node.status().is_leader() =>
            {
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            outcome => return outcome,
        }
    }
}
