//! Opening or updating an alert: the one way every caller does it (the detector for rule
//! hits, the API for High and Critical security events). [`open_or_update`] picks the
//! escalation policy, raises the alert in the database ([`alerts::raise`]) and, for a newly
//! opened alert, returns the jobs that must follow it: its `alert.open` audit record and,
//! when a policy applies, an escalation run. This crate has no queue, so the caller enqueues
//! them (both the API and the workers hold the engine).

use chrono::{DateTime, Utc};
use vigil_jobs::{AlertEscalationJob, AuditActor, AuditJob, EscalationSettings};

use crate::alerts::{self, AlertHit, Raised};
use crate::{Db, StoreError};

/// The jobs that follow a newly opened alert.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUps {
    /// `alert.open`, by the system, idempotent per alert (`alert-<id>-open`).
    pub audit: AuditJob,
    /// The first escalation run and its idempotency key, when a policy applies.
    pub escalate: Option<(AlertEscalationJob, String)>,
}

/// Raises `hit` under the matching escalation policy (`hit.escalation` is set here).
/// `details` are added to the audit record's (rule, severity, group key); `request_id` is
/// the API request that caused it, if any.
pub async fn open_or_update(
    db: &Db,
    mut hit: AlertHit,
    policies: &EscalationSettings,
    now: DateTime<Utc>,
    details: serde_json::Value,
    request_id: Option<&str>,
) -> Result<(Raised, Option<FollowUps>), StoreError> {
    hit.escalation = policies
        .policy_for(&hit.rule_id, &hit.severity)
        .and_then(|p| Some((p.name.clone(), p.due_at(1, now, now)?)));
    let raised = alerts::raise(db, &hit, now).await?;
    if !raised.opened {
        return Ok((raised, None));
    }
    let id = raised.alert_id;
    let mut all = serde_json::json!({
        "rule_id": hit.rule_id, "severity": hit.severity, "group_key": hit.group_key,
    });
    if let (Some(all), serde_json::Value::Object(extra)) = (all.as_object_mut(), details) {
        all.extend(extra);
    }
    let audit = AuditJob {
        request_id: request_id.map(str::to_owned),
        ..AuditJob::record(
            Some(format!("alert-{id}-open")),
            AuditActor::System,
            "alert.open",
            ("alert", &id.to_string()),
            all,
        )
    };
    let escalate = hit.escalation.is_some().then(|| {
        let job = AlertEscalationJob {
            alert_id: Some(id),
            ..Default::default()
        };
        (job, format!("alert-{id}-opened"))
    });
    Ok((raised, Some(FollowUps { audit, escalate })))
}
