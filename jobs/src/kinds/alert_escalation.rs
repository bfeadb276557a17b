//! `alert_escalation`: find alerts whose next escalation level is due and notify; or deliver
//! one recorded notification; or run stored Okta events through detection first.

use serde::{Deserialize, Serialize};

use crate::{DefaultSchedule, Job, Queue, QueueSettings, Validate, ValidationError};

/// Find alerts whose next escalation level is due, and notify their targets.
///
/// With `alert_id`, looks at that alert only (enqueued when an alert opens). Idempotent:
/// each (alert, level) notifies once, whatever the number of runs or instances.
///
/// With `okta_event_ids` (queued by the Okta Event Hook route for the events a delivery
/// stored), the run first puts those events through the detection rules (those not
/// detected yet; detecting twice changes nothing). With `behavioural` (the
/// `behavioural_rules` schedule), it first runs the behavioural rules over stored events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertEscalationJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<i64>,
    /// Instead of a run: deliver one escalation level's webhook (jobs queued before
    /// notifications were recorded; new ones use `notification_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookDelivery>,
    /// Stored Okta events (their `id`) to run through detection first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub okta_event_ids: Vec<i64>,
    /// Instead of a run: deliver one recorded escalation notification (signed webhook,
    /// Slack, Teams or PagerDuty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<i64>,
    /// Run the behavioural rules over the stored events first (the `behavioural_rules`
    /// schedule's payload).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub behavioural: bool,
}

impl AlertEscalationJob {
    /// The most `okta_event_ids` one job carries.
    pub const MAX_OKTA_EVENTS: usize = 1000;
}

/// One webhook call of an escalation level: a signed JSON POST of the alert to `url`
/// (which must be a webhook target of a configured policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDelivery {
    pub alert_id: i64,
    pub level: i64,
    pub url: String,
}

impl Validate for AlertEscalationJob {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(id) = self.alert_id
            && id < 1
        {
            return Err(ValidationError::new("alert_id", "must be positive"));
        }
        if self.behavioural && (self.notification_id.is_some() || self.webhook.is_some()) {
            return Err(ValidationError::new(
                "behavioural",
                "a run takes behavioural; a delivery (webhook, notification_id) does not",
            ));
        }
        if let Some(n) = self.notification_id {
            if self.alert_id.is_some() || self.webhook.is_some() || !self.okta_event_ids.is_empty()
            {
                return Err(ValidationError::new(
                    "notification_id",
                    "give one of alert_id (a run), webhook or notification_id (a delivery)",
                ));
            }
            if n < 1 {
                return Err(ValidationError::new("notification_id", "must be positive"));
            }
        }
        if let Some(w) = &self.webhook {
            if self.alert_id.is_some() {
                return Err(ValidationError::new(
                    "webhook",
                    "give either alert_id (a run) or webhook (a delivery), not both",
                ));
            }
            if w.alert_id < 1 {
                return Err(ValidationError::new("webhook.alert_id", "must be positive"));
            }
            if w.level < 1 {
                return Err(ValidationError::new("webhook.level", "must be positive"));
            }
            if !(w.url.starts_with("https://") || w.url.starts_with("http://"))
                || w.url.len() > 2000
            {
                return Err(ValidationError::new(
                    "webhook.url",
                    "must be an http:// or https:// URL of at most 2000 characters",
                ));
            }
            if !self.okta_event_ids.is_empty() {
                return Err(ValidationError::new(
                    "okta_event_ids",
                    "give either webhook (a delivery) or okta_event_ids (a run), not both",
                ));
            }
        }
        if self.okta_event_ids.len() > Self::MAX_OKTA_EVENTS {
            return Err(ValidationError::new(
                "okta_event_ids",
                format!("must hold at most {} ids", Self::MAX_OKTA_EVENTS),
            ));
        }
        if self.okta_event_ids.iter().any(|id| *id < 1) {
            return Err(ValidationError::new("okta_event_ids", "must be positive"));
        }
        Ok(())
    }
}

impl Job for AlertEscalationJob {
    const QUEUE: Queue = Queue::new("alert_escalation");

    fn settings() -> QueueSettings {
        QueueSettings {
            max_attempts: 5,
            timeout_seconds: 120,
            concurrency: 2,
            ..QueueSettings::default()
        }
    }

    fn schedules() -> Vec<DefaultSchedule> {
        vec![
            DefaultSchedule::new("alert_escalation", "30 * * * * *"),
            // Behavioural rules over stored events: every 5 minutes, at most one window apart.
            DefaultSchedule {
                payload: serde_json::json!({ "behavioural": true }),
                ..DefaultSchedule::new("behavioural_rules", "45 */5 * * * *")
            },
        ]
    }

    fn example() -> serde_json::Value {
        serde_json::json!({})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_behavioural_run_is_a_run_not_a_delivery() {
        let p = AlertEscalationJob::decode(json!({"behavioural": true})).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"behavioural": true})
        );
        let plain = AlertEscalationJob::decode(json!({})).unwrap();
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({}),
            "false is left out"
        );
        let err = AlertEscalationJob::decode(json!({"behavioural": true, "notification_id": 3}))
            .unwrap_err();
        assert_eq!(err.field, "behavioural");
    }
}
