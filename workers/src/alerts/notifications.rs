//! Delivery truth: every escalation notification's outcome, recorded where the alert shows it.
//!
//! The email handler and the channel sender ask [`NotificationTracker::gate`] before a
//! notification goes out, and report each attempt's outcome ([`NotificationTracker::sent`],
//! [`NotificationTracker::failed`]). The tracker keeps the notification row true (queued →
//! sent | retrying → dead, every error kept), counts outcomes in
//! `vigil_notifications_total{channel, outcome}`, audits a dead notification
//! (`alert.notification.dead`), and settles the level: notified when every notification was
//! sent; when every one is dead and `escalation.escalate_on_failure` is on, the next level is
//! brought forward and an escalation run for the alert is queued at once.
//!
//! A notification never tried when its alert was acknowledged or resolved (or reopened into
//! a new round) is suppressed instead of sent: the people it would wake are already on it.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use vigil_jobs::{AlertEscalationJob, EscalationSettings};
use vigil_queue::{Engine, NewJob};
use vigil_store::alerts::{self, Alert, AlertStatus};
use vigil_store::notifications::{
    self, LevelState, Notification, NotificationEvent, NotificationStatus,
};
use vigil_store::{Db, StoreError};

use super::{AlertMetrics, audit_record};
use crate::JobError;
use crate::audit::{AuditSink, EngineAuditSink};
use vigil_jobs::Job as _;

/// What to do with a notification about to go out.
#[derive(Debug, Clone)]
pub enum Gate {
    /// Send it.
    Send(Box<Notification>, Box<Alert>),
    /// Already sent (a re-delivered job): nothing to do.
    AlreadySent,
    /// Its alert was answered before it was tried: recorded as suppressed, nothing to send.
    Suppressed,
}

fn store_err(e: StoreError) -> JobError {
    JobError::Retryable(format!("notification record: {e}"))
}

/// Records notification outcomes. Cheap to clone.
#[derive(Clone)]
pub struct NotificationTracker {
    db: Db,
    engine: Engine,
    settings: Arc<EscalationSettings>,
    audit: EngineAuditSink,
    metrics: Option<AlertMetrics>,
}

impl std::fmt::Debug for NotificationTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationTracker")
            .finish_non_exhaustive()
    }
}

