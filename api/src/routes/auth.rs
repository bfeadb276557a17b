//! `/api/v1/auth`: sign in with username and password, renew with a refresh token.
//!
//! Both answer with a fresh access token (default 60 minutes) and refresh token (default one
//! day). A wrong password, an unknown user and a disabled user get the same 401, and take the
//! same time (an unknown user is checked against a dummy hash). Every attempt is audited.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use vigil_jobs::AuditActor;
use vigil_store::users::{self, UserRole};

use crate::audit::{self, Entry};
use crate::auth::jwt::TokenType;
use crate::auth::password;
use crate::context::RequestId;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::state::ApiState;

/// The auth routes.
pub struct AuthApi;

/// Username and password.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct LoginRequest {
    #[oai(validator(min_length = 1, max_length = 100))]
    pub username: String,
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub password: String,
}

/// A refresh token from an earlier sign-in or refresh.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct RefreshRequest {
    #[oai(validator(min_length = 1, max_length = 8192))]
    pub refresh_token: String,
}

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

fn pair(state: &ApiState, user: &str, role: UserRole) -> ApiResult<TokenPair> {
    let keys = state.auth().keys();
    let access = keys
        .issue(user, role, TokenType::Access)
        .map_err(|e| ApiError::internal(&e))?;
    let refresh = keys
        .issue(user, role, TokenType::Refresh)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(TokenPair {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer".to_owned(),
        expires_in: keys.lifetime(TokenType::Access),
        refresh_expires_in: keys.lifetime(TokenType::Refresh),
        role: role.as_str().to_owned(),
    })
}

async fn audit_auth(
    state: &ApiState,
    user: &str,
    action: &str,
    request_id: &str,
    details: serde_json::Value,
) {
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
        body: Json<LoginRequest>,
    ) -> ApiResult<Json<TokenPair>> {
        let LoginRequest { username, password } = body.0;
        let creds = users::credentials(state.db(), &username).await?;
        let (stored, user) = match creds {
            Some(c) => (Some(c.password_hash), Some(c.user)),
            None => (None, None),
        };
        let matches = password::verify_async(password, stored).await;
        match user {
            Some(user) if matches && !user.disabled => {
                state.auth().forget(&user.username);
                let tokens = pair(&state, &user.username, user.role)?;
                audit_auth(
                    &state,
                    &user.username,
                    "auth.login",
                    &rid.0.0,
                    serde_json::json!({}),
                )
                .await;
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
                )
                .await;
                Err(ApiError::unauthorized("invalid username or password"))
            }
        }
    }

    /// Renew: exchange a valid refresh token for a new pair (the user must still be enabled).
    #[oai(
        path = "/api/v1/auth/refresh",
        method = "post",
        operation_id = "refresh_token"
    )]
    async fn refresh(
        &self,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
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
        let tokens = pair(&state, &user.username, user.role)?;
        audit_auth(
            &state,
            &user.username,
            "auth.refresh",
            &rid.0.0,
            serde_json::json!({}),
        )
        .await;
        Ok(Json(tokens))
    }
}
