//! `/api/v1/queues`: every queue's counts, pause flag and throughput; pause and resume.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::audit::{self, Entry};
use crate::auth::BearerAuth;
use crate::context::RequestId;
use crate::error::ApiResult;
use crate::routes::Tags;
use crate::routes::models::{CountsView, QueueName, list_envelope};
use crate::state::ApiState;

/// The queues routes.
pub struct QueuesApi;

/// One queue at a glance.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct QueueView {
    pub queue: QueueName,
    /// False when the queue's feature is off (e.g. `okta.enabled = false`): nothing consumes
    /// it and enqueueing is refused.
    pub enabled: bool,
    /// Why the queue is disabled.
    pub disabled_reason: Option<String>,
    pub counts: CountsView,
    /// A paused queue keeps accepting jobs but no instance starts them.
    pub paused: bool,
    /// Jobs that succeeded in the last 60 seconds.
    pub processed_last_minute: u64,
    /// Attempts that failed in the last 60 seconds.
    pub failed_last_minute: u64,
    /// A payload this queue accepts (its job kind's example), e.g. for
    /// `POST /api/v1/queues/{queue}/jobs`.
    pub example: Option<serde_json::Value>,
}

/// A queue's pause flag after pause/resume.
#[derive(Debug, Clone, Object)]
pub struct PauseView {
    pub queue: QueueName,
    pub paused: bool,
}

list_envelope!(
    /// Every queue.
    QueueList,
    QueueView
);

#[OpenApi(tag = "Tags::Queues")]
impl QueuesApi {
    /// Every queue: jobs per status, paused flag, last-minute throughput.
    #[oai(path = "/api/v1/queues", method = "get", operation_id = "list_queues")]
    async fn list(&self, _auth: BearerAuth, state: Data<&ApiState>) -> ApiResult<Json<QueueList>> {
        Ok(Json(QueueList::whole(queue_views(&state).await?)))
    }

    /// Pause a queue: every instance stops starting its jobs; running jobs finish (admin).
    #[oai(
        path = "/api/v1/queues/:queue/pause",
        method = "post",
        operation_id = "pause_queue"
    )]
    async fn pause(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        queue: Path<QueueName>,
    ) -> ApiResult<Json<PauseView>> {
        set_paused(&state, &auth, &rid.0.0, queue.0, true).await
    }

    /// Resume a paused queue (admin).
    #[oai(
        path = "/api/v1/queues/:queue/resume",
        method = "post",
        operation_id = "resume_queue"
    )]
    async fn resume(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        queue: Path<QueueName>,
    ) -> ApiResult<Json<PauseView>> {
        set_paused(&state, &auth, &rid.0.0, queue.0, false).await
    }
}

/// Every queue at a glance (the list route and the live stream).
pub async fn queue_views(state: &ApiState) -> ApiResult<Vec<QueueView>> {
    let stats = state.engine().stats().await?;
    Ok(stats
        .into_iter()
        .map(|s| QueueView {
            enabled: state.disabled(s.queue).is_none(),
            disabled_reason: state.disabled(s.queue).map(str::to_owned),
            example: vigil_jobs::registry::kind(s.queue).map(|k| k.example),
            queue: s.queue.into(),
            counts: s.counts.into(),
            paused: s.paused,
            processed_last_minute: s.processed_last_minute,
            failed_last_minute: s.failed_last_minute,
        })
        .collect())
}

async fn set_paused(
    state: &ApiState,
    auth: &BearerAuth,
    request_id: &str,
    queue: QueueName,
    paused: bool,
) -> ApiResult<Json<PauseView>> {
    auth.0.require_admin()?;
    let q: vigil_jobs::Queue = queue.into();
    auth.0.require_queue(q.as_str())?;
    if paused {
        state.engine().pause(q).await?;
    } else {
        state.engine().resume(q).await?;
    }
    audit::record(
        state.engine(),
        Entry {
            actor: auth.0.actor(),
            action: if paused {
                "queue.pause"
            } else {
                "queue.resume"
            },
            target_type: "queue",
            target_id: q.as_str(),
            details: serde_json::json!({}),
            request_id: Some(request_id),
            job_id: None,
        },
    )
    .await;
    Ok(Json(PauseView { queue, paused }))
}
