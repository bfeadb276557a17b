//! Audits schedule runs that fail: when a job a schedule enqueued goes dead, an audit record
//! `schedule.failed` (target: the schedule) says which tick, which job and why.
//!
//! Scheduled jobs are recognised by the idempotency key the scheduler gives them,
//! `schedule:<name>:<tick ms>`. A schedule whose enqueue itself fails is logged by the
//! scheduler and recorded in its last run (the audit queue lives on the same Redis).

use std::time::Duration;

use serde_json::json;
use vigil_queue::backend::{AttemptOutcome, JobObserver};
use vigil_queue::{Engine, LeasedJob};

use crate::audit::{AuditSink, EngineAuditSink, system_record};
use vigil_jobs::{AuditJob, Job as _};

/// The observer; one per runtime.
pub(crate) struct ScheduleFailureAudit {
    engine: Engine,
}

impl ScheduleFailureAudit {
    pub(crate) fn new(engine: Engine) -> Self {
        ScheduleFailureAudit { engine }
    }
}

/// `schedule:<name>:<tick ms>` → (name, tick ms).
fn schedule_of(key: &str) -> Option<(&str, i64)> {
    let rest = key.strip_prefix("schedule:")?;
    let (name, tick) = rest.rsplit_once(':')?;
    Some((name, tick.parse().ok()?))
}

impl JobObserver for ScheduleFailureAudit {
    fn started(&self, _job: &LeasedJob) {}

    fn finished(&self, job: &LeasedJob, outcome: AttemptOutcome, _: Duration, _: Duration) {
        if outcome != AttemptOutcome::Dead || job.queue == AuditJob::QUEUE {
            return;
        }
        let engine = self.engine.clone();
        let job_id = job.id.clone();
        tokio::spawn(async move {
            let Ok(Some(record)) = engine.get(&job_id).await else {
                return;
            };
            let Some((name, tick)) = record.idempotency_key.as_deref().and_then(schedule_of) else {
                return;
            };
            tracing::error!(schedule = name, job_id = %job_id, "a scheduled run failed");
            let audit = system_record(
                format!("schedule-failed-{job_id}"),
                "schedule.failed",
                ("schedule", name),
                json!({
                    "queue": record.queue.as_str(),
                    "tick": chrono::DateTime::from_timestamp_millis(tick),
                    "attempts": record.attempts,
                    "error": record.last_error(),
                }),
                Some(job_id.clone()),
            );
            EngineAuditSink::new(engine).record(audit).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_jobs_are_told_by_their_key() {
        assert_eq!(
            schedule_of("schedule:okta_fetch:1700000000000"),
            Some(("okta_fetch", 1_700_000_000_000))
        );
        assert_eq!(schedule_of("schedule:a:b:5"), Some(("a:b", 5)));
        assert_eq!(schedule_of("alert-1-opened"), None);
        assert_eq!(schedule_of("schedule:x:notanumber"), None);
    }
}
