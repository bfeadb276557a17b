//! The escalation run: due levels → notifications, each level once.
//!
//! For every open alert whose `next_escalation_at` has passed: claim the next level with a
//! compare-and-set on the alert's level ([`alerts::claim_level`]; whoever loses the race does
//! nothing), queue the level's email job and webhook jobs with idempotency keys derived from
//! (alert, level, target), mark the level notified, audit it. A crash between the claim and
//! the queueing leaves the level un-notified; the next run finishes it, and the idempotency
//! keys make a repeat harmless. Acknowledged and resolved alerts are never due.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use vigil_jobs::{AlertEscalationJob, EmailJob, EscalationSettings, Queue, WebhookDelivery};
use vigil_queue::{Engine, NewJob};
use vigil_store::alerts::{self, Alert, Escalation, EscalationTargets};
use vigil_store::{Db, StoreError};

use super::webhook::short_hash;
use super::{AlertMetrics, audit_record};
use crate::JobError;
use crate::audit::{AuditSink, EngineAuditSink};

/// A claimed level whose notifications are not queued after this long was cut short.
const UNNOTIFIED_GRACE_SECONDS: i64 = 60;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EscalationSummary {
    /// (alert id, level) reached in this run.
    pub escalated: Vec<(i64, i64)>,
    /// Levels from an earlier, interrupted run whose notifications this run queued.
    pub resumed: u32,
    /// Jobs queued (emails + webhooks).
    pub notifications: u32,
}

/// Runs escalation over the database and the engine.
pub struct Escalator {
    db: Db,
    engine: Engine,
    settings: Arc<EscalationSettings>,
    audit: EngineAuditSink,
    metrics: Option<AlertMetrics>,
}

impl std::fmt::Debug for Escalator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escalator").finish_non_exhaustive()
    }
}

fn store_err(e: StoreError) -> JobError {
    JobError::Retryable(format!("escalation: {e}"))
}

impl Escalator {
    pub fn new(
        db: Db,
        engine: Engine,
        settings: Arc<EscalationSettings>,
        metrics: Option<AlertMetrics>,
    ) -> Escalator {
        Escalator {
            db,
            audit: EngineAuditSink::new(engine.clone()),
            engine,
            settings,
            metrics,
        }
    }