impl NotificationTracker {
    pub fn new(
        db: Db,
        engine: Engine,
        settings: Arc<EscalationSettings>,
        metrics: Option<AlertMetrics>,
    ) -> NotificationTracker {
        NotificationTracker {
            db,
            audit: EngineAuditSink::new(engine.clone()),
            engine,
            settings,
            metrics,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn settings(&self) -> &EscalationSettings {
        &self.settings
    }

    fn count(&self, n: &Notification, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.notifications
                .with_label_values(&[n.channel.as_str(), outcome])
                .inc();
        }
    }

    /// Loads notification `id` and its alert and decides whether it goes out.
    pub async fn gate(&self, id: i64) -> Result<Gate, JobError> {
        let n = notifications::get(&self.db, id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| JobError::Permanent(format!("notification {id} does not exist")))?;
        if n.status == NotificationStatus::Sent {
            return Ok(Gate::AlreadySent);
        }
        if n.status == NotificationStatus::Suppressed {
            return Ok(Gate::Suppressed);
        }
        let alert = alerts::get(&self.db, n.alert_id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| JobError::Permanent(format!("alert {} does not exist", n.alert_id)))?;
        let answered = alert.status != AlertStatus::Open || alert.escalation_round != n.round;
        if n.event == NotificationEvent::Trigger && n.attempts == 0 && answered {
            notifications::mark_suppressed(&self.db, n.id, Utc::now())
                .await
                .map_err(store_err)?;
            self.count(&n, "suppressed");
            tracing::info!(notification_id = n.id, alert_id = n.alert_id, level = n.level,
                status = %alert.status, "notification suppressed: the alert was answered first");
            self.settle(&n).await?;
            return Ok(Gate::Suppressed);
        }
        Ok(Gate::Send(Box::new(n), Box::new(alert)))
    }

    /// Records a sent notification with the provider's answer.
    pub async fn sent(
        &self,
        n: &Notification,
        response_status: &str,
        response_id: Option<&str>,
    ) -> Result<(), JobError> {
        notifications::mark_sent(&self.db, n.id, response_status, response_id, Utc::now())
            .await
            .map_err(store_err)?;
        self.count(n, "sent");
        tracing::info!(notification_id = n.id, alert_id = n.alert_id, level = n.level,
            channel = %n.channel, target = %n.target_shown, response_status, "notification sent");
        self.settle(n).await
    }

    /// Records a failed attempt; `dead` when no attempt follows.
    pub async fn failed(&self, n: &Notification, error: &str, dead: bool) -> Result<(), JobError> {
        let now = Utc::now();
        let recorded = notifications::mark_failed(&self.db, n.id, error, dead, now)
            .await
            .map_err(store_err)?;
        if !dead {
            self.count(n, "retry");
            tracing::warn!(notification_id = n.id, alert_id = n.alert_id, level = n.level,
                channel = %n.channel, target = %n.target_shown, error, "notification attempt failed; will retry");
            return Ok(());
        }
        self.count(n, "dead");
        tracing::error!(notification_id = n.id, alert_id = n.alert_id, level = n.level,
            channel = %n.channel, target = %n.target_shown, error, "notification is dead");
        let errors = recorded.map(|r| r.errors).unwrap_or_default();
        self.audit
            .record(audit_record(
                format!("alert-notification-{}-dead-{}", n.id, errors.len()),
                "alert.notification.dead",
                n.alert_id,
                json!({ "notification_id": n.id, "round": n.round, "level": n.level,
                        "channel": n.channel, "event": n.event, "target": n.target_shown,
                        "errors": errors.iter().map(|e| &e.error).collect::<Vec<_>>() }),
            ))
            .await;
        self.settle(n).await
    }

    /// Settles `n`'s level; a level whose every notification died brings the next one
    /// forward (when configured).
    async fn settle(&self, n: &Notification) -> Result<(), JobError> {
        if n.event != NotificationEvent::Trigger {
            return Ok(());
        }
        let now = Utc::now();
        let state = notifications::settle_level(&self.db, n.escalation_id, now)
            .await
            .map_err(store_err)?;
        match state {
            LevelState::Notified => {
                tracing::info!(alert_id = n.alert_id, level = n.level, "level notified");
            }
            LevelState::Failed { newly: true } => {
                if let Some(m) = &self.metrics {
                    m.levels_failed.inc();
                }
                let moved = self.settings.escalate_on_failure
                    && alerts::escalate_now(&self.db, n.alert_id, n.round, n.level, now)
                        .await
                        .map_err(store_err)?;
                tracing::error!(
                    alert_id = n.alert_id,
                    level = n.level,
                    escalating = moved,
                    "every notification of the level is dead"
                );
                self.audit
                    .record(audit_record(
                        format!(
                            "alert-{}-round-{}-level-{}-failed",
                            n.alert_id, n.round, n.level
                        ),
                        "alert.escalation.failed",
                        n.alert_id,
                        json!({ "round": n.round, "level": n.level, "next_level_now": moved }),
                    ))
                    .await;
                if moved {
                    let job = AlertEscalationJob {
                        alert_id: Some(n.alert_id),
                        ..Default::default()
                    };
                    let mut new = NewJob::new(
                        AlertEscalationJob::QUEUE,
                        serde_json::to_value(job).unwrap_or_default(),
                    );
                    new.idempotency_key = Some(format!(
                        "alert-{}-round-{}-level-{}-failed",
                        n.alert_id, n.round, n.level
                    ));
                    // The cron run catches up if this fails.
                    if let Err(e) = self.engine.enqueue(new).await {
                        tracing::warn!(alert_id = n.alert_id, error = %e,
                            "could not queue the escalation run; the scheduled run will escalate");
                    }
                }
            }
            LevelState::Pending
            | LevelState::Partial
            | LevelState::Suppressed
            | LevelState::Failed { newly: false } => {}
        }
        Ok(())
    }
}
