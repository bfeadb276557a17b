//! How workers record audited actions: the [`AuditSink`] trait (the mailer takes one), the
//! [`EngineAuditSink`] that enqueues on the `audit` queue, and [`system_record`] for actions
//! vigil takes by itself (alerts opened and escalated, schedule runs that fail).

use std::future::Future;

use futures::future::BoxFuture;
use vigil_jobs::{AuditActor, AuditJob};
use vigil_queue::Engine;

/// Where audit records about email go (the runtime wires it to the `audit` queue).
pub trait AuditSink: Send + Sync + 'static {
    /// Hands over one record. Failures are the sink's to log; the email outcome stands.
    fn record(&self, job: AuditJob) -> BoxFuture<'static, ()>;
}

impl<F, Fut> AuditSink for F
where
    F: Fn(AuditJob) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn record(&self, job: AuditJob) -> BoxFuture<'static, ()> {
        Box::pin(self(job))
    }
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
            let key = format!("audit:{}", job.event_id);
            if let Err(e) = engine.enqueue_job(&job, Some(key)).await {
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

/// A record of an action vigil took by itself. `event_id` makes it idempotent: derive it
/// from what happened (`alert-7-level-2`), so a repeat adds nothing.
pub fn system_record(
    event_id: String,
    action: &str,
    target: (&str, &str),
    details: serde_json::Value,
    job_id: Option<String>,
) -> AuditJob {
    AuditJob {
        job_id,
        ..AuditJob::record(Some(event_id), AuditActor::System, action, target, details)
    }
}
