//! A transport between nodes of one process: a shared routing table from node id to mailbox.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use raft::eraftpb::Message;

use super::{is_snapshot, Mailbox, Reporter, Transport};
use crate::node_id::NodeId;

/// The routing table of an in-process network. Nodes join with [`InProcessNetwork::register`]
/// and leave with [`InProcessNetwork::unregister`] (a stopped node); messages to an absent node
/// are dropped and reported unreachable, as a refused connection would be.
#[derive(Clone, Default)]
pub struct InProcessNetwork {
    mailboxes: Arc<RwLock<HashMap<NodeId, Mailbox>>>,
}

impl InProcessNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, mailbox: Mailbox) {
        self.mailboxes.write().expect("routing table lock poisoned").insert(mailbox.node_id(), mailbox);
    }

    pub fn unregister(&self, node_id: NodeId) {
        self.mailboxes.write().expect("routing table lock poisoned").remove(&node_id);
    }

    /// A transport that sends through this network.
    pub fn transport(&self) -> InProcessTransport {
        InProcessTransport { network: self.clone() }
    }
}

/// Sends through an [`InProcessNetwork`].
#[derive(Clone)]
pub struct InProcessTransport {
    network: InProcessNetwork,
}

impl Transport for InProcessTransport {
    fn send(&self, message: Message, reporter: &Reporter) {
        let to = message.to;
        let snapshot = is_snapshot(&message);
        let mailbox = NodeId::new(to)
            .and_then(|id| self.network.mailboxes.read().expect("routing table lock poisoned").get(&id).cloned());
        let delivered = match mailbox {
            Some(mailbox) if !mailbox.is_closed() => mailbox.deliver(message),
            _ => {
                reporter.unreachable(to);
                false
            }
        };
        if snapshot {
            reporter.snapshot_status(to, delivered);
        }
    }
}
