//! Per-account sign-in locks (`login_lockouts`): failed sign-ins are counted per account name
//! within a window, whatever the source; at the limit the name is locked, each lock twice as
//! long as the one before (up to a maximum). Names that do not exist are counted the same, so
//! a lock says nothing about which names exist.
//!
//! Changes run in one serialised transaction ([`Db::begin_serialized`]), so failures arriving
//! at several API instances at once are all counted and one of them locks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::from_millis;
use crate::{Db, StoreError};

/// The advisory lock key of lockout changes on PostgreSQL ("lockouts" in ASCII).
const LOCK_KEY: i64 = 0x6c6f_636b_6f75_7473;

/// When to lock and for how long (all in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures within `window_ms` that lock the account.
    pub max_failures: i64,
    pub window_ms: i64,
    /// The first lock; each further lock doubles, up to `max_lock_ms`.
    pub base_lock_ms: i64,
    pub max_lock_ms: i64,
}

impl Policy {
    /// How long the `n`-th lock (1-based) lasts.
    pub fn lock_ms(&self, n: i64) -> i64 {
        let doublings = u32::try_from((n - 1).clamp(0, 40)).unwrap_or(40);
        self.base_lock_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.max_lock_ms)
    }
}

/// The lock state of one account name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockout {
    pub username: String,
    /// Failures in the current window.
    pub failures: i64,
    /// Locks so far (reset by a successful sign-in).
    pub locks: i64,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_failure_at: DateTime<Utc>,
}

impl Lockout {
    /// Locked at `now_ms`.
    pub fn is_locked(&self, now_ms: i64) -> bool {
        self.locked_until
            .is_some_and(|t| t.timestamp_millis() > now_ms)
    }
}

const COLUMNS: &str = "username, failures, window_started_at, locks, locked_until, last_failure_at";

fn from_row(r: &AnyRow) -> Result<Lockout, StoreError> {
    let until: Option<i64> = r.try_get("locked_until")?;
    Ok(Lockout {
        username: r.try_get("username")?,
        failures: r.try_get("failures")?,
        locks: r.try_get("locks")?,
        locked_until: until.map(from_millis),
        last_failure_at: from_millis(r.try_get("last_failure_at")?),
    })
}

/// When the lock on `username` ends, if it is locked at `now_ms`.
pub async fn locked_until(
    db: &Db,
    username: &str,
    now_ms: i64,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = sqlx::query(
        "SELECT locked_until FROM login_lockouts WHERE username = $1 AND locked_until > $2",
    )
    .bind(username)
    .bind(now_ms)
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(r) => Ok(Some(from_millis(r.try_get("locked_until")?))),
        None => Ok(None),
    }
}

/// Counts a failed sign-in for `username`. Returns the new state when this failure locked the
/// account, else None.
pub async fn record_failure(
    db: &Db,
    username: &str,
    policy: &Policy,
    now_ms: i64,
) -> Result<Option<Lockout>, StoreError> {
    let mut tx = db.begin_serialized(LOCK_KEY).await?;
    let sql = format!("SELECT {COLUMNS} FROM login_lockouts WHERE username = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
    let (mut failures, mut window_start, mut locks, mut locked_until) = match &row {
        Some(r) => (
            r.try_get::<i64, _>("failures")?,
            r.try_get::<i64, _>("window_started_at")?,
            r.try_get::<i64, _>("locks")?,
            r.try_get::<Option<i64>, _>("locked_until")?,
        ),
        None => (0, now_ms, 0, None),
    };
    let last_failure: i64 = match &row {
        Some(r) => r.try_get("last_failure_at")?,
        None => now_ms,
    };
    if locked_until.is_some_and(|t| t > now_ms) {
        // Attempts during a lock are refused before they are checked; nothing to count.
        return Ok(None);
    }
    // A quiet spell as long as the longest lock plus a window forgives earlier locks.
    if now_ms - last_failure > policy.max_lock_ms + policy.window_ms {
        locks = 0;
    }
    if now_ms - window_start >= policy.window_ms {
        failures = 0;
        window_start = now_ms;
    }
    failures += 1;
    let mut locked = false;
    if failures >= policy.max_failures {
        locks += 1;
        locked_until = Some(now_ms.saturating_add(policy.lock_ms(locks)));
        failures = 0;
        window_start = now_ms;
        locked = true;
    }
    sqlx::query(
        "INSERT INTO login_lockouts (username, failures, window_started_at, locks, locked_until, \
         last_failure_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (username) DO UPDATE SET failures = excluded.failures, \
         window_started_at = excluded.window_started_at, locks = excluded.locks, \
         locked_until = excluded.locked_until, last_failure_at = excluded.last_failure_at",
    )
    .bind(username)
    .bind(failures)
    .bind(window_start)
    .bind(locks)
    .bind(locked_until)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(locked.then(|| Lockout {
        username: username.to_owned(),
        failures,
        locks,
        locked_until: locked_until.map(from_millis),
        last_failure_at: from_millis(now_ms),
    }))
}

/// Forgets the failures and locks of `username` (a successful sign-in, an admin's unlock);
/// true when there was something to forget.
pub async fn clear(db: &Db, username: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM login_lockouts WHERE username = $1")
        .bind(username)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Account names locked at least once (still remembered), the most recently locked first.
pub async fn list(db: &Db) -> Result<Vec<Lockout>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM login_lockouts WHERE locks > 0 \
         ORDER BY locked_until DESC, username LIMIT 1000"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes records with no failure for `quiet_ms` and no lock in force at `now_ms`.
pub async fn prune(db: &Db, now_ms: i64, quiet_ms: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM login_lockouts WHERE last_failure_at < $1 \
         AND (locked_until IS NULL OR locked_until < $2)",
    )
    .bind(now_ms.saturating_sub(quiet_ms))
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_up_to_the_maximum() {
        let p = Policy {
            max_failures: 5,
            window_ms: 1000,
            base_lock_ms: 100,
            max_lock_ms: 500,
        };
        assert_eq!(
            (1..=5).map(|n| p.lock_ms(n)).collect::<Vec<_>>(),
            [100, 200, 400, 500, 500]
        );
        assert_eq!(p.lock_ms(1000), 500);
    }
}
