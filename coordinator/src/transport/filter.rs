//! Faults on demand: a transport decorator that drops, partitions, delays and reorders messages
//! according to a shared, test-controlled [`NetworkFilter`] (the shape of TiKV's
//! test_raftstore filters). It wraps any transport, so the same faults apply in process and
//! over gRPC.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raft::eraftpb::Message;
use rand::Rng;

use super::{is_snapshot, Reporter, Transport};
use crate::node_id::NodeId;

#[derive(Default)]
struct Rules {
    /// Nodes cut off from everyone, both directions.
    isolated: HashSet<u64>,
    /// When set, messages only flow within a group.
    partition: Option<Vec<HashSet<u64>>>,
    /// Links `(from, to)` that drop everything (one direction).
    blocked: HashSet<(u64, u64)>,
    /// Chance that any message is lost.
    drop_probability: f64,
    /// When set, each message waits a random time in this range; different delays reorder.
    delay: Option<(Duration, Duration)>,
}

impl Rules {
    fn cut(&self, from: u64, to: u64) -> bool {
        if self.isolated.contains(&from) || self.isolated.contains(&to) || self.blocked.contains(&(from, to)) {
            return true;
        }
        match &self.partition {
            Some(groups) => !groups.iter().any(|group| group.contains(&from) && group.contains(&to)),
            None => false,
        }
    }
}

/// The fault rules shared by every node's [`FilteredTransport`]. Cheap to clone; changes apply
/// to messages sent afterwards.
#[derive(Clone, Default)]
pub struct NetworkFilter {
    rules: Arc<Mutex<Rules>>,
}

impl NetworkFilter {
    pub fn new() -> Self {
        Self::default()
    }

    fn rules(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().expect("network filter lock poisoned")
    }

    /// Cuts `node` off from every other node, in both directions.
    pub fn isolate(&self, node: NodeId) {
        self.rules().isolated.insert(node.get());
    }

    /// Undoes [`NetworkFilter::isolate`] for `node`.
    pub fn rejoin(&self, node: NodeId) {
        self.rules().isolated.remove(&node.get());
    }

    /// Splits the network: messages flow only between nodes of the same group; nodes in no
    /// group reach no one.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        let groups = groups.iter().map(|group| group.iter().map(|id| id.get()).collect()).collect();
        self.rules().partition = Some(groups);
    }

    /// Drops every message from `from` to `to` (one direction).
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.rules().blocked.insert((from.get(), to.get()));
    }

    /// Loses each message with probability `probability` (clamped to `0.0..=1.0`).
    pub fn drop_messages(&self, probability: f64) {
        self.rules().drop_probability = probability.clamp(0.0, 1.0);
    }

    /// Delays each message by a random duration in `min..=max`; messages sent in order arrive
    /// in a different one.
    pub fn delay(&self, min: Duration, max: Duration) {
        self.rules().delay = Some((min, max.max(min)));
    }

    /// Removes every fault.
    pub fn heal(&self) {
        *self.rules() = Rules::default();
    }

    /// What to do with one message.
    fn verdict(&self, from: u64, to: u64) -> Verdict {
        let rules = self.rules();
        if rules.cut(from, to) {
            return Verdict::Drop;
        }
        let mut rng = rand::thread_rng();
        if rules.drop_probability > 0.0 && rng.gen_bool(rules.drop_probability) {
            return Verdict::Drop;
        }
        match rules.delay {
            Some((min, max)) if !max.is_zero() => Verdict::Delay(rng.gen_range(min..=max)),
            _ => Verdict::Pass,
        }
    }
}

enum Verdict {
    Pass,
    Drop,
    Delay(Duration),
}

/// A transport that applies a [`NetworkFilter`] before handing messages to `inner`.
pub struct FilteredTransport<T> {
    inner: Arc<T>,
    filter: NetworkFilter,
}

impl<T: Transport> FilteredTransport<T> {
    pub fn new(inner: T, filter: NetworkFilter) -> Self {
        Self { inner: Arc::new(inner), filter }
    }
}

impl<T: Transport> Transport for FilteredTransport<T> {
    fn send(&self, message: Message, reporter: &Reporter) {
        match self.filter.verdict(message.from, message.to) {
            Verdict::Pass => self.inner.send(message, reporter),
            Verdict::Drop => {
                // A lost snapshot must still be reported, or the leader would wait for it
                // forever; an ordinary message is lost silently, as on a real network.
                if is_snapshot(&message) {
                    reporter.snapshot_status(message.to, false);
                }
            }
            Verdict::Delay(delay) => {
                let inner = Arc::clone(&self.inner);
                let reporter = reporter.clone();
                // Sends happen on the driver's task, inside a Tokio runtime.
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    inner.send(message, &reporter);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> NodeId {
        NodeId::new(n).unwrap()
    }

    #[test]
    fn partition_and_isolation_cut_the_right_links() {
        let filter = NetworkFilter::new();
        filter.partition(&[&[id(1)], &[id(2), id(3)]]);
        assert!(matches!(filter.verdict(1, 2), Verdict::Drop));
        assert!(matches!(filter.verdict(3, 2), Verdict::Pass));
        filter.heal();
        filter.isolate(id(2));
        assert!(matches!(filter.verdict(2, 3), Verdict::Drop));
        assert!(matches!(filter.verdict(3, 2), Verdict::Drop));
        assert!(matches!(filter.verdict(1, 3), Verdict::Pass));
        filter.rejoin(id(2));
        filter.block(id(1), id(3));
        assert!(matches!(filter.verdict(1, 3), Verdict::Drop));
        assert!(matches!(filter.verdict(3, 1), Verdict::Pass));
    }
}
