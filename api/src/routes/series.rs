//! `GET /api/v1/queues/{queue}/series`: a queue's chart over the last hour (one point per
//! minute) or day (one per 15 minutes): jobs enqueued, done, failed and dead, and the
//! enqueue-to-start wait and run duration p50/p95. Read from the engine's bounded
//! per-minute series in Redis (`vigil_queue::Engine::series`).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use vigil_queue::SeriesPoint;

use crate::auth::BearerAuth;
use crate::error::ApiResult;
use crate::routes::Tags;
use crate::routes::models::QueueName;
use crate::state::ApiState;

/// The series route.
pub struct SeriesApi;

/// How far back a series reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SeriesRange {
    /// The last hour, one point per minute.
    #[oai(rename = "1h")]
    Hour,
    /// The last 24 hours, one point per 15 minutes.
    #[oai(rename = "24h")]
    Day,
}

impl SeriesRange {
    /// (minutes, minutes per point).
    fn window(self) -> (u32, u32) {
        match self {
            SeriesRange::Hour => (60, 1),
            SeriesRange::Day => (24 * 60, 15),
        }
    }
}

/// One point of a queue's series.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SeriesPointView {
    /// The start of the point's step.
    pub at: DateTime<Utc>,
    pub enqueued: u64,
    pub done: u64,
    /// Attempts that failed and will be retried.
    pub failed: u64,
    pub dead: u64,
    /// Enqueue-to-start wait of the attempts started in the step, in ms.
    pub wait_p50_ms: Option<f64>,
    pub wait_p95_ms: Option<f64>,
    /// Run duration of the attempts that ended in the step, in ms.
    pub run_p50_ms: Option<f64>,
    pub run_p95_ms: Option<f64>,
}

impl From<SeriesPoint> for SeriesPointView {
    fn from(p: SeriesPoint) -> Self {
        let round = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
        SeriesPointView {
            at: p.at,
            enqueued: p.enqueued,
            done: p.done,
            failed: p.failed,
            dead: p.dead,
            wait_p50_ms: round(p.wait_p50_ms),
            wait_p95_ms: round(p.wait_p95_ms),
            run_p50_ms: round(p.run_p50_ms),
            run_p95_ms: round(p.run_p95_ms),
        }
    }
}

/// A queue's series, oldest point first; the last point is the current (partial) step.
#[derive(Debug, Clone, Object)]
pub struct SeriesView {
    pub queue: QueueName,
    pub range: SeriesRange,
    pub step_seconds: u32,
    pub points: Vec<SeriesPointView>,
}

#[OpenApi(tag = "Tags::Queues")]
impl SeriesApi {
    /// A queue's chart: enqueued, done, failed and dead per step, wait and run p50/p95.
    #[oai(
        path = "/api/v1/queues/:queue/series",
        method = "get",
        operation_id = "queue_series"
    )]
    async fn series(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
        queue: Path<QueueName>,
        /// `1h` (default: per minute) or `24h` (per 15 minutes).
        range: Query<Option<SeriesRange>>,
    ) -> ApiResult<Json<SeriesView>> {
        let range = range.0.unwrap_or(SeriesRange::Hour);
        let (minutes, step) = range.window();
        let series = state.engine().series(queue.0.0, minutes, step).await?;
        Ok(Json(SeriesView {
            queue: queue.0,
            range,
            step_seconds: series.step_seconds,
            points: series.points.into_iter().map(Into::into).collect(),
        }))
    }
}
