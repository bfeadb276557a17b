//! The escalation run: due levels → notifications, each level once per round.
//!
//! For every open alert whose `next_escalation_at` has passed: claim the next level with a
//! compare-and-set on the alert's level and round ([`alerts::claim_level`]; whoever loses the
//! race does nothing), record one notification per target (each email address, webhook URL
//! and channel: [`notifications::prepare_level`], which suppresses the level instead when the
//! alert was answered since the claim), queue one job per notification with the idempotency
//! key `alert-<id>-notification-<n>`, mark the level queued, audit it. A crash between the
//! claim and the queueing leaves the level unqueued; the next run finishes it (or suppresses
//! it), and the idempotency keys make a repeat harmless. The level counts as notified only
//! when every notification was sent (see [`super::NotificationTracker`]). Acknowledged and
//! resolved alerts are never due; a reopened alert escalates again in a new round.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use vigil_jobs::escalation::redact_webhook;
use vigil_jobs::{EmailJob, EscalationSettings, NotificationJob};
use vigil_queue::{Engine, NewJob};
use vigil_store::alerts::{self, Alert, Escalation, EscalationTargets};
use vigil_store::notifications::{
    self, Channel, NewNotification, Notification, NotificationEvent, NotificationStatus, Prepared,
};
use vigil_store::{Db, StoreError};

use super::{AlertMetrics, audit_record};
use crate::JobError;
use crate::audit::{AuditSink, EngineAuditSink};
use vigil_jobs::Job as _;

