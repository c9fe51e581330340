//! Staged batches this process wrote, kept for the finaliser of the same process.
//!
//! A worker stages each unit's result entries as an object; the map run's finaliser, on the
//! coordinator, copies them into the result files soon after, in unit order. When both run in
//! one process (the embedded cluster of `stepmap run`, or a worker beside its coordinator),
//! reading the object back was a second trip through the kernel for every result byte (orders,
//! 1M rows: about 3% of the engine's CPU). The object is still written: it is what a
//! finaliser in another process, or a later one after a crash, reads. The cache only spares
//! the read, with the very bytes that were written (a `Bytes` clone, no copy).
//!
//! Contract: [`StagedCache::take`] hands an entry out once (a finaliser copies a staged batch
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
    entries: HashMap<Key, Bytes>,
    /// Keys in insertion order; may name entries already taken or replaced (skipped on eviction).
    order: VecDeque<Key>,
    bytes: usize,
}

impl StagedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent after every operation: a panic elsewhere cannot break it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers what was just written to `bucket`/`key` (replacing an earlier entry). An
    /// object larger than the whole cache is not kept.
    pub fn insert(&self, bucket: &str, key: &str, bytes: Bytes) {
        if bytes.len() > CAPACITY {
            return;
        }
        let mut inner = self.lock();
        let name = (bucket.to_owned(), key.to_owned());
        inner.bytes += bytes.len();
        if let Some(replaced) = inner.entries.insert(name.clone(), bytes) {
            inner.bytes -= replaced.len();
        }
        inner.order.push_back(name);
        while inner.bytes > CAPACITY {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(evicted) = inner.entries.remove(&oldest) {
                inner.bytes -= evicted.len();
            }
        }
        // Keys of taken entries pile up in `order` only until the next eviction pass, or this:
        if inner.order.len() > 2 * inner.entries.len() + 64 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|name| entries.contains_key(name));
        }
    }

    /// The bytes written to `bucket`/`key` by this process, if still kept; they are not kept
    /// after this.
    pub fn take(&self, bucket: &str, key: &str) -> Option<Bytes> {
        let mut inner = self.lock();
        let taken = inner.entries.remove(&(bucket.to_owned(), key.to_owned()))?;
        inner.bytes -= taken.len();
        Some(taken)
    }

    /// Drops every entry of `bucket` whose key starts with `prefix` (its objects are deleted).
    pub fn forget_under(&self, bucket: &str, prefix: &str) {
        let mut inner = self.lock();
        let Inner { entries, order, bytes } = &mut *inner;
        entries.retain(|(b, k), entry| {
            let keep = b != bucket || !k.starts_with(prefix);
            if !keep {
                *bytes -= entry.len();
            }
            keep
        });
        order.retain(|name| entries.contains_key(name));
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
        assert!(cache.lock().order.len() <= 64 + 1);
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
