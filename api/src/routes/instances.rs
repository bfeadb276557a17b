//! `GET /api/v1/instances`: the fleet view. Every live vigil instance (each process reports
//! its actors to Redis every few seconds, an API-only process reports an `api` entry), with
//! its role, the queues it consumes, its actors' states, restarts and (queue actors) jobs in
//! flight of their concurrency, its last error and its heartbeat. An instance that stops reporting drops out when its report expires.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use vigil_queue::ActorHealth;

use crate::auth::BearerAuth;
use crate::error::ApiResult;
use crate::routes::Tags;
use crate::routes::models::list_envelope;
use crate::state::ApiState;

/// The instances routes.
pub struct InstancesApi;

/// One actor of an instance.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InstanceActorView {
    /// e.g. `queue:email`, `scheduler`, `api`.
    pub name: String,
    pub healthy: bool,
    /// How many times its supervisor restarted it.
    pub restarts: u64,
    pub last_error: Option<String>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
    /// A queue actor's jobs running now on its worker.
    pub in_flight: Option<u64>,
    /// A queue actor's most jobs at once.
    pub concurrency: Option<u64>,
    /// A queue actor's current worker (a new one after each restart).
    pub worker: Option<String>,
}

/// One live instance.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InstanceView {
    /// Unique per process start: `ROLE@HOST-PID-ULID`.
    pub instance: String,
    /// `run` (API + workers), `worker` or `api`.
    pub role: String,
    /// The queues it consumes.
    pub queues: Vec<String>,
    /// True when every actor is healthy.
    pub healthy: bool,
    /// Restarts of all its actors.
    pub restarts: u64,
    /// The most recent error any of its actors reported.
    pub last_error: Option<String>,
    /// When it last reported (it drops out of this list when its report expires).
    pub heartbeat: Option<DateTime<Utc>>,
    pub actors: Vec<InstanceActorView>,
}

list_envelope!(
    /// Every live instance.
    InstanceList,
    InstanceView
);

#[OpenApi(tag = "Tags::Instances")]
impl InstancesApi {
    /// Every live instance: role, queues, actor states, restarts, last error, heartbeat.
    #[oai(
        path = "/api/v1/instances",
        method = "get",
        operation_id = "list_instances"
    )]
    async fn list(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
    ) -> ApiResult<Json<InstanceList>> {
        Ok(Json(InstanceList::whole(group(
            state.engine().actors().await?,
        ))))
    }
}

/// Groups actor reports by instance.
pub fn group(actors: Vec<ActorHealth>) -> Vec<InstanceView> {
    let mut by_instance: BTreeMap<String, Vec<ActorHealth>> = BTreeMap::new();
    for a in actors {
        by_instance.entry(a.instance.clone()).or_default().push(a);
    }
    by_instance
        .into_iter()
        .map(|(instance, actors)| {
            let role = instance
                .split_once('@')
                .map_or("worker", |(role, _)| role)
                .to_owned();
            let queues = actors
                .iter()
                .filter_map(|a| a.name.strip_prefix("queue:").map(str::to_owned))
                .collect();
            let last_error = actors
                .iter()
                .filter(|a| a.last_error.is_some())
                .max_by_key(|a| a.updated_at)
                .and_then(|a| a.last_error.clone());
            InstanceView {
                role,
                queues,
                healthy: actors.iter().all(|a| a.healthy),
                restarts: actors.iter().map(|a| a.restarts).sum(),
                last_error,
                heartbeat: actors.iter().filter_map(|a| a.reported_at).max(),
                actors: actors
                    .into_iter()
                    .map(|a| InstanceActorView {
                        in_flight: a.load.as_ref().map(|l| l.in_flight),
                        concurrency: a.load.as_ref().map(|l| l.concurrency),
                        worker: a.load.map(|l| l.worker),
                        name: a.name,
                        healthy: a.healthy,
                        restarts: a.restarts,
                        last_error: a.last_error,
                        updated_at: a.updated_at,
                    })
                    .collect(),
                instance,
            }
        })
        .collect()
}

/// How often an API-only process reports itself, and how long a report stays valid (as the
/// workers' actor reports).
pub const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
const REPORT_TTL: std::time::Duration = std::time::Duration::from_secs(15);

/// Reports this API-only process as `instance` with one `api` entry until the task is
/// dropped or aborted (then call `Engine::forget_instance`).
pub async fn report_api_instance(engine: vigil_queue::Engine, instance: String) {
    let since = Utc::now();
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tick.tick().await;
        let entry = ActorHealth {
            instance: instance.clone(),
            name: "api".to_owned(),
            healthy: true,
            restarts: 0,
            last_error: None,
            updated_at: since,
            reported_at: Some(Utc::now()),
            load: None,
        };
        if let Err(e) = engine.report_actors(&instance, &[entry], REPORT_TTL).await {
            tracing::debug!(error = %e, "could not publish the API instance report");
        }
    }
}
