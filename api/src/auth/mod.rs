//! Authentication and roles.
//!
//! Every API route takes a [`BearerAuth`] parameter: poem-openapi documents two schemes,
//! `BearerAuth` (`Authorization: Bearer`) and `ApiKeyAuth` (`X-API-Key`), and calls
//! [`check_bearer`], which verifies the token ([`jwt`] for vigil's own tokens, [`oidc`] for
//! an external issuer's, routed by the header's `kid`; [`api_keys`] for service accounts'
//! keys, told apart by their prefix) and, for vigil users, checks in the database (through a
//! short cache) that the user still exists and is enabled.
//! The role is the user's current role, not the one in the token. A vigil access token names
//! its sign-in session (`sid`): once that session is revoked (logout, refresh-token reuse, an
//! admin) the token is refused too. Routes that change state call
//! [`Principal::require_admin`].

pub mod api_keys;
pub mod cache;
pub mod jwt;
pub mod oidc;
pub mod password;
pub mod sso;

use std::time::Duration;

use poem::Request;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};
use vigil_jobs::AuditActor;
use vigil_store::Db;
use vigil_store::sessions;
use vigil_store::users::{self, User, UserRole};

use crate::error::ApiError;

/// How long a request waits for the user lookup before it is answered 503.
pub const USER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
use cache::TtlCache;
use jwt::{TokenError, TokenKeys, TokenType};
use oidc::OidcVerifier;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub username: String,
    pub role: UserRole,
    /// True for a token of the external OIDC issuer.
    pub external: bool,
    /// The sign-in session of a vigil access token (`sid`), checked on every request.
    pub session: Option<String>,
    /// Set when the caller is a service account's API key.
    pub api_key: Option<api_keys::KeyGrant>,
}

impl Principal {
    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            UserRole::Admin => Ok(()),
            UserRole::Analyst => Err(ApiError::forbidden(
                "this action needs the admin role; analysts may only read",
            )),
        }
    }

    /// 403 for API keys: managing users and API keys takes a person.
    pub fn require_person(&self) -> Result<(), ApiError> {
        match &self.api_key {
            None => Ok(()),
            Some(_) => Err(ApiError::forbidden(
                "API keys cannot manage users or API keys; sign in as a person",
            )),
        }
    }

    /// 403 when the caller is an API key limited to other queues.
    pub fn require_queue(&self, queue: &str) -> Result<(), ApiError> {
        match self.api_key.as_ref().and_then(|k| k.queues.as_ref()) {
            Some(allowed) if !allowed.iter().any(|q| q == queue) => {
                Err(ApiError::forbidden(format!(
                    "this API key may act on the queues {} only",
                    allowed.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// The caller as an audit actor (`user:<name>`, `user:oidc:<name>`, `user:key:<name>`).
    pub fn actor(&self) -> AuditActor {
        AuditActor::User(if self.external {
            format!("oidc:{}", self.username)
        } else {
            self.username.clone()
        })
    }
}

/// A token's identity after signature and claim checks, before the user check. The rate
/// limiter computes it once and leaves it in the request for [`check_bearer`].
#[derive(Debug, Clone)]
pub struct Identified(pub String, pub Result<Principal, TokenError>);

/// The security of every API route: a bearer token (vigil's JWT, an OIDC issuer's JWT or an
/// API key) or an API key in `X-API-Key`. Documented as the two schemes `BearerAuth` and
/// `ApiKeyAuth`, either of which is enough.
pub struct BearerAuth(pub Principal);

/// `Authorization: Bearer <token or API key>`.
#[derive(SecurityScheme)]
#[oai(
    rename = "BearerAuth",
    ty = "bearer",
    bearer_format = "JWT or vigil API key",
    checker = "check_bearer"
)]
struct TokenScheme(Principal);

/// `X-API-Key: <API key>`.
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKeyAuth",
    ty = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "check_api_key"
)]
struct KeyScheme(Principal);

// The same bearer token, documented as OAuth2's password flow on `POST /api/v1/auth/token`
// so the docs' Authorize takes a username and password. Only registered: `BearerAuth`
// extracts the token.
/// Sign in with a username and password (OAuth2 password flow: `POST /api/v1/auth/token`
/// with `grant_type=password&username=…&password=…`); the access token is then sent as
/// `Authorization: Bearer <token>`.
#[derive(SecurityScheme)]
#[oai(
    rename = "OAuth2Password",
    ty = "oauth2",
    flows(password(token_url = "/api/v1/auth/token"))
)]
#[allow(dead_code)]
struct PasswordScheme(poem_openapi::auth::Bearer);

/// The header of [`KeyScheme`].
pub const API_KEY_HEADER: &str = "x-api-key";

