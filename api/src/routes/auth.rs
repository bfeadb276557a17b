//! `/api/v1/auth`: sign in with username and password, renew with a refresh token, sign out.
//!
//! Sign-in and refresh answer with a fresh access token (default 60 minutes) and refresh
//! token (default one day), both naming the sign-in session (`sid`). A wrong password, an
//! unknown user and a disabled user get the same 401, and take the same time (an unknown user
//! is checked against a dummy hash). Every attempt is audited.
//!
//! Refresh tokens rotate: each is good for one refresh, which retires it and returns the
//! next. Presenting a retired token again means two parties hold the family (one of them
//! stole it): the whole session is revoked, its access tokens stop working, the reuse is
//! audited (`auth.refresh_reuse`) and reported as a High security event
//! (`vigil.auth.refresh_token_reuse`), which opens an alert. `POST /api/v1/auth/logout`
//! revokes the caller's session.

use chrono::Utc;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use vigil_jobs::AuditActor;
use vigil_store::lockouts;
use vigil_store::security_events::NewSecurityEvent;
use vigil_store::sessions::{self, Rotation, reason};
use vigil_store::users::{self, UserRole};

use crate::audit::{self, Entry};
use crate::auth::jwt::TokenType;
use crate::auth::{BearerAuth, password};
use crate::context::{ClientIp, RequestId};
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::{example, list_envelope};
use crate::state::ApiState;

/// The security event reported when a retired refresh token is presented again.
pub const REUSE_EVENT: &str = "vigil.auth.refresh_token_reuse";

/// The auth routes.
pub struct AuthApi;

/// Username and password.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct LoginRequest {
    #[oai(validator(min_length = 1, max_length = 100))]
    pub username: String,
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub password: String,
}

example!(
    LoginRequest,
    serde_json::json!({"username": "alice", "password": "correct horse battery staple"})
);

/// OAuth2's password grant (RFC 6749 4.3), as the docs' **Authorize** sends it.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct PasswordGrant {
    /// Must be `password`.
    pub grant_type: String,
    #[oai(validator(min_length = 1, max_length = 100))]
    pub username: String,
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub password: String,
    /// Ignored (vigil's roles come from the user).
    #[serde(default)]
    pub scope: Option<String>,
    /// Ignored.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Ignored.
    #[serde(default)]
    pub client_secret: Option<String>,
}

/// A sign-in: JSON, or OAuth2's password grant as a form.
#[derive(Debug, poem_openapi::ApiRequest)]
pub enum SignIn {
    /// `{"username", "password"}`.
    Json(Json<LoginRequest>),
    /// `grant_type=password&username=…&password=…` (what OAuth2 clients send).
    Form(poem_openapi::payload::Form<PasswordGrant>),
}

impl SignIn {
    /// The username and password, checked as the JSON body's are.
    fn credentials(self) -> ApiResult<LoginRequest> {
        match self {
            SignIn::Json(body) => Ok(body.0),
            SignIn::Form(form) => {
                let f = form.0;
                if f.grant_type != "password" {
                    return Err(ApiError::bad_request(format!(
                        "grant_type: `{}` is not supported; valid: password",
                        f.grant_type
                    )));
                }
                let len = |field: &str, v: &str, max: usize| {
                    if v.is_empty() || v.chars().count() > max {
                        Err(ApiError::bad_request(format!(
                            "{field}: must be 1 to {max} characters"
                        )))
                    } else {
                        Ok(())
                    }
                };
                len("username", &f.username, 100)?;
                len("password", &f.password, 1024)?;
                Ok(LoginRequest {
                    username: f.username,
                    password: f.password,
                })
            }
        }
    }
}

/// A refresh token from an earlier sign-in or refresh.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct RefreshRequest {
    #[oai(validator(min_length = 1, max_length = 8192))]
    pub refresh_token: String,
}

example!(
    RefreshRequest,
    serde_json::json!({"refresh_token": "the refresh_token of the last sign-in or refresh"})
);

/// A new pair of tokens.
#[derive(Debug, Clone, Object)]
pub struct TokenPair {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Only for `POST /api/v1/auth/refresh`.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
    /// The user's role: `admin` or `analyst`.
    pub role: String,
}

