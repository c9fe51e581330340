//! The public face of a Raft node: a cheap, cloneable handle to the driver task.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::node_id::NodeId;
use crate::node_status::NodeStatus;
use crate::proposal::Applied;
use crate::raft_config::RaftConfig;
use crate::raft_driver::{Channels, Driver, Request};
use crate::state_machine::StateMachine;
use crate::transport::{Mailbox, Reporter, Transport};

/// Capacity of the request queue from handles to the driver.
const REQUEST_QUEUE: usize = 1024;

/// A running Raft node. Clones share the node.
///
/// - [`RaftNode::propose`] returns once the command is committed *and* applied on this node,
///   with the state machine's response; on a follower it fails at once with
///   [`Error::NotLeader`] carrying the leader hint.
/// - [`RaftNode::read`] is linearizable (ReadIndex, Raft paper §6.4): it sees every command
///   whose proposal returned before the read started, anywhere in the cluster.
/// - [`RaftNode::local_read`] reads this node's state as it is, possibly stale.
pub struct RaftNode<S: StateMachine> {
    node_id: NodeId,
    peers: Arc<BTreeMap<NodeId, String>>,
    requests: mpsc::Sender<Request<S>>,
    mailbox: Mailbox,
    status: watch::Receiver<NodeStatus>,
    request_timeout: Duration,
    driver: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl<S: StateMachine> Clone for RaftNode<S> {
    fn clone(&self) -> Self {
        Self {
            node_id: self.node_id,
            peers: Arc::clone(&self.peers),
            requests: self.requests.clone(),
            mailbox: self.mailbox.clone(),
            status: self.status.clone(),
            request_timeout: self.request_timeout,
            driver: Arc::clone(&self.driver),
        }
    }
}

impl<S: StateMachine> RaftNode<S> {
    /// Opens the node's storage in `config.data_dir` (recovering snapshot and log if present),
    /// restores `state` from the latest snapshot, and starts the driver task. Messages to peers
    /// go through `transport`; messages from peers must be delivered to [`RaftNode::mailbox`].
    /// Must be called inside a Tokio runtime.
    pub fn start<T: Transport>(config: RaftConfig, state: S, transport: T) -> Result<Self> {
        let node_id = config.node_id;
        let peers = Arc::new(config.peers.clone());
        let request_timeout = config.request_timeout;
        let (reporter, reports) = Reporter::channel();
        let (mailbox, inbox) = Mailbox::channel(node_id);
        let (requests_tx, requests) = mpsc::channel(REQUEST_QUEUE);
        let (status_tx, status) = watch::channel(NodeStatus::initial(node_id));
        let driver = Driver::open(config, state, transport, reporter, status_tx)?;
        let handle = tokio::spawn(driver.run(Channels { requests, inbox, reports }));
        Ok(Self {
            node_id,
            peers,
            requests: requests_tx,
            mailbox,
            status,
            request_timeout,
            driver: Arc::new(Mutex::new(Some(handle))),
        })
    }

    pub fn id(&self) -> NodeId {
        self.node_id
    }

    /// Where transports deliver messages for this node.
    pub fn mailbox(&self) -> Mailbox {
        self.mailbox.clone()
    }

    /// The client address of `node`, from the configured peers.
    pub fn peer_address(&self, node: NodeId) -> Option<&str> {
        self.peers.get(&node).map(String::as_str)
    }

    /// The latest published status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes whenever the status does; use it to await a condition instead
    /// of polling.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    async fn request<R>(
        &self,
        operation: &'static str,
        request: Request<S>,
        reply: impl Future<Output = std::result::Result<Result<R>, oneshot::error::RecvError>>,
    ) -> Result<R> {
        self.requests.send(request).await.map_err(|_| Error::Stopped { node_id: self.node_id })?;
        match tokio::time::timeout(self.request_timeout, reply).await {
            Err(_elapsed) => Err(Error::Timeout { operation, after: self.request_timeout }),
            Ok(Err(_dropped)) => Err(Error::Stopped { node_id: self.node_id }),
            Ok(Ok(result)) => result,
        }
    }

    /// Replicates `command` and applies it. Returns the log index and the state machine's
    /// response once applied on this node. On `Timeout` or `ProposalOutcomeUnknown` the
    /// command may or may not have been applied; commands must be idempotent for a retry.
    pub async fn propose(&self, command: Vec<u8>) -> Result<Applied> {
        let (reply, rx) = oneshot::channel();
        self.request("propose", Request::Propose { command, reply }, rx).await
    }

    /// Runs `read` against the state machine once that reflects every command committed before
    /// this call (ReadIndex). Only the leader serves it; followers answer `NotLeader`. Returns
    /// the applied index the read saw and `read`'s result.
    pub async fn read<R: Send + 'static>(&self, read: impl FnOnce(&S) -> R + Send + 'static) -> Result<(u64, R)> {
        let (tx, rx) = oneshot::channel();
        let read = Box::new(move |state: Result<(u64, &S)>| {
            let _ = tx.send(state.map(|(index, state)| (index, read(state))));
        });
        self.request("read", Request::Read(read), rx).await
    }

    /// Runs `read` against this node's state as it is now, which may lag the leader.
    pub async fn local_read<R: Send + 'static>(&self, read: impl FnOnce(&S) -> R + Send + 'static) -> Result<(u64, R)> {
        let (tx, rx) = oneshot::channel();
        let read = Box::new(move |index: u64, state: &S| {
            let _ = tx.send(Ok((index, read(state))));
        });
        self.request("local read", Request::LocalRead(read), rx).await
    }

    /// Asks this node, if it leads, to hand leadership to `to` (raft-rs `transfer_leader`:
    /// the leader brings `to`'s log up to date, then tells it to start an election at once;
    /// Raft thesis §3.10). Returns once the request is queued; watch the status for the
    /// outcome. On a follower it fails with `NotLeader`.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<()> {
        let status = self.status();
        if !status.is_leader() {
            return Err(Error::NotLeader {
                node_id: self.node_id,
                leader_id: status.leader,
                leader_address: status.leader.and_then(|id| self.peer_address(id)).map(str::to_owned),
            });
        }
        self.requests.send(Request::TransferLeadership(to)).await.map_err(|_| Error::Stopped { node_id: self.node_id })
    }

    /// Stops the driver and waits for it, releasing the data directory. Pending proposals are
    /// answered with `ProposalOutcomeUnknown`. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.requests.send(Request::Shutdown).await;
        let handle = self.driver.lock().expect("driver handle lock poisoned").take();
        if let Some(handle) = handle {
            if let Err(error) = handle.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
    }

    /// Waits until `condition` holds for this node's status, or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, condition: impl FnMut(&NodeStatus) -> bool) -> Result<NodeStatus> {
        let mut status = self.status.clone();
        let wait = async move { status.wait_for(condition).await.map(|status| status.clone()) };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(_closed)) => Err(Error::Stopped { node_id: self.node_id }),
            Err(_elapsed) => Err(Error::Timeout { operation: "wait for status", after: timeout }),
        }
    }
}
