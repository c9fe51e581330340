//! The one task that owns a node's `RawNode`, its storage and its state machine.
//!
//! Everything that touches Raft state happens here, sequentially: ticks, received messages,
//! proposals, reads, transport feedback, and the Ready loop. The Ready loop follows the order
//! documented by raft-rs 0.7 (`RawNode::ready`/`advance`, and its `five_mem_node` example):
//!
//! 1. send `messages` (a leader may send before persisting: thesis §10.2.1),
//! 2. apply the snapshot, if any (persist it, restore the state machine),
//! 3. apply `committed_entries` (already durable on a quorum and locally),
//! 4. persist `entries` and the hard state, with fsync (unless `RaftConfig::sync_log` is off),
//! 5. send `persisted_messages` (votes and append responses, which promise durability),
//! 6. `advance`, then handle the `LightReady`: record the commit index, send its messages,
//!    apply its committed entries,
//! 7. `advance_apply`.
//!
//! After the loop the driver serves linearizable reads that became safe and snapshots the
//! state machine when enough entries were applied since the last snapshot.

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::error::{Error, Result};
use crate::node_id::NodeId;
use crate::node_status::{NodeStatus, Role};
use crate::proposal::{Applied, PendingProposals, PendingReads, ProposalId, ReadFn};
use crate::raft_config::RaftConfig;
use crate::raft_storage::RaftStorage;
use crate::state_machine::StateMachine;
use crate::transport::{Report, Reporter, Transport};

/// A read of the local state, called with the applied index.
pub(crate) type LocalReadFn<S> = Box<dyn FnOnce(u64, &S) + Send>;

/// What callers ask of the driver.
pub(crate) enum Request<S> {
    Propose {
        command: Vec<u8>,
        reply: oneshot::Sender<Result<Applied>>,
    },
    /// Linearizable read through ReadIndex.
    Read(ReadFn<S>),
    /// Read of the local state as it is, possibly stale.
    LocalRead(LocalReadFn<S>),
    /// Hand leadership to another voter (raft-rs `transfer_leader`, Raft thesis §3.10).
    TransferLeadership(NodeId),
    Shutdown,
}

/// How many queued messages or requests are handled before the next Ready, so that a busy
/// node still batches several inputs into one fsync.
const MAX_BATCH: usize = 256;

pub(crate) struct Driver<S: StateMachine, T: Transport> {
    node_id: NodeId,
    config: RaftConfig,
    raw: RawNode<RaftStorage>,
    storage: RaftStorage,
    state: S,
    transport: T,
    reporter: Reporter,
    applied: u64,
    snapshot_index: u64,
    next_proposal_seq: u64,
    proposals: PendingProposals,
    reads: PendingReads<S>,
    role: StateRole,
    status: watch::Sender<NodeStatus>,
}

pub(crate) struct Channels<S> {
    pub requests: mpsc::Receiver<Request<S>>,
    pub inbox: mpsc::Receiver<Message>,
    pub reports: mpsc::UnboundedReceiver<Report>,
}

impl<S: StateMachine, T: Transport> Driver<S, T> {
    /// Opens the storage in `config.data_dir`, restores the state machine from the latest
    /// snapshot and builds the `RawNode`. Entries committed after the snapshot are re-applied
    /// by the first Ready passes (raft-rs starts applying after `Config::applied`).
    pub(crate) fn open(
        config: RaftConfig,
        mut state: S,
        transport: T,
        reporter: Reporter,
        status: watch::Sender<NodeStatus>,
    ) -> Result<Self> {
        config.validate()?;
        let voters: Vec<u64> = config.peers.keys().map(|id| id.get()).collect();
        let storage = RaftStorage::open(&config.data_dir, &voters)?;
        let storage = if config.sync_log { storage } else { storage.without_sync() };
        let snapshot = storage.snapshot_ref();
        let snapshot_index = snapshot.get_metadata().index;
        if snapshot_index > 0 {
            state.restore(&snapshot.data).map_err(|message| Error::Restore { index: snapshot_index, message })?;
        }
        let raft_config = config.to_raft(snapshot_index);
        raft_config.validate().map_err(|source| Error::Raft { source })?;
        let logger = crate::slog_bridge::raft_logger(config.node_id.get());
        let raw = RawNode::new(&raft_config, storage.clone(), &logger).map_err(|source| Error::Raft { source })?;
        tracing::info!(
            node = %config.node_id,
            snapshot_index,
            first_index = raw.raft.raft_log.first_index(),
            last_index = raw.raft.raft_log.last_index(),
            commit = raw.raft.raft_log.committed,
            "raft node opened"
        );
        let driver = Self {
            node_id: config.node_id,
            config,
            raw,
            storage,
            state,
            transport,
            reporter,
            applied: snapshot_index,
            snapshot_index,
            next_proposal_seq: rand::random(),
            proposals: PendingProposals::default(),
            reads: PendingReads::default(),
            role: StateRole::Follower,
            status,
        };
        // Callers see the recovered state from the start.
        driver.publish_status();
        Ok(driver)
    }

