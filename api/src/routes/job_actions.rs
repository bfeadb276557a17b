//! `DELETE /api/v1/jobs/{id}` and `POST /api/v1/jobs/bulk`: delete a job; retry, cancel or
//! delete many, by ids or by filter (bounded per call, resumed with the returned cursor).
//! Admin only; every call is audited (`job.delete`, `job.bulk`).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use vigil_queue::{BulkAction, BulkCursor, BulkFilter, JobMatch, JobStatus, MAX_BULK, queue_of_id};

use crate::audit::{self, Entry};
use crate::auth::{BearerAuth, Principal};
use crate::context::RequestId;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::{QueueName, StatusName};
use crate::state::ApiState;

/// The job action routes.
pub struct JobActionsApi;

/// What a bulk call does to each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum BulkActionName {
    /// Dead or failed jobs back to pending with a fresh set of attempts.
    Retry,
    /// Pending, scheduled or failed jobs to cancelled.
    Cancel,
    /// Any job that is not running, gone for good.
    Delete,
}

impl From<BulkActionName> for BulkAction {
    fn from(a: BulkActionName) -> Self {
        match a {
            BulkActionName::Retry => BulkAction::Retry,
            BulkActionName::Cancel => BulkAction::Cancel,
            BulkActionName::Delete => BulkAction::Delete,
        }
    }
}

/// Which jobs a bulk call acts on (every condition must hold).
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct JobFilterBody {
    /// Every queue when absent.
    pub queue: Option<QueueName>,
    /// Every status the action applies to when absent.
    pub status: Option<StatusName>,
    /// Text in the job's id, payload or errors (case-insensitive).
    #[oai(validator(min_length = 1, max_length = 200))]
    pub q: Option<String>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
}

/// A bulk action on jobs given by `ids` or by `filter` (one of them).
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct BulkRequest {
    pub action: BulkActionName,
    /// Up to 1,000 job ids.
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub ids: Option<Vec<String>>,
    pub filter: Option<JobFilterBody>,
    /// With `filter`: the `cursor` of the previous answer, to go on where it stopped.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub cursor: Option<String>,
    /// With `filter`: how many jobs this call walks, 1 to 1,000 (default 500).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub limit: Option<u32>,
}

impl poem_openapi::types::Example for BulkRequest {
    /// Retry every dead email job, 500 per call.
    fn example() -> Self {
        BulkRequest {
            action: BulkActionName::Retry,
            ids: None,
            filter: Some(JobFilterBody {
                queue: Some(QueueName(<vigil_jobs::EmailJob as vigil_jobs::Job>::QUEUE)),
                status: Some(StatusName::Dead),
                q: None,
                created_after: None,
                created_before: None,
            }),
            cursor: None,
            limit: Some(500),
        }
    }
}

/// What a bulk call did.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BulkResult {
    pub action: BulkActionName,
    /// Jobs the action changed.
    pub count: u64,
    /// Jobs looked at but left alone: unknown, no longer in a state the action applies to,
    /// or not matching the filter's text or time range.
    pub skipped: u64,
    /// Present when the filter has more jobs: send the same request with this `cursor`.
    pub cursor: Option<String>,
}

