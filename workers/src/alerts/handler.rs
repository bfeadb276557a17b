//! The `alert_escalation` queue's handler: a run (`{}` or `{"alert_id": N}`) first runs the
//! detection rules on the Okta events an Event Hook delivery stored (`okta_event_ids`) and
//! on new security events (when a [`Detector`] is given), and with `behavioural` the
//! behavioural rules over stored events, then goes to the [`Escalator`]; a
//! delivery queued before the `notification` queue existed (`{"notification_id": N}`, or
//! `{"webhook": {...}}`) goes to the [`WebhookSender`].
//!
//! The `notification` queue's handler delivers one recorded notification (signed webhook,
//! Slack, Teams, PagerDuty) through the [`WebhookSender`].

use std::sync::Arc;

use vigil_jobs::{AlertEscalationJob, NotificationJob};

use super::{Detector, Escalator, WebhookSender};
use crate::JobError;
use crate::runtime::{JobContext, Perform};

/// What an `alert_escalation` job needs.
pub struct AlertWork {
    pub escalator: Escalator,
    pub webhooks: WebhookSender,
    /// Runs the rules on pushed Okta events and new security events before a run.
    pub detector: Option<Arc<Detector>>,
}

impl Perform for AlertEscalationJob {
    type Deps = AlertWork;

    async fn perform(self, ctx: JobContext, work: Arc<AlertWork>) -> Result<(), JobError> {
        let job = self;
        let AlertWork {
            escalator,
            webhooks,
            detector,
        } = &*work;
        if let Some(id) = job.notification_id {
            return webhooks
                .deliver_notification(id, None, ctx.attempt >= ctx.max_attempts)
                .await;
        }
        match &job.webhook {
            Some(delivery) => webhooks.deliver(delivery).await,
            None => {
                if let Some(detector) = &detector
                    && !job.okta_event_ids.is_empty()
                {
                    let found = detector
                        .detect_stored(&job.okta_event_ids)
                        .await
                        .map_err(|e| {
                            JobError::Retryable(format!("detection on pushed Okta events: {e}"))
                        })?;
                    tracing::info!(?found, "Okta Event Hook events through the rules");
                }
                if let Some(detector) = &detector {
                    let found = detector.detect_security_events().await.map_err(|e| {
                        JobError::Retryable(format!("detection on security events: {e}"))
                    })?;
                    if found.events > 0 {
                        tracing::info!(?found, "security events through the rules");
                    }
                }
                if let Some(detector) = &detector
                    && job.behavioural
                {
                    let found = detector
                        .detect_behaviour(chrono::Utc::now())
                        .await
                        .map_err(|e| JobError::Retryable(format!("behavioural rules: {e}")))?;
                    tracing::info!(?found, "behavioural rules over stored events");
                }
                let summary = escalator.run(chrono::Utc::now(), job.alert_id).await?;
                tracing::info!(?summary, "escalation run finished");
                Ok(())
            }
        }
    }
}

impl Perform for NotificationJob {
    type Deps = WebhookSender;

    async fn perform(self, ctx: JobContext, sender: Arc<WebhookSender>) -> Result<(), JobError> {
        sender
            .deliver_notification(
                self.notification_id,
                Some(self.alert_id),
                ctx.attempt >= ctx.max_attempts,
            )
            .await
    }
}
