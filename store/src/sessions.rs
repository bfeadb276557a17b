//! Sign-in sessions and their refresh tokens (`auth_sessions`, `auth_refresh_tokens`).
//!
//! A session is one token family: a sign-in and every refresh after it. Each refresh token's
//! `jti` is a row; [`rotate`] retires the presented token and records its successor in one
//! serialised transaction, so of two concurrent refreshes with one token exactly one
//! succeeds. Presenting a retired token is reuse: the family is revoked ([`Rotation::Reused`])
//! and its access tokens stop working too (they carry the session id). Rows are pruned
//! ([`prune`]) once their tokens have expired, so the tables stay bounded by the sessions
//! alive within one refresh lifetime.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::from_millis;
use crate::{Db, StoreError};

/// The advisory lock key of session changes on PostgreSQL ("sessions" in ASCII).
const LOCK_KEY: i64 = 0x7365_7373_696f_6e73;

/// Why a session was revoked (stored as text).
pub mod reason {
    /// A retired refresh token was presented again.
    pub const REUSE: &str = "refresh_token_reuse";
    /// The user signed out.
    pub const LOGOUT: &str = "logout";
    /// An admin revoked every session of the user.
    pub const ADMIN: &str = "revoked_by_admin";
}

/// One session (token family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

impl Session {
    /// Not revoked and not expired at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.timestamp_millis() > now_ms
    }
}

const COLUMNS: &str =
    "id, username, created_at, last_used_at, expires_at, revoked_at, revoked_reason";

fn from_row(r: &AnyRow) -> Result<Session, StoreError> {
    let revoked: Option<i64> = r.try_get("revoked_at")?;
    Ok(Session {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        created_at: from_millis(r.try_get("created_at")?),
        last_used_at: from_millis(r.try_get("last_used_at")?),
        expires_at: from_millis(r.try_get("expires_at")?),
        revoked_at: revoked.map(from_millis),
        revoked_reason: r.try_get("revoked_reason")?,
    })
}

/// Starts session `id` for `username` with its first refresh token `jti`.
pub async fn start(
    db: &Db,
    id: &str,
    username: &str,
    jti: &str,
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO auth_sessions (id, username, created_at, last_used_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(username)
    .bind(now_ms)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO auth_refresh_tokens (jti, session_id, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(jti)
    .bind(id)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What a refresh with one token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is retired now and its successor recorded.
    Rotated(Session),
    /// The token was already retired: the family is revoked (`newly` when by this call).
    Reused { session: Session, newly: bool },
    /// The family was revoked before (logout, admin, earlier reuse).
    Revoked(Session),
    /// No such token (never issued here, or pruned after it expired).
    Unknown,
}

/// Exchanges refresh token `jti` for `new_jti` (see [`Rotation`]).
pub async fn rotate(
    db: &Db,
    jti: &str,
    new_jti: &str,
    new_expires_at_ms: i64,
    now_ms: i64,
) -> Result<Rotation, StoreError> {
    let mut tx = db.begin_serialized(LOCK_KEY).await?;
    let token = sqlx::query("SELECT session_id, used_at FROM auth_refresh_tokens WHERE jti = $1")
        .bind(jti)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(token) = token else {
        return Ok(Rotation::Unknown);
    };
    let session_id: String = token.try_get("session_id")?;
    let used_at: Option<i64> = token.try_get("used_at")?;
    let sql = format!("SELECT {COLUMNS} FROM auth_sessions WHERE id = $1");
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&session_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(Rotation::Unknown);
    };
    let mut session = from_row(&row)?;
    if session.revoked_at.is_some() {
        return Ok(Rotation::Revoked(session));
    }
    if used_at.is_some() {
        sqlx::query(
            "UPDATE auth_sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms)
        .bind(reason::REUSE)
        .bind(&session_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        session.revoked_at = Some(from_millis(now_ms));
        session.revoked_reason = Some(reason::REUSE.to_owned());
        return Ok(Rotation::Reused {
            session,
            newly: true,
        });
    }
    sqlx::query("UPDATE auth_refresh_tokens SET used_at = $1 WHERE jti = $2")
        .bind(now_ms)
        .bind(jti)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO auth_refresh_tokens (jti, session_id, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(new_jti)
    .bind(&session_id)
    .bind(now_ms)
    .bind(new_expires_at_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE auth_sessions SET last_used_at = $1, expires_at = $2 WHERE id = $3")
        .bind(now_ms)
        .bind(new_expires_at_ms)
        .bind(&session_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    session.last_used_at = from_millis(now_ms);
    session.expires_at = from_millis(new_expires_at_ms);
    Ok(Rotation::Rotated(session))
}

/// The session of refresh token `jti`, if the token is known.
pub async fn of_token(db: &Db, jti: &str) -> Result<Option<Session>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM auth_sessions WHERE id = \
         (SELECT session_id FROM auth_refresh_tokens WHERE jti = $1)"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(jti)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// One session by id.
pub async fn get(db: &Db, id: &str) -> Result<Option<Session>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM auth_sessions WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Revokes session `id`; true when it was active until now.
pub async fn revoke(db: &Db, id: &str, why: &str, now_ms: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE auth_sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms)
    .bind(why)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes every unrevoked session of `username`; returns their ids.
pub async fn revoke_user(
    db: &Db,
    username: &str,
    why: &str,
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let mut tx = db.begin_serialized(LOCK_KEY).await?;
    let rows = sqlx::query(
        "SELECT id FROM auth_sessions WHERE username = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(username)
    .fetch_all(&mut *tx)
    .await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "UPDATE auth_sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE username = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms)
    .bind(why)
    .bind(username)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids)
}

/// The sessions of `username` not yet expired at `now_ms` (revoked ones included), newest
/// first.
pub async fn list_for_user(
    db: &Db,
    username: &str,
    now_ms: i64,
) -> Result<Vec<Session>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM auth_sessions WHERE username = $1 AND expires_at > $2 \
         ORDER BY created_at DESC, id LIMIT 1000"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .bind(now_ms)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes refresh tokens and sessions that expired before `now_ms` (an expired token is
/// refused by its `exp` claim anyway). Returns the number of rows deleted.
pub async fn prune(db: &Db, now_ms: i64) -> Result<u64, StoreError> {
    let tokens = sqlx::query("DELETE FROM auth_refresh_tokens WHERE expires_at < $1")
        .bind(now_ms)
        .execute(db.pool())
        .await?
        .rows_affected();
    let sessions = sqlx::query("DELETE FROM auth_sessions WHERE expires_at < $1")
        .bind(now_ms)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(tokens + sessions)
}
