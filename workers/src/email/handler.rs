//! Wiring for the runtime: the `email` queue's [`Handler`] over a [`Mailer`].

use std::sync::Arc;

use futures::future::BoxFuture;
use vigil_jobs::{JobPayload, Queue};

use super::mailer::Mailer;
use crate::JobError;
use crate::runtime::{Handler, JobContext};

/// The `email` queue's handler: decodes and validates the payload (a bad one is permanent),
/// then runs [`Mailer::send_attempt`], telling it whether this is the job's last attempt.
pub fn email_handler(mailer: Mailer) -> Handler {
    let mailer = Arc::new(mailer);
    Arc::new(move |ctx: JobContext, payload: serde_json::Value| {
        let mailer = mailer.clone();
        Box::pin(async move {
            let job = match JobPayload::parse(Queue::Email, payload) {
                Ok(JobPayload::Email(job)) => job,
                Ok(other) => {
                    return Err(JobError::Permanent(format!(
                        "an {:?} payload on the email queue",
                        other.queue()
                    )));
                }
                Err(e) => return Err(JobError::Permanent(format!("invalid email job: {e}"))),
            };
            mailer
                .supersede_earlier_attempts(&ctx.job_id, &job, ctx.attempt)
                .await?;
            let last = ctx.attempt >= ctx.max_attempts;
            mailer
                .send_attempt(&ctx.job_id, &job, last)
                .await
                .map(|_| ())
        }) as BoxFuture<'static, Result<(), JobError>>
    })
}