/// A new pair in session `sid`; also returns the refresh token's `jti` and expiry (ms).
fn pair(
    state: &ApiState,
    user: &str,
    role: UserRole,
    sid: &str,
) -> ApiResult<(TokenPair, String, i64)> {
    let keys = state.auth().keys();
    let sign = |ty| {
        let claims = keys.claims(user, role, ty, Some(sid));
        keys.sign(&claims)
            .map(|token| (token, claims))
            .map_err(|e| ApiError::internal(&e))
    };
    let (access, _) = sign(TokenType::Access)?;
    let (refresh, claims) = sign(TokenType::Refresh)?;
    let pair = TokenPair {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer".to_owned(),
        expires_in: keys.lifetime(TokenType::Access),
        refresh_expires_in: keys.lifetime(TokenType::Refresh),
        role: role.as_str().to_owned(),
    };
    Ok((pair, claims.jti, claims.exp.saturating_mul(1000)))
}

/// An account name's lock state.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct LockoutView {
    pub username: String,
    /// Locked now.
    pub locked: bool,
    /// Locks so far (each twice as long as the one before).
    pub locks: i64,
    pub locked_until: Option<chrono::DateTime<Utc>>,
    pub last_failure_at: chrono::DateTime<Utc>,
}

/// Unlocking answers 204.
#[derive(Debug, ApiResponse)]
pub enum Unlocked {
    /// The name may sign in again at once.
    #[oai(status = 204)]
    Done,
}

/// Signing out answers 204.
#[derive(Debug, ApiResponse)]
pub enum LoggedOut {
    /// The session is revoked: its refresh token and access tokens no longer work.
    #[oai(status = 204)]
    Done,
}

/// Starts a session for `user` (signed in by `method`: `password` or `oidc`): its first pair
/// of tokens, audited as `auth.login`.
pub(crate) async fn start_session(
    state: &ApiState,
    user: &users::User,
    method: &str,
    request_id: &str,
    ip: &ClientIp,
) -> ApiResult<TokenPair> {
    state.auth().forget(&user.username);
    let sid = uuid::Uuid::new_v4().simple().to_string();
    let (tokens, jti, expires_ms) = pair(state, &user.username, user.role, &sid)?;
    let now = Utc::now().timestamp_millis();
    sessions::start(state.db(), &sid, &user.username, &jti, expires_ms, now).await?;
    audit_auth(
        state,
        &user.username,
        "auth.login",
        request_id,
        serde_json::json!({"session": sid, "method": method}),
        ip,
    )
    .await;
    let policy = state.settings().auth.lockout.policy();
    state
        .auth()
        .prune_in_background(policy.max_lock_ms.saturating_add(policy.window_ms));
    Ok(tokens)
}

pub(crate) async fn audit_auth(
    state: &ApiState,
    user: &str,
    action: &str,
    request_id: &str,
    mut details: serde_json::Value,
    ip: &ClientIp,
) {
    if let Some(map) = details.as_object_mut() {
        map.insert("ip".to_owned(), serde_json::Value::String(ip.0.clone()));
    }
    audit::record(
        state.engine(),
        Entry {
            actor: AuditActor::User(user.to_owned()),
            action,
            target_type: "user",
            target_id: user,
            details,
            request_id: Some(request_id),
            job_id: None,
        },
    )
    .await;
}

list_envelope!(
    /// Locked account names, the latest first.
    LockoutList,
    LockoutView
);

