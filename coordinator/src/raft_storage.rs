//! The durable Raft log: raft-rs's [`raft::Storage`] over `raft-engine`.
//!
//! Everything Raft must not forget lives in one raft-engine instance (one Raft group,
//! [`RAFT_GROUP`]): the log entries, the hard state (term, vote, commit), the conf state (the
//! voters) and the latest snapshot (metadata and state-machine bytes). Every write that Raft
//! relies on before answering a peer (entries, term, vote, an installed snapshot) is one atomic
//! raft-engine batch followed by fsync (Raft paper §5, "Persisted state on all servers ...
//! updated on stable storage before responding to RPCs") — unless the log does not outlive
//! its process ([`RaftStorage::without_sync`], `RaftConfig::sync_log`).
//!
//! Reads are served from memory: the storage keeps every retained entry (`entries`), which the
//! snapshot interval plus the retention bound, and which stays small because commands carry
//! descriptors, never item payloads (DESIGN.md §3). raft-engine is written on every Ready and
//! read only when the node opens. Besides saving I/O, this sidesteps a raft-engine 0.4 trait:
//! its entry reads go through a *thread-local* block cache keyed by file id and offset, which
//! is not unique across engines, so two engines in one process (an in-process cluster) reading
//! on shared threads could be served each other's blocks. Reads at open, and purges (which may
//! rewrite entries), therefore run on a fresh thread of their own.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{Command, Engine, LogBatch, MessageExt, ReadableSize};

use crate::error::{Error, Result};

/// The raft-engine group id under which this node's single Raft group is stored.
pub const RAFT_GROUP: u64 = 1;

const HARD_STATE_KEY: &[u8] = b"hard_state";
const CONF_STATE_KEY: &[u8] = b"conf_state";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// Tells raft-engine how to index raft-rs entries.
#[derive(Clone, Copy)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

/// In-memory mirror of what is durable, so that `term`/`first_index`/`last_index` need no I/O.
struct Core {
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot, data included. `Snapshot::default()` (index 0) before the first.
    snapshot: Snapshot,
    /// Index of the first retained entry; `snapshot index + 1` when the log is empty.
    first_index: u64,
    /// The retained entries `first_index ..= last_index`, in order.
    entries: VecDeque<Entry>,
}

impl Core {
    fn last_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }

    fn snapshot_metadata(&self) -> &SnapshotMetadata {
        self.snapshot.get_metadata()
    }
}

/// raft-rs storage backed by raft-engine. Cheap to clone; clones share the engine and the
/// in-memory mirror. Writers are the Raft driver only (one at a time); readers are raft-rs.
#[derive(Clone)]
pub struct RaftStorage {
    engine: Arc<Engine>,
    core: Arc<RwLock<Core>>,
    path: PathBuf,
    /// Whether the writes Raft relies on are fsynced (see [`RaftStorage::without_sync`]).
    sync: bool,
}

