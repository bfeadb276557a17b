//! API keys of service accounts (`api_keys`): a name, a role, optionally the queues the key
//! may act on, its own rate budget, an expiry, the last time it was used and a revocation.
//! Only the SHA-256 of the secret is stored (hashed by the caller, `vigil-api`); a revoked key
//! keeps its row so audit records keep naming it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::from_millis;
use crate::users::UserRole;
use crate::{Db, StoreError};

/// A stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: UserRole,
    /// The queues it may act on; None = every queue.
    pub queues: Option<Vec<String>>,
    pub rate_per_minute: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Neither revoked nor expired at `now_ms`.
    pub fn is_usable(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none()
            && self
                .expires_at
                .is_none_or(|t| t.timestamp_millis() > now_ms)
    }
}

/// A key about to be stored.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub role: UserRole,
    pub queues: Option<&'a [String]>,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: &'a str,
    pub rate_per_minute: Option<i64>,
    pub created_by: &'a str,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

const COLUMNS: &str = "id, name, role, queues, rate_per_minute, created_by, created_at, \
                       expires_at, last_used_at, revoked_at";

fn from_row(r: &AnyRow) -> Result<ApiKey, StoreError> {
    let role: String = r.try_get("role")?;
    let queues: Option<String> = r.try_get("queues")?;
    let queues = match queues {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Invalid(format!("api_keys.queues: {e}")))?,
        ),
        None => None,
    };
    let time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(r.try_get::<Option<i64>, _>(col)?.map(from_millis))
    };
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: role.parse()?,
        queues,
        rate_per_minute: r.try_get("rate_per_minute")?,
        created_by: r.try_get("created_by")?,
        created_at: from_millis(r.try_get("created_at")?),
        expires_at: time("expires_at")?,
        last_used_at: time("last_used_at")?,
        revoked_at: time("revoked_at")?,
    })
}

/// Stores a key. A taken name is [`StoreError::Invalid`].
pub async fn create(db: &Db, k: &NewApiKey<'_>) -> Result<ApiKey, StoreError> {
    let queues = k
        .queues
        .map(|q| serde_json::to_string(q).unwrap_or_else(|_| "[]".to_owned()));
    let inserted = sqlx::query(
        "INSERT INTO api_keys (id, name, role, queues, secret_sha256, rate_per_minute, \
         created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(k.id)
    .bind(k.name)
    .bind(k.role.as_str())
    .bind(queues)
    .bind(k.secret_sha256)
    .bind(k.rate_per_minute)
    .bind(k.created_by)
    .bind(k.created_at_ms)
    .bind(k.expires_at_ms)
    .execute(db.pool())
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(StoreError::Invalid(format!(
                "an API key named `{}` already exists",
                k.name
            )));
        }
        Err(e) => return Err(e.into()),
    }
    get(db, k.id)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("API key `{}` vanished after insert", k.id)))
}

/// One key by id.
pub async fn get(db: &Db, id: &str) -> Result<Option<ApiKey>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// One key by id with its secret's hash, to check a presented key.
pub async fn credentials(db: &Db, id: &str) -> Result<Option<(ApiKey, String)>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, secret_sha256 FROM api_keys WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(r) => Ok(Some((from_row(&r)?, r.try_get("secret_sha256")?))),
        None => Ok(None),
    }
}

/// Every key, by name (revoked and expired ones included).
pub async fn list(db: &Db) -> Result<Vec<ApiKey>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY name LIMIT 10000");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Revokes key `id`; true when it was not revoked before.
pub async fn revoke(db: &Db, id: &str, now_ms: i64) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Records a use of key `id` at `now_ms`.
pub async fn touch(db: &Db, id: &str, now_ms: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(now_ms)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}
