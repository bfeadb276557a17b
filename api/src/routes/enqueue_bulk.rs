//! `POST /api/v1/jobs/{queue}/bulk`: enqueue up to [`MAX_BULK_ENQUEUE`] jobs of one queue in
//! one call. Each item is checked like a single enqueue (the queue's job kind validates its
//! payload); the valid ones are written in one engine call (one Redis script call), the
//! invalid ones are answered per item and do not block the others. Admin only; one call is
//! one request against the write budget and one `job.bulk_enqueue` audit record naming the
//! count and the new jobs' ids (not one companion per job: a companion costs a relay per job).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use vigil_jobs::Queue;
use vigil_queue::NewJob;

use crate::audit::{self, Entry};
use crate::auth::BearerAuth;
use crate::context::RequestId;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::jobs::{MAX_KEY, admit, key_ok, start_at};
use crate::state::ApiState;

/// The most jobs one bulk enqueue takes.
pub const MAX_BULK_ENQUEUE: usize = 1000;
/// The longest delay, as on the single enqueue routes (30 days).
const MAX_DELAY: u64 = 2_592_000;

/// The bulk enqueue route.
pub struct EnqueueBulkApi;

/// One job of a bulk enqueue.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct BulkJobIn {
    /// The queue's payload (a JSON object; each job kind's example is in
    /// `GET /api/v1/queues`).
    pub payload: serde_json::Value,
    /// Run no earlier than this time (RFC 3339). Exclusive with `delay_seconds`.
    pub run_at: Option<DateTime<Utc>>,
    /// Run after this many seconds, at most 2592000 (30 days). Exclusive with `run_at`.
    pub delay_seconds: Option<u64>,
    /// 1 to 200 printable characters: within the idempotency window a repeated key (in this
    /// call or an earlier one) answers the first job and enqueues nothing.
    pub idempotency_key: Option<String>,
}

/// Up to 1,000 jobs for one queue.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct BulkEnqueueIn {
    /// 1 to 1,000 jobs (more: 422).
    #[oai(validator(min_items = 1))]
    pub jobs: Vec<BulkJobIn>,
}

impl poem_openapi::types::Example for BulkEnqueueIn {
    /// Two emails, the second in an hour.
    fn example() -> Self {
        let payload = serde_json::json!({
            "to": ["soc@example.com"],
            "subject": "Weekly report",
            "body": {"text": "All quiet."}
        });
        BulkEnqueueIn {
            jobs: vec![
                BulkJobIn {
                    payload: payload.clone(),
                    run_at: None,
                    delay_seconds: None,
                    idempotency_key: None,
                },
                BulkJobIn {
                    payload,
                    run_at: None,
                    delay_seconds: Some(3600),
                    idempotency_key: None,
                },
            ],
        }
    }
}

/// What became of one item, in the order sent.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BulkItemResult {
    /// The item's 0-based position in `jobs`.
    pub index: u32,
    /// The job's id (the first job's, for a repeated idempotency key); absent when refused.
    pub id: Option<String>,
    /// True when the idempotency key was used already: nothing new was enqueued.
    pub duplicate: Option<bool>,
    /// Why the item was refused (`<field>: <rule>`); absent when accepted.
    pub error: Option<String>,
}

/// The answer to a bulk enqueue.
#[derive(Debug, Clone, Object)]
pub struct BulkEnqueueResult {
    /// Items accepted (new jobs and duplicates); the others have an `error`.
    pub count: u64,
    /// One result per item, in the order sent.
    pub results: Vec<BulkItemResult>,
}

/// The answer to a bulk enqueue.
#[derive(Debug, ApiResponse)]
pub enum BulkEnqueueResponse {
    /// The call was taken: every valid item is queued (even when some, or all, items were
    /// refused: each result says which).
    #[oai(status = 202)]
    Accepted(Json<BulkEnqueueResult>),
}