impl<'a> ApiExtractor<'a> for BearerAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        TokenScheme::register(registry);
        KeyScheme::register(registry);
        PasswordScheme::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        let mut all = TokenScheme::security_schemes();
        all.extend(KeyScheme::security_schemes());
        all.extend(PasswordScheme::security_schemes());
        all
    }

    async fn from_request(
        req: &'a Request,
        body: &mut poem::RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // `Authorization` wins when both are sent.
        if req.headers().contains_key(API_KEY_HEADER)
            && !req
                .headers()
                .contains_key(poem::http::header::AUTHORIZATION)
        {
            KeyScheme::from_request(req, body, param_opts)
                .await
                .map(|k| BearerAuth(k.0))
        } else {
            TokenScheme::from_request(req, body, param_opts)
                .await
                .map(|t| BearerAuth(t.0))
        }
    }
}

/// Verifies the bearer token of a request (see the module doc).
pub async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    check_token(req, bearer.token).await
}

/// Verifies the `X-API-Key` of a request.
pub async fn check_api_key(req: &Request, key: ApiKey) -> poem::Result<Principal> {
    if !key.key.starts_with(api_keys::PREFIX) {
        return Err(ApiError::unauthorized("X-API-Key takes a vigil API key (vgk_...)").into());
    }
    check_token(req, key.key).await
}

async fn check_token(req: &Request, token: String) -> poem::Result<Principal> {
    let Some(auth) = req.data::<std::sync::Arc<Authenticator>>() else {
        return Err(ApiError::internal(&"the authenticator is missing from the request").into());
    };
    let identified = match req.data::<Identified>() {
        Some(Identified(known, result)) if *known == token => result.clone(),
        _ => auth.identify(&token).await,
    };
    let principal = identified.map_err(|e| match e {
        TokenError::Unavailable => {
            ApiError::unavailable("the database did not answer in time; retry later")
        }
        other => ApiError::unauthorized(other.to_string()),
    })?;
    Ok(auth.check_active(principal).await?)
}