    /// Runs until shutdown or a fatal storage error. Pending callers are answered either way.
    pub(crate) async fn run(mut self, mut channels: Channels<S>) {
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A lone voter has nobody to wait for: it leads at once instead of after an election
        // timeout (1-2 s), which is what a single-node cluster and `stepmap run` start with.
        let lone_voter = self.config.peers.len() == 1 && self.config.peers.contains_key(&self.node_id);
        let campaigned = if lone_voter { self.raw.campaign().map_err(|source| Error::Raft { source }) } else { Ok(()) };
        let first_pass = match campaigned {
            Ok(()) => self.on_ready().await,
            Err(error) => Err(error),
        };
        let outcome = if let Err(error) = first_pass {
            Err(error)
        } else {
            loop {
                let stop = tokio::select! {
                    request = channels.requests.recv() => match request {
                        Some(request) => self.handle_request(request),
                        None => true,
                    },
                    Some(message) = channels.inbox.recv() => {
                        self.step(message);
                        false
                    }
                    Some(report) = channels.reports.recv() => {
                        self.handle_report(report);
                        false
                    }
                    _ = ticker.tick() => {
                        self.raw.tick();
                        false
                    }
                };
                if stop || self.drain(&mut channels) {
                    break Ok(());
                }
                if let Err(error) = self.on_ready().await {
                    break Err(error);
                }
            }
        };
        let reason = match outcome {
            Ok(()) => {
                tracing::info!(node = %self.node_id, "raft node stopped");
                "the node stopped".to_owned()
            }
            Err(error) => {
                // Storage failures leave the durable state unknown: stop rather than risk
                // acknowledging what is not on disk.
                tracing::error!(node = %self.node_id, %error, "raft node failed");
                format!("the node failed: {error}")
            }
        };
        // A stopped node leads nothing: handles that outlive it must not send clients here.
        self.status.send_modify(|status| {
            status.role = Role::Follower;
            status.leader = None;
        });
        self.proposals.abandon(&reason);
        let node_id = self.node_id;
        self.reads.fail_all(|| Error::Stopped { node_id });
    }