/// The answer to a delete.
#[derive(Debug, ApiResponse)]
pub enum DeleteResponse {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(tag = "Tags::Jobs")]
impl JobActionsApi {
    /// Retry, cancel or delete many jobs (admin; audited `job.bulk`): by `ids` (up to
    /// 1,000), or by `filter`, walking at most `limit` jobs per call, oldest first, among
    /// those that matched when the first call was made; while the answer has a `cursor`,
    /// send the request again with it. Jobs the action does not apply to are skipped.
    #[oai(
        path = "/api/v1/jobs/bulk",
        method = "post",
        operation_id = "bulk_jobs"
    )]
    async fn bulk(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        body: Json<BulkRequest>,
    ) -> ApiResult<Json<BulkResult>> {
        auth.0.require_admin()?;
        let body = body.0;
        let action = BulkAction::from(body.action);
        let (outcome, details) = match (&body.ids, &body.filter) {
            (Some(ids), None) => {
                if body.cursor.is_some() || body.limit.is_some() {
                    return Err(ApiError::unprocessable(
                        "cursor, limit: only with filter, not with ids",
                    ));
                }
                for id in ids {
                    if let Some(q) = queue_of_id(id) {
                        auth.0.require_queue(q.as_str())?;
                    }
                }
                let out = state.engine().bulk_ids(action, ids).await?;
                (out, serde_json::json!({"ids": ids}))
            }
            (None, Some(filter)) => {
                let f = engine_filter(&auth.0, action, filter)?;
                let cursor = match &body.cursor {
                    Some(c) => Some(BulkCursor::parse(c).ok_or_else(|| {
                        ApiError::unprocessable("cursor: not a cursor this route returned")
                    })?),
                    None => None,
                };
                let limit = body.limit.unwrap_or(500).min(MAX_BULK);
                let out = state
                    .engine()
                    .bulk_filter(action, &f, cursor, limit)
                    .await?;
                let details = serde_json::json!({
                    "filter": {
                        "queue": f.queue.map(|q| q.as_str()),
                        "status": f.status.map(|s| s.as_str()),
                        "q": filter.q,
                        "created_after": filter.created_after,
                        "created_before": filter.created_before,
                    },
                    "cursor": body.cursor,
                });
                (out, details)
            }
            _ => {
                return Err(ApiError::unprocessable(
                    "ids, filter: give exactly one of them",
                ));
            }
        };
        let mut details = details;
        details["action"] = action.as_str().into();
        details["count"] = outcome.affected.into();
        details["skipped"] = outcome.skipped.into();
        record(&state, &auth.0, &rid.0.0, "job.bulk", "bulk", details).await;
        Ok(Json(BulkResult {
            action: body.action,
            count: outcome.affected,
            skipped: outcome.skipped,
            cursor: outcome.next.map(|c| c.to_string()),
        }))
    }
}

/// The engine's filter, checked: the status must be one the action applies to, and a key
/// limited to some queues must name one of them.
fn engine_filter(
    who: &Principal,
    action: BulkAction,
    body: &JobFilterBody,
) -> ApiResult<BulkFilter> {
    let status = body.status.map(JobStatus::from);
    if let Some(s) = status
        && !action.applies(s)
    {
        let valid: Vec<&str> = action.applies_to().iter().map(|s| s.as_str()).collect();
        return Err(ApiError::unprocessable(format!(
            "filter.status: {} does not apply to {s} jobs; valid: {}",
            action.as_str(),
            valid.join(", ")
        )));
    }
    let queue = body.queue.map(vigil_jobs::Queue::from);
    match queue {
        Some(q) => who.require_queue(q.as_str())?,
        None if who.api_key.as_ref().is_some_and(|k| k.queues.is_some()) => {
            return Err(ApiError::forbidden(
                "filter.queue: this API key may act only on its queues; name one",
            ));
        }
        None => {}
    }
    let has_match =
        body.q.is_some() || body.created_after.is_some() || body.created_before.is_some();
    Ok(BulkFilter {
        queue,
        status,
        matches: has_match.then(|| JobMatch {
            text: body.q.clone(),
            created_after: body.created_after,
            created_before: body.created_before,
        }),
    })
}

/// `DELETE /api/v1/jobs/{id}` (declared beside `GET` in [`super::jobs`], one operation set
/// per path): a job that is not running, whatever its status; admin; audited `job.delete`.
pub async fn delete_job(
    state: &ApiState,
    who: &Principal,
    request_id: &str,
    id: &str,
) -> ApiResult<DeleteResponse> {
    who.require_admin()?;
    if let Some(q) = queue_of_id(id) {
        who.require_queue(q.as_str())?;
    }
    let was = state.engine().delete(id).await?;
    record(
        state,
        who,
        request_id,
        "job.delete",
        id,
        serde_json::json!({"status": was.as_str()}),
    )
    .await;
    Ok(DeleteResponse::Deleted)
}

async fn record(
    state: &ApiState,
    who: &Principal,
    request_id: &str,
    action: &'static str,
    target: &str,
    details: serde_json::Value,
) {
    audit::record(
        state.engine(),
        Entry {
            actor: who.actor(),
            action,
            target_type: "job",
            target_id: target,
            details,
            request_id: Some(request_id),
            job_id: queue_of_id(target).map(|_| target),
        },
    )
    .await;
}
