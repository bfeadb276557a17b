//! The one door to the audit trail: every state-changing call (enqueue, retry, cancel,
//! pause/resume, sign-in, failed sign-in, refresh, and the CLI's user changes) goes through
//! [`record`], which enqueues a [`vigil_jobs::AuditJob`] on the `audit` queue; the audit
//! writer (workers) appends it to the hash-chained trail.
//!
//! Action names: `job.enqueue`, `job.retry`, `job.cancel`, `queue.pause`, `queue.resume`,
//! `auth.login`, `auth.login_failed`, `auth.refresh`, `user.add`, `user.disable`.
//!
//! An audit record that cannot be enqueued (Redis down) is logged at error level with the
//! whole record, and the call it describes still answers: the action has already happened.

use vigil_jobs::{AuditActor, AuditJob};
use vigil_queue::{Companion, Engine};

/// One audited action.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub actor: AuditActor,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub details: serde_json::Value,
    pub request_id: Option<&'a str>,
    /// The job the action was about, when there is one.
    pub job_id: Option<&'a str>,
}

/// The audit job of `entry`, to be written with the job it describes in one step (see
/// [`vigil_queue::NewJob::companion`]): the record cannot be lost while the job is kept.
pub fn companion(entry: Entry<'_>) -> Option<Companion> {
    let job = audit_job(entry);
    Companion::of(&job)
        .inspect_err(
            |e| tracing::error!(error = %e, action = %job.action, "audit record not serializable"),
        )
        .ok()
}

fn audit_job(entry: Entry<'_>) -> AuditJob {
    AuditJob {
        request_id: entry.request_id.map(str::to_owned),
        job_id: entry.job_id.map(str::to_owned),
        ..AuditJob::record(
            None,
            entry.actor,
            entry.action,
            (entry.target_type, entry.target_id),
            entry.details,
        )
    }
}

/// Records one audited action through the `audit` queue. Returns the audit job's id.
/// (The audit trail is unique by `event_id`, so no idempotency key is needed.)
pub async fn record(engine: &Engine, entry: Entry<'_>) -> Option<String> {
    record_job(engine, audit_job(entry)).await
}

/// Records an audit job built elsewhere (e.g. the `alert.open` record of
/// `vigil_store::alert_open`). Returns the audit job's id.
pub async fn record_job(engine: &Engine, job: AuditJob) -> Option<String> {
    match engine.enqueue_job(&job, None).await {
        Ok(done) => Some(done.job.id),
        Err(e) => {
            tracing::error!(
                error = %e,
                action = %job.action,
                actor = %job.actor.label(),
                target_type = %job.target_type,
                target_id = %job.target_id,
                "audit record could not be enqueued"
            );
            None
        }
    }
}
