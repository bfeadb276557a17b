//! Detection and escalation: events become alerts, unanswered alerts reach people.
//!
//! - [`Detector`]: runs the rules on each batch of newly stored events (it is the Okta
//!   poller's [`NewEventsSink`](crate::okta::NewEventsSink)); a firing rule opens or updates
//!   an alert, a new alert gets an `alert_escalation` job at once and an audit record.
//! - behavioural rules (`behaviour.rs`): the `behavioural_rules` schedule's run of the
//!   [`Detector`] over stored events (SQL), raising through the same path.
//! - [`Escalator`]: the `alert_escalation` run (on its cron and per new alert): claims each
//!   due level once (a compare-and-set in the database), queues its email job and webhook
//!   jobs with idempotency keys, audits the step.
//! - [`WebhookSender`]: delivers one webhook job: a JSON POST signed with HMAC-SHA256.
//! - `channels.rs`: Slack, Teams and PagerDuty messages; `http_outcome.rs`: how a
//!   notification call ended (delivered, retry, final), shared with the webhook.
//! - [`AlertWork`]: what an `alert_escalation` job needs; its `Perform` dispatches to the two above.

mod behaviour;
mod channels;
mod detector;
mod escalator;
mod handler;
mod http_outcome;
mod metrics;
mod notifications;
mod webhook;

pub use detector::{DetectSummary, Detector};
pub use escalator::{EscalationSummary, Escalator};
pub use handler::AlertWork;
pub use metrics::AlertMetrics;
pub use notifications::{Gate, NotificationTracker};
pub use vigil_jobs::EscalationSettings;
pub use webhook::{SIGNATURE_HEADER, WebhookSender, sign};

/// An audit record of a system action on alert `alert_id`.
fn audit_record(
    event_id: String,
    action: &str,
    alert_id: i64,
    details: serde_json::Value,
) -> vigil_jobs::AuditJob {
    crate::audit::system_record(
        event_id,
        action,
        ("alert", &alert_id.to_string()),
        details,
        None,
    )
}