impl RaftStorage {
    /// Opens (or creates) the log in `dir`. A fresh log is initialised with `voters` as its conf
    /// state, the same on every node of a new group; an existing log keeps what it recorded
    /// and `voters` is ignored.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Engine { path: dir.to_owned(), source: raft_engine::Error::Io(e) })?;
        let config = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            target_file_size: ReadableSize::mb(32),
            purge_threshold: ReadableSize::gb(1),
            ..raft_engine::Config::default()
        };
        let engine_error = |source| Error::Engine { path: dir.to_owned(), source };
        let engine = Engine::open(config).map_err(engine_error)?;

        let hard_state: HardState =
            engine.get_message(RAFT_GROUP, HARD_STATE_KEY).map_err(engine_error)?.unwrap_or_default();
        let snapshot: Snapshot =
            engine.get_message(RAFT_GROUP, SNAPSHOT_KEY).map_err(engine_error)?.unwrap_or_default();
        let conf_state: Option<ConfState> = engine.get_message(RAFT_GROUP, CONF_STATE_KEY).map_err(engine_error)?;
        let conf_state = match conf_state {
            Some(conf_state) => conf_state,
            None => {
                let conf_state = ConfState { voters: voters.to_vec(), ..ConfState::default() };
                let mut batch = LogBatch::default();
                batch.put_message(RAFT_GROUP, CONF_STATE_KEY.to_vec(), &conf_state).map_err(engine_error)?;
                engine.write(&mut batch, true).map_err(engine_error)?;
                conf_state
            }
        };

        // Load the retained entries, on a thread whose block cache is clean (module docs).
        let snapshot_index = snapshot.get_metadata().index;
        let mut first_index = snapshot_index + 1;
        let mut entries = VecDeque::new();
        if let (Some(first), Some(last)) = (engine.first_index(RAFT_GROUP), engine.last_index(RAFT_GROUP)) {
            let loaded = on_fresh_thread(|| {
                let mut entries = Vec::with_capacity((last + 1 - first) as usize);
                engine.fetch_entries_to::<EntryExt>(RAFT_GROUP, first, last + 1, None, &mut entries).map(|_| entries)
            })
            .map_err(engine_error)?;
            first_index = first;
            entries.extend(loaded);
        }
        debug_assert!(first_index <= snapshot_index + 1, "log starts after the snapshot");

        let core = Core { hard_state, conf_state, snapshot, first_index, entries };
        Ok(Self { engine: Arc::new(engine), core: Arc::new(RwLock::new(core)), path: dir.to_owned(), sync: true })
    }

    /// Writes without fsync: for a log that does not outlive its process (see
    /// [`crate::RaftConfig::sync_log`]).
    pub fn without_sync(self) -> Self {
        Self { sync: false, ..self }
    }

    /// Whether writes are fsynced.
    pub fn syncs(&self) -> bool {
        self.sync
    }

    fn read(&self) -> RwLockReadGuard<'_, Core> {
        // A poisoned lock means a writer panicked mid-update; the mirror may be inconsistent
        // with the engine, and continuing could corrupt the log.
        self.core.read().expect("raft storage lock poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Core> {
        self.core.write().expect("raft storage lock poisoned")
    }

    fn engine_error(&self, source: raft_engine::Error) -> Error {
        Error::Engine { path: self.path.clone(), source }
    }

    fn commit(&self, batch: &mut LogBatch, sync: bool) -> Result<()> {
        self.engine.write(batch, sync && self.sync).map_err(|e| self.engine_error(e))?;
        Ok(())
    }

    /// The latest snapshot (metadata and data).
    pub fn snapshot_ref(&self) -> Snapshot {
        self.read().snapshot.clone()
    }

    pub fn snapshot_index(&self) -> u64 {
        self.read().snapshot_metadata().index
    }

    pub fn hard_state(&self) -> HardState {
        self.read().hard_state.clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.read().conf_state.clone()
    }

    /// Appends `entries` (replacing any conflicting suffix, Raft paper §5.3) and records
    /// `hard_state` if it changed, in one batch, then fsyncs.
    pub fn append(&self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<()> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut batch = LogBatch::default();
        if !entries.is_empty() {
            let core = self.read();
            let first_new = entries[0].index;
            // raft-rs never overwrites compacted entries and never leaves holes.
            if first_new < core.first_index || first_new > core.last_index() + 1 {
                return Err(Error::Raft {
                    source: raft::Error::Store(StorageError::Other(
                        format!("append at {first_new} outside the log {}..={}", core.first_index, core.last_index())
                            .into(),
                    )),
                });
            }
            drop(core);
            batch.add_entries::<EntryExt>(RAFT_GROUP, entries).map_err(|e| self.engine_error(e))?;
        }
        if let Some(hard_state) = hard_state {
            batch.put_message(RAFT_GROUP, HARD_STATE_KEY.to_vec(), hard_state).map_err(|e| self.engine_error(e))?;
        }
        self.commit(&mut batch, true)?;

        let mut core = self.write();
        if let Some(first) = entries.first() {
            let keep = (first.index - core.first_index) as usize;
            core.entries.truncate(keep);
            core.entries.extend(entries.iter().cloned());
        }
        if let Some(hard_state) = hard_state {
            core.hard_state = hard_state.clone();
        }
        Ok(())
    }

    /// Records a new commit index learned after `advance` (raft-rs `LightReady::commit_index`).
    /// Not fsynced: losing it only means re-learning the commit index from the leader.
    pub fn set_commit(&self, commit: u64) -> Result<()> {
        let mut hard_state = self.hard_state();
        if hard_state.commit >= commit {
            return Ok(());
        }
        hard_state.commit = commit;
        let mut batch = LogBatch::default();
        batch.put_message(RAFT_GROUP, HARD_STATE_KEY.to_vec(), &hard_state).map_err(|e| self.engine_error(e))?;
        self.commit(&mut batch, false)?;
        self.write().hard_state = hard_state;
        Ok(())
    }

    /// Records a conf state produced by applying a conf change entry.
    pub fn set_conf_state(&self, conf_state: ConfState) -> Result<()> {
        let mut batch = LogBatch::default();
        batch.put_message(RAFT_GROUP, CONF_STATE_KEY.to_vec(), &conf_state).map_err(|e| self.engine_error(e))?;
        self.commit(&mut batch, true)?;
        self.write().conf_state = conf_state;
        Ok(())
    }

    /// Installs a snapshot received from the leader: it replaces the whole log (every retained
    /// entry is discarded, Raft paper §7 "discard the entire log"), the conf state becomes the
    /// snapshot's, and the commit index moves up to the snapshot's index. One batch, fsynced.
    pub fn apply_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let metadata = snapshot.get_metadata();
        let index = metadata.index;
        let mut core = self.write();
        if index < core.snapshot_metadata().index {
            return Err(Error::Raft { source: raft::Error::Store(StorageError::SnapshotOutOfDate) });
        }
        let mut hard_state = core.hard_state.clone();
        hard_state.term = hard_state.term.max(metadata.term);
        hard_state.commit = hard_state.commit.max(index);
        let conf_state = metadata.get_conf_state().clone();

        let mut batch = LogBatch::default();
        batch.put_message(RAFT_GROUP, SNAPSHOT_KEY.to_vec(), snapshot).map_err(|e| self.engine_error(e))?;
        batch.put_message(RAFT_GROUP, HARD_STATE_KEY.to_vec(), &hard_state).map_err(|e| self.engine_error(e))?;
        batch.put_message(RAFT_GROUP, CONF_STATE_KEY.to_vec(), &conf_state).map_err(|e| self.engine_error(e))?;
        // Compacting past both the snapshot and the last entry empties the log.
        let compact_to = core.last_index().max(index) + 1;
        batch.add_command(RAFT_GROUP, Command::Compact { index: compact_to });
        self.commit(&mut batch, true)?;

        core.snapshot = snapshot.clone();
        core.hard_state = hard_state;
        core.conf_state = conf_state;
        core.first_index = index + 1;
        core.entries.clear();
        Ok(())
    }

    /// Records a snapshot of the local state machine taken at `index` (which must be applied,
    /// hence committed and persisted) and compacts the log up to `index - retention`, keeping
    /// that many entries for followers that are only slightly behind. One batch, fsynced.
    pub fn create_snapshot(&self, index: u64, conf_state: ConfState, data: Vec<u8>, retention: u64) -> Result<()> {
        let mut core = self.write();
        if index <= core.snapshot_metadata().index {
            return Ok(());
        }
        if index > core.last_index() || index < core.first_index {
            return Err(Error::Raft { source: raft::Error::Store(StorageError::Unavailable) });
        }
        let term = core.entries[(index - core.first_index) as usize].term;
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(conf_state);

        let mut batch = LogBatch::default();
        batch.put_message(RAFT_GROUP, SNAPSHOT_KEY.to_vec(), &snapshot).map_err(|e| self.engine_error(e))?;
        let compact_to = (index + 1).saturating_sub(retention);
        if compact_to > core.first_index {
            batch.add_command(RAFT_GROUP, Command::Compact { index: compact_to });
        }
        self.commit(&mut batch, true)?;

        core.snapshot = snapshot;
        if compact_to > core.first_index {
            let drop = (compact_to - core.first_index) as usize;
            core.entries.drain(..drop);
            core.first_index = compact_to;
        }
        drop(core);
        // Let raft-engine reclaim files that hold only compacted entries. The groups it asks
        // to compact further are ours only, and we already compacted what we can.
        on_fresh_thread(|| self.engine.purge_expired_files()).map_err(|e| self.engine_error(e))?;
        Ok(())
    }
}

