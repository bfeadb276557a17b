//! One typed payload per queue. Each documents what its handler does, whether re-running it
//! is safe, and how it fails.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::validate::{is_email_address, non_empty};
use crate::{Queue, Validate, ValidationError};

/// Fetch Okta System Log events.
///
/// With no fields set, continues polling from the stored cursor (the scheduled run). With
/// `since` (and optionally `until`, `limit`), fetches a bounded window (a backfill).
/// Idempotent: events are stored once by `uuid`. Okta 4xx errors other than 429 are
/// permanent (the job goes dead with Okta's `errorCode`); 429, 5xx and timeouts retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OktaFetchJob {
    /// Start of a bounded window (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// End of a bounded window (exclusive); defaults to now when `since` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Stop after this many events (bounded window only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl OktaFetchJob {
    /// Okta keeps 90 days of System Log; older windows return nothing.
    pub const MAX_LOOKBACK_DAYS: i64 = 90;
    /// The largest `limit` accepted.
    pub const MAX_LIMIT: u32 = 1_000_000;
}

impl Validate for OktaFetchJob {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.since.is_none() && (self.until.is_some() || self.limit.is_some()) {
            return Err(ValidationError::new(
                "since",
                "is required when until or limit is given",
            ));
        }
        if let Some(since) = self.since {
            if since < Utc::now() - Duration::days(Self::MAX_LOOKBACK_DAYS) {
                return Err(ValidationError::new(
                    "since",
                    format!(
                        "must be within the last {} days (Okta's retention)",
                        Self::MAX_LOOKBACK_DAYS
                    ),
                ));
            }
            if let Some(until) = self.until
                && until <= since
            {
                return Err(ValidationError::new("until", "must be after since"));
            }
        }
        if let Some(limit) = self.limit
            && !(1..=Self::MAX_LIMIT).contains(&limit)
        {
            return Err(ValidationError::new(
                "limit",
                format!("must be between 1 and {}", Self::MAX_LIMIT),
            ));
        }
        Ok(())
    }
}

/// An email's literal content: text, HTML, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// Send one email.
///
/// Either `body` or `template` (+ `vars`) gives the content. Idempotent per job: a delivery
/// already recorded as sent is not sent again. Connection errors, timeouts and SMTP 4xx
/// replies retry; 5xx replies and invalid addresses are permanent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailJob {
    /// Recipients (1 to 50 addresses).
    pub to: Vec<String>,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<EmailBody>,
    /// Template name, e.g. `alert_notification`, `alert_escalation`, `generic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Template variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Deduplicates sends across jobs (e.g. one per alert and escalation level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The escalation notification this email delivers (its outcome is recorded there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<i64>,
}

impl EmailJob {
    pub const MAX_RECIPIENTS: usize = 50;
    pub const MAX_SUBJECT: usize = 998;
}

impl Validate for EmailJob {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.to.is_empty() || self.to.len() > Self::MAX_RECIPIENTS {
            return Err(ValidationError::new(
                "to",
                format!("must hold 1 to {} addresses", Self::MAX_RECIPIENTS),
            ));
        }
        for (i, addr) in self.to.iter().enumerate() {
            if !is_email_address(addr) {
                return Err(ValidationError::new(
                    format!("to[{i}]"),
                    format!("`{addr}` is not an email address"),
                ));
            }
        }
        non_empty("subject", &self.subject, Self::MAX_SUBJECT)?;
        if self.subject.contains(['\r', '\n']) {
            return Err(ValidationError::new(
                "subject",
                "must not contain line breaks",
            ));
        }
        match (&self.body, &self.template) {
            (Some(_), Some(_)) => Err(ValidationError::new(
                "body",
                "give either body or template, not both",
            )),
            (None, None) => Err(ValidationError::new(
                "body",
                "one of body or template is required",
            )),
            (Some(body), None) => {
                let text = body.text.as_deref().unwrap_or("").trim();
                let html = body.html.as_deref().unwrap_or("").trim();
                if text.is_empty() && html.is_empty() {
                    Err(ValidationError::new("body", "needs text, html, or both"))
                } else {
                    Ok(())
                }
            }
            (None, Some(name)) => non_empty("template", name, 100),
        }?;
        if let Some(key) = &self.idempotency_key {
            non_empty("idempotency_key", key, 200)?;
        }
        Ok(())
    }
}

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

/// A payload of any queue, tagged by its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobPayload {
    OktaFetch(OktaFetchJob),
    Email(EmailJob),
    Audit(AuditJob),
    AlertEscalation(AlertEscalationJob),
}

impl JobPayload {
    /// Decodes and validates a JSON payload for `queue`.
    pub fn parse(queue: Queue, value: serde_json::Value) -> Result<Self, ValidationError> {
        fn decode<T: serde::de::DeserializeOwned + Validate>(
            value: serde_json::Value,
        ) -> Result<T, ValidationError> {
            let job: T = serde_json::from_value(value)
                .map_err(|e| ValidationError::new("payload", e.to_string()))?;
            job.validate()?;
            Ok(job)
        }
        Ok(match queue {
            Queue::OktaFetch => JobPayload::OktaFetch(decode(value)?),
            Queue::Email => JobPayload::Email(decode(value)?),
            Queue::Audit => JobPayload::Audit(decode(value)?),
            Queue::AlertEscalation => JobPayload::AlertEscalation(decode(value)?),
        })
    }

