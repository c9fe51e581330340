//! Staged batches kept in memory instead of written, for a finaliser of the same process.
//!
//! A worker stages each unit's result entries as an object; the map run's finaliser, on the
//! coordinator, copies them into the result files soon after, in unit order. The object is
//! what a finaliser in another process, or a later one after a crash, reads. When nothing but
//! a finaliser of this very process can ever read it (the embedded cluster of `stepmap run`,
//! whose Raft log dies with the process, opts in with `Stores::keeping_staged_batches`),
//! writing it, reading it back and deleting it is only cost: three trips through the kernel
//! for every result byte, and three hand-overs to the blocking pool per unit. Such a batch is
//! kept here instead, and handed to the finaliser as it is (a `Bytes` clone, no copy).
//!
//! Contract:
//! * [`StagedCache::keep`] keeps at most [`CAPACITY`] bytes not yet taken; a batch that does
//!   not fit is handed back, for the writer to write as an object as usual (a finaliser far
//!   behind its workers reads those back). So a map run's memory does not grow with its size.
//! * [`StagedCache::take`] hands an entry out once: a finaliser copies a staged batch once.
//! * An entry replaces any earlier one of its key, and goes with its map run's staging, or
//!   when its map run's results are given up ([`StagedCache::forget_under`]).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// At most this many bytes of staged batches are kept: about a hundred units of the orders
/// bench, more than the finaliser lags behind the workers.
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
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, name: &Key) -> Option<Bytes> {
        let bytes = self.entries.remove(name)?;
        self.bytes -= bytes.len();
        Some(bytes)
    }
}

impl StagedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent after every operation: a panic elsewhere cannot break it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `bytes` as the staged batch `bucket`/`key`, replacing an earlier entry; hands
    /// them back when they do not fit (the caller writes the object then, and the earlier
    /// entry is gone all the same).
    pub fn keep(&self, bucket: &str, key: &str, bytes: Bytes) -> Result<(), Bytes> {
        let mut inner = self.lock();
        let name = (bucket.to_owned(), key.to_owned());
        inner.remove(&name);
        if inner.bytes + bytes.len() > CAPACITY {
            return Err(bytes);
        }
        inner.bytes += bytes.len();
        inner.entries.insert(name, bytes);
        Ok(())
    }

    /// The staged batch `bucket`/`key` if it is kept; it is not kept after this.
    pub fn take(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.lock().remove(&(bucket.to_owned(), key.to_owned()))
    }

    /// Drops every entry of `bucket` whose key starts with `prefix` (its map run's staging is
    /// removed).
    pub fn forget_under(&self, bucket: &str, prefix: &str) {
        let mut inner = self.lock();
        let doomed: Vec<Key> =
            inner.entries.keys().filter(|(b, k)| b == bucket && k.starts_with(prefix)).cloned().collect();
        for name in &doomed {
            inner.remove(name);
        }
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
        cache.keep("b", "k", Bytes::from_static(b"S{}\n")).unwrap();
        assert_eq!(cache.take("b", "k").as_deref(), Some(&b"S{}\n"[..]));
        assert_eq!(cache.take("b", "k"), None);
        assert_eq!(cache.take("other", "k"), None);
    }

    #[test]
    fn a_rewrite_replaces_the_entry_and_its_size() {
        let cache = StagedCache::default();
        cache.keep("b", "k", bytes(10)).unwrap();
        cache.keep("b", "k", bytes(3)).unwrap();
        assert_eq!(cache.lock().bytes, 3);
        assert_eq!(cache.take("b", "k").map(|b| b.len()), Some(3));
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn a_rewrite_that_does_not_fit_drops_the_earlier_entry() {
        let cache = StagedCache::default();
        cache.keep("b", "k", bytes(10)).unwrap();
        assert_eq!(cache.keep("b", "k", bytes(CAPACITY + 1)).unwrap_err().len(), CAPACITY + 1);
        assert_eq!(cache.take("b", "k"), None, "the object holds the rewrite, not what was kept");
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn batches_beyond_the_capacity_are_handed_back_until_some_are_taken() {
        let cache = StagedCache::default();
        let quarter = CAPACITY / 4;
        for key in ["1", "2", "3", "4"] {
            cache.keep("b", key, bytes(quarter)).unwrap();
        }
        assert_eq!(cache.keep("b", "5", bytes(1)).unwrap_err().len(), 1, "full: written instead");
        assert_eq!(cache.take("b", "5"), None);
        assert!(cache.take("b", "1").is_some(), "nothing kept is ever dropped for room");
        cache.keep("b", "5", bytes(quarter)).unwrap();
        for key in ["2", "3", "4", "5"] {
            assert!(cache.take("b", key).is_some(), "{key} kept");
        }
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn a_runs_staging_is_forgotten_with_it() {
        let cache = StagedCache::default();
        cache.keep("b", "run1/_staging/batch-1", bytes(5)).unwrap();
        cache.keep("b", "run2/_staging/batch-1", bytes(7)).unwrap();
        cache.keep("c", "run1/_staging/batch-2", bytes(11)).unwrap();
        cache.forget_under("b", "run1/_staging/");
        assert_eq!(cache.take("b", "run1/_staging/batch-1"), None);
        assert_eq!(cache.lock().bytes, 18);
        assert!(cache.take("b", "run2/_staging/batch-1").is_some());
        assert!(cache.take("c", "run1/_staging/batch-2").is_some());
    }
}
