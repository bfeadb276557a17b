//! API users: who may call the HTTP API and with which role.
//!
//! Passwords are stored only as argon2id PHC strings, hashed by the caller (`vigil-api`), so
//! this module never sees a clear password. A disabled user keeps their row (audit records
//! name them) but can neither sign in nor use a token issued before.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::{from_millis, now_millis};
use crate::{Db, StoreError};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Reads everything and changes everything (enqueue, retry, cancel, pause, alerts).
    Admin,
    /// Reads everything, changes nothing.
    Analyst,
}

impl UserRole {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::Analyst => "analyst",
        }
    }
}

impl fmt::Display for UserRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UserRole {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(UserRole::Admin),
            "analyst" => Ok(UserRole::Analyst),
            other => Err(StoreError::Invalid(format!(
                "unknown role `{other}`; expected admin or analyst"
            ))),
        }
    }
}

/// The `password_hash` of users created by a single sign-on (`auth.oidc`): not a PHC string,
/// so no password ever matches it; they sign in through the identity provider only.
pub const SSO_ONLY: &str = "!sso";

/// One user, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: UserRole,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user and their stored argon2 hash (for sign-in only).
#[derive(Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

// `disabled` is BOOLEAN on PostgreSQL and an integer on SQLite; read it as a BIGINT on both.
const COLUMNS: &str = "id, username, role, CAST(CASE WHEN disabled THEN 1 ELSE 0 END AS BIGINT) AS disabled, created_at, updated_at";

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    let disabled: i64 = row.try_get("disabled")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: role.parse()?,
        disabled: disabled != 0,
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
    })
}

/// Checks a login name: 1 to 100 characters, letters, digits and `._@-`.
pub fn validate_username(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 100
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "a username has 1 to 100 letters, digits, `.`, `_`, `@` or `-`".to_owned(),
        ))
    }
}

/// Adds a user. Fails with [`StoreError::Invalid`] when the name is taken or malformed.
pub async fn create(
    db: &Db,
    username: &str,
    password_hash: &str,
    role: UserRole,
) -> Result<User, StoreError> {
    validate_username(username)?;
    let now = now_millis();
    let inserted = sqlx::query(
        "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(username)
    .bind(password_hash)
    .bind(role.as_str())
    .bind(false)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(StoreError::Invalid(format!(
                "user `{username}` already exists"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    find(db, username)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("user `{username}` vanished after insert")))
}

/// One user by login name.
pub async fn find(db: &Db, username: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE username = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// A user and their password hash, for sign-in.
pub async fn credentials(db: &Db, username: &str) -> Result<Option<Credentials>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, password_hash FROM users WHERE username = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(row) => Ok(Some(Credentials {
            user: user_from_row(&row)?,
            password_hash: row.try_get("password_hash")?,
        })),
        None => Ok(None),
    }
}

/// Every user, by name.
pub async fn list(db: &Db) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY username");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(user_from_row).collect()
}

/// Disables a user. Returns false when there is no such user.
pub async fn disable(db: &Db, username: &str) -> Result<bool, StoreError> {
    set_disabled(db, username, true).await
}

/// What a change to an existing user sets.
#[derive(Debug, Clone)]
pub enum Change<'a> {
    /// Disabled (tokens stop working, sign-in refused) or enabled again.
    Disabled(bool),
    /// A new argon2id password hash.
    PasswordHash(&'a str),
    /// A new role.
    Role(UserRole),
}

/// Disables or re-enables a user; false when there is no such user.
pub async fn set_disabled(db: &Db, username: &str, disabled: bool) -> Result<bool, StoreError> {
    change(db, username, Change::Disabled(disabled)).await
}

/// Changes one thing about a user; false when there is no such user.
pub async fn change(db: &Db, username: &str, change: Change<'_>) -> Result<bool, StoreError> {
    let sql = match change {
        Change::Disabled(_) => {
            "UPDATE users SET disabled = $1, updated_at = $2 WHERE username = $3"
        }
        Change::PasswordHash(_) => {
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3"
        }
        Change::Role(_) => "UPDATE users SET role = $1, updated_at = $2 WHERE username = $3",
    };
    let query = sqlx::query(sql);
    let query = match change {
        Change::Disabled(d) => query.bind(d),
        Change::PasswordHash(h) => query.bind(h.to_owned()),
        Change::Role(r) => query.bind(r.as_str()),
    };
    let done = query
        .bind(now_millis())
        .bind(username)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_names() {
        assert_eq!("admin".parse::<UserRole>().unwrap(), UserRole::Admin);
        assert!("root".parse::<UserRole>().is_err());
        assert!(validate_username("alice.smith@example.com").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("x'; DROP TABLE users; --").is_err());
    }
}
