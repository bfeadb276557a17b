//! `/api/v1/users` (admin): list the API's users, and enable, disable, change the role of or
//! set a new password for one — the same changes as `vigil user enable|disable|set-role|
//! set-password`, audited under the same actions (`user.enable`, `user.disable`,
//! `user.set_role`, `user.set_password`). An admin cannot disable or demote themselves (that
//! could lock the last admin out); a change takes effect at the user's next request.
//!
//! `GET /api/v1/users/{username}/sessions` lists a user's sign-in sessions (not yet
//! expired, revoked ones included) and `DELETE` on it revokes them all (`user.revoke_sessions`,
//! as `vigil user revoke-sessions`): refresh and access tokens of those sessions stop working.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use vigil_store::sessions::{self, Session};
use vigil_store::users::{self, Change, User, UserRole};

use crate::audit::{self, Entry};
use crate::auth::{BearerAuth, password};
use crate::context::RequestId;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::{example, list_envelope};
use crate::state::ApiState;

/// The shortest password accepted (as `vigil user add`).
pub const MIN_PASSWORD: usize = 12;

/// The users routes.
pub struct UsersApi;

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum RoleName {
    /// Reads and changes everything.
    Admin,
    /// Reads everything, changes nothing.
    Analyst,
}

impl From<RoleName> for UserRole {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::Admin => UserRole::Admin,
            RoleName::Analyst => UserRole::Analyst,
        }
    }
}

impl From<UserRole> for RoleName {
    fn from(r: UserRole) -> Self {
        match r {
            UserRole::Admin => RoleName::Admin,
            UserRole::Analyst => RoleName::Analyst,
        }
    }
}

/// A user (never the password hash).
#[derive(Debug, Clone, Object)]
pub struct UserView {
    pub username: String,
    pub role: RoleName,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            username: u.username,
            role: u.role.into(),
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// What to change (at least one field).
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct UserChange {
    /// `true` disables the user (their tokens stop working), `false` enables them again.
    pub disabled: Option<bool>,
    /// The new role.
    pub role: Option<RoleName>,
    /// A new password (at least 12 characters).
    #[oai(write_only, validator(min_length = 12, max_length = 1024))]
    pub password: Option<String>,
}

example!(UserChange, serde_json::json!({"role": "analyst"}));

/// A sign-in session (one token family: a sign-in and every refresh after it).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionView {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// The last refresh.
    pub last_used_at: DateTime<Utc>,
    /// When its newest refresh token expires.
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `logout`, `refresh_token_reuse` or `revoked_by_admin`.
    pub revoked_reason: Option<String>,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        SessionView {
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
            revoked_reason: s.revoked_reason,
        }
    }
}

/// What revoking a user's sessions did.
#[derive(Debug, Clone, Object)]
pub struct SessionsRevoked {
    /// The sessions revoked by this call.
    pub revoked: Vec<String>,
}

list_envelope!(
    /// Every user.
    UserList,
    UserView
);

list_envelope!(
    /// A user's sessions.
    SessionList,
    SessionView
);

#[OpenApi(tag = "Tags::Users")]
impl UsersApi {
    /// Every user (admin).
    #[oai(path = "/api/v1/users", method = "get", operation_id = "list_users")]
    async fn list(&self, auth: BearerAuth, state: Data<&ApiState>) -> ApiResult<Json<UserList>> {
        auth.0.require_admin()?;
        let all = users::list(state.db()).await?;
        Ok(Json(UserList::whole(
            all.into_iter().map(UserView::from).collect(),
        )))
    }

