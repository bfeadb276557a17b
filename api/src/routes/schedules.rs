//! `/api/v1/schedules`: the configured cron schedules with their next and last runs; an
//! admin switches a schedule off or on for every instance, runs it now, and reads its last
//! runs with each job's outcome. Actions are audited (`schedule.disable`, `schedule.enable`,
//! `schedule.run`).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use vigil_queue::{SCHEDULE_HISTORY, ScheduleRun, ScheduleSettings};

use crate::audit::{self, Entry};
use crate::auth::BearerAuth;
use crate::context::RequestId;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::{JobLinks, QueueName, list_envelope};
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
    /// Who ran it by hand ("run now"); absent for a cron tick.
    pub manual_by: Option<String>,
}

impl From<ScheduleRun> for ScheduleRunView {
    fn from(r: ScheduleRun) -> Self {
        ScheduleRunView {
            tick: r.tick,
            job_id: r.job_id,
            error: r.error,
            manual_by: r.manual_by,
        }
    }
}

/// One run of a schedule with what became of its job.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ScheduleRunDetail {
    #[oai(flatten)]
    pub run: ScheduleRunView,
    /// The job's status now (absent when no job was enqueued, or it is gone after its
    /// queue's retention).
    pub job_status: Option<String>,
    /// Links to the job.
    pub links: Option<JobLinks>,
}

list_envelope!(
    /// A schedule's last runs, newest first.
    ScheduleRuns,
    ScheduleRunDetail,
    {
        /// The schedule's name.
        schedule: String,
    }
);

/// A schedule.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ScheduleView {
    pub name: String,
    /// Six fields, seconds first, UTC.
    pub cron: String,
    pub queue: QueueName,
    /// False when the schedule is off (in config, or switched off at run time), or its
    /// queue is disabled.
    pub enabled: bool,
    /// Why the schedule does not run.
    pub disabled_reason: Option<String>,
    /// Who switched it off at run time, and when.
    pub disabled_by: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// None when disabled.
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<ScheduleRunView>,
}

list_envelope!(
    /// Every schedule.
    ScheduleList,
    ScheduleView
);

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
    ) -> ApiResult<Json<ScheduleList>> {
        Ok(Json(ScheduleList::whole(schedule_views(&state).await?)))
    }

    /// Switch a schedule off on every instance: its ticks are skipped until it is switched
    /// on again (admin).
    #[oai(
        path = "/api/v1/schedules/:name/disable",
        method = "post",
        operation_id = "disable_schedule"
    )]
    async fn disable(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        #[oai(validator(min_length = 1, max_length = 100))] name: Path<String>,
    ) -> ApiResult<Json<ScheduleView>> {
        switch(&state, &auth, &rid.0.0, &name.0, false).await
    }

    /// Switch a schedule back on (admin).
    #[oai(
        path = "/api/v1/schedules/:name/enable",
        method = "post",
        operation_id = "enable_schedule"
    )]
    async fn enable(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        #[oai(validator(min_length = 1, max_length = 100))] name: Path<String>,
    ) -> ApiResult<Json<ScheduleView>> {
        switch(&state, &auth, &rid.0.0, &name.0, true).await
    }

    /// Run a schedule now, once, whether it is on or off: its job is enqueued at once and
    /// the run is recorded as run by hand (admin). 409 when the schedule's queue is
    /// disabled.
    #[oai(
        path = "/api/v1/schedules/:name/run",
        method = "post",
        operation_id = "run_schedule"
    )]
    async fn run(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        #[oai(validator(min_length = 1, max_length = 100))] name: Path<String>,
    ) -> ApiResult<RunResponse> {
        let s = admin_on(&state, &auth, &name.0)?;
        if let Some(why) = state.disabled(s.queue) {
            return Err(ApiError::conflict(format!(
                "schedule {}'s queue {} is disabled ({why})",
                name.0, s.queue
            )));
        }
        let who = auth.0.actor().label();
        let (run, outcome) = state
            .engine()
            .run_schedule(&name.0, s, None, Some(&who))
            .await;
        let job = outcome?;
        record(
            &state,
            &auth,
            &rid.0.0,
            "schedule.run",
            &name.0,
            s,
            Some(&job.job.id),
        )
        .await;
        Ok(RunResponse::Accepted(Json(ScheduleRunDetail {
            job_status: Some(job.job.status.as_str().to_owned()),
            links: Some(JobLinks::for_id(&job.job.id)),
            run: run.into(),
        })))
    }

    /// A schedule's last runs (up to 50, newest first), each with its job's status now.
    #[oai(
        path = "/api/v1/schedules/:name/runs",
        method = "get",
        operation_id = "list_schedule_runs"
    )]
    async fn runs(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
        #[oai(validator(min_length = 1, max_length = 100))] name: Path<String>,
        /// How many runs, 1 to 50 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "50")))]
        limit: Query<Option<u32>>,
    ) -> ApiResult<Json<ScheduleRuns>> {
        known(&state, &name.0)?;
        let n = limit.0.unwrap_or(20) as usize;
        let runs = state
            .engine()
            .schedule_history(&name.0, n.min(SCHEDULE_HISTORY))
            .await?;
        // Each run's job, read concurrently (one connection, pipelined by the client).
        let jobs = futures::future::try_join_all(runs.iter().map(|run| async {
            match &run.job_id {
                Some(id) => state.engine().get(id).await,
                None => Ok(None),
            }
        }))
        .await?;
        let results: Vec<ScheduleRunDetail> = runs
            .into_iter()
            .zip(jobs)
            .map(|(run, job)| ScheduleRunDetail {
                job_status: job.map(|j| j.status.as_str().to_owned()),
                links: run.job_id.as_deref().map(JobLinks::for_id),
                run: run.into(),
            })
            .collect();
        Ok(Json(ScheduleRuns {
            schedule: name.0,
            count: results.len() as u64,
            next: None,
            previous: None,
            results,
        }))
    }
}

