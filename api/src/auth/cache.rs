//! A small time-bounded cache of database answers (users, sessions, API keys), so a busy
//! caller costs one read per `auth.user_cache_seconds`, not one per request. A zero TTL turns
//! it off. It is per process: a change made through another instance is seen within the TTL;
//! a change made through this one is forgotten at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most entries kept; the cache is cleared when full (cheap, and bounded).
const MAX_ENTRIES: usize = 10_000;

/// Values by name, each for at most the TTL.
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    map: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value of `name`, if still fresh.
    pub fn get(&self, name: &str) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Remembers `value` for `name`.
    pub fn put(&self, name: &str, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(name.to_owned(), (Instant::now(), value));
    }

    /// Forgets `name`.
    pub fn forget(&self, name: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let c = TtlCache::new(Duration::from_secs(60));
        c.put("a", 1);
        assert_eq!(c.get("a"), Some(1));
        c.forget("a");
        assert_eq!(c.get("a"), None);
        let off = TtlCache::new(Duration::ZERO);
        off.put("a", 1);
        assert_eq!(off.get("a"), None);
    }
}
