//! `/api/v1/schedules`: the configured cron schedules with their next and last runs.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::auth::BearerAuth;
use crate::error::ApiResult;
use crate::routes::Tags;
use crate::routes::models::QueueName;
use crate::state::ApiState;

/// The schedules routes.
pub struct SchedulesApi;

/// The last firing of a schedule.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ScheduleRunView {
    pub tick: DateTime<Utc>,
    /// The job enqueued for this tick.
    pub job_id: Option<String>,
    /// Why no job was enqueued.
    pub error: Option<String>,
}

/// A schedule.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ScheduleView {
    pub name: String,
    /// Six fields, seconds first, UTC.
    pub cron: String,
    pub queue: QueueName,
    /// False when the schedule is off, or its queue is disabled.
    pub enabled: bool,
    /// Why the schedule does not run, when its queue is disabled.
    pub disabled_reason: Option<String>,
    /// None when disabled.
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<ScheduleRunView>,
}

#[OpenApi(tag = "Tags::Schedules")]
impl SchedulesApi {
    /// Every schedule: cron expression, queue, next run, last run and its job.
    #[oai(
        path = "/api/v1/schedules",
        method = "get",
        operation_id = "list_schedules"
    )]
    async fn list(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
    ) -> ApiResult<Json<Vec<ScheduleView>>> {
        Ok(Json(schedule_views(&state).await?))
    }
}

/// Every schedule with its next and last run (the list route and the live stream).
pub async fn schedule_views(state: &ApiState) -> ApiResult<Vec<ScheduleView>> {
    let runs = state.engine().schedule_runs().await?;
    let list = vigil_queue::schedules(state.schedules(), &runs, Utc::now());
    Ok(list
        .into_iter()
        .map(|s| {
            let off = state
                .disabled(s.queue)
                .map(|why| format!("queue {} is disabled ({why})", s.queue));
            ScheduleView {
                name: s.name,
                cron: s.cron,
                queue: s.queue.into(),
                enabled: s.enabled && off.is_none(),
                next_run: s.next_run.filter(|_| off.is_none()),
                disabled_reason: off,
                last_run: s.last_run.map(|r| ScheduleRunView {
                    tick: r.tick,
                    job_id: r.job_id,
                    error: r.error,
                }),
            }
        })
        .collect())
}