/// An item's job, or why it is refused.
fn check(queue: Queue, item: BulkJobIn, now: DateTime<Utc>) -> Result<NewJob, String> {
    if !item.payload.is_object() {
        return Err("payload: must be a JSON object".to_owned());
    }
    if item.delay_seconds.is_some_and(|d| d > MAX_DELAY) {
        return Err(format!(
            "delay_seconds: must be at most {MAX_DELAY} (30 days)"
        ));
    }
    let run_at = start_at(item.run_at, item.delay_seconds, now)?;
    if let Some(k) = &item.idempotency_key
        && !key_ok(k)
    {
        return Err(format!(
            "idempotency_key: must be 1 to {MAX_KEY} printable characters"
        ));
    }
    vigil_jobs::registry::validate(queue, &item.payload)
        .map_err(|e| format!("payload.{}: {}", e.field, e.message))?;
    Ok(NewJob {
        run_at,
        idempotency_key: item.idempotency_key,
        ..NewJob::new(queue, item.payload)
    })
}

#[OpenApi(tag = "Tags::Jobs")]
impl EnqueueBulkApi {
    /// Enqueue up to 1,000 jobs on one queue in one call (admin; one `job.bulk_enqueue`
    /// audit record per call). Each item is validated like a single enqueue; the valid ones
    /// are written together and the invalid ones answered with their `error`, so they do not
    /// block the others. Always 202 with one result per item, in order; more than 1,000
    /// items is 422, an unknown queue 404.
    #[oai(
        path = "/api/v1/jobs/:queue/bulk",
        method = "post",
        operation_id = "enqueue_bulk"
    )]
    async fn enqueue_bulk(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        /// A registered queue, e.g. `email` (`GET /api/v1/queues` lists them).
        #[oai(validator(max_length = 100))]
        queue: Path<String>,
        body: Json<BulkEnqueueIn>,
    ) -> ApiResult<BulkEnqueueResponse> {
        let who = &auth.0;
        let queue: Queue = queue.0.parse().map_err(|_| {
            let known: Vec<&str> = Queue::all().iter().map(|q| q.as_str()).collect();
            ApiError::not_found(format!(
                "no queue named `{}`; valid: {}",
                queue.0,
                known.join(", ")
            ))
        })?;
        admit(&state, who, queue)?;
        let items = body.0.jobs;
        if items.len() > MAX_BULK_ENQUEUE {
            return Err(ApiError::unprocessable(format!(
                "jobs: at most {MAX_BULK_ENQUEUE} jobs per call, got {}",
                items.len()
            )));
        }
        let now = Utc::now();
        let mut results: Vec<BulkItemResult> = Vec::with_capacity(items.len());
        let mut valid = Vec::new();
        let mut at = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let mut result = BulkItemResult {
                index: index as u32,
                id: None,
                duplicate: None,
                error: None,
            };
            match check(queue, item, now) {
                Ok(job) => {
                    at.push(index);
                    valid.push(job);
                }
                Err(why) => result.error = Some(why),
            }
            results.push(result);
        }
        let mut new_ids = Vec::new();
        let mut count = 0u64;
        if !valid.is_empty() {
            let done = state.engine().enqueue_many(valid).await?;
            for (index, e) in at.into_iter().zip(done) {
                count += 1;
                if !e.duplicate {
                    new_ids.push(e.job.id.clone());
                }
                let r = &mut results[index];
                r.id = Some(e.job.id);
                r.duplicate = Some(e.duplicate);
            }
        }
        let refused = results.len() as u64 - count;
        audit::record(
            state.engine(),
            Entry {
                actor: who.actor(),
                action: "job.bulk_enqueue",
                target_type: "queue",
                target_id: queue.as_str(),
                details: serde_json::json!({
                    "queue": queue.as_str(),
                    "count": count,
                    "new": new_ids.len(),
                    "refused": refused,
                    "ids": new_ids,
                }),
                request_id: Some(&rid.0.0),
                job_id: None,
            },
        )
        .await;
        Ok(BulkEnqueueResponse::Accepted(Json(BulkEnqueueResult {
            count,
            results,
        })))
    }
}
