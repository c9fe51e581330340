//! Bookkeeping for the callers waiting on a proposal or a linearizable read.
//!
//! A proposal is answered when its entry is *applied* on this node, not merely committed, so
//! the caller sees the state machine's response. Each proposal carries a [`ProposalId`] in the
//! entry's `context`; when the entry applied at the proposal's index carries another id, a
//! different leader's entry won that slot and the proposal is reported dropped.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Identifies one proposal: the proposing node and a per-incarnation sequence number that
/// starts at a random value, so ids do not repeat across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProposalId {
    pub node: u64,
    pub seq: u64,
}

impl ProposalId {
    pub(crate) fn to_context(self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16);
        bytes.extend_from_slice(&self.node.to_be_bytes());
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        bytes
    }

    pub(crate) fn from_context(context: &[u8]) -> Option<Self> {
        let node = u64::from_be_bytes(context.get(..8)?.try_into().ok()?);
        let seq = u64::from_be_bytes(context.get(8..16)?.try_into().ok()?);
        Some(Self { node, seq })
    }
}

impl fmt::Display for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.seq)
    }
}

/// A committed and applied command: its log index and the state machine's response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub response: Vec<u8>,
}

struct PendingProposal {
    id: ProposalId,
    reply: oneshot::Sender<Result<Applied>>,
}

/// Proposals appended to this node's log while it led, by log index.
#[derive(Default)]
pub(crate) struct PendingProposals {
    by_index: BTreeMap<u64, PendingProposal>,
}

impl PendingProposals {
    pub(crate) fn insert(&mut self, index: u64, id: ProposalId, reply: oneshot::Sender<Result<Applied>>) {
        self.by_index.insert(index, PendingProposal { id, reply });
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    /// The entry at `index` was applied with `context` and produced `response`.
    pub(crate) fn applied(&mut self, index: u64, context: &[u8], response: &[u8]) {
        self.sweep_below(index);
        if let Some(pending) = self.by_index.remove(&index) {
            let result = if ProposalId::from_context(context) == Some(pending.id) {
                Ok(Applied { index, response: response.to_vec() })
            } else {
                Err(Error::ProposalDropped { proposal: pending.id.to_string(), index })
            };
            // The caller may have given up (timeout); nobody to tell then.
            let _ = pending.reply.send(result);
        }
    }

    /// Entries below `index` were applied before, so a proposal still waiting there lost its
    /// slot to another entry.
    fn sweep_below(&mut self, index: u64) {
        while let Some(entry) = self.by_index.first_entry() {
            if *entry.key() >= index {
                break;
            }
            let at = *entry.key();
            let pending = entry.remove();
            let _ = pending.reply.send(Err(Error::ProposalDropped { proposal: pending.id.to_string(), index: at }));
        }
    }

    /// A snapshot up to `index` replaced the state: whether the proposals it covers were part of
    /// it cannot be told from here.
    pub(crate) fn covered_by_snapshot(&mut self, index: u64) {
        let rest = self.by_index.split_off(&(index + 1));
        for (_, pending) in std::mem::replace(&mut self.by_index, rest) {
            let _ = pending.reply.send(Err(Error::ProposalOutcomeUnknown {
                proposal: pending.id.to_string(),
                reason: format!("a snapshot up to index {index} was installed"),
            }));
        }
    }

    /// The node is stopping.
    pub(crate) fn abandon(&mut self, reason: &str) {
        for (_, pending) in std::mem::take(&mut self.by_index) {
            let _ = pending.reply.send(Err(Error::ProposalOutcomeUnknown {
                proposal: pending.id.to_string(),
                reason: reason.to_owned(),
            }));
        }
    }
}

/// A read waiting to run against the state machine. Called with the applied index and the
/// state once the read is safe, or with the error that prevents it.
pub(crate) type ReadFn<S> = Box<dyn FnOnce(Result<(u64, &S)>) + Send>;

/// Linearizable reads (ReadIndex, Raft paper §6.4 / thesis §6.4) in their three stages:
/// waiting for the leader to commit an entry of its term, waiting for a quorum to confirm the
/// leadership (raft-rs `read_index`), and waiting for the local state to reach the read index.
pub(crate) struct PendingReads<S> {
    waiting: Vec<ReadFn<S>>,
    confirming: HashMap<Vec<u8>, Vec<ReadFn<S>>>,
    ready: Vec<(u64, ReadFn<S>)>,
    next_ctx: u64,
}

impl<S> Default for PendingReads<S> {
    fn default() -> Self {
        Self { waiting: Vec::new(), confirming: HashMap::new(), ready: Vec::new(), next_ctx: 0 }
    }
}

impl<S> PendingReads<S> {
    pub(crate) fn push(&mut self, read: ReadFn<S>) {
        self.waiting.push(read);
    }

