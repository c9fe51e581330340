//! Staged batches this process wrote, kept for the finaliser of the same process.
//!
//! A worker stages each unit's result entries as an object; the map run's finaliser, on the
//! coordinator, copies them into the result files soon after, in unit order. When both run in
//! one process on the same [`Stores`](crate::Stores) (the embedded cluster of `stepmap run`,
//! which opts in with `Stores::keeping_staged_batches`), reading the object back was a second trip through the kernel for every result byte (orders,
//! 1M rows: about 3% of the engine's CPU). The object is still written: it is what a
//! finaliser in another process, or a later one after a crash, reads. The cache only spares
//! the read, with the very bytes that were written (a `Bytes` clone, no copy).
//!
//! Contract: an entry holds the bytes of the last successful write of its key (the writer
//! takes the entry before writing again, and an entry too large to keep replaces none).
//! [`StagedCache::take`] hands an entry out once (a finaliser copies a staged batch
//! once; should it need it again, it reads the object). Entries not taken are dropped oldest
//! first beyond [`CAPACITY`] bytes, and with their map run's staging
//! ([`StagedCache::forget_under`]), so the cache never holds more than a few units' results.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

/// At most this many bytes of staged batches are kept: about a dozen units of a typical run,
/// more than the finaliser lags behind the workers.
pub(crate) const CAPACITY: usize = 16 << 20;

/// `(bucket, key)` of a staged object.
type Key = (String, String);

#[derive(Default)]
pub struct StagedCache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for StagedCache {
    /// Sizes only: the entries are megabytes of results.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("StagedCache").field("entries", &inner.entries.len()).field("bytes", &inner.bytes).finish()
    }
}

#[derive(Default)]
struct Inner {
    /// By key: the entry's generation (which insertion made it) and its bytes.
    entries: HashMap<Key, (u64, Bytes)>,
    /// Keys with the generation inserted, oldest first. A slot whose generation is no longer
    /// its key's (the entry was taken, replaced or dropped) is skipped.
    order: VecDeque<(Key, u64)>,
    next_generation: u64,
    bytes: usize,
}

impl Inner {
    fn is_current(&self, (name, generation): &(Key, u64)) -> bool {
        self.entries.get(name).is_some_and(|(current, _)| current == generation)
    }

    /// Drops the slots of entries taken, replaced or dropped.
    fn compact_order(&mut self) {
        let mut order = std::mem::take(&mut self.order);
        order.retain(|slot| self.is_current(slot));
        self.order = order;
    }

    fn remove(&mut self, name: &Key) -> Option<Bytes> {
        let (_, bytes) = self.entries.remove(name)?;
        self.bytes -= bytes.len();
        Some(bytes)
    }
}