    /// The queue this payload belongs on.
    pub fn queue(&self) -> Queue {
        match self {
            JobPayload::OktaFetch(_) => Queue::OktaFetch,
            JobPayload::Email(_) => Queue::Email,
            JobPayload::Audit(_) => Queue::Audit,
            JobPayload::AlertEscalation(_) => Queue::AlertEscalation,
        }
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            JobPayload::OktaFetch(j) => serde_json::to_value(j),
            JobPayload::Email(j) => serde_json::to_value(j),
            JobPayload::Audit(j) => serde_json::to_value(j),
            JobPayload::AlertEscalation(j) => serde_json::to_value(j),
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn email(v: serde_json::Value) -> Result<JobPayload, ValidationError> {
        JobPayload::parse(Queue::Email, v)
    }

    #[test]
    fn email_needs_recipients_subject_and_one_kind_of_content() {
        assert!(email(json!({"to": ["a@b.c"], "subject": "hi", "body": {"text": "x"}})).is_ok());
        assert!(email(json!({"to": ["a@b.c"], "subject": "hi", "template": "generic"})).is_ok());
        assert_eq!(
            email(json!({"to": [], "subject": "hi", "body": {"text": "x"}}))
                .unwrap_err()
                .field,
            "to"
        );
        assert_eq!(
            email(json!({"to": ["a@b.c", "nope"], "subject": "hi", "body": {"text": "x"}}))
                .unwrap_err()
                .field,
            "to[1]"
        );
        assert_eq!(
            email(json!({"to": ["a@b.c"], "subject": "a\nBcc: x@y.z", "body": {"text": "x"}}))
                .unwrap_err()
                .field,
            "subject"
        );
        assert_eq!(
            email(json!({"to": ["a@b.c"], "subject": "hi"}))
                .unwrap_err()
                .field,
            "body"
        );
        assert_eq!(
            email(json!({"to": ["a@b.c"], "subject": "hi", "body": {}}))
                .unwrap_err()
                .field,
            "body"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err =
            email(json!({"to": ["a@b.c"], "subject": "hi", "body": {"text": "x"}, "bcc": []}))
                .unwrap_err();
        assert!(err.message.contains("bcc"), "{err}");
    }

    #[test]
    fn okta_fetch_windows() {
        assert!(JobPayload::parse(Queue::OktaFetch, json!({})).is_ok());
        let since = Utc::now() - Duration::hours(1);
        assert!(
            JobPayload::parse(Queue::OktaFetch, json!({"since": since, "limit": 1000})).is_ok()
        );
        let err = JobPayload::parse(
            Queue::OktaFetch,
            json!({"since": since, "until": since - Duration::minutes(1)}),
        )
        .unwrap_err();
        assert_eq!(err.field, "until");
        let err = JobPayload::parse(Queue::OktaFetch, json!({"limit": 5})).unwrap_err();
        assert_eq!(err.field, "since");
        let old = Utc::now() - Duration::days(91);
        assert_eq!(
            JobPayload::parse(Queue::OktaFetch, json!({"since": old}))
                .unwrap_err()
                .field,
            "since"
        );
    }

    #[test]
    fn audit_actions_are_dotted_lower_case() {
        let ok = json!({"event_id": "e1", "occurred_at": Utc::now(), "actor": {"kind": "user", "id": "alice"},
                        "action": "job.enqueue", "target_type": "job", "target_id": "01J"});
        let parsed = JobPayload::parse(Queue::Audit, ok.clone()).unwrap();
        assert_eq!(parsed.queue(), Queue::Audit);
        let mut bad = ok;
        bad["action"] = json!("Job Enqueue");
        assert_eq!(
            JobPayload::parse(Queue::Audit, bad).unwrap_err().field,
            "action"
        );
    }

    #[test]
    fn payload_json_round_trips() {
        let p = JobPayload::parse(Queue::AlertEscalation, json!({"alert_id": 7})).unwrap();
        assert_eq!(
            JobPayload::parse(Queue::AlertEscalation, p.to_json()).unwrap(),
            p
        );
        assert!(JobPayload::parse(Queue::AlertEscalation, json!({"alert_id": 0})).is_err());
    }

    #[test]
    fn a_behavioural_run_is_a_run_not_a_delivery() {
        let p = JobPayload::parse(Queue::AlertEscalation, json!({"behavioural": true})).unwrap();
        assert_eq!(p.to_json(), json!({"behavioural": true}));
        let plain = JobPayload::parse(Queue::AlertEscalation, json!({})).unwrap();
        assert_eq!(plain.to_json(), json!({}), "false is left out");
        let err = JobPayload::parse(
            Queue::AlertEscalation,
            json!({"behavioural": true, "notification_id": 3}),
        )
        .unwrap_err();
        assert_eq!(err.field, "behavioural");
    }
}