#[OpenApi(tag = "Tags::Auth")]
impl AuthApi {
    /// Sign in: exchange a username and password for an access and a refresh token.
    #[oai(
        path = "/api/v1/auth/token",
        method = "post",
        operation_id = "create_token"
    )]
    async fn token(
        &self,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        ip: Data<&ClientIp>,
        body: SignIn,
    ) -> ApiResult<Json<TokenPair>> {
        let LoginRequest { username, password } = body.credentials()?;
        let lockout = &state.settings().auth.lockout;
        if lockout.enabled
            && let Some(until) =
                lockouts::locked_until(state.db(), &username, Utc::now().timestamp_millis()).await?
        {
            let wait_ms = (until - Utc::now()).num_milliseconds().max(1);
            let wait = u64::try_from(wait_ms).unwrap_or(1).div_ceil(1000);
            tracing::info!(wait_ms, "sign-in refused: account locked");
            audit_auth(
                &state,
                &username,
                "auth.login_failed",
                &rid.0.0,
                serde_json::json!({"reason": "account locked"}),
                &ip,
            )
            .await;
            return Err(ApiError::too_many(
                "account_locked",
                format!(
                    "too many failed sign-ins for this account; try again in {wait} s \
                     (or ask an admin to unlock it)"
                ),
                wait,
            ));
        }
        let creds = users::credentials(state.db(), &username).await?;
        let (stored, user) = match creds {
            Some(c) => (Some(c.password_hash), Some(c.user)),
            None => (None, None),
        };
        // An unknown user is checked against a dummy hash: the same work, the same time.
        let matches = password::verify_async(password, stored).await;
        match user {
            Some(user) if matches && !user.disabled => {
                if lockout.enabled {
                    lockouts::clear(state.db(), &user.username).await?;
                }
                let tokens = start_session(&state, &user, "password", &rid.0.0, &ip).await?;
                Ok(Json(tokens))
            }
            other => {
                let reason = match other {
                    None => "unknown user",
                    Some(u) if u.disabled => "user disabled",
                    Some(_) => "wrong password",
                };
                tracing::info!(reason, "sign-in refused");
                audit_auth(
                    &state,
                    &username,
                    "auth.login_failed",
                    &rid.0.0,
                    serde_json::json!({"reason": reason}),
                    &ip,
                )
                .await;
                if lockout.enabled {
                    let now = Utc::now().timestamp_millis();
                    let policy = lockout.policy();
                    if let Some(lock) =
                        lockouts::record_failure(state.db(), &username, &policy, now).await?
                    {
                        locked(&state, &lock, &policy, &rid.0.0, &ip).await;
                    }
                }
                Err(ApiError::unauthorized("invalid username or password"))
            }
        }
    }

    /// Account names locked after failed sign-ins (admin): current and earlier locks still
    /// remembered, the latest first. Names that do not exist are locked the same way.
    #[oai(
        path = "/api/v1/auth/lockouts",
        method = "get",
        operation_id = "list_lockouts"
    )]
    async fn lockouts(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
    ) -> ApiResult<Json<LockoutList>> {
        auth.0.require_admin()?;
        let now = Utc::now().timestamp_millis();
        let found = lockouts::list(state.db()).await?;
        Ok(Json(LockoutList::whole(
            found
                .into_iter()
                .map(|l| LockoutView {
                    locked: l.is_locked(now),
                    username: l.username,
                    locks: l.locks,
                    locked_until: l.locked_until,
                    last_failure_at: l.last_failure_at,
                })
                .collect(),
        )))
    }

    /// Unlock an account name now and forget its failures (admin; audited as `auth.unlock`).
    #[oai(
        path = "/api/v1/auth/lockouts/:username",
        method = "delete",
        operation_id = "unlock_account"
    )]
    async fn unlock(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        #[oai(validator(min_length = 1, max_length = 100))] username: Path<String>,
    ) -> ApiResult<Unlocked> {
        auth.0.require_admin()?;
        if !lockouts::clear(state.db(), &username.0).await? {
            return Err(ApiError::not_found(format!(
                "no failed sign-ins recorded for `{}`",
                username.0
            )));
        }
        audit::record(
            state.engine(),
            Entry {
                actor: auth.0.actor(),
                action: "auth.unlock",
                target_type: "user",
                target_id: &username.0,
                details: serde_json::json!({}),
                request_id: Some(&rid.0.0),
                job_id: None,
            },
        )
        .await;
        Ok(Unlocked::Done)
    }

    /// Renew: exchange a refresh token for a new pair (the user must still be enabled). The
    /// presented token is retired; presenting it again revokes the whole session.
    #[oai(
        path = "/api/v1/auth/refresh",
        method = "post",
        operation_id = "refresh_token"
    )]
    async fn refresh(
        &self,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        ip: Data<&ClientIp>,
        body: Json<RefreshRequest>,
    ) -> ApiResult<Json<TokenPair>> {
        let claims = state
            .auth()
            .keys()
            .verify(&body.0.refresh_token, TokenType::Refresh)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        state.auth().forget(&claims.sub);
        let user = match state.auth().user(&claims.sub).await? {
            Some(u) if !u.disabled => u,
            Some(_) => return Err(ApiError::unauthorized("this user is disabled")),
            None => return Err(ApiError::unauthorized("this user no longer exists")),
        };
        let Some(sid) = claims.sid.as_deref() else {
            return Err(ApiError::unauthorized(
                "this refresh token predates sessions; sign in again",
            ));
        };
        let (tokens, new_jti, expires_ms) = pair(&state, &user.username, user.role, sid)?;
        let now = Utc::now().timestamp_millis();
        match sessions::rotate(state.db(), &claims.jti, &new_jti, expires_ms, now).await? {
            Rotation::Rotated(session)
                if session.id == sid && session.username == user.username =>
            {
                audit_auth(
                    &state,
                    &user.username,
                    "auth.refresh",
                    &rid.0.0,
                    serde_json::json!({"session": sid}),
                    &ip,
                )
                .await;
                Ok(Json(tokens))
            }
            Rotation::Reused { session, newly } => {
                state.auth().forget_session(&session.id);
                if newly {
                    refresh_reused(&state, &session, &rid.0.0, &ip).await;
                }
                Err(ApiError::unauthorized(
                    "this refresh token was already used: the session is revoked; sign in again",
                ))
            }
            Rotation::Revoked(_) => Err(ApiError::unauthorized(
                "this session has ended (signed out or revoked); sign in again",
            )),
            Rotation::Rotated(_) | Rotation::Unknown => Err(ApiError::unauthorized(
                "unknown refresh token; sign in again",
            )),
        }
    }

    /// Sign out: revoke the session of the access token used (its refresh token and every
    /// access token of the session stop working).
    #[oai(path = "/api/v1/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        ip: Data<&ClientIp>,
    ) -> ApiResult<LoggedOut> {
        let Some(sid) = auth.0.session.as_deref() else {
            return Err(ApiError::conflict(
                "this token has no vigil session to end (an external or API-key token)",
            ));
        };
        let now = Utc::now().timestamp_millis();
        sessions::revoke(state.db(), sid, reason::LOGOUT, now).await?;
        state.auth().forget_session(sid);
        audit_auth(
            &state,
            &auth.0.username,
            "auth.logout",
            &rid.0.0,
            serde_json::json!({"session": sid}),
            &ip,
        )
        .await;
        Ok(LoggedOut::Done)
    }
}

