//! Authentication and roles.
//!
//! Every API route takes a [`BearerAuth`] parameter: poem-openapi documents the bearer scheme
//! and calls [`check_bearer`], which verifies the token ([`jwt`] for vigil's own tokens,
//! [`oidc`] for an external issuer's, routed by the header's `kid`) and, for vigil users,
//! checks in the database (through a short cache) that the user still exists and is enabled.
//! The role is the user's current role, not the one in the token. Routes that change state
//! call [`Principal::require_admin`].

pub mod jwt;
pub mod oidc;
pub mod password;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use vigil_jobs::AuditActor;
use vigil_store::Db;
use vigil_store::users::{self, User, UserRole};

use crate::error::ApiError;

/// How long a request waits for the user lookup before it is answered 503.
pub const USER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
use crate::state::ApiState;
use jwt::{TokenError, TokenKeys, TokenType};
use oidc::OidcVerifier;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub username: String,
    pub role: UserRole,
    /// True for a token of the external OIDC issuer.
    pub external: bool,
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

    /// The caller as an audit actor.
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

/// The bearer scheme of every API route.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

/// Verifies the bearer token of a request (see the module doc).
pub async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let Some(state) = req.data::<ApiState>() else {
        return Err(ApiError::internal(&"ApiState missing from the request").into());
    };
    let identified = match req.data::<Identified>() {
        Some(Identified(token, result)) if *token == bearer.token => result.clone(),
        _ => state.auth().identify(&bearer.token).await,
    };
    let principal = identified.map_err(|e| ApiError::unauthorized(e.to_string()))?;
    Ok(state.auth().check_active(principal).await?)
}

/// Token verification plus the user check.
pub struct Authenticator {
    keys: TokenKeys,
    oidc: Option<OidcVerifier>,
    db: Db,
    leeway: u64,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<User>)>>,
}

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
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// vigil's signing keys.
    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// Verifies an access token's signature and claims (vigil's, or the OIDC issuer's).
    pub async fn identify(&self, token: &str) -> Result<Principal, TokenError> {
        let kid = jwt::peek_kid(token)?;
        if kid.as_deref() == Some(self.keys.key_id()) || self.oidc.is_none() {
            let claims = self.keys.verify(token, TokenType::Access)?;
            return Ok(Principal {
                username: claims.sub,
                role: claims.role,
                external: false,
            });
        }
        match &self.oidc {
            Some(oidc) => {
                let id = oidc.verify(token, self.leeway).await?;
                Ok(Principal {
                    username: id.username,
                    role: id.role,
                    external: true,
                })
            }
            None => Err(TokenError::UnknownKey),
        }
    }

    /// For vigil users: the user must exist and be enabled; the role is the current one.
    pub async fn check_active(&self, principal: Principal) -> Result<Principal, ApiError> {
        if principal.external {
            return Ok(principal);
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
        if !self.cache_ttl.is_zero() {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, user)) = cache.get(name)
                && at.elapsed() < self.cache_ttl
            {
                return Ok(user.clone());
            }
        }
        // A database that does not answer fails the request fast (503), not after the
        // pool's own timeout.
        let user = tokio::time::timeout(USER_LOOKUP_TIMEOUT, users::find(&self.db, name))
            .await
            .map_err(|_| {
                ApiError::unavailable("the database did not answer in time; retry later")
            })??;
        if !self.cache_ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(name.to_owned(), (Instant::now(), user.clone()));
        }
        Ok(user)
    }

    /// Forgets a cached user (after a sign-in, so a re-enabled user works at once).
    pub fn forget(&self, name: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}
