//! The replicated state machine that the Raft log drives.

/// A deterministic state machine replicated by Raft.
///
/// Contract (DESIGN.md §3 "Apply is pure"):
/// - `apply` does no I/O, reads no clock and no randomness: the same commands in the same
///   order give the same state and the same responses on every node. Anything time-dependent
///   is stamped into the command by the proposer.
/// - `apply` never fails: a command the state rejects is a *response* (e.g. an error value
///   encoded in the returned bytes), not a Rust error, because every replica must reach the
///   same verdict and the log cannot be rolled back.
/// - `snapshot` captures everything `apply` has produced so far; `restore` replaces the whole
///   state with a snapshot's. `restore(snapshot())` is the identity. After `restore` the node
///   continues with the entry following the snapshot's index.
///
/// The driver calls these methods on its own task, one at a time, so implementations need no
/// locking; a long `snapshot` delays the Raft loop (heartbeats included), so keep it cheap or
/// make the state persistent-structure based.
pub trait StateMachine: Send + 'static {
    /// Applies the command committed at log `index` and returns the response for its proposer.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;

    /// Answers a read-only query against the current state (used after a ReadIndex for
    /// linearizable reads, or directly for local, possibly stale, reads).
    fn query(&self, query: &[u8]) -> Vec<u8>;

    /// Serialises the whole state.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with the one serialised in `snapshot`. An error here means the
    /// snapshot is unreadable by this build, which stops the node: its log has been replaced.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}