    /// Handles what else is already queued, up to a bound. Returns true on shutdown.
    fn drain(&mut self, channels: &mut Channels<S>) -> bool {
        for _ in 0..MAX_BATCH {
            match channels.inbox.try_recv() {
                Ok(message) => self.step(message),
                Err(_) => break,
            }
        }
        while let Ok(report) = channels.reports.try_recv() {
            self.handle_report(report);
        }
        for _ in 0..MAX_BATCH {
            match channels.requests.try_recv() {
                Ok(request) => {
                    if self.handle_request(request) {
                        return true;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
        false
    }

    fn step(&mut self, message: Message) {
        if let Err(error) = self.raw.step(message) {
            // Messages from unknown peers or stale terms: nothing to do but note it.
            tracing::debug!(node = %self.node_id, %error, "raft message rejected");
        }
    }

    fn handle_report(&mut self, report: Report) {
        match report {
            Report::Unreachable(to) => self.raw.report_unreachable(to),
            Report::Snapshot(to, status) => self.raw.report_snapshot(to, status),
        }
    }

    fn not_leader(&self) -> Error {
        let leader_id = NodeId::from_raft(self.raw.raft.leader_id);
        Error::NotLeader {
            node_id: self.node_id,
            leader_id,
            leader_address: leader_id.and_then(|id| self.config.peers.get(&id).cloned()),
        }
    }

    /// Returns true on shutdown.
    fn handle_request(&mut self, request: Request<S>) -> bool {
        match request {
            Request::Propose { command, reply } => self.propose(command, reply),
            Request::Read(read) => {
                if self.raw.raft.state == StateRole::Leader {
                    self.reads.push(read);
                } else {
                    read(Err(self.not_leader()));
                }
            }
            Request::LocalRead(read) => read(self.applied, &self.state),
            Request::TransferLeadership(to) => {
                if self.raw.raft.state == StateRole::Leader {
                    self.raw.transfer_leader(to.get());
                }
            }
            Request::Shutdown => return true,
        }
        false
    }

    /// Followers answer with a leader hint instead of forwarding (DESIGN.md §3), so a
    /// proposal is only ever appended by the leader that will report its outcome.
    fn propose(&mut self, command: Vec<u8>, reply: oneshot::Sender<Result<Applied>>) {
        if self.raw.raft.state != StateRole::Leader || self.raw.raft.lead_transferee.is_some() {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let id = ProposalId { node: self.node_id.get(), seq: self.next_proposal_seq };
        self.next_proposal_seq = self.next_proposal_seq.wrapping_add(1);
        let index = self.raw.raft.raft_log.last_index() + 1;
        match self.raw.propose(id.to_context(), command) {
            Ok(()) if self.raw.raft.raft_log.last_index() >= index => self.proposals.insert(index, id, reply),
            Ok(()) | Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(self.not_leader()));
            }
            Err(source) => {
                let _ = reply.send(Err(Error::Raft { source }));
            }
        }
    }

    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            self.transport.send(message, &self.reporter);
        }
    }

    /// One or more passes of the Ready loop, in the documented order (module docs), until
    /// nothing is ready, including what starting a batch of reads makes ready.
    async fn on_ready(&mut self) -> Result<()> {
        loop {
            self.ready_passes().await?;
            // Starting a batch of reads makes a Ready (the leader's heartbeats; a single voter
            // confirms at once): handle it now, not at the next tick or message.
            self.start_reads();
            if !self.raw.has_ready() {
                break;
            }
        }
        self.reads.serve(self.applied, &self.state);
        self.maybe_snapshot().await?;
        self.publish_status();
        Ok(())
    }

    async fn ready_passes(&mut self) -> Result<()> {
        while self.raw.has_ready() {
            let mut ready = self.raw.ready();
            if let Some(soft) = ready.ss() {
                self.role_changed(soft.raft_state);
            }

            // 1. Messages that need no local persistence first (the leader's appends).
            self.send(ready.take_messages());

            // 2. A snapshot from the leader replaces log and state.
            if !ready.snapshot().is_empty() {
                self.install_snapshot(ready.snapshot().clone()).await?;
            }

            // 3. Entries committed and persisted: apply them.
            self.apply_entries(ready.take_committed_entries())?;

            // 4. New entries and hard state become durable before anyone is told about them.
            let entries = ready.take_entries();
            let hard_state = ready.hs().cloned();
            if !entries.is_empty() || hard_state.is_some() {
                if self.storage.syncs() {
                    let storage = self.storage.clone();
                    blocking(self.node_id, move || storage.append(&entries, hard_state.as_ref())).await?;
                } else {
                    // Without fsync an append is a write into the page cache, cheaper than the
                    // hand-over to the blocking pool and back (two thread wake-ups per Ready).
                    self.storage.append(&entries, hard_state.as_ref())?;
                }
            }

            for read_state in ready.take_read_states() {
                self.reads.confirmed(&read_state.request_ctx, read_state.index);
            }

            // 5. Votes and append responses, which promise what was just persisted.
            self.send(ready.take_persisted_messages());

            // 6. Advance, then handle what became possible.
            let mut light = self.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                self.storage.set_commit(commit)?;
            }
            self.send(light.take_messages());
            self.apply_entries(light.take_committed_entries())?;

            // 7.
            self.raw.advance_apply();
        }
        Ok(())
    }

