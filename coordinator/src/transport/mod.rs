//! How Raft messages move between nodes.
//!
//! The Raft driver hands every outgoing message to a [`Transport`]; incoming messages reach a
//! node through its [`Mailbox`]. Delivery is best effort: Raft is designed for a network that
//! loses, duplicates, delays and reorders messages (Raft paper §5.1, §5.3), so transports drop
//! rather than block. Two things the sender must learn, though, go back to the driver through
//! the [`Reporter`]: that a peer is unreachable (raft-rs `report_unreachable`: the leader stops
//! pipelining appends to it) and whether a snapshot arrived (raft-rs `report_snapshot`: until
//! then the leader keeps that follower paused).

mod filter;
mod grpc;
mod in_process;

pub use filter::{FilteredTransport, NetworkFilter};
pub use grpc::{GrpcTransport, RaftTransportService, MAX_MESSAGE_BYTES};
pub use in_process::{InProcessNetwork, InProcessTransport};

use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::node_id::NodeId;

/// Carries Raft messages from one node to its peers.
pub trait Transport: Send + Sync + 'static {
    /// Hands `message` to the network for `message.to`. Never blocks: a transport that cannot
    /// take a message drops it. For a `MsgSnapshot` the transport must eventually call
    /// [`Reporter::snapshot_status`]; for a peer it cannot reach it should call
    /// [`Reporter::unreachable`].
    fn send(&self, message: Message, reporter: &Reporter);
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send(&self, message: Message, reporter: &Reporter) {
        (**self).send(message, reporter)
    }
}

/// Whether a message carries a snapshot, whose delivery must be reported.
pub fn is_snapshot(message: &Message) -> bool {
    message.get_msg_type() == MessageType::MsgSnapshot
}

/// Feedback from a transport to the driver that sent a message.
#[derive(Debug)]
pub(crate) enum Report {
    Unreachable(u64),
    Snapshot(u64, SnapshotStatus),
}

/// The way back from a transport to the node that sent a message. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<Report>,
}

impl Reporter {
    pub(crate) fn channel() -> (Self, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// The peer could not be reached (connection failed, no such node).
    pub fn unreachable(&self, to: u64) {
        // A stopped driver no longer needs feedback.
        let _ = self.tx.send(Report::Unreachable(to));
    }

    /// Whether the snapshot sent to `to` arrived there.
    pub fn snapshot_status(&self, to: u64, delivered: bool) {
        let status = if delivered { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
        let _ = self.tx.send(Report::Snapshot(to, status));
    }
}

/// Capacity of a node's inbox. Beyond it incoming messages are dropped, which Raft tolerates;
/// it only bounds memory when a node falls behind its network.
pub const MAILBOX_CAPACITY: usize = 4096;

/// The inbox of one node: transports deliver received messages here. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Mailbox {
    node_id: NodeId,
    tx: mpsc::Sender<Message>,
}

impl Mailbox {
    pub(crate) fn channel(node_id: NodeId) -> (Self, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        (Self { node_id, tx }, rx)
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Queues `message` for the node. Returns false if it was dropped: addressed to another
    /// node, inbox full, or node stopped.
    pub fn deliver(&self, message: Message) -> bool {
        if message.to != self.node_id.get() {
            tracing::warn!(node = %self.node_id, to = message.to, "dropping raft message addressed to another node");
            return false;
        }
        self.tx.try_send(message).is_ok()
    }

    /// Whether the node behind this mailbox has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Encodes a raft-rs message for the wire (rust-protobuf 2 encoding).
pub fn encode_message(message: &raft::eraftpb::Message) -> Result<Vec<u8>> {
    message.write_to_bytes().map_err(|source| Error::Codec { what: "raft message", source })
}

/// Decodes a raft-rs message from the wire.
pub fn decode_message(bytes: &[u8]) -> Result<raft::eraftpb::Message> {
    raft::eraftpb::Message::parse_from_bytes(bytes).map_err(|source| Error::Codec { what: "raft message", source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_bytes() {
        let mut message = raft::eraftpb::Message { from: 1, to: 2, term: 7, ..Default::default() };
        message.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        let decoded = decode_message(&encode_message(&message).unwrap()).unwrap();
        assert_eq!(decoded, message);
    }
}