/// Runs `work` on a new thread and waits for it (see the module docs on raft-engine's
/// thread-local block cache).
fn on_fresh_thread<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.read();
        Ok(RaftState::new(core.hard_state.clone(), core.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.read();
        if low < core.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > core.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let start = (low - core.first_index) as usize;
        let end = (high - core.first_index) as usize;
        let mut entries: Vec<Entry> = core.entries.range(start..end).cloned().collect();
        // At least one entry whatever `max_size` says, as raft-rs requires.
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let core = self.read();
        let metadata = core.snapshot_metadata();
        if index == metadata.index {
            return Ok(metadata.term);
        }
        if index < core.first_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > core.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(core.entries[(index - core.first_index) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read().first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read().last_index())
    }

    /// The latest recorded snapshot. raft-rs asks for one to send to a follower whose next
    /// entry has been compacted away. `request_index` is only non-zero when a follower called
    /// `request_snapshot`, which stepmap does not; a snapshot older than it is reported as
    /// temporarily unavailable (raft-rs retries later) rather than faked.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let core = self.read();
        if core.snapshot_metadata().index < request_index || core.snapshot_metadata().index == 0 {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(core.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        let mut entry = Entry { index, term, ..Entry::default() };
        entry.set_data(format!("e{index}").into_bytes().into());
        entry
    }

    fn hard_state(term: u64, commit: u64) -> HardState {
        HardState { term, vote: 1, commit, ..HardState::default() }
    }

    #[test]
    fn fresh_log_has_the_configured_voters_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let storage = RaftStorage::open(dir.path(), &[1, 2, 3]).unwrap();
        let state = storage.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(state.hard_state, HardState::default());
        assert_eq!(storage.first_index().unwrap(), 1);
        assert_eq!(storage.last_index().unwrap(), 0);
        assert_eq!(storage.term(0).unwrap(), 0);
    }

    #[test]
    fn append_truncates_conflicting_suffix_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let storage = RaftStorage::open(dir.path(), &[1]).unwrap();
            storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)], Some(&hard_state(1, 1))).unwrap();
            // A new leader overwrites index 2 onwards (Raft paper §5.3).
            storage.append(&[entry(2, 2)], Some(&hard_state(2, 2))).unwrap();
            assert_eq!(storage.last_index().unwrap(), 2);
            assert_eq!(storage.term(2).unwrap(), 2);
        }
        let storage = RaftStorage::open(dir.path(), &[9]).unwrap();
        let state = storage.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![1], "a used log keeps its voters");
        assert_eq!(state.hard_state, hard_state(2, 2));
        assert_eq!((storage.first_index().unwrap(), storage.last_index().unwrap()), (1, 2));
        let entries = storage.entries(1, 3, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(1, 1), (2, 2)]);
        assert_eq!(&entries[1].data[..], b"e2");
    }

    #[test]
    fn create_snapshot_compacts_behind_retention_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let storage = RaftStorage::open(dir.path(), &[1]).unwrap();
            let entries: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
            storage.append(&entries, Some(&hard_state(1, 10))).unwrap();
            storage.create_snapshot(8, storage.conf_state(), b"state@8".to_vec(), 3).unwrap();
            assert_eq!(storage.first_index().unwrap(), 6);
            assert_eq!(storage.term(5), Err(raft::Error::Store(StorageError::Compacted)));
            assert_eq!(
                storage.entries(4, 7, None, GetEntriesContext::empty(false)),
                Err(raft::Error::Store(StorageError::Compacted))
            );
        }
        let storage = RaftStorage::open(dir.path(), &[1]).unwrap();
        assert_eq!((storage.first_index().unwrap(), storage.last_index().unwrap()), (6, 10));
        let snapshot = storage.snapshot(0, 2).unwrap();
        assert_eq!((snapshot.get_metadata().index, snapshot.get_metadata().term), (8, 1));
        assert_eq!(&snapshot.data[..], b"state@8");
        assert_eq!(storage.term(8).unwrap(), 1);
    }

    #[test]
    fn apply_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let storage = RaftStorage::open(dir.path(), &[1, 2, 3]).unwrap();
            storage.append(&[entry(1, 1), entry(2, 1), entry(3, 1)], Some(&hard_state(1, 2))).unwrap();
            let mut snapshot = Snapshot::default();
            snapshot.set_data(b"leader state".to_vec().into());
            snapshot.mut_metadata().index = 20;
            snapshot.mut_metadata().term = 3;
            snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
            storage.apply_snapshot(&snapshot).unwrap();
            assert_eq!((storage.first_index().unwrap(), storage.last_index().unwrap()), (21, 20));
            assert_eq!(storage.term(20).unwrap(), 3);
            // The log continues right after the snapshot.
            storage.append(&[entry(21, 3)], Some(&hard_state(3, 21))).unwrap();
        }
        let storage = RaftStorage::open(dir.path(), &[1, 2, 3]).unwrap();
        assert_eq!((storage.first_index().unwrap(), storage.last_index().unwrap()), (21, 21));
        assert_eq!(storage.hard_state().commit, 21);
        assert_eq!(storage.snapshot_index(), 20);
    }
}
