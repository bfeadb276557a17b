//! A job kind: a payload type implementing [`Job`] (its queue name, its queue's default
//! settings, default schedules and an example payload), and [`Kind`], the same without its
//! type, as the registry ([`crate::registry`]) keeps it.

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
    check: fn(&serde_json::Value) -> Result<(), ValidationError>,
}

impl Kind {
    /// The kind of `J`.
    pub fn of<J: Job>() -> Kind {
        Kind {
            queue: J::QUEUE,
            settings: J::settings(),
            schedules: J::schedules(),
            example: J::example(),
            // Decoded from the borrowed value: enqueueing validates every payload, and a
            // copy of each would be work for nothing.
            check: |v| {
                J::deserialize(v)
                    .map_err(|e| ValidationError::new("payload", e.to_string()))?
                    .validate()
            },
        }
    }

    /// Decodes and validates `payload` as this kind's payload.
    pub fn validate(&self, payload: &serde_json::Value) -> Result<(), ValidationError> {
        (self.check)(payload)
    }
}