    fn role_changed(&mut self, role: StateRole) {
        if self.role == StateRole::Leader && role != StateRole::Leader {
            // raft-rs drops unconfirmed ReadIndex requests when leadership ends.
            let (node_id, leader_id) = (self.node_id, NodeId::from_raft(self.raw.raft.leader_id));
            let leader_address = leader_id.and_then(|id| self.config.peers.get(&id).cloned());
            self.reads.fail_unconfirmed(|| Error::NotLeader {
                node_id,
                leader_id,
                leader_address: leader_address.clone(),
            });
        }
        if role != self.role {
            tracing::info!(node = %self.node_id, term = self.raw.raft.term, ?role, "raft role changed");
        }
        self.role = role;
    }

    /// A leader only serves ReadIndex once it has committed an entry of its own term (Raft
    /// paper §8: it must first learn which entries are committed); raft-rs silently ignores
    /// a read before that, so reads wait here until then.
    fn start_reads(&mut self) {
        if self.raw.raft.state != StateRole::Leader || !self.raw.raft.commit_to_current_term() {
            return;
        }
        if let Some(ctx) = self.reads.start_batch() {
            self.raw.read_index(ctx);
        }
    }

    async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let index = snapshot.get_metadata().index;
        tracing::info!(node = %self.node_id, index, "installing snapshot from leader");
        let storage = self.storage.clone();
        let persisted = snapshot.clone();
        blocking(self.node_id, move || storage.apply_snapshot(&persisted)).await?;
        self.state.restore(&snapshot.data).map_err(|message| Error::Restore { index, message })?;
        self.applied = index;
        self.snapshot_index = index;
        self.proposals.covered_by_snapshot(index);
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<()> {
        for entry in entries {
            let index = entry.index;
            if index <= self.applied {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    // A new leader's empty entry (Raft paper §8) carries neither context nor
                    // data and is not a command.
                    let response = if entry.context.is_empty() && entry.data.is_empty() {
                        Vec::new()
                    } else {
                        self.state.apply(index, &entry.data)
                    };
                    self.proposals.applied(index, &entry.context, &response);
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    // Membership is static today; a conf change can only come from an operator
                    // tool, and is applied as raft-rs requires so the log stays consistent.
                    let conf_state = if entry.get_entry_type() == EntryType::EntryConfChange {
                        let change = ConfChange::parse_from_bytes(&entry.data)
                            .map_err(|source| Error::Codec { what: "conf change", source })?;
                        self.raw.apply_conf_change(&change)
                    } else {
                        let change = ConfChangeV2::parse_from_bytes(&entry.data)
                            .map_err(|source| Error::Codec { what: "conf change", source })?;
                        self.raw.apply_conf_change(&change)
                    }
                    .map_err(|source| Error::Raft { source })?;
                    self.storage.set_conf_state(conf_state)?;
                    self.proposals.applied(index, &entry.context, &[]);
                }
            }
            self.applied = index;
        }
        Ok(())
    }

    /// Snapshots the state machine every `snapshot_interval` applied entries and compacts the
    /// log behind it (Raft paper §7), keeping `log_retention` entries for slow followers.
    async fn maybe_snapshot(&mut self) -> Result<()> {
        if self.applied < self.snapshot_index + self.config.snapshot_interval {
            return Ok(());
        }
        let index = self.applied;
        let data = self.state.snapshot();
        let bytes = data.len();
        let conf_state = self.storage.conf_state();
        let retention = self.config.log_retention;
        let storage = self.storage.clone();
        blocking(self.node_id, move || storage.create_snapshot(index, conf_state, data, retention)).await?;
        tracing::debug!(node = %self.node_id, index, bytes, "state machine snapshot taken, log compacted");
        self.snapshot_index = index;
        Ok(())
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let status = NodeStatus {
            node_id: self.node_id,
            role: raft.state.into(),
            term: raft.term,
            leader: NodeId::from_raft(raft.leader_id),
            commit_index: raft.raft_log.committed,
            applied_index: self.applied,
            first_index: raft.raft_log.first_index(),
            last_index: raft.raft_log.last_index(),
            snapshot_index: self.snapshot_index,
        };
        self.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

/// Runs a storage write (and its fsync) off the async worker threads.
async fn blocking<R: Send + 'static>(node_id: NodeId, work: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join_error) if join_error.is_panic() => std::panic::resume_unwind(join_error.into_panic()),
        // The runtime is shutting down under us.
        Err(_cancelled) => Err(Error::Stopped { node_id }),
    }
}
