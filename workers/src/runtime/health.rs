//! Actor health: each actor writes its own entry on a shared board; a reporter publishes
//! the board to Redis with a TTL so a separate `vigil api` process can answer `/ready`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use vigil_queue::{ActorHealth, ActorLoad};

/// The health entries of one instance, by actor name.
#[derive(Clone, Debug)]
pub struct HealthBoard {
    instance: String,
    entries: Arc<Mutex<BTreeMap<String, ActorHealth>>>,
}

impl HealthBoard {
    pub fn new(instance: &str) -> Self {
        Self {
            instance: instance.to_owned(),
            entries: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ActorHealth>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets an actor's state (keeps its restart count).
    pub fn set(&self, name: &str, healthy: bool, last_error: Option<String>) {
        let mut map = self.lock();
        let entry = map.entry(name.to_owned()).or_insert_with(|| ActorHealth {
            instance: self.instance.clone(),
            name: name.to_owned(),
            healthy,
            restarts: 0,
            last_error: None,
            updated_at: Utc::now(),
            reported_at: None,
            load: None,
        });
        entry.healthy = healthy;
        if last_error.is_some() || healthy {
            entry.last_error = last_error.or(entry.last_error.take().filter(|_| !healthy));
        }
        entry.updated_at = Utc::now();
    }

    /// Sets a queue actor's load (without touching its state or `updated_at`).
    pub fn set_load(&self, name: &str, load: Option<ActorLoad>) {
        if let Some(e) = self.lock().get_mut(name) {
            e.load = load;
        }
    }

    /// Counts a restart of `name` and returns the new count.
    pub fn restarted(&self, name: &str, error: &str) -> u64 {
        self.set(name, false, Some(error.to_owned()));
        let mut map = self.lock();
        map.get_mut(name).map_or(0, |e| {
            e.restarts += 1;
            e.restarts
        })
    }

    pub fn restarts(&self, name: &str) -> u64 {
        self.lock().get(name).map_or(0, |e| e.restarts)
    }

    /// Every actor's health.
    pub fn snapshot(&self) -> Vec<ActorHealth> {
        self.lock().values().cloned().collect()
    }
}
