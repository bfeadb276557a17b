//! The probes of a process without the API (`vigil worker`): `/health`, `/ready` and
//! `/metrics` on `[worker] listen`, with the same bodies as the API's (see
//! [`crate::routes::health`]). `/ready` is "this worker's queue actors are healthy";
//! `/metrics` is the process's own registry (jobs, queues, emails, Okta, audit).

use poem::web::Data;
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler};
use poem_openapi::payload::{Json, PlainText};
use prometheus::Registry;

use crate::routes::health::{HealthView, actors_check, ready_response, render_metrics};
use crate::state::LocalActors;

/// What the probes read.
#[derive(Clone)]
struct Probes {
    registry: Registry,
    actors: LocalActors,
}

#[handler]
fn health() -> Json<HealthView> {
    Json(HealthView {
        status: "ok".to_owned(),
    })
}

#[handler]
async fn ready(probes: Data<&Probes>) -> Response {
    ready_response(vec![actors_check(&(probes.actors)()).await]).into_response()
}

#[handler]
fn metrics(probes: Data<&Probes>) -> Response {
    match render_metrics(&probes.registry) {
        Ok(text) => PlainText(text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render /metrics");
            poem::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The probe routes over `registry` and this process's `actors`.
pub fn app(registry: Registry, actors: LocalActors) -> poem::endpoint::BoxEndpoint<'static> {
    Route::new()
        .at("/health", get(health))
        .at("/ready", get(ready))
        .at("/metrics", get(metrics))
        .data(Probes { registry, actors })
        .map_to_response()
        .boxed()
}
