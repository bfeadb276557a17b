//! Wiring for the runtime: the `email` queue's [`Handler`] over a [`Mailer`], and an
//! [`AuditSink`] that enqueues on the `audit` queue.

use std::sync::Arc;

use futures::future::BoxFuture;
use vigil_jobs::{AuditJob, JobPayload, Queue};
use vigil_queue::{Engine, NewJob};

use super::mailer::{AuditSink, Mailer};
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

/// Sends audit records through the `audit` queue (idempotency key `audit:<event_id>`, so a
/// repeated record is enqueued once). A failed enqueue is logged, never raised: the email's
/// outcome stands.
#[derive(Clone)]
pub struct EngineAuditSink {
    engine: Engine,
}

impl EngineAuditSink {
    /// A sink enqueueing on `engine`.
    pub fn new(engine: Engine) -> Self {
        EngineAuditSink { engine }
    }
}

impl AuditSink for EngineAuditSink {
    fn record(&self, job: AuditJob) -> BoxFuture<'static, ()> {
        let engine = self.engine.clone();
        Box::pin(async move {
            let payload = match serde_json::to_value(&job) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, action = %job.action, "audit record not serializable");
                    return;
                }
            };
            let mut new = NewJob::new(Queue::Audit, payload);
            new.idempotency_key = Some(format!("audit:{}", job.event_id));
            if let Err(e) = engine.enqueue(new).await {
                tracing::error!(
                    error = %e,
                    action = %job.action,
                    target_id = %job.target_id,
                    "audit record could not be enqueued"
                );
            }
        })
    }
}
