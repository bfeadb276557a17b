//! `GET /api/v1/jobs/{id}/timeline`: what happened to one job, oldest first: who enqueued
//! it, each attempt's start, worker and end (its error, or done), dead, and who retried,
//! cancelled or deleted it. Built from the job's record (each failed attempt keeps its start,
//! worker and error) and the audit trail's entries for the job (who did what by hand).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use vigil_jobs::{JobRecord, JobStatus};
use vigil_store::audit::{self, AuditFilter, AuditRecord};

use crate::auth::BearerAuth;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::state::ApiState;

/// The timeline route.
pub struct JobTimelineApi;

/// One moment of a job's life.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    /// `enqueued`, `started`, `failed` (will be retried), `dead`, `done`, `retried`,
    /// `cancelled` or `deleted`.
    pub event: String,
    /// The attempt it belongs to.
    pub attempt: Option<u32>,
    /// The worker that ran the attempt.
    pub worker: Option<String>,
    /// Who did it by hand (`user:alice`, `api_key:...`), from the audit trail.
    pub by: Option<String>,
    /// The attempt's error.
    pub error: Option<String>,
    /// More about it, e.g. when a delayed job is due.
    pub detail: Option<String>,
}

/// A job's timeline.
#[derive(Debug, Clone, Object)]
pub struct TimelineView {
    pub job_id: String,
    pub status: String,
    pub entries: Vec<TimelineEntry>,
}

/// Audit entries read per job (a job acted on more often shows its latest ones).
const AUDIT_DEPTH: u32 = 200;

#[OpenApi(tag = "Tags::Jobs")]
impl JobTimelineApi {
    /// One job's timeline: enqueued by whom, each attempt's start, worker and end, and who
    /// retried, cancelled or deleted it.
    #[oai(
        path = "/api/v1/jobs/:id/timeline",
        method = "get",
        operation_id = "job_timeline"
    )]
    async fn timeline(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> ApiResult<Json<TimelineView>> {
        let job = state.engine().get(&id.0).await?;
        let filter = AuditFilter {
            target_type: Some("job".to_owned()),
            target_id: Some(id.0.clone()),
            ..AuditFilter::default()
        };
        let acts = audit::list(state.db(), &filter, 1, AUDIT_DEPTH)
            .await?
            .items;
        let Some(job) = job else {
            // A deleted job keeps its audit entries: show them rather than nothing.
            if acts.is_empty() {
                return Err(ApiError::not_found(format!("job {} not found", id.0)));
            }
            return Ok(Json(TimelineView {
                job_id: id.0,
                status: "deleted".to_owned(),
                entries: timeline(None, &acts),
            }));
        };
        Ok(Json(TimelineView {
            job_id: job.id.clone(),
            status: job.status.as_str().to_owned(),
            entries: timeline(Some(&job), &acts),
        }))
    }
}

fn entry(at: DateTime<Utc>, event: &str) -> TimelineEntry {
    TimelineEntry {
        at,
        event: event.to_owned(),
        attempt: None,
        worker: None,
        by: None,
        error: None,
        detail: None,
    }
}

/// Where an entry sits in the job's life: (phase, order within the phase, time). Attempt
/// `k` starts in phase `2k` and ends in phase `2k + 1`; an action by hand follows the end of
/// the attempts made before it. Clocks differ (attempts use Redis server time, actions the
/// API host's), so the phase, not the clock, orders an action against attempts.
type Place = (u64, u8, DateTime<Utc>);