/// Token verification plus the user check.
pub struct Authenticator {
    keys: TokenKeys,
    oidc: Option<OidcVerifier>,
    db: Db,
    leeway: u64,
    users: TtlCache<Option<User>>,
    /// Session id -> still active.
    sessions: TtlCache<bool>,
    /// API key id -> the key and its secret's hash.
    api_keys: TtlCache<Option<(vigil_store::api_keys::ApiKey, String)>>,
    /// API keys whose last use was recorded within the minute.
    touched: TtlCache<()>,
    /// When expired sessions were last pruned.
    last_prune: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Expired sessions and stale lock records are pruned at most this often (on sign-ins).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys)
            .field("oidc", &self.oidc)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(
        keys: TokenKeys,
        oidc: Option<OidcVerifier>,
        db: Db,
        leeway: u64,
        cache_ttl: Duration,
    ) -> Self {
        Self {
            keys,
            oidc,
            db,
            leeway,
            users: TtlCache::new(cache_ttl),
            sessions: TtlCache::new(cache_ttl),
            api_keys: TtlCache::new(cache_ttl),
            touched: TtlCache::new(Duration::from_secs(60)),
            last_prune: std::sync::Mutex::new(None),
        }
    }

    /// vigil's signing keys.
    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// The external issuer's verifier, when `auth.oidc` is configured.
    pub fn oidc(&self) -> Option<&OidcVerifier> {
        self.oidc.as_ref()
    }

    /// Verifies an access token's signature and claims (vigil's, or the OIDC issuer's).
    pub async fn identify(&self, token: &str) -> Result<Principal, TokenError> {
        if token.starts_with(api_keys::PREFIX) {
            return self.identify_key(token).await;
        }
        let kid = jwt::peek_kid(token)?;
        if kid.as_deref() == Some(self.keys.key_id()) || self.oidc.is_none() {
            let claims = self.keys.verify(token, TokenType::Access)?;
            return Ok(Principal {
                username: claims.sub,
                role: claims.role,
                external: false,
                session: claims.sid,
                api_key: None,
            });
        }
        match &self.oidc {
            Some(oidc) => {
                let id = oidc.verify(token, self.leeway).await?;
                Ok(Principal {
                    username: id.username,
                    role: id.role,
                    external: true,
                    session: None,
                    api_key: None,
                })
            }
            None => Err(TokenError::UnknownKey),
        }
    }

    /// An API key: well-formed, known, its secret matching, neither revoked nor expired. Its
    /// last use is recorded (at most once a minute per process).
    async fn identify_key(&self, token: &str) -> Result<Principal, TokenError> {
        let invalid = || TokenError::Other("invalid API key".to_owned());
        let (id, secret) = api_keys::parse(token).ok_or_else(invalid)?;
        let found = match self.api_keys.get(id) {
            Some(found) => found,
            None => {
                let found = bounded(vigil_store::api_keys::credentials(&self.db, id))
                    .await
                    .map_err(|_| TokenError::Unavailable)?
                    .map_err(|_| TokenError::Unavailable)?;
                self.api_keys.put(id, found.clone());
                found
            }
        };
        let Some((key, hash)) = found else {
            // The same work as for a known key.
            let _ = api_keys::matches(secret, &"0".repeat(64));
            return Err(invalid());
        };
        if !api_keys::matches(secret, &hash) {
            return Err(invalid());
        }
        let now = chrono::Utc::now().timestamp_millis();
        if key.revoked_at.is_some() {
            return Err(TokenError::Other("this API key was revoked".to_owned()));
        }
        if !key.is_usable(now) {
            return Err(TokenError::Other("this API key has expired".to_owned()));
        }
        if self.touched.get(id).is_none() {
            self.touched.put(id, ());
            let (db, id) = (self.db.clone(), id.to_owned());
            tokio::spawn(async move {
                if let Err(e) = vigil_store::api_keys::touch(&db, &id, now).await {
                    tracing::warn!(key = %id, error = %e, "could not record an API key's use");
                }
            });
        }
        Ok(Principal {
            username: format!("key:{}", key.name),
            role: key.role,
            external: false,
            session: None,
            api_key: Some(api_keys::KeyGrant {
                id: key.id,
                name: key.name,
                queues: key.queues,
                rate_per_minute: key.rate_per_minute.and_then(|r| u64::try_from(r).ok()),
            }),
        })
    }

    /// Forgets a cached API key (after this process revoked it).
    pub fn forget_key(&self, id: &str) {
        self.api_keys.forget(id);
    }

    /// For vigil users: the user must exist and be enabled, and the token's session must not
    /// be revoked; the role is the current one. API keys were checked by [`Self::identify`].
    pub async fn check_active(&self, principal: Principal) -> Result<Principal, ApiError> {
        if principal.external || principal.api_key.is_some() {
            return Ok(principal);
        }
        if let Some(sid) = &principal.session
            && !self.session_active(sid).await?
        {
            return Err(ApiError::unauthorized(
                "this session has ended (signed out or revoked); sign in again",
            ));
        }
        match self.user(&principal.username).await? {
            Some(user) if !user.disabled => Ok(Principal {
                role: user.role,
                ..principal
            }),
            Some(_) => Err(ApiError::unauthorized("this user is disabled")),
            None => Err(ApiError::unauthorized("this user no longer exists")),
        }
    }

    /// A user by name, through the cache (bounded by [`USER_LOOKUP_TIMEOUT`]).
    pub async fn user(&self, name: &str) -> Result<Option<User>, ApiError> {
        if let Some(user) = self.users.get(name) {
            return Ok(user);
        }
        // A database that does not answer fails the request fast (503), not after the
        // pool's own timeout.
        let user = bounded(users::find(&self.db, name)).await??;
        self.users.put(name, user.clone());
        Ok(user)
    }

    /// Whether session `sid` is neither revoked nor expired, through the cache.
    pub async fn session_active(&self, sid: &str) -> Result<bool, ApiError> {
        if let Some(active) = self.sessions.get(sid) {
            return Ok(active);
        }
        let session = bounded(sessions::get(&self.db, sid)).await??;
        let now = chrono::Utc::now().timestamp_millis();
        let active = session.is_some_and(|s| s.is_active(now));
        self.sessions.put(sid, active);
        Ok(active)
    }

    /// Deletes expired sessions and stale lock records in a background task, at most once per [`PRUNE_EVERY`]
    /// (called on sign-in, so the tables stay bounded without a scheduler).
    /// Lock records with no failure for `lockout_quiet_ms` and no lock in force go too.
    pub fn prune_in_background(&self, lockout_quiet_ms: i64) {
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let db = self.db.clone();
        tokio::spawn(async move {
            let now = chrono::Utc::now().timestamp_millis();
            let pruned = match sessions::prune(&db, now).await {
                Ok(n) => vigil_store::lockouts::prune(&db, now, lockout_quiet_ms)
                    .await
                    .map(|m| n + m),
                Err(e) => Err(e),
            };
            match pruned {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "pruned expired sessions and lock records"),
                Err(e) => tracing::warn!(error = %e, "could not prune sessions or lock records"),
            }
        });
    }

    /// Forgets a cached session (after this process revoked it).
    pub fn forget_session(&self, sid: &str) {
        self.sessions.forget(sid);
    }

    /// Forgets a cached user (after a sign-in, so a re-enabled user works at once).
    pub fn forget(&self, name: &str) {
        self.users.forget(name);
    }
}

/// `fut` within [`USER_LOOKUP_TIMEOUT`], else 503.
async fn bounded<T>(fut: impl Future<Output = T>) -> Result<T, ApiError> {
    tokio::time::timeout(USER_LOOKUP_TIMEOUT, fut)
        .await
        .map_err(|_| ApiError::unavailable("the database did not answer in time; retry later"))
}
