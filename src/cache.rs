//! A small LRU with a time-to-live per entry, for per-source answers.
//!
//! Negative answers ("not listed", "no country") are cached like positive ones: a sweep from
//! thousands of unknown sources would otherwise redo the work for every packet.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

/// LRU bounded in entries and in age. Time is passed in so expiry is testable without sleeping.
pub struct TtlLru<K: Hash + Eq, V> {
    inner: LruCache<K, (Instant, V)>,
    ttl: Duration,
}

impl<K: Hash + Eq, V: Clone> TtlLru<K, V> {
    /// `capacity` of 0 is raised to 1: a cache that cannot hold anything is a config mistake,
    /// not a reason to fail a request.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero");
        TtlLru {
            inner: LruCache::new(cap),
            ttl,
        }
    }

    /// The value if present and younger than the TTL; an expired entry is dropped.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        match self.inner.get(key) {
            Some((at, v)) if now.saturating_duration_since(*at) < self.ttl => Some(v.clone()),
            Some(_) => {
                self.inner.pop(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value`, evicting the least recently used entry when full.
    pub fn put(&mut self, key: K, value: V, now: Instant) {
        self.inner.put(key, (now, value));
    }

    /// Forgets everything, e.g. when the lists behind the answers changed.
    pub fn clear(&mut self) {
        self.inner.clear();
    }

    /// Entries held (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_ttl() {
        let t0 = Instant::now();
        let mut c = TtlLru::new(4, Duration::from_secs(10));
        c.put("a", 1, t0);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(9)), Some(1));
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(10)), None);
        assert_eq!(c.len(), 0, "expired entry is dropped on access");
    }

    #[test]
    fn least_recently_used_is_evicted() {
        let t0 = Instant::now();
        let mut c = TtlLru::new(2, Duration::from_secs(60));
        c.put(1, "one", t0);
        c.put(2, "two", t0);
        assert_eq!(c.get(&1, t0), Some("one"));
        c.put(3, "three", t0);
        assert_eq!(c.get(&2, t0), None);
        assert_eq!(c.get(&1, t0), Some("one"));
        assert_eq!(c.get(&3, t0), Some("three"));
    }

    #[test]
    fn zero_capacity_still_works() {
        let t0 = Instant::now();
        let mut c = TtlLru::new(0, Duration::from_secs(1));
        c.put(1, 1, t0);
        assert_eq!(c.get(&1, t0), Some(1));
        c.clear();
        assert!(c.is_empty());
    }
}
