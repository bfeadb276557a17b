//! `/api/v1/jobs`: enqueue on each queue (one typed body per queue), read, search, retry and
//! cancel jobs (delete and bulk actions: [`super::job_actions`]).
//!
//! Enqueue is `POST /api/v1/jobs/{queue}` with the queue spelled out in the path
//! (`/api/v1/jobs/okta_fetch`, `/email`, `/audit`, `/alert_escalation`), so each built-in queue
//! has its own documented body schema; `POST /api/v1/queues/{queue}/jobs` takes the same body
//! for any registered queue (a new job kind needs no route of its own). Job ids are ULIDs and never collide with the queue names.
//! The four enqueue operations look alike on purpose: each is a few lines naming its body
//! type and handing over to the shared `enqueue`; poem-openapi reads operations from the
//! `#[OpenApi]` impl as written, so a macro cannot generate them.

use chrono::{DateTime, Duration, Utc};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use vigil_jobs::Queue;
use vigil_queue::{JobMatch, JobSearch, NewJob};

use crate::audit::{self, Entry};
use crate::auth::{BearerAuth, Principal};
use crate::context::RequestId;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::{JobLinks, JobView, QueueName, StatusName, encode, list_envelope};
use crate::routes::payloads::{
    EnqueueAlertEscalation, EnqueueAudit, EnqueueEmail, EnqueueOktaFetch,
};
use crate::state::ApiState;
use vigil_jobs::{AlertEscalationJob, AuditJob, EmailJob, Job as _, OktaFetchJob};

/// The jobs routes.
pub struct JobsApi;

/// A job for any registered queue (the queue is in the path).
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct EnqueueAny {
    /// The queue's payload (a JSON object; each job kind's example is listed in
    /// `GET /api/v1/queues`).
    pub payload: serde_json::Value,
    /// Run no earlier than this time (RFC 3339). Exclusive with `delay_seconds`.
    pub run_at: Option<chrono::DateTime<Utc>>,
    /// Run after this many seconds (at most 30 days). Exclusive with `run_at`.
    #[oai(validator(maximum(value = "2592000")))]
    pub delay_seconds: Option<u64>,
}

crate::routes::models::example!(
    EnqueueAny,
    // For `POST /api/v1/queues/email/jobs`.
    serde_json::json!({"payload": EmailJob::example()})
);

/// An accepted job.
#[derive(Debug, Clone, Object)]
pub struct EnqueuedView {
    pub id: String,
    pub queue: QueueName,
    pub status: StatusName,
    /// True when the `Idempotency-Key` was already used: this is the first job, nothing new
    /// was enqueued.
    pub duplicate: bool,
    pub run_at: chrono::DateTime<Utc>,
    pub links: JobLinks,
}

/// The answer to an enqueue.
#[derive(Debug, ApiResponse)]
pub enum EnqueueResponse {
    /// Accepted: the job is queued (or was, for a repeated `Idempotency-Key`).
    #[oai(status = 202)]
    Accepted(Json<EnqueuedView>),
}

list_envelope!(
    /// A page of jobs, newest created first.
    JobList,
    JobView,
    {
        /// The page shown (1-based).
        page: u32,
        page_size: u32,
        /// True when a text search stopped after 5,000 jobs (`count` counts matches among
        /// them).
        #[oai(skip_serializing_if_is_none)]
        truncated: Option<bool>,
    }
);

/// The longest accepted `Idempotency-Key`, in bytes (the engine's limit).
pub(crate) const MAX_KEY: usize = 200;