    /// Takes the waiting reads as one batch under a fresh ReadIndex context: one quorum round
    /// serves them all.
    pub(crate) fn start_batch(&mut self) -> Option<Vec<u8>> {
        if self.waiting.is_empty() {
            return None;
        }
        self.next_ctx += 1;
        let ctx = self.next_ctx.to_be_bytes().to_vec();
        self.confirming.insert(ctx.clone(), std::mem::take(&mut self.waiting));
        Some(ctx)
    }

    /// raft-rs confirmed the batch `ctx` at read index `index`.
    pub(crate) fn confirmed(&mut self, ctx: &[u8], index: u64) {
        if let Some(reads) = self.confirming.remove(ctx) {
            self.ready.extend(reads.into_iter().map(|read| (index, read)));
        }
    }

    /// Runs every confirmed read whose index the state machine has reached.
    pub(crate) fn serve(&mut self, applied: u64, state: &S) {
        if self.ready.is_empty() {
            return;
        }
        let (now, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.ready).into_iter().partition(|(i, _)| *i <= applied);
        self.ready = later;
        for (_, read) in now {
            read(Ok((applied, state)));
        }
    }

    /// Leadership was lost: reads not yet confirmed cannot be (raft-rs drops its read-only
    /// queue on a role change), so they fail with `error()`. Confirmed ones stay valid.
    pub(crate) fn fail_unconfirmed(&mut self, error: impl Fn() -> Error) {
        for read in self.waiting.drain(..).chain(self.confirming.drain().flat_map(|(_, reads)| reads)) {
            read(Err(error()));
        }
    }

    pub(crate) fn fail_all(&mut self, error: impl Fn() -> Error) {
        self.fail_unconfirmed(&error);
        for (_, read) in self.ready.drain(..) {
            read(Err(error()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_round_trip() {
        let id = ProposalId { node: 3, seq: u64::MAX - 1 };
        assert_eq!(ProposalId::from_context(&id.to_context()), Some(id));
        assert_eq!(ProposalId::from_context(b"short"), None);
    }

    #[test]
    fn proposal_answered_only_by_its_own_entry() {
        let mut pending = PendingProposals::default();
        let mine = ProposalId { node: 1, seq: 7 };
        let (tx_a, mut rx_a) = oneshot::channel();
        let (tx_b, mut rx_b) = oneshot::channel();
        let (tx_c, mut rx_c) = oneshot::channel();
        pending.insert(5, mine, tx_a);
        pending.insert(6, ProposalId { node: 1, seq: 8 }, tx_b);
        pending.insert(8, ProposalId { node: 1, seq: 9 }, tx_c);
        pending.applied(5, &mine.to_context(), b"ok");
        assert_eq!(rx_a.try_recv().unwrap().unwrap(), Applied { index: 5, response: b"ok".to_vec() });
        // Another leader's entry landed at 6.
        pending.applied(6, &ProposalId { node: 2, seq: 1 }.to_context(), b"theirs");
        assert!(matches!(rx_b.try_recv().unwrap(), Err(Error::ProposalDropped { index: 6, .. })));
        // 8 is swept once 9 applies without it.
        pending.applied(9, &[], b"");
        assert!(matches!(rx_c.try_recv().unwrap(), Err(Error::ProposalDropped { index: 8, .. })));
        assert!(pending.is_empty());
    }
}
