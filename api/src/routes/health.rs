//! `/health` (liveness), `/ready` (readiness) and `/metrics` (Prometheus text). No token
//! needed: probes and scrapers call them (they are exempt from rate limits by default).
//!
//! `/ready` means "this process can do its role": the API needs Redis and the database; a
//! process that also runs workers (`vigil run`) needs its own queue actors healthy too. The
//! health of other instances is the fleet view (`GET /api/v1/instances`), not readiness.
//! [`actors_check`], [`ready_response`] and [`render_metrics`] are shared with the probes
//! a `vigil worker` serves ([`crate::probes`]).

use std::future::Future;
use std::time::Duration;

use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};
use prometheus::{Encoder, TextEncoder};

use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::state::ApiState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The health routes.
pub struct HealthApi;

/// Liveness.
#[derive(Debug, Clone, Object)]
pub struct HealthView {
    /// Always `ok` when the process answers.
    pub status: String,
}

/// One readiness check.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CheckView {
    /// `redis`, `database` or `actors`.
    pub name: String,
    pub ok: bool,
    /// What is wrong, when not ok.
    pub detail: Option<String>,
}

/// Ready.
#[derive(Debug, Clone, Object)]
pub struct ReadyView {
    /// Always `ready`.
    pub status: String,
    pub checks: Vec<CheckView>,
}

/// Not ready: the error shape plus every check.
#[derive(Debug, Clone, Object)]
pub struct NotReadyView {
    /// Always `not_ready`.
    pub error: String,
    /// Names what is not ready.
    pub message: String,
    pub request_id: String,
    pub checks: Vec<CheckView>,
}

/// The readiness answer.
#[derive(Debug, ApiResponse)]
pub enum ReadyResponse {
    /// Redis, the database and every reported actor are healthy.
    #[oai(status = 200)]
    Ready(Json<ReadyView>),
    /// Something is not ready; `checks` says what.
    #[oai(status = 503)]
    NotReady(Json<NotReadyView>),
}

pub(crate) async fn check<E: std::fmt::Display>(
    name: &str,
    fut: impl Future<Output = Result<(), E>>,
) -> CheckView {
    let detail = match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    };
    CheckView {
        name: name.to_owned(),
        ok: detail.is_none(),
        detail,
    }
}

/// The `actors` check over this process's own actors: all healthy, at least one.
pub async fn actors_check(actors: &[vigil_queue::ActorHealth]) -> CheckView {
    check("actors", async {
        if actors.is_empty() {
            return Err("this process runs no actors yet".to_owned());
        }
        let bad: Vec<String> = actors
            .iter()
            .filter(|a| !a.healthy)
            .map(|a| match &a.last_error {
                Some(e) => format!("{} ({e})", a.name),
                None => a.name.clone(),
            })
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("unhealthy actors: {}", bad.join(", ")))
        }
    })
    .await
}

/// 200 with every check when all pass, else 503 naming the failing ones.
pub fn ready_response(checks: Vec<CheckView>) -> ReadyResponse {
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail.as_deref().unwrap_or("failing")))
        .collect();
    if failing.is_empty() {
        ReadyResponse::Ready(Json(ReadyView {
            status: "ready".to_owned(),
            checks,
        }))
    } else {
        ReadyResponse::NotReady(Json(NotReadyView {
            error: "not_ready".to_owned(),
            message: format!("not ready: {}", failing.join("; ")),
            request_id: String::new(),
            checks,
        }))
    }
}

/// The registry in the Prometheus text format.
pub fn render_metrics(registry: &prometheus::Registry) -> Result<String, prometheus::Error> {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[OpenApi(tag = "Tags::Health")]
impl HealthApi {
    /// Liveness: the process answers (no dependency is checked).
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Json<HealthView> {
        Json(HealthView {
            status: "ok".to_owned(),
        })
    }

    /// Readiness of this process for its role: Redis and the database answer, and when the
    /// process also runs workers (`vigil run`), its queue actors are healthy.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&ApiState>) -> ReadyResponse {
        let (redis, database) = tokio::join!(
            check("redis", state.engine().ping()),
            check("database", state.db().ping()),
        );
        let mut checks = vec![redis, database];
        if let Some(local) = state.local_actors() {
            checks.push(actors_check(&local()).await);
        }
        ready_response(checks)
    }

    /// Prometheus metrics (text exposition format): the engine's and workers' metrics plus
    /// `vigil_http_requests_total`, `vigil_http_request_duration_seconds` and `vigil_alerts`.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&ApiState>) -> ApiResult<PlainText<String>> {
        match vigil_store::alerts::count_by_status(state.db()).await {
            Ok(counts) => state.metrics().set_alerts(&counts),
            // The rest of the scrape is still worth having; the gauge keeps its last value.
            Err(e) => tracing::warn!(error = %e, "could not count alerts for /metrics"),
        }
        render_metrics(state.registry())
            .map(PlainText)
            .map_err(|e| ApiError::internal(&e))
    }
}