/// A claimed level whose notifications are not queued after this long was cut short.
const UNNOTIFIED_GRACE_SECONDS: i64 = 60;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EscalationSummary {
    /// (alert id, level) reached in this run.
    pub escalated: Vec<(i64, i64)>,
    /// Levels from an earlier, interrupted run whose notifications this run queued.
    pub resumed: u32,
    /// Jobs queued (one per notification).
    pub notifications: u32,
    /// Levels found answered before their notifications were queued: nothing went out.
    pub suppressed: u32,
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
            alerts::unqueued(&self.db, now - Duration::seconds(UNNOTIFIED_GRACE_SECONDS))
                .await
                .map_err(store_err)?;
        for level in cut_short {
            if let Some(alert) = alerts::get(&self.db, level.alert_id)
                .await
                .map_err(store_err)?
            {
                summary.resumed += 1;
                self.notify(&alert, &level, now, &mut summary).await?;
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
            .and_then(|n| policy.due_at(n, alert.escalation_started_at, now));
        let targets = EscalationTargets {
            emails: spec.emails.clone(),
            webhooks: spec.webhooks.clone(),
            channels: spec.channels.clone(),
        };
        let Some(level) = alerts::claim_level(
            &self.db,
            alert.id,
            alert.escalation_round,
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
        tracing::warn!(alert_id = alert.id, round = alert.escalation_round, level = next,
            policy = %policy.name, "alert escalated");
        if let Some(m) = &self.metrics {
            m.escalations
                .with_label_values(&[policy.name.as_str(), next.to_string().as_str()])
                .inc();
        }
        self.audit
            .record(audit_record(
                if alert.escalation_round == 1 {
                    format!("alert-{}-level-{next}", alert.id)
                } else {
                    format!(
                        "alert-{}-round-{}-level-{next}",
                        alert.id, alert.escalation_round
                    )
                },
                "alert.escalate",
                alert.id,
                json!({ "round": alert.escalation_round, "level": next, "policy": policy.name,
                        "emails": spec.emails, "webhooks": spec.webhooks.len(),
                        "channels": spec.channels }),
            ))
            .await;
        self.notify(alert, &level, now, summary).await?;
        summary.escalated.push((alert.id, next));
        alert.escalation_level = next;
        alert.next_escalation_at = next_due;
        Ok(true)
    }

    /// Records `level`'s notifications and queues one job for each (idempotent), then
    /// marks the level queued; a level whose alert was answered since its claim is
    /// suppressed instead.
    async fn notify(
        &self,
        alert: &Alert,
        level: &Escalation,
        now: DateTime<Utc>,
        summary: &mut EscalationSummary,
    ) -> Result<(), JobError> {
        let targets = &level.targets;
        let mut wanted: Vec<NewNotification> = targets
            .emails
            .iter()
            .map(|e| NewNotification {
                channel: Channel::Email,
                event: NotificationEvent::Trigger,
                target: e.clone(),
                target_shown: e.clone(),
            })
            .collect();
        wanted.extend(targets.webhooks.iter().map(|url| NewNotification {
            channel: Channel::Webhook,
            event: NotificationEvent::Trigger,
            target: url.clone(),
            target_shown: redact_webhook(url),
        }));
        for name in &targets.channels {
            let Some(c) = self.settings.channels.get(name) else {
                tracing::warn!(alert_id = alert.id, channel = %name,
                    "escalation channel no longer configured; skipped");
                continue;
            };
            wanted.push(NewNotification {
                channel: channel_of(c.kind),
                event: NotificationEvent::Trigger,
                target: name.clone(),
                target_shown: format!("{}:{name}", c.kind.as_str()),
            });
        }
        let recorded = match notifications::prepare_level(&self.db, level.id, &wanted, now)
            .await
            .map_err(store_err)?
        {
            Prepared::Suppressed => {
                tracing::info!(
                    alert_id = alert.id,
                    level = level.level,
                    "level suppressed: the alert was answered before its notifications were queued"
                );
                summary.suppressed += 1;
                return Ok(());
            }
            Prepared::Queue(recorded) => recorded,
        };
        let todo: Vec<&Notification> = recorded
            .iter()
            .filter(|n| n.status == NotificationStatus::Queued)
            .collect();
        let jobs: Vec<NewJob> = todo
            .iter()
            .map(|n| notification_job(alert, level, n))
            .collect();
        if !jobs.is_empty() {
            let queued = self
                .engine
                .enqueue_many(jobs)
                .await
                .map_err(|e| JobError::Retryable(format!("queueing notifications: {e}")))?;
            for (n, q) in todo.iter().zip(&queued) {
                notifications::set_job(&self.db, n.id, &q.job.id)
                    .await
                    .map_err(store_err)?;
            }
            summary.notifications += u32::try_from(queued.len()).unwrap_or(u32::MAX);
        }
        notifications::mark_queued(&self.db, level.id, now)
            .await
            .map_err(store_err)?;
        Ok(())
    }
}

fn channel_of(kind: vigil_jobs::escalation::ChannelKind) -> Channel {
    use vigil_jobs::escalation::ChannelKind;
    match kind {
        ChannelKind::Slack => Channel::Slack,
        ChannelKind::Teams => Channel::Teams,
        ChannelKind::Pagerduty => Channel::Pagerduty,
    }
}

/// The job that delivers notification `n`: an email job for an address, a `notification`
/// job for the others.
fn notification_job(alert: &Alert, level: &Escalation, n: &Notification) -> NewJob {
    let delivery = NotificationJob::new(alert.id, n.id);
    let mut job = if n.channel == Channel::Email {
        let mut email = email_job(alert, level, vec![n.target.clone()]);
        email.idempotency_key = Some(delivery.idempotency_key());
        email.notification_id = Some(n.id);
        NewJob::new(
            EmailJob::QUEUE,
            serde_json::to_value(&email).unwrap_or_default(),
        )
    } else {
        NewJob::new(
            NotificationJob::QUEUE,
            serde_json::to_value(&delivery).unwrap_or_default(),
        )
    };
    job.idempotency_key = Some(delivery.idempotency_key());
    job
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
    let waited = (level.escalated_at - alert.escalation_started_at).num_minutes();
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
        idempotency_key: None,
        notification_id: None,
    }
}