    /// One run at `now` (a parameter, so tests control the clock); `only` limits it to one
    /// alert (the run queued when that alert opened).
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        only: Option<i64>,
    ) -> Result<EscalationSummary, JobError> {
        let mut summary = EscalationSummary::default();
        let cut_short =
            alerts::unnotified(&self.db, now - Duration::seconds(UNNOTIFIED_GRACE_SECONDS))
                .await
                .map_err(store_err)?;
        for level in cut_short {
            if let Some(alert) = alerts::get(&self.db, level.alert_id)
                .await
                .map_err(store_err)?
            {
                summary.notifications += self.notify(&alert, &level, now).await?;
                summary.resumed += 1;
            }
        }
        let due = alerts::due(&self.db, now, only, self.settings.batch_size)
            .await
            .map_err(store_err)?;
        for mut alert in due {
            // Several levels may be due at once (a run was missed): take them in order.
            while alert.next_escalation_at.is_some_and(|at| at <= now) {
                if !self.escalate_once(&mut alert, now, &mut summary).await? {
                    break;
                }
            }
        }
        Ok(summary)
    }

    /// Claims and notifies the alert's next level, and moves `alert` to it (level and next
    /// due time, as stored); `false` when there was nothing to do.
    async fn escalate_once(
        &self,
        alert: &mut Alert,
        now: DateTime<Utc>,
        summary: &mut EscalationSummary,
    ) -> Result<bool, JobError> {
        let policy = alert
            .escalation_policy
            .as_deref()
            .and_then(|name| self.settings.policy(name));
        let next = alert.escalation_level + 1;
        let spec = policy.and_then(|p| p.levels.get(usize::try_from(next - 1).ok()?));
        let (Some(policy), Some(spec)) = (policy, spec) else {
            // The policy was removed or shortened in config since the alert opened.
            tracing::warn!(alert_id = alert.id, policy = ?alert.escalation_policy, level = next,
                "escalation stops: the policy has no such level any more");
            alerts::stop_escalation(&self.db, alert.id)
                .await
                .map_err(store_err)?;
            return Ok(false);
        };
        let next_due = usize::try_from(next + 1)
            .ok()
            .and_then(|n| policy.due_at(n, alert.created_at, now));
        let targets = EscalationTargets {
            emails: spec.emails.clone(),
            webhooks: spec.webhooks.clone(),
        };
        let Some(level) = alerts::claim_level(
            &self.db,
            alert.id,
            next,
            &policy.name,
            &targets,
            next_due,
            now,
        )
        .await
        .map_err(store_err)?
        else {
            return Ok(false); // another run claimed it, or the alert was answered
        };
        tracing::warn!(alert_id = alert.id, level = next, policy = %policy.name, "alert escalated");
        if let Some(m) = &self.metrics {
            m.escalations
                .with_label_values(&[policy.name.as_str(), next.to_string().as_str()])
                .inc();
        }
        self.audit
            .record(audit_record(
                format!("alert-{}-level-{next}", alert.id),
                "alert.escalate",
                alert.id,
                json!({ "level": next, "policy": policy.name,
                        "emails": spec.emails, "webhooks": spec.webhooks.len() }),
            ))
            .await;
        summary.notifications += self.notify(alert, &level, now).await?;
        summary.escalated.push((alert.id, next));
        alert.escalation_level = next;
        alert.next_escalation_at = next_due;
        Ok(true)
    }

    /// Queues `level`'s email and webhook jobs (idempotent), then marks it notified.
    async fn notify(
        &self,
        alert: &Alert,
        level: &Escalation,
        now: DateTime<Utc>,
    ) -> Result<u32, JobError> {
        let targets = &level.targets;
        let mut jobs = Vec::new();
        if !targets.emails.is_empty() {
            let email = email_job(alert, level, targets.emails.clone());
            let mut job = NewJob::new(
                Queue::Email,
                serde_json::to_value(&email).unwrap_or_default(),
            );
            job.idempotency_key = email.idempotency_key.clone();
            jobs.push(job);
        }
        for url in targets.webhooks.iter().cloned() {
            let key = format!(
                "alert-{}-level-{}-webhook-{}",
                alert.id,
                level.level,
                short_hash(&url)
            );
            let payload = AlertEscalationJob {
                alert_id: None,
                webhook: Some(WebhookDelivery {
                    alert_id: alert.id,
                    level: level.level,
                    url,
                }),
                okta_event_ids: Vec::new(),
            };
            let mut job = NewJob::new(
                Queue::AlertEscalation,
                serde_json::to_value(payload).unwrap_or_default(),
            );
            job.idempotency_key = Some(key);
            jobs.push(job);
        }
        let n = u32::try_from(jobs.len()).unwrap_or(u32::MAX);
        if !jobs.is_empty() {
            self.engine
                .enqueue_many(jobs)
                .await
                .map_err(|e| JobError::Retryable(format!("queueing notifications: {e}")))?;
        }
        alerts::mark_notified(&self.db, level.id, now)
            .await
            .map_err(store_err)?;
        Ok(n)
    }
}

/// The email of one level: the notification template at level 1, the escalation one after.
fn email_job(alert: &Alert, level: &Escalation, to: Vec<String>) -> EmailJob {
    let title = alert.title.replace(['\r', '\n'], " ");
    let (template, subject) = if level.level <= 1 {
        (
            "alert_notification",
            format!("[vigil] {} alert #{}: {title}", alert.severity, alert.id),
        )
    } else {
        (
            "alert_escalation",
            format!(
                "[vigil] ESCALATION level {}: {} alert #{} is unacknowledged: {title}",
                level.level, alert.severity, alert.id
            ),
        )
    };
    let waited = (level.escalated_at - alert.created_at).num_minutes();
    let vars = [
        ("alert_id", json!(alert.id)),
        ("rule", json!(title)),
        ("summary", json!(alert.description)),
        ("severity", json!(alert.severity)),
        ("status", json!(alert.status)),
        ("count", json!(alert.event_count)),
        ("first_seen", json!(alert.first_seen.to_rfc3339())),
        ("last_seen", json!(alert.last_seen.to_rfc3339())),
        ("opened_at", json!(alert.created_at.to_rfc3339())),
        ("level", json!(level.level)),
        ("policy", json!(level.policy)),
        ("waited_minutes", json!(waited)),
        ("group_key", json!(alert.group_key)),
    ];
    EmailJob {
        to,
        subject,
        body: None,
        template: Some(template.to_owned()),
        vars: vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        idempotency_key: Some(format!("alert-{}-level-{}-email", alert.id, level.level)),
    }
}
