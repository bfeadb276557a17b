//! [`ApiState`]: everything a request handler needs, built once per process and shared
//! (cheap to clone). Handlers reach it through `poem::web::Data<&ApiState>`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::Registry;
use vigil_queue::{Engine, SchedulesSettings};
use vigil_store::Db;

use crate::auth::Authenticator;
use crate::auth::jwt::{KeyError, TokenKeys};
use crate::auth::oidc::OidcVerifier;
use crate::auth::sso::SsoClient;
use crate::metrics::HttpMetrics;
use crate::okta_hook::OktaHookMetrics;
use crate::ratelimit::RateLimiter;
use crate::settings::{AuthSettings, HttpSettings, RateLimitSettings};

/// The API's config sections together.
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    /// Escalation policies (alerts opened or reopened through the API escalate too).
    pub escalation: vigil_jobs::EscalationSettings,
    /// Queues whose feature is off, with why (e.g. `okta_fetch`: `okta.enabled is false`):
    /// listed as disabled, their schedules too, and enqueueing to them is refused with 409.
    pub disabled_queues: std::collections::BTreeMap<vigil_jobs::Queue, String>,
    /// Okta Event Hook deliveries (`/api/v1/hooks/okta/events`); `None`: the route is off.
    pub okta_hook: Option<crate::okta_hook::OktaHookSettings>,
}

/// Why the API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("auth.oidc: {0}")]
    Oidc(String),
    #[error("http.trusted_proxies: {0}")]
    Proxies(String),
    #[error("cannot register the HTTP metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

struct Inner {
    engine: Engine,
    db: Db,
    settings: ApiSettings,
    schedules: SchedulesSettings,
    registry: Registry,
    auth: Arc<Authenticator>,
    sso: Option<SsoClient>,
    limiter: RateLimiter,
    metrics: HttpMetrics,
    hook_metrics: OktaHookMetrics,
    local_actors: OnceLock<LocalActors>,
    live: crate::live::LiveHub,
}

/// This process's own actors (when it runs workers too), for `/ready`.
pub type LocalActors = Arc<dyn Fn() -> Vec<vigil_queue::ActorHealth> + Send + Sync>;

/// The shared state of the API.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("engine", &self.0.engine)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// Builds the state: loads the token keys, registers the HTTP metrics in `registry`
    /// (the process's shared registry, also served at `/metrics`).
    pub fn new(
        engine: Engine,
        db: Db,
        settings: ApiSettings,
        schedules: SchedulesSettings,
        registry: Registry,
    ) -> Result<ApiState, SetupError> {
        let keys = TokenKeys::from_settings(&settings.auth)?;
        crate::proxy::TrustedProxies::parse(&settings.http.trusted_proxies)
            .map_err(SetupError::Proxies)?;
        let oidc = match &settings.auth.oidc {
            Some(o) => Some(OidcVerifier::new(o.clone()).map_err(SetupError::Oidc)?),
            None => None,
        };
        let sso = match &settings.auth.oidc {
            Some(o) if o.sign_in() => {
                o.validate()
                    .map_err(|(key, e)| SetupError::Oidc(format!("{key}: {e}")))?;
                Some(
                    SsoClient::new(o.clone(), engine.redis(), engine.prefix())
                        .map_err(SetupError::Oidc)?,
                )
            }
            _ => None,
        };
        let auth = Arc::new(Authenticator::new(
            keys,
            oidc,
            db.clone(),
            settings.auth.leeway_seconds,
            Duration::from_secs(settings.auth.user_cache_seconds),
        ));
        let metrics = HttpMetrics::register(&registry)?;
        let hook_metrics = OktaHookMetrics::register(&registry)?;
        let limiter =
            RateLimiter::new(engine.redis(), engine.prefix(), settings.rate_limit.clone());
        Ok(ApiState(Arc::new(Inner {
            engine,
            db,
            settings,
            schedules,
            registry,
            auth,
            sso,
            limiter,
            metrics,
            hook_metrics,
            local_actors: OnceLock::new(),
            live: crate::live::LiveHub::default(),
        })))
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }
    pub fn db(&self) -> &Db {
        &self.0.db
    }
    pub fn settings(&self) -> &ApiSettings {
        &self.0.settings
    }

    /// Why `queue` is disabled, if it is.
    pub fn disabled(&self, queue: vigil_jobs::Queue) -> Option<&str> {
        self.0
            .settings
            .disabled_queues
            .get(&queue)
            .map(String::as_str)
    }
    pub fn schedules(&self) -> &SchedulesSettings {
        &self.0.schedules
    }
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }
    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }
    /// The authenticator as request data (the auth extractors read it from the request, so
    /// they need not know the whole state).
    pub fn auth_handle(&self) -> Arc<Authenticator> {
        self.0.auth.clone()
    }
    /// Dashboard single sign-on, when `auth.oidc.client_id` is set.
    pub fn sso(&self) -> Option<&SsoClient> {
        self.0.sso.as_ref()
    }
    pub fn limiter(&self) -> &RateLimiter {
        &self.0.limiter
    }
    pub fn metrics(&self) -> &HttpMetrics {
        &self.0.metrics
    }
    pub fn hook_metrics(&self) -> &OktaHookMetrics {
        &self.0.hook_metrics
    }
    /// The live view's publisher (`GET /api/v1/stream`).
    pub fn live(&self) -> &crate::live::LiveHub {
        &self.0.live
    }

    /// Makes `/ready` also require this process's actors healthy (`vigil run`). Set once;
    /// later calls are ignored.
    pub fn set_local_actors(&self, actors: LocalActors) {
        let _ = self.0.local_actors.set(actors);
    }

    /// This process's actors, when it runs workers.
    pub fn local_actors(&self) -> Option<&LocalActors> {
        self.0.local_actors.get()
    }
}
