//! Raft messages over tonic: each message is a rust-protobuf-encoded `eraftpb.Message` inside
//! a `stepmap.v1.RaftMessage { bytes data }` (raft 0.7 and tonic 0.14 use different protobuf
//! runtimes, DESIGN.md §7).
//!
//! Sending side ([`GrpcTransport`]): one task per peer owns a client-streaming `Send` call and
//! feeds it from a bounded queue; if the call breaks (peer down or restarted) the task reports
//! the peer unreachable, discards what queued up meanwhile (stale heartbeats and appends that
//! Raft will resend anyway) and reconnects with capped backoff. Snapshots go through the unary
//! `Deliver` call, whose answer tells the driver whether the snapshot arrived.
//!
//! Receiving side ([`RaftTransportService`]): decodes and drops each message into the node's
//! mailbox.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raft::eraftpb::Message;
use stepmap_proto::v1::raft_transport_client::RaftTransportClient;
use stepmap_proto::v1::raft_transport_server::RaftTransport;
use stepmap_proto::v1::{Ack, RaftMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::{decode_message, encode_message, is_snapshot, Mailbox, Reporter, Transport};
use crate::node_id::NodeId;

/// Largest Raft message accepted or sent over gRPC; bounds snapshot size (tonic's default
/// limit of 4 MiB would be too small for a state-machine snapshot).
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// Messages queued for one peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Sends Raft messages to peers over gRPC.
pub struct GrpcTransport {
    peers: HashMap<u64, mpsc::Sender<(Message, Reporter)>>,
}

impl GrpcTransport {
    /// Starts one sender task per peer (`self_id` excluded). `peers` maps node ids to
    /// `host:port` addresses of their `RaftTransport` service. Must be called inside a Tokio
    /// runtime; the tasks end when the transport is dropped.
    pub fn new(self_id: NodeId, peers: &BTreeMap<NodeId, String>) -> Self {
        let peers = peers
            .iter()
            .filter(|(id, _)| **id != self_id)
            .map(|(id, address)| {
                let (tx, rx) = mpsc::channel(PEER_QUEUE);
                tokio::spawn(run_peer(*id, address.clone(), rx));
                (id.get(), tx)
            })
            .collect();
        Self { peers }
    }
}

impl Transport for GrpcTransport {
    fn send(&self, message: Message, reporter: &Reporter) {
        let to = message.to;
        let snapshot = is_snapshot(&message);
        let queued = match self.peers.get(&to) {
            Some(queue) => queue.try_send((message, reporter.clone())).is_ok(),
            None => false,
        };
        if !queued {
            if snapshot {
                reporter.snapshot_status(to, false);
            }
            reporter.unreachable(to);
        }
    }
}

fn endpoint(address: &str) -> Result<Endpoint, tonic::transport::Error> {
    let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    Ok(Endpoint::from_shared(uri)?.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

async fn connect(address: &str) -> Result<RaftTransportClient<Channel>, tonic::transport::Error> {
    let channel = endpoint(address)?.connect().await?;
    Ok(RaftTransportClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// Owns the connection to one peer for the life of the transport.
async fn run_peer(peer: NodeId, address: String, mut queue: mpsc::Receiver<(Message, Reporter)>) {
    let mut backoff = MIN_BACKOFF;
    // Connect lazily: wait for traffic first.
    let Some(mut pending) = queue.recv().await else { return };
    loop {
        let healthy_since = Instant::now();
        match connect(&address).await {
            Ok(client) => match stream_to_peer(peer, client, pending, &mut queue).await {
                Some(Ok(())) => tracing::debug!(%peer, "raft stream closed by peer"),
                Some(Err(status)) => tracing::debug!(%peer, %status, "raft stream broken"),
                None => return,
            },
            Err(error) => {
                tracing::debug!(%peer, %address, %error, "raft peer unreachable");
                pending.1.unreachable(peer.get());
                if is_snapshot(&pending.0) {
                    pending.1.snapshot_status(peer.get(), false);
                }
            }
        }
        // A stream that lived long was healthy: start the backoff afresh.
        if healthy_since.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        // Stale messages would only delay fresh ones; Raft resends what matters.
        while let Ok((message, reporter)) = queue.try_recv() {
            reporter.unreachable(peer.get());
            if is_snapshot(&message) {
                reporter.snapshot_status(peer.get(), false);
            }
        }
        match queue.recv().await {
            Some(next) => pending = next,
            None => return,
        }
    }
}

/// Feeds one `Send` call until it breaks. Returns `None` when the transport was dropped.
async fn stream_to_peer(
    peer: NodeId,
    mut client: RaftTransportClient<Channel>,
    first: (Message, Reporter),
    queue: &mut mpsc::Receiver<(Message, Reporter)>,
) -> Option<Result<(), tonic::Status>> {
    let snapshot_client = client.clone();
    let (stream_tx, stream_rx) = mpsc::channel::<RaftMessage>(PEER_QUEUE);
    let call = client.send(ReceiverStream::new(stream_rx));
    tokio::pin!(call);
    let mut next = Some(first);
    loop {
        let (message, reporter) = match next.take() {
            Some(item) => item,
            None => tokio::select! {
                result = &mut call => return Some(result.map(|_| ())),
                item = queue.recv() => item?,
            },
        };
        if is_snapshot(&message) {
            tokio::spawn(deliver_snapshot(snapshot_client.clone(), peer, message, reporter));
            continue;
        }
        match encode_message(&message) {
            Ok(data) => {
                // A full stream buffer means the peer is not keeping up: drop, Raft resends.
                if let Err(mpsc::error::TrySendError::Closed(_)) = stream_tx.try_send(RaftMessage { data }) {
                    return Some((&mut call).await.map(|_| ()));
                }
            }
            Err(error) => tracing::error!(%peer, %error, "cannot encode raft message"),
        }
    }
}

async fn deliver_snapshot(
    mut client: RaftTransportClient<Channel>,
    peer: NodeId,
    message: Message,
    reporter: Reporter,
) {
    let delivered = match encode_message(&message) {
        Ok(data) => match client.deliver(RaftMessage { data }).await {
            Ok(_) => true,
            Err(status) => {
                tracing::debug!(%peer, %status, "snapshot not delivered");
                false
            }
        },
        Err(error) => {
            tracing::error!(%peer, %error, "cannot encode raft snapshot");
            false
        }
    };
    reporter.snapshot_status(peer.get(), delivered);
}

/// The receiving side: the `stepmap.v1.RaftTransport` service of one node.
///
/// The service can be served before the node exists (a coordinator binds its port, then opens
/// its storage) and outlive one incarnation of it: messages go to the mailbox currently
/// attached, and while none is, calls fail with `UNAVAILABLE` so senders back off and retry.
/// Clones share the attachment.
#[derive(Clone, Default)]
pub struct RaftTransportService {
    mailbox: Arc<RwLock<Option<Mailbox>>>,
}

impl RaftTransportService {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes received messages to `mailbox` from now on.
    pub fn attach(&self, mailbox: Mailbox) {
        *self.mailbox.write().expect("mailbox slot lock poisoned") = Some(mailbox);
    }

    /// Stops routing received messages anywhere.
    pub fn detach(&self) {
        *self.mailbox.write().expect("mailbox slot lock poisoned") = None;
    }

    /// The tonic server for this service, with message limits large enough for snapshots.
    pub fn into_server(self) -> stepmap_proto::v1::raft_transport_server::RaftTransportServer<Self> {
        stepmap_proto::v1::raft_transport_server::RaftTransportServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn mailbox(&self) -> Result<Mailbox, tonic::Status> {
        match &*self.mailbox.read().expect("mailbox slot lock poisoned") {
            Some(mailbox) if !mailbox.is_closed() => Ok(mailbox.clone()),
            _ => Err(tonic::Status::unavailable("no raft node is running here")),
        }
    }

    fn decode(data: &[u8]) -> Result<Message, tonic::Status> {
        decode_message(data).map_err(|error| tonic::Status::invalid_argument(error.to_string()))
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn send(
        &self,
        request: tonic::Request<tonic::Streaming<RaftMessage>>,
    ) -> Result<tonic::Response<Ack>, tonic::Status> {
        let mut stream = request.into_inner();
        while let Some(message) = stream.message().await? {
            let message = Self::decode(&message.data)?;
            // Dropped when the inbox is full: Raft tolerates loss. A node that went away ends
            // the stream, so that the sender notices and reports it unreachable.
            self.mailbox()?.deliver(message);
        }
        Ok(tonic::Response::new(Ack {}))
    }

    async fn deliver(&self, request: tonic::Request<RaftMessage>) -> Result<tonic::Response<Ack>, tonic::Status> {
        let message = Self::decode(&request.into_inner().data)?;
        if self.mailbox()?.deliver(message) {
            Ok(tonic::Response::new(Ack {}))
        } else {
            Err(tonic::Status::unavailable("the raft node cannot take the message now"))
        }
    }
}