/// An account name was just locked: log and audit it (`auth.lockout`).
async fn locked(
    state: &ApiState,
    lock: &lockouts::Lockout,
    policy: &lockouts::Policy,
    request_id: &str,
    ip: &ClientIp,
) {
    let lock_ms = policy.lock_ms(lock.locks);
    tracing::warn!(locks = lock.locks, lock_ms, ip = %ip.0, "account locked after failed sign-ins");
    audit_auth(
        state,
        &lock.username,
        "auth.lockout",
        request_id,
        serde_json::json!({"locks": lock.locks, "lock_ms": lock_ms,
                           "locked_until": lock.locked_until,
                           "max_failures": policy.max_failures}),
        ip,
    )
    .await;
}

/// A retired refresh token came back: audit it and report a High security event (an alert).
async fn refresh_reused(
    state: &ApiState,
    session: &sessions::Session,
    request_id: &str,
    ip: &ClientIp,
) {
    tracing::warn!(user = %session.username, session = %session.id, ip = %ip.0,
        "refresh token reuse: session revoked");
    audit_auth(
        state,
        &session.username,
        "auth.refresh_reuse",
        request_id,
        serde_json::json!({"session": session.id}),
        ip,
    )
    .await;
    let event = NewSecurityEvent {
        uuid: uuid::Uuid::new_v4().to_string(),
        source: "vigil".to_owned(),
        event_type: REUSE_EVENT.to_owned(),
        severity: 3,
        description: format!(
            "A retired refresh token of {} was presented again from {}: the session was revoked. \
             Someone else may hold the user's tokens.",
            session.username, ip.0
        ),
        details: serde_json::json!({"user": session.username, "session": session.id,
                                    "ip": ip.0})
        .to_string(),
        created_by: AuditActor::System.label(),
        created_at: Utc::now(),
    };
    if let Err(e) =
        crate::routes::alerts::report_security_event(state, AuditActor::System, event, request_id)
            .await
    {
        tracing::error!(error = ?e, "could not report the refresh token reuse");
    }
}
