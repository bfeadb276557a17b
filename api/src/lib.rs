//! # vigil-api: the HTTP API (poem + poem-openapi)
//!
//! Through this API, OpenAPI clients enqueue work and read vigil's state. [`app`] builds the
//! whole endpoint from an [`ApiState`] (testable in-process with `poem::test::TestClient`);
//! [`serve`] binds `http.listen` and serves it until the shutdown future resolves.
//!
//! # Routes
//! - `/docs` Swagger UI, `/openapi.json` the spec; `/health`, `/ready`, `/metrics`.
//! - `/api/v1/auth/token`, `/api/v1/auth/refresh`, `/api/v1/auth/logout`,
//!   `/api/v1/auth/lockouts`; `/api/v1/auth/oidc`, `/api/v1/auth/oidc/login`,
//!   `/api/v1/auth/oidc/callback`, `/api/v1/auth/oidc/exchange` (dashboard single sign-on).
//! - `/api/v1/jobs/{okta_fetch|email|audit|alert_escalation}` (POST: enqueue),
//!   `/api/v1/jobs` (search), `/api/v1/jobs/{id}` (GET, DELETE), `/api/v1/jobs/{id}/retry`,
//!   `/api/v1/jobs/{id}/cancel`, `/api/v1/jobs/bulk` (retry/cancel/delete by ids or filter).
//! - `/api/v1/queues`, `/api/v1/queues/{queue}/pause`, `/api/v1/queues/{queue}/resume`.
//! - `/api/v1/schedules`.
//! - `/api/v1/stream`: the dashboard's live view (server-sent events, see [`live`]).
//! - `/api/v1/hooks/okta/events`: Okta Event Hooks (verification `GET`, delivery `POST`),
//!   authenticated by the configured secret header instead of a token.
//!
//! # Layout
//! - [`settings`]: `[http]`, `[auth]`, `[rate_limit]` config sections.
//! - [`okta_hook`]: the Okta Event Hook route's settings and metrics.
//! - [`state`]: [`ApiState`] (engine, database, settings, metrics registry, keys, limiter).
//! - [`context`]: the pipeline around every route (request id, body limit, rate limit,
//!   error shape, security headers, metrics, logging).
//! - [`auth`]: tokens (vigil's and an external OIDC issuer's), passwords, roles.
//! - [`ratelimit`]: budgets shared across instances through one Redis Lua script.
//! - [`tls`]: optional HTTPS for the listener (rustls).
//! - [`proxy`]: the client address, believing forwarding headers only from trusted proxies.
//! - [`error`]: the one error shape. [`audit`]: the one door to the audit trail.
//! - [`live`]: the per-process publisher of the live stream.
//! - [`metrics`]: HTTP metrics. [`routes`]: one module per resource (see its doc to add one).
//! - [`probes`]: `/health`, `/ready`, `/metrics` of a process without the API (`vigil worker`).

pub mod audit;
pub mod auth;
pub mod context;
pub mod dashboard;
pub mod error;
pub mod live;
pub mod metrics;
pub mod okta_hook;
pub mod probes;
pub mod proxy;
pub mod ratelimit;
pub mod routes;
pub mod settings;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route, Server};

pub use error::{ApiError, ApiResult, ErrorBody};
pub use settings::{AuthSettings, HttpSettings, JwtAlgorithm, OidcSettings, RateLimitSettings};
pub use state::{ApiSettings, ApiState, LocalActors, SetupError};

/// The whole API as one endpoint.
pub fn app(state: ApiState) -> BoxEndpoint<'static, Response> {
    let http = &state.settings().http;
    let service = routes::service(&http.public_url);
    let spec_json = routes::spec_json(&service);
    error::word_errors_with(&spec_json);
    let docs_html = routes::docs_html(&service, &spec_json);
    let served = spec_json.clone();
    let spec = poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(served.clone())
    });
    let docs = Route::new().at(
        "/",
        poem::endpoint::make_sync(move |_| poem::web::Html(docs_html.clone())),
    );
    let route = Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/dashboard", dashboard::routes())
        .nest("/", service)
        // `GET /` leads people to the dashboard (the API service owns every other path).
        .around(|ep, req| async move {
            if req.uri().path() == "/" {
                return Ok(dashboard::root_redirect().into_response());
            }
            Ok(ep.call(req).await?.into_response())
        });
    let inner: BoxEndpoint<'static, Response> = if http.cors_origins.is_empty() {
        route.map_to_response().boxed()
    } else {
        let cors = Cors::new()
            .allow_origins(http.cors_origins.iter().map(String::as_str))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                "authorization",
                "content-type",
                "idempotency-key",
                "x-api-key",
                "x-request-id",
            ])
            .expose_headers([
                "x-request-id",
                "retry-after",
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ]);
        route.with(cors).map_to_response().boxed()
    };
    context::Pipeline::new(inner, state, &spec_json).boxed()
}

/// A bound listener, before serving.
pub struct Listening {
    acceptor: TcpAcceptor,
    addr: SocketAddr,
    drain: Duration,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// How long in-flight requests may finish after the shutdown future resolves, by default.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

impl Listening {
    /// The bound address (the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves HTTPS with `config` instead of plain HTTP.
    pub fn with_tls(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        tracing::info!(port = self.addr.port(), "TLS on: https://{}", self.addr);
        self.tls = Some(config);
        self
    }

    /// Lets in-flight requests finish for up to `drain` after the shutdown future resolves
    /// (default [`DEFAULT_DRAIN`]).
    pub fn drain_within(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Serves [`app`] until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(
        self,
        state: ApiState,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        // Open live streams end when the shutdown begins, so they do not hold up the drain.
        let live = state.clone();
        let shutdown = async move {
            shutdown.await;
            live.live().close();
        };
        self.serve(app(state), shutdown).await
    }

    /// Serves any endpoint (e.g. [`probes::app`]) until `shutdown` resolves, then lets
    /// in-flight requests finish.
    pub async fn serve(
        self,
        endpoint: impl Endpoint + 'static,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        match self.tls {
            Some(config) => {
                Server::new_with_acceptor(tls::TlsAcceptor::new(self.acceptor, config))
                    .name("vigil")
                    .idle_timeout(Duration::from_secs(60))
                    .run_with_graceful_shutdown(endpoint, shutdown, Some(self.drain))
                    .await
            }
            None => {
                Server::new_with_acceptor(self.acceptor)
                    .name("vigil")
                    .idle_timeout(Duration::from_secs(60))
                    .run_with_graceful_shutdown(endpoint, shutdown, Some(self.drain))
                    .await
            }
        }
    }
}

/// Binds `addr` (`HOST:PORT`; port 0 picks one) and logs `listening on http://HOST:PORT`.
pub async fn bind(addr: &str) -> std::io::Result<Listening> {
    let acceptor = TcpListener::bind(addr.to_owned()).into_acceptor().await?;
    let bound = acceptor
        .local_addr()
        .into_iter()
        .find_map(|a| a.as_socket_addr().copied())
        .ok_or_else(|| std::io::Error::other("the listener has no socket address"))?;
    tracing::info!(port = bound.port(), "listening on http://{bound}");
    Ok(Listening {
        acceptor,
        addr: bound,
        drain: DEFAULT_DRAIN,
        tls: None,
    })
}

/// Binds `http.listen` and serves the API until `shutdown` resolves.
pub async fn serve(
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let http = &state.settings().http;
    let mut listening = bind(&http.listen).await?;
    if let Some(config) = http.tls_config().map_err(std::io::Error::other)? {
        listening = listening.with_tls(config);
    }
    listening.run(state, shutdown).await
}
