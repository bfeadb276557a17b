//! `notification`: deliver one recorded escalation notification through its channel
//! (signed webhook, Slack, Teams or PagerDuty); email notifications ride the `email` queue.
//!
//! The escalation run records a notification row per target and queues one of these per
//! row; the alert's retry route and PagerDuty's acknowledge/resolve follow-ups queue them
//! too. The handler asks the notification tracker first, so a re-delivered job whose
//! notification was already sent, or whose alert was answered meanwhile, sends nothing:
//! re-running is safe. 429 and 5xx answers retry (honouring `Retry-After`), other 4xx are
//! final with the receiver's reason; the last attempt's failure marks the notification dead.

use serde::{Deserialize, Serialize};

use crate::{Job, Queue, QueueSettings, Validate, ValidationError};

/// Deliver notification `notification_id` of alert `alert_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationJob {
    pub alert_id: i64,
    pub notification_id: i64,
}

impl NotificationJob {
    /// The delivery of `notification_id` of alert `alert_id`.
    pub fn new(alert_id: i64, notification_id: i64) -> NotificationJob {
        NotificationJob {
            alert_id,
            notification_id,
        }
    }

    /// The idempotency key every producer gives this delivery's job (one job per
    /// notification, whoever queues it first).
    pub fn idempotency_key(&self) -> String {
        format!(
            "alert-{}-notification-{}",
            self.alert_id, self.notification_id
        )
    }
}

impl Validate for NotificationJob {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.alert_id < 1 {
            return Err(ValidationError::new("alert_id", "must be positive"));
        }
        if self.notification_id < 1 {
            return Err(ValidationError::new("notification_id", "must be positive"));
        }
        Ok(())
    }
}

impl Job for NotificationJob {
    const QUEUE: Queue = Queue::new("notification");

    fn settings() -> QueueSettings {
        QueueSettings {
            max_attempts: 6,
            timeout_seconds: 30,
            concurrency: 4,
            backoff_base_ms: 2_000,
            ..QueueSettings::default()
        }
    }

    fn example() -> serde_json::Value {
        serde_json::json!({ "alert_id": 1, "notification_id": 1 })
    }
}
