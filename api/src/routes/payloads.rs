//! The enqueue request bodies: one documented schema per queue, mirroring the vigil-jobs
//! payload types field for field (`deny_unknown_fields`, like the originals). The engine
//! validates the serialized payload again through the job kind (`vigil_jobs::Job`), so the rules live in one
//! place (vigil-jobs) and a violation comes back as 422 naming the field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::Serialize;

/// `okta_fetch`: with no fields, continue polling from the stored cursor; with `since`
/// (and optionally `until`, `limit`), fetch a bounded window (a backfill, at most 90 days
/// back), whose progress shows on the job.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct OktaFetchPayload {
    /// Start of the window (inclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// End of the window (exclusive); now when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Stop after this many events.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub limit: Option<u32>,
    /// The Okta org to fetch (`[[okta.orgs]] name`); absent: every configured org (with a
    /// single `[okta]` section, its only org, named `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(pattern = "^[a-z0-9_-]{1,64}$"))]
    pub org: Option<String>,
}

/// An email's literal content.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct EmailBodyPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// `email`: send one email, with either `body` or `template` (+ its `vars`), not both.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct EmailPayload {
    /// 1 to 50 recipient email addresses.
    #[oai(validator(min_items = 1, max_items = 50))]
    pub to: Vec<String>,
    /// One line, at most 998 characters.
    #[oai(validator(max_length = 998))]
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<EmailBodyPayload>,
    /// Template name: `alert_notification`, `alert_escalation` or `generic` (another is
    /// refused with 422). Exclusive with `body`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The template's variables: `generic` takes `title`, `message`, `url`; the alert
    /// templates `alert_id`, `rule`, `summary`, `severity`, `status`, `count`, `first_seen`,
    /// `last_seen`, `opened_at`, `level`, `policy`, `waited_minutes`, `group_key`, `url`,
    /// `events`. Another name is refused with 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vars: Option<BTreeMap<String, serde_json::Value>>,
    /// Deduplicates sends across jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Who did an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    System,
    Job,
}

/// An audit actor: `{"kind": "user", "id": "alice"}`, `{"kind": "system"}`, `{"kind": "job", "id": "01J..."}`.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct AuditActorPayload {
    pub kind: ActorKind,
    /// Username or job id (not for `system`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `audit`: append one record to the audit trail (deduplicated by `event_id`).
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct AuditPayload {
    /// Unique id of the event, chosen by the producer.
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: AuditActorPayload,
    /// Dotted lower case, e.g. `job.enqueue`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// `alert_escalation`: escalate due alerts (all, or only `alert_id`).
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct AlertEscalationPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(minimum(value = "1")))]
    pub alert_id: Option<i64>,
}

macro_rules! enqueue_request {
    ($(#[$doc:meta])* $name:ident, $payload:ty, $kind:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Object)]
        #[oai(deny_unknown_fields, example)]
        pub struct $name {
            pub payload: $payload,
            /// Run no earlier than this time (RFC 3339). Exclusive with `delay_seconds`.
            pub run_at: Option<DateTime<Utc>>,
            /// Run after this many seconds (at most 30 days). Exclusive with `run_at`.
            #[oai(validator(maximum(value = "2592000")))]
            pub delay_seconds: Option<u64>,
        }

        /// The job kind's own example payload, to run now.
        impl poem_openapi::types::Example for $name {
            fn example() -> Self {
                crate::routes::models::example_of(
                    serde_json::json!({"payload": <$kind as vigil_jobs::Job>::example()}),
                )
            }
        }

        impl $name {
            /// The payload as JSON and the requested start time.
            pub fn parts(&self) -> (serde_json::Value, Option<DateTime<Utc>>, Option<u64>) {
                (
                    serde_json::to_value(&self.payload).unwrap_or(serde_json::Value::Null),
                    self.run_at,
                    self.delay_seconds,
                )
            }
        }
    };
}

enqueue_request!(
    /// Enqueue an `okta_fetch` job.
    EnqueueOktaFetch,
    OktaFetchPayload,
    vigil_jobs::OktaFetchJob
);
enqueue_request!(
    /// Enqueue an `email` job.
    EnqueueEmail,
    EmailPayload,
    vigil_jobs::EmailJob
);
enqueue_request!(
    /// Enqueue an `audit` job.
    EnqueueAudit,
    AuditPayload,
    vigil_jobs::AuditJob
);
enqueue_request!(
    /// Enqueue an `alert_escalation` job.
    EnqueueAlertEscalation,
    AlertEscalationPayload,
    vigil_jobs::AlertEscalationJob
);