async fn enqueue(
    state: &ApiState,
    who: &Principal,
    request_id: &str,
    queue: Queue,
    (payload, run_at, delay): (
        serde_json::Value,
        Option<chrono::DateTime<Utc>>,
        Option<u64>,
    ),
    key: Option<String>,
) -> ApiResult<EnqueueResponse> {
    admit(state, who, queue)?;
    let run_at = start_at(run_at, delay, Utc::now()).map_err(ApiError::unprocessable)?;
    if let Some(k) = &key
        && !key_ok(k)
    {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY} printable characters"
        )));
    }
    // The job and its `job.enqueue` audit record are written in one step.
    let id = state.engine().next_id(queue);
    let companion = audit::companion(Entry {
        actor: who.actor(),
        action: "job.enqueue",
        target_type: "job",
        target_id: &id,
        details: serde_json::json!({"queue": queue.as_str(), "run_at": run_at.unwrap_or_else(Utc::now)}),
        request_id: Some(request_id),
        job_id: Some(&id),
    });
    let done = state
        .engine()
        .enqueue(NewJob {
            run_at,
            idempotency_key: key,
            id: Some(id.clone()),
            companion,
            ..NewJob::new(queue, payload)
        })
        .await?;
    let job = done.job;
    Ok(EnqueueResponse::Accepted(Json(EnqueuedView {
        links: JobLinks::for_id(&job.id),
        id: job.id,
        queue: job.queue.into(),
        status: job.status.into(),
        duplicate: done.duplicate,
        run_at: job.run_at,
    })))
}

/// Whether `who` may enqueue on `queue` now: an admin, allowed the queue (API keys), and the
/// queue enabled (409 when nothing would run its jobs).
pub(crate) fn admit(state: &ApiState, who: &Principal, queue: Queue) -> ApiResult<()> {
    who.require_admin()?;
    who.require_queue(queue.as_str())?;
    match state.disabled(queue) {
        Some(why) => Err(ApiError::conflict(format!(
            "queue {queue} is disabled ({why}): nothing would run this job"
        ))),
        None => Ok(()),
    }
}

/// When a job enqueued at `now` is due: `run_at`, or `delay` seconds from now; both given is
/// a mistake (the message names the field).
pub(crate) fn start_at(
    run_at: Option<chrono::DateTime<Utc>>,
    delay: Option<u64>,
    now: chrono::DateTime<Utc>,
) -> Result<Option<chrono::DateTime<Utc>>, &'static str> {
    match (run_at, delay) {
        (Some(_), Some(_)) => Err("run_at: give run_at or delay_seconds, not both"),
        (Some(at), None) => Ok(Some(at)),
        (None, delay) => Ok(delay.map(|d| now + Duration::seconds(d as i64))),
    }
}

/// An idempotency key vigil keeps: 1 to [`MAX_KEY`] bytes (the engine's limit), no control
/// characters.
pub(crate) fn key_ok(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && !key.chars().any(char::is_control)
}

async fn act(
    state: &ApiState,
    who: &Principal,
    request_id: &str,
    id: &str,
    action: &'static str,
) -> ApiResult<Json<JobView>> {
    who.require_admin()?;
    let before = state.engine().get(id).await?;
    if who.api_key.as_ref().is_some_and(|k| k.queues.is_some())
        && let Some(job) = &before
    {
        who.require_queue(job.queue.as_str())?;
    }
    let job = match action {
        "job.retry" => state.engine().retry(id).await?,
        _ => state.engine().cancel(id).await?,
    };
    // The attempts made before the action (a retried job may start again at once).
    let attempts = before.map_or(job.attempts, |b| b.attempts);
    audit::record(
        state.engine(),
        Entry {
            actor: who.actor(),
            action,
            target_type: "job",
            target_id: &job.id,
            // `attempts` places the action between the job's attempts on its timeline.
            details: serde_json::json!({"queue": job.queue.as_str(), "status": job.status.as_str(),
                "attempts": attempts}),
            request_id: Some(request_id),
            job_id: Some(&job.id),
        },
    )
    .await;
    Ok(Json(job.into()))
}