/// `POST /api/v1/schedules/{name}/run`'s answer.
#[derive(ApiResponse)]
pub enum RunResponse {
    /// The schedule's job was enqueued.
    #[oai(status = 202)]
    Accepted(Json<ScheduleRunDetail>),
}

/// Switches `name` on or off for every instance (admin), audited; answers its view.
async fn switch(
    state: &ApiState,
    auth: &BearerAuth,
    request_id: &str,
    name: &str,
    on: bool,
) -> ApiResult<Json<ScheduleView>> {
    let s = admin_on(state, auth, name)?;
    let action = if on {
        state.engine().enable_schedule(name).await?;
        "schedule.enable"
    } else {
        let who = auth.0.actor().label();
        state.engine().disable_schedule(name, &who).await?;
        "schedule.disable"
    };
    record(state, auth, request_id, action, name, s, None).await;
    Ok(Json(one_view(state, name).await?))
}

/// The schedule called `name`, or 404.
fn known<'a>(state: &'a ApiState, name: &str) -> ApiResult<&'a ScheduleSettings> {
    state
        .schedules()
        .0
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no schedule named {name}")))
}

/// The schedule called `name` when the caller is an admin allowed on its queue.
fn admin_on<'a>(
    state: &'a ApiState,
    auth: &BearerAuth,
    name: &str,
) -> ApiResult<&'a ScheduleSettings> {
    auth.0.require_admin()?;
    let s = known(state, name)?;
    auth.0.require_queue(s.queue.as_str())?;
    Ok(s)
}

async fn record(
    state: &ApiState,
    auth: &BearerAuth,
    request_id: &str,
    action: &'static str,
    name: &str,
    s: &ScheduleSettings,
    job_id: Option<&str>,
) {
    audit::record(
        state.engine(),
        Entry {
            actor: auth.0.actor(),
            action,
            target_type: "schedule",
            target_id: name,
            details: serde_json::json!({ "queue": s.queue.as_str() }),
            request_id: Some(request_id),
            job_id,
        },
    )
    .await;
}

/// One schedule's view.
async fn one_view(state: &ApiState, name: &str) -> ApiResult<ScheduleView> {
    schedule_views(state)
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no schedule named {name}")))
}

/// Every schedule with its next and last run (the list route and the live stream).
pub async fn schedule_views(state: &ApiState) -> ApiResult<Vec<ScheduleView>> {
    let runs = state.engine().schedule_runs().await?;
    let switched_off = state.engine().schedules_off().await?;
    let list = vigil_queue::schedules(state.schedules(), &runs, Utc::now());
    Ok(list
        .into_iter()
        .map(|s| {
            let by_hand = switched_off.get(&s.name);
            let off = state
                .disabled(s.queue)
                .map(|why| format!("queue {} is disabled ({why})", s.queue))
                .or_else(|| {
                    by_hand.map(|o| format!("switched off by {} at {}", o.by, o.at.to_rfc3339()))
                })
                .or_else(|| (!s.enabled).then(|| "disabled in config".to_owned()));
            ScheduleView {
                name: s.name,
                cron: s.cron,
                queue: s.queue.into(),
                enabled: off.is_none(),
                next_run: s.next_run.filter(|_| off.is_none()),
                disabled_reason: off,
                disabled_by: by_hand.map(|o| o.by.clone()),
                disabled_at: by_hand.map(|o| o.at),
                last_run: s.last_run.map(Into::into),
            }
        })
        .collect())
}
