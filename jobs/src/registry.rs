//! Job kinds and the registry that knows them.
//!
//! A job kind is a payload type implementing [`Job`]: its queue name, its queue's default
//! settings, default schedules and an example payload. [`register`] makes a kind
//! known to the whole process: queue names parse ([`Queue`]'s `FromStr`), `[queues.<name>]`
//! config sections resolve onto the kind's defaults, the engine validates payloads on enqueue,
//! and the API, dashboard, metrics and schedules list it. vigil's own kinds (the payloads of
//! this crate) are known from the start; a kind declared elsewhere (e.g. in the workers crate,
//! next to its handler) is registered by the application's one registration point
//! (`src/jobs.rs`). Registering is idempotent and the registry only grows.

use std::collections::BTreeMap;
use std::sync::{LazyLock, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::settings::QueueSettings;
use crate::{Queue, Validate, ValidationError};

/// One kind of job: a payload type with its queue and defaults.
///
/// Payloads are JSON on the wire and in Redis; they should reject unknown fields
/// (`#[serde(deny_unknown_fields)]`) and check what serde cannot in [`Validate`].
pub trait Job: Serialize + DeserializeOwned + Validate + Send + Sync + 'static {
    /// The queue this kind's jobs run on (one queue per kind).
    const QUEUE: Queue;

    /// The queue's settings when config does not override them (`[queues.<name>]`).
    fn settings() -> QueueSettings {
        QueueSettings::default()
    }

    /// The schedules this kind runs when config does not define them (`[schedules.<name>]`
    /// with the same name replaces one; `enabled = false` turns it off).
    fn schedules() -> Vec<DefaultSchedule> {
        Vec::new()
    }

    /// A payload that validates: the API documents it and tests enqueue it.
    fn example() -> serde_json::Value;

    /// Decodes and validates a payload (the engine validated it at enqueue; a handler
    /// decodes it again, so a payload changed in Redis cannot slip through).
    fn decode(value: serde_json::Value) -> Result<Self, ValidationError> {
        let job: Self = serde_json::from_value(value)
            .map_err(|e| ValidationError::new("payload", e.to_string()))?;
        job.validate()?;
        Ok(job)
    }
}

/// A schedule a job kind runs by default.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultSchedule {
    /// The schedule's name (`[schedules.<name>]`); by convention the queue's name for the
    /// kind's main schedule.
    pub name: &'static str,
    /// Six fields, seconds first (UTC).
    pub cron: &'static str,
    /// The payload of each job it enqueues.
    pub payload: serde_json::Value,
}

impl DefaultSchedule {
    /// `name` on `cron`, enqueuing `{}`.
    pub fn new(name: &'static str, cron: &'static str) -> Self {
        Self {
            name,
            cron,
            payload: serde_json::json!({}),
        }
    }
}

/// A registered kind, without its type: what the engine, API and config need.
#[derive(Debug, Clone)]
pub struct Kind {
    pub queue: Queue,
    pub settings: QueueSettings,
    pub schedules: Vec<DefaultSchedule>,
    pub example: serde_json::Value,
    check: fn(serde_json::Value) -> Result<(), ValidationError>,
}

impl Kind {
    /// The kind of `J`.
    pub fn of<J: Job>() -> Kind {
        Kind {
            queue: J::QUEUE,
            settings: J::settings(),
            schedules: J::schedules(),
            example: J::example(),
            check: |v| J::decode(v).map(|_| ()),
        }
    }

    /// Decodes and validates `payload` as this kind's payload.
    pub fn validate(&self, payload: &serde_json::Value) -> Result<(), ValidationError> {
        (self.check)(payload.clone())
    }
}

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
    match kind(queue) {
        Some(k) => k.validate(payload),
        None => Err(ValidationError::new(
            "queue",
            format!("no job kind is registered for `{queue}`"),
        )),
    }
}