#[OpenApi(tag = "Tags::Jobs")]
impl JobsApi {
    /// Enqueue an `okta_fetch` job (admin).
    #[oai(
        path = "/api/v1/jobs/okta_fetch",
        method = "post",
        operation_id = "enqueue_okta_fetch"
    )]
    async fn enqueue_okta_fetch(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        body: Json<EnqueueOktaFetch>,
        /// Within the idempotency window, a repeated key returns the first job, so a client
        /// can retry any 503 or timeout safely (a 503 with `"outcome": "unknown"` asks for it).
        #[oai(name = "Idempotency-Key")]
        key: Header<Option<String>>,
    ) -> ApiResult<EnqueueResponse> {
        enqueue(
            &state,
            &auth.0,
            &rid.0.0,
            OktaFetchJob::QUEUE,
            body.parts(),
            key.0,
        )
        .await
    }

    /// Enqueue an `email` job (admin).
    #[oai(
        path = "/api/v1/jobs/email",
        method = "post",
        operation_id = "enqueue_email"
    )]
    async fn enqueue_email(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        body: Json<EnqueueEmail>,
        /// Within the idempotency window, a repeated key returns the first job, so a client
        /// can retry any 503 or timeout safely (a 503 with `"outcome": "unknown"` asks for it).
        #[oai(name = "Idempotency-Key")]
        key: Header<Option<String>>,
    ) -> ApiResult<EnqueueResponse> {
        enqueue(
            &state,
            &auth.0,
            &rid.0.0,
            EmailJob::QUEUE,
            body.parts(),
            key.0,
        )
        .await
    }

    /// Enqueue an `audit` job (admin).
    #[oai(
        path = "/api/v1/jobs/audit",
        method = "post",
        operation_id = "enqueue_audit"
    )]
    async fn enqueue_audit(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        body: Json<EnqueueAudit>,
        /// Within the idempotency window, a repeated key returns the first job, so a client
        /// can retry any 503 or timeout safely (a 503 with `"outcome": "unknown"` asks for it).
        #[oai(name = "Idempotency-Key")]
        key: Header<Option<String>>,
    ) -> ApiResult<EnqueueResponse> {
        enqueue(
            &state,
            &auth.0,
            &rid.0.0,
            AuditJob::QUEUE,
            body.parts(),
            key.0,
        )
        .await
    }

    /// Enqueue an `alert_escalation` job (admin).
    #[oai(
        path = "/api/v1/jobs/alert_escalation",
        method = "post",
        operation_id = "enqueue_alert_escalation"
    )]
    async fn enqueue_alert_escalation(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        body: Json<EnqueueAlertEscalation>,
        /// Within the idempotency window, a repeated key returns the first job, so a client
        /// can retry any 503 or timeout safely (a 503 with `"outcome": "unknown"` asks for it).
        #[oai(name = "Idempotency-Key")]
        key: Header<Option<String>>,
    ) -> ApiResult<EnqueueResponse> {
        enqueue(
            &state,
            &auth.0,
            &rid.0.0,
            AlertEscalationJob::QUEUE,
            body.parts(),
            key.0,
        )
        .await
    }

    /// Enqueue a job on any registered queue (admin). Every job kind gets this route when it
    /// is registered; the built-in queues also have the typed routes above.
    #[oai(
        path = "/api/v1/queues/:queue/jobs",
        method = "post",
        operation_id = "enqueue_on_queue"
    )]
    async fn enqueue_any(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        queue: Path<QueueName>,
        body: Json<EnqueueAny>,
        /// Within the idempotency window, a repeated key returns the first job, so a client
        /// can retry any 503 or timeout safely (a 503 with `"outcome": "unknown"` asks for it).
        #[oai(name = "Idempotency-Key")]
        key: Header<Option<String>>,
    ) -> ApiResult<EnqueueResponse> {
        let body = body.0;
        if !body.payload.is_object() {
            return Err(ApiError::unprocessable("payload: must be a JSON object"));
        }
        let parts = (body.payload, body.run_at, body.delay_seconds);
        enqueue(&state, &auth.0, &rid.0.0, queue.0.0, parts, key.0).await
    }

    /// Search jobs, newest created first: by queue, status, creation time and text in the
    /// id, payload or errors. A search looks at the newest 10,000 jobs of each queue and
    /// status; text is matched on at most 5,000 of them (`truncated` says when it stopped).
    #[oai(path = "/api/v1/jobs", method = "get", operation_id = "list_jobs")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
        queue: Query<Option<QueueName>>,
        status: Query<Option<StatusName>>,
        /// Text in the job's id, payload or errors (case-insensitive).
        #[oai(validator(min_length = 1, max_length = 200))]
        q: Query<Option<String>>,
        /// Created at or after (RFC 3339).
        created_after: Query<Option<DateTime<Utc>>>,
        /// Created before (RFC 3339).
        created_before: Query<Option<DateTime<Utc>>>,
        /// 1-based page number (default 1).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Jobs per page, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        page_size: Query<Option<u32>>,
    ) -> ApiResult<Json<JobList>> {
        let search = JobSearch {
            queue: queue.0.map(Into::into),
            status: status.0.map(Into::into),
            matches: JobMatch {
                text: q.0,
                created_after: created_after.0,
                created_before: created_before.0,
            },
            page: page.0.unwrap_or(1),
            page_size: page_size.0.unwrap_or(50),
        };
        let found = state.engine().search(&search).await?;
        let url = |p: u32| {
            let mut q = vec![
                format!("page={p}"),
                format!("page_size={}", search.page_size),
            ];
            if let Some(queue) = search.queue {
                q.push(format!("queue={queue}"));
            }
            if let Some(status) = search.status {
                q.push(format!("status={status}"));
            }
            let m = &search.matches;
            if let Some(text) = &m.text {
                q.push(format!("q={}", encode(text)));
            }
            for (name, t) in [
                ("created_after", m.created_after),
                ("created_before", m.created_before),
            ] {
                if let Some(t) = t {
                    q.push(format!("{name}={}", encode(&t.to_rfc3339())));
                }
            }
            format!("/api/v1/jobs?{}", q.join("&"))
        };
        let total = found.page.total;
        let shown = u64::from(search.page) * u64::from(search.page_size);
        Ok(Json(JobList {
            count: total,
            page: search.page,
            page_size: search.page_size,
            next: (shown < total).then(|| url(search.page + 1)),
            previous: (search.page > 1).then(|| url(search.page - 1)),
            truncated: found.truncated.then_some(true),
            results: found.page.jobs.into_iter().map(Into::into).collect(),
        }))
    }

    /// Read one job, with its progress when it reported any (an Okta backfill).
    #[oai(path = "/api/v1/jobs/:id", method = "get", operation_id = "get_job")]
    async fn get(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> ApiResult<Json<JobView>> {
        match state.engine().get(&id.0).await? {
            Some(job) => {
                let mut view = JobView::from(job);
                view.progress = state.engine().progress(&id.0).await?;
                Ok(Json(view))
            }
            None => Err(ApiError::not_found(format!("job {} not found", id.0))),
        }
    }

    /// Delete a job that is not running, whatever its status (admin; audited `job.delete`).
    #[oai(
        path = "/api/v1/jobs/:id",
        method = "delete",
        operation_id = "delete_job"
    )]
    async fn delete(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> ApiResult<super::job_actions::DeleteResponse> {
        super::job_actions::delete_job(&state, &auth.0, &rid.0.0, &id.0).await
    }

    /// Retry a dead or failed job now, with a fresh set of attempts (admin).
    #[oai(
        path = "/api/v1/jobs/:id/retry",
        method = "post",
        operation_id = "retry_job"
    )]
    async fn retry(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> ApiResult<Json<JobView>> {
        act(&state, &auth.0, &rid.0.0, &id.0, "job.retry").await
    }

    /// Cancel a pending, scheduled or failed job (admin).
    #[oai(
        path = "/api/v1/jobs/:id/cancel",
        method = "post",
        operation_id = "cancel_job"
    )]
    async fn cancel(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> ApiResult<Json<JobView>> {
        act(&state, &auth.0, &rid.0.0, &id.0, "job.cancel").await
    }
}