    /// Enable, disable, change the role of, or set a new password for a user (admin);
    /// each change is audited.
    #[oai(
        path = "/api/v1/users/:username",
        method = "patch",
        operation_id = "update_user"
    )]
    async fn update(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        username: Path<String>,
        body: Json<UserChange>,
    ) -> ApiResult<Json<UserView>> {
        auth.0.require_admin()?;
        auth.0.require_person()?;
        let name = username.0;
        let change = body.0;
        if change.disabled.is_none() && change.role.is_none() && change.password.is_none() {
            return Err(ApiError::unprocessable(
                "give at least one of disabled, role, password",
            ));
        }
        if users::find(state.db(), &name).await?.is_none() {
            return Err(ApiError::not_found(format!("no user named `{name}`")));
        }
        let me = !auth.0.external && auth.0.username == name;
        if me && (change.disabled == Some(true) || change.role == Some(RoleName::Analyst)) {
            return Err(ApiError::conflict(
                "you cannot disable or demote yourself; ask another admin",
            ));
        }
        let hash = match &change.password {
            Some(p) if p.chars().count() < MIN_PASSWORD => {
                return Err(ApiError::unprocessable(format!(
                    "password: must have at least {MIN_PASSWORD} characters"
                )));
            }
            Some(p) => {
                let p = p.clone();
                Some(
                    tokio::task::spawn_blocking(move || password::hash(&p))
                        .await
                        .map_err(|e| ApiError::internal(&e))?
                        .map_err(|e| ApiError::internal(&e))?,
                )
            }
            None => None,
        };
        let mut changes: Vec<(Change<'_>, &str, serde_json::Value)> = Vec::new();
        if let Some(d) = change.disabled {
            let action = if d { "user.disable" } else { "user.enable" };
            changes.push((Change::Disabled(d), action, serde_json::json!({})));
        }
        if let Some(r) = change.role {
            let role: UserRole = r.into();
            changes.push((
                Change::Role(role),
                "user.set_role",
                serde_json::json!({"role": role.as_str()}),
            ));
        }
        if let Some(h) = &hash {
            changes.push((
                Change::PasswordHash(h),
                "user.set_password",
                serde_json::json!({}),
            ));
        }
        for (c, action, details) in changes {
            if !users::change(state.db(), &name, c).await? {
                // Removed between the check above and this change.
                return Err(ApiError::not_found(format!("no user named `{name}`")));
            }
            audit::record(
                state.engine(),
                Entry {
                    actor: auth.0.actor(),
                    action,
                    target_type: "user",
                    target_id: &name,
                    details,
                    request_id: Some(&rid.0.0),
                    job_id: None,
                },
            )
            .await;
        }
        state.auth().forget(&name);
        let user = users::find(state.db(), &name)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no user named `{name}`")))?;
        Ok(Json(user.into()))
    }

    /// A user's sign-in sessions that have not expired, revoked ones included (admin).
    #[oai(
        path = "/api/v1/users/:username/sessions",
        method = "get",
        operation_id = "list_user_sessions"
    )]
    async fn sessions(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        username: Path<String>,
    ) -> ApiResult<Json<SessionList>> {
        auth.0.require_admin()?;
        if users::find(state.db(), &username.0).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "no user named `{}`",
                username.0
            )));
        }
        let now = Utc::now().timestamp_millis();
        let found = sessions::list_for_user(state.db(), &username.0, now).await?;
        Ok(Json(SessionList::whole(
            found.into_iter().map(SessionView::from).collect(),
        )))
    }

    /// Revoke every session of a user (admin): their refresh tokens and the access tokens of
    /// those sessions stop working; they can sign in again. Audited as
    /// `user.revoke_sessions`.
    #[oai(
        path = "/api/v1/users/:username/sessions",
        method = "delete",
        operation_id = "revoke_user_sessions"
    )]
    async fn revoke_sessions(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        username: Path<String>,
    ) -> ApiResult<Json<SessionsRevoked>> {
        auth.0.require_admin()?;
        auth.0.require_person()?;
        let name = username.0;
        if users::find(state.db(), &name).await?.is_none() {
            return Err(ApiError::not_found(format!("no user named `{name}`")));
        }
        let now = Utc::now().timestamp_millis();
        let revoked =
            sessions::revoke_user(state.db(), &name, sessions::reason::ADMIN, now).await?;
        for id in &revoked {
            state.auth().forget_session(id);
        }
        audit::record(
            state.engine(),
            Entry {
                actor: auth.0.actor(),
                action: "user.revoke_sessions",
                target_type: "user",
                target_id: &name,
                details: serde_json::json!({"sessions": revoked}),
                request_id: Some(&rid.0.0),
                job_id: None,
            },
        )
        .await;
        Ok(Json(SessionsRevoked { revoked }))
    }
}
