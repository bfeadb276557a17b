//! The registry of job kinds: which kinds this process knows. [`register`] makes a kind
//! known to the whole process: queue names parse ([`Queue`]'s `FromStr`), `[queues.<name>]`
//! config sections resolve onto the kind's defaults, the engine validates payloads on enqueue,
//! and the API, dashboard, metrics and schedules list it. vigil's own kinds (the payloads of
//! this crate) are known from the start; a kind declared elsewhere (e.g. in the workers crate,
//! next to its handler) is registered by the application's one registration point
//! (`src/jobs.rs`). Registering is idempotent and the registry only grows.

use std::collections::BTreeMap;
use std::sync::{LazyLock, RwLock};

use crate::job::{Job, Kind};
use crate::{Queue, ValidationError};

static KINDS: LazyLock<RwLock<BTreeMap<Queue, Kind>>> = LazyLock::new(|| {
    RwLock::new(
        crate::kinds::builtin()
            .into_iter()
            .map(|k| (k.queue, k))
            .collect(),
    )
});

fn read() -> std::sync::RwLockReadGuard<'static, BTreeMap<Queue, Kind>> {
    KINDS.read().unwrap_or_else(|e| e.into_inner())
}

/// Makes `J` known to the process (idempotent).
///
/// # Panics
/// When another type already registered `J::QUEUE` with different defaults: two kinds on one
/// queue is a programming error found at start-up.
pub fn register<J: Job>() {
    let kind = Kind::of::<J>();
    let mut kinds = KINDS.write().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = kinds.get(&kind.queue) {
        assert!(
            old.settings == kind.settings && old.schedules == kind.schedules,
            "two job kinds declare the queue `{}`",
            kind.queue
        );
        return;
    }
    kinds.insert(kind.queue, kind);
}

/// Every registered kind, in queue-name order.
pub fn kinds() -> Vec<Kind> {
    read().values().cloned().collect()
}

/// The kind of `queue`.
pub fn kind(queue: Queue) -> Option<Kind> {
    read().get(&queue).cloned()
}

/// Every registered queue, in name order.
pub fn queues() -> Vec<Queue> {
    read().keys().copied().collect()
}

/// The registered queue called `name`.
pub(crate) fn lookup(name: &str) -> Option<Queue> {
    read().keys().find(|q| q.as_str() == name).copied()
}

/// Decodes and validates a payload for `queue`.
pub fn validate(queue: Queue, payload: &serde_json::Value) -> Result<(), ValidationError> {
    // Under the read lock: cloning the kind (settings, schedules, example) per enqueued job
    // would be work for nothing.
    match read().get(&queue) {
        Some(k) => k.validate(payload),
        None => Err(ValidationError::new(
            "queue",
            format!("no job kind is registered for `{queue}`"),
        )),
    }
}