/// The entries of `job` (when it still exists) and its audit records, oldest first.
pub fn timeline(job: Option<&JobRecord>, acts: &[AuditRecord]) -> Vec<TimelineEntry> {
    let mut out: Vec<(Place, TimelineEntry)> = Vec::new();
    let by = |action: &str| {
        acts.iter()
            .find(|a| a.action == action)
            .map(|a| a.actor.clone())
    };
    let end_phase = |attempt: u32| 2 * u64::from(attempt) + 1;
    if let Some(j) = job {
        let mut enqueued = entry(j.created_at, "enqueued");
        enqueued.by = by("job.enqueue");
        if j.run_at > j.created_at + chrono::Duration::seconds(1) && j.attempts == 0 {
            enqueued.detail = Some(format!("due at {}", j.run_at.to_rfc3339()));
        }
        out.push(((0, 0, j.created_at), enqueued));
        for e in &j.errors {
            if let Some(started) = e.started_at {
                let mut s = entry(started, "started");
                s.attempt = Some(e.attempt);
                s.worker = e.worker.clone();
                out.push(((end_phase(e.attempt) - 1, 0, started), s));
            }
            let last = e.attempt == j.attempts && j.status == JobStatus::Dead;
            let mut f = entry(e.at, if last { "dead" } else { "failed" });
            f.attempt = Some(e.attempt);
            f.worker = e.worker.clone();
            f.error = Some(e.error.clone());
            out.push(((end_phase(e.attempt), 0, e.at), f));
        }
        // The latest attempt, when no error entry covers it (running or done).
        let covered = j.errors.iter().any(|e| e.attempt == j.attempts);
        if let (Some(started), false) = (j.started_at, covered)
            && j.attempts > 0
        {
            let mut s = entry(started, "started");
            s.attempt = Some(j.attempts);
            s.worker = j.worker.clone();
            out.push(((end_phase(j.attempts) - 1, 0, started), s));
            if j.status == JobStatus::Done
                && let Some(end) = j.finished_at
            {
                let mut d = entry(end, "done");
                d.attempt = Some(j.attempts);
                d.worker = j.worker.clone();
                d.detail = Some(format!("ran {} ms", (end - started).num_milliseconds()));
                out.push(((end_phase(j.attempts), 0, end), d));
            }
        }
        let last = (
            end_phase(j.attempts),
            2,
            j.finished_at.unwrap_or(j.created_at),
        );
        if j.status == JobStatus::Dead && !covered {
            out.push((last, entry(last.2, "dead")));
        }
        if j.status == JobStatus::Cancelled && by("job.cancel").is_none() {
            out.push((last, entry(last.2, "cancelled")));
        }
    }
    // Audit records come newest first; the enqueue is already the first entry.
    for a in acts.iter().rev() {
        let event = match a.action.as_str() {
            "job.retry" => "retried",
            "job.cancel" => "cancelled",
            "job.delete" => "deleted",
            "job.enqueue" if job.is_none() => "enqueued",
            _ => continue,
        };
        let phase = match (event, a.details["attempts"].as_u64()) {
            ("enqueued", _) => 0,
            ("deleted", _) => u64::MAX,
            (_, Some(n)) => 2 * n + 1,
            // No attempt count (older records): after whatever happened before it.
            _ => out
                .iter()
                .filter(|(p, _)| p.2 <= a.occurred_at)
                .map(|(p, _)| p.0)
                .max()
                .unwrap_or(0),
        };
        let mut e = entry(a.occurred_at, event);
        e.by = Some(a.actor.clone());
        out.push(((phase, 1, a.occurred_at), e));
    }
    out.sort_by_key(|(place, _)| *place);
    out.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_jobs::{AttemptError, Queue};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_765_000_000 + s, 0).unwrap()
    }

    fn act(action: &str, actor: &str, s: i64) -> AuditRecord {
        AuditRecord {
            seq: s,
            event_id: format!("e{s}"),
            occurred_at: at(s),
            recorded_at: at(s),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target_type: "job".to_owned(),
            target_id: "email-1".to_owned(),
            details: serde_json::json!({}),
            request_id: None,
            job_id: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_failure_then_a_retry_by_hand_then_done_reads_in_order() {
        let job = JobRecord {
            id: "email-1".to_owned(),
            queue: Queue::new("email"),
            payload: serde_json::json!({}),
            status: JobStatus::Done,
            attempts: 2,
            max_attempts: 6,
            errors: vec![AttemptError {
                attempt: 1,
                at: at(2),
                error: "smtp 451".to_owned(),
                started_at: Some(at(1)),
                worker: Some("w-a".to_owned()),
            }],
            idempotency_key: None,
            created_at: at(0),
            run_at: at(0),
            started_at: Some(at(10)),
            finished_at: Some(at(11)),
            worker: Some("w-b".to_owned()),
        };
        // newest first, as the audit trail answers
        // The API host's clock runs late: the retry reads as before the failure it followed.
        let mut retry = act("job.retry", "user:bob", 1);
        retry.details = serde_json::json!({"attempts": 1});
        let acts = [retry, act("job.enqueue", "user:alice", 0)];
        let t = timeline(Some(&job), &acts);
        let events: Vec<(&str, Option<&str>, Option<&str>)> = t
            .iter()
            .map(|e| (e.event.as_str(), e.worker.as_deref(), e.by.as_deref()))
            .collect();
        assert_eq!(
            events,
            [
                ("enqueued", None, Some("user:alice")),
                ("started", Some("w-a"), None),
                ("failed", Some("w-a"), None),
                ("retried", None, Some("user:bob")),
                ("started", Some("w-b"), None),
                ("done", Some("w-b"), None),
            ]
        );
        assert_eq!(t[2].error.as_deref(), Some("smtp 451"));
    }

    #[test]
    fn a_deleted_job_shows_its_audit_entries() {
        let acts = [
            act("job.delete", "user:bob", 5),
            act("job.enqueue", "user:alice", 0),
        ];
        let t = timeline(None, &acts);
        let events: Vec<&str> = t.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["enqueued", "deleted"]);
    }
}
