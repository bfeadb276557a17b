//! How an `email` job runs: one send attempt through the [`Mailer`].

use std::sync::Arc;

use vigil_jobs::EmailJob;

use super::mailer::{Mailer, SendOutcome};
use crate::JobError;
use crate::alerts::Gate;
use crate::runtime::{JobContext, Perform};

/// Runs [`Mailer::send_attempt`], telling it whether this is the job's last attempt, and
/// records an escalation notification's outcome where the alert shows it.
impl Perform for EmailJob {
    type Deps = Mailer;

    async fn perform(self, ctx: JobContext, mailer: Arc<Mailer>) -> Result<(), JobError> {
        let job = self;
        // An escalation notification: record its outcome where the alert shows it.
        let notification = match (mailer.notifications(), job.notification_id) {
            (Some(tracker), Some(id)) => match tracker.gate(id).await? {
                Gate::Send(n, _) => Some((tracker, n)),
                Gate::AlreadySent | Gate::Suppressed => return Ok(()),
            },
            _ => None,
        };
        mailer
            .supersede_earlier_attempts(&ctx.job_id, &job, ctx.attempt)
            .await?;
        let last = ctx.attempt >= ctx.max_attempts;
        let result = mailer.send_attempt(&ctx.job_id, &job, last).await;
        if let Some((tracker, n)) = notification {
            match &result {
                Ok(SendOutcome::Sent {
                    message_id,
                    smtp_reply,
                    ..
                }) => tracker.sent(&n, smtp_reply, Some(message_id)).await?,
                Ok(SendOutcome::AlreadySent { message_id, .. }) => {
                    tracker
                        .sent(&n, "sent by an earlier attempt", Some(message_id))
                        .await?
                }
                // Waiting for the mail server is not an attempt.
                Err(JobError::Snooze(..)) => {}
                Err(e) => {
                    let dead = !e.is_retryable() || last;
                    if let Err(record) = tracker.failed(&n, &e.to_string(), dead).await {
                        tracing::error!(error = %record, "recording the notification's failure failed");
                    }
                }
            }
        }
        result.map(|_| ())
    }
}