impl StagedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent after every operation: a panic elsewhere cannot break it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers what was just written to `bucket`/`key`, replacing an earlier entry. An
    /// object larger than the whole cache is not kept (nor is the earlier entry).
    pub fn insert(&self, bucket: &str, key: &str, bytes: Bytes) {
        let mut inner = self.lock();
        let name = (bucket.to_owned(), key.to_owned());
        inner.remove(&name);
        if bytes.len() > CAPACITY {
            return;
        }
        let generation = inner.next_generation;
        inner.next_generation += 1;
        inner.bytes += bytes.len();
        inner.entries.insert(name.clone(), (generation, bytes));
        inner.order.push_back((name, generation));
        while inner.bytes > CAPACITY {
            let Some(oldest) = inner.order.pop_front() else { break };
            if inner.is_current(&oldest) {
                inner.remove(&oldest.0);
            }
        }
        // Slots of entries taken or replaced pile up only until this.
        if inner.order.len() > 2 * inner.entries.len() + 64 {
            inner.compact_order();
        }
    }

    /// The bytes written to `bucket`/`key` by this process, if still kept; they are not kept
    /// after this.
    pub fn take(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.lock().remove(&(bucket.to_owned(), key.to_owned()))
    }

    /// Drops every entry of `bucket` whose key starts with `prefix` (its objects are deleted).
    pub fn forget_under(&self, bucket: &str, prefix: &str) {
        let mut inner = self.lock();
        let doomed: Vec<Key> =
            inner.entries.keys().filter(|(b, k)| b == bucket && k.starts_with(prefix)).cloned().collect();
        for name in &doomed {
            inner.remove(name);
        }
        inner.compact_order();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn an_entry_is_taken_once() {
        let cache = StagedCache::default();
        cache.insert("b", "k", Bytes::from_static(b"S{}\n"));
        assert_eq!(cache.take("b", "k").as_deref(), Some(&b"S{}\n"[..]));
        assert_eq!(cache.take("b", "k"), None);
        assert_eq!(cache.take("other", "k"), None);
    }

    #[test]
    fn a_rewrite_replaces_the_entry_and_its_size() {
        let cache = StagedCache::default();
        cache.insert("b", "k", bytes(10));
        cache.insert("b", "k", bytes(3));
        assert_eq!(cache.lock().bytes, 3);
        assert_eq!(cache.take("b", "k").map(|b| b.len()), Some(3));
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn a_rewrite_too_large_to_keep_drops_the_earlier_entry() {
        let cache = StagedCache::default();
        cache.insert("b", "k", bytes(10));
        cache.insert("b", "k", bytes(CAPACITY + 1));
        assert_eq!(cache.take("b", "k"), None, "the object holds the rewrite, not what was kept");
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn a_rewritten_entry_is_evicted_by_its_own_age() {
        let cache = StagedCache::default();
        let third = CAPACITY / 3;
        cache.insert("b", "k", bytes(third));
        cache.insert("b", "old", bytes(third));
        // Rewritten after "old": its first, older slot must not evict the rewrite.
        cache.insert("b", "k", bytes(third));
        cache.insert("b", "new", bytes(third));
        cache.insert("b", "newer", bytes(third));
        assert_eq!(cache.take("b", "old"), None, "the oldest went");
        assert!(cache.take("b", "k").is_some(), "the rewrite is younger than \"old\"");
        for _ in 0..1000 {
            cache.insert("b", "again", bytes(1));
        }
        assert!(cache.lock().order.len() <= 2 * 4 + 64, "repeated rewrites do not pile up slots");
    }

    #[test]
    fn the_oldest_entries_go_beyond_the_capacity() {
        let cache = StagedCache::default();
        let quarter = CAPACITY / 4;
        for key in ["1", "2", "3", "4", "5"] {
            cache.insert("b", key, bytes(quarter));
        }
        assert_eq!(cache.take("b", "1"), None, "the oldest went");
        for key in ["2", "3", "4", "5"] {
            assert!(cache.take("b", key).is_some(), "{key} kept");
        }
        cache.insert("b", "huge", bytes(CAPACITY + 1));
        assert_eq!(cache.take("b", "huge"), None, "larger than the cache: not kept");
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn taken_keys_do_not_pile_up() {
        let cache = StagedCache::default();
        for i in 0..10_000 {
            let key = i.to_string();
            cache.insert("b", &key, bytes(1));
            cache.take("b", &key);
        }
        assert!(cache.lock().order.len() <= 2 + 64);
    }

    #[test]
    fn a_runs_staging_is_forgotten_with_it() {
        let cache = StagedCache::default();
        cache.insert("b", "run1/_staging/batch-1", bytes(5));
        cache.insert("b", "run2/_staging/batch-1", bytes(7));
        cache.insert("c", "run1/_staging/batch-2", bytes(11));
        cache.forget_under("b", "run1/_staging/");
        assert_eq!(cache.take("b", "run1/_staging/batch-1"), None);
        assert_eq!(cache.lock().bytes, 18);
        assert!(cache.take("b", "run2/_staging/batch-1").is_some());
        assert!(cache.take("c", "run1/_staging/batch-2").is_some());
    }
}
