//! `audit`: append one record to the hash-chained audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validate::non_empty;
use crate::{Job, Queue, QueueSettings, Retention, Validate, ValidationError};

/// Who did something that is audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum AuditActor {
    /// An API user (by username).
    User(String),
    /// The daemon itself (start, stop, schedules).
    System,
    /// A job (by job id).
    Job(String),
}

impl AuditActor {
    /// The flat form stored and filtered on: `user:alice`, `system`, `job:01H...`.
    pub fn label(&self) -> String {
        match self {
            AuditActor::User(name) => format!("user:{name}"),
            AuditActor::System => "system".to_owned(),
            AuditActor::Job(id) => format!("job:{id}"),
        }
    }
}

/// Append one record to the audit trail.
///
/// Idempotent: the writer stores each `event_id` once, so a re-delivered job adds nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditJob {
    /// Unique id of this audit event, chosen by the producer (dedup key).
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: AuditActor,
    /// What happened, dotted lower-case, e.g. `job.enqueue`, `alert.acknowledge`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    #[serde(default)]
    pub details: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

impl AuditJob {
    /// The record of `action` by `actor` on `target` (type, id), happening now. `event_id`
    /// makes it idempotent: give one derived from what happened (`alert-7-level-2`) so a
    /// repeat adds nothing, or `None` for a fresh one (an action that happens once).
    pub fn record(
        event_id: Option<String>,
        actor: AuditActor,
        action: &str,
        target: (&str, &str),
        details: serde_json::Value,
    ) -> AuditJob {
        AuditJob {
            event_id: event_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            occurred_at: Utc::now(),
            actor,
            action: action.to_owned(),
            target_type: target.0.to_owned(),
            target_id: target.1.to_owned(),
            details,
            request_id: None,
            job_id: None,
        }
    }
}

impl Validate for AuditJob {
    fn validate(&self) -> Result<(), ValidationError> {
        non_empty("event_id", &self.event_id, 100)?;
        non_empty("action", &self.action, 100)?;
        if !self
            .action
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
        {
            return Err(ValidationError::new(
                "action",
                "use lower-case letters, digits, `.` and `_` (e.g. job.enqueue)",
            ));
        }
        non_empty("target_type", &self.target_type, 100)?;
        if self.target_id.chars().count() > 200 {
            return Err(ValidationError::new(
                "target_id",
                "must be at most 200 characters",
            ));
        }
        if let AuditActor::User(name) | AuditActor::Job(name) = &self.actor {
            non_empty("actor.id", name, 200)?;
        }
        Ok(())
    }
}

impl Job for AuditJob {
    const QUEUE: Queue = Queue::new("audit");

    fn settings() -> QueueSettings {
        QueueSettings {
            // The record itself lives in the audit trail; the job only carries it there.
            retain_done: Retention::hours(1),
            max_attempts: 10,
            // A batch handler: one transaction stores up to 256 records; 512 in flight let
            // the next batch gather while one commits.
            concurrency: 512,
            batch_size: 256,
            batch_linger_ms: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            ..QueueSettings::default()
        }
    }

    fn example() -> serde_json::Value {
        serde_json::json!({
            "event_id": "change-4711",
            "occurred_at": "2026-01-01T00:00:00Z",
            "actor": {"kind": "user", "id": "alice"},
            "action": "change.approve",
            "target_type": "change",
            "target_id": "4711"
        })
    }
}
