//! Escalation notifications: one row per (level, channel, target), from queued to sent or dead.
//!
//! A level of an escalation policy tells several targets: each email address, each signed
//! webhook URL, each Slack / Teams / PagerDuty channel. Each is a notification with its own
//! outcome, so the alert shows who was told and who was not:
//!
//! `queued` (recorded, its job queued) → `sent` (with the provider's status and id) |
//! `retrying` (an attempt failed, the last error kept) → ... → `dead` (every error kept) |
//! `suppressed` (the alert was answered before it went out).
//!
//! [`prepare_level`] records a level's notifications only while the alert is still open in
//! the level's round (one transaction), so an acknowledgement that lands between the claim of
//! a level and its queueing suppresses the level. [`settle_level`] derives the level's state
//! from its notifications: `notified` only when every one was sent; `failed` when every one is
//! dead (the escalator then brings the next level forward).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::{from_millis, to_millis};
use crate::{Db, StoreError};

/// Serialises read-then-write transactions on notifications (PostgreSQL advisory lock key;
/// on SQLite `BEGIN IMMEDIATE`, so a deferred read lock is never upgraded into SQLITE_BUSY).
const NOTIFICATIONS_LOCK_KEY: i64 = 0x7669_6769_6c03;

/// Errors kept per notification (the oldest are dropped past this).
pub const MAX_ERRORS: usize = 50;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::Invalid(format!(
                        concat!("unknown ", stringify!($name), " `{}`"), other
                    ))),
                }
            }
        }
    };
}

text_enum!(
    /// How a notification travels.
    Channel {
        Email = "email",
        Webhook = "webhook",
        Slack = "slack",
        Teams = "teams",
        Pagerduty = "pagerduty",
    }
);

text_enum!(
    /// Where a notification stands.
    NotificationStatus {
        Queued = "queued",
        Sent = "sent",
        Retrying = "retrying",
        Dead = "dead",
        Suppressed = "suppressed",
    }
);

text_enum!(
    /// What a notification says: the level's alert, or a PagerDuty follow-up.
    NotificationEvent {
        Trigger = "trigger",
        Acknowledge = "acknowledge",
        Resolve = "resolve",
    }
);

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    pub at: DateTime<Utc>,
    pub error: String,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub alert_id: i64,
    pub escalation_id: i64,
    pub round: i64,
    pub level: i64,
    pub channel: Channel,
    pub event: NotificationEvent,
    /// What delivery uses: the address, the URL, the configured channel's name.
    pub target: String,
    /// What people see (URLs reduced to scheme and host).
    pub target_shown: String,
    pub status: NotificationStatus,
    pub job_id: Option<String>,
    pub attempts: i64,
    /// The provider's answer when sent (`250 ...`, `HTTP 202`).
    pub response_status: Option<String>,
    /// The provider's id for it (Message-ID, PagerDuty dedup key, ...).
    pub response_id: Option<String>,
    pub last_error: Option<String>,
    /// Every failed attempt, oldest first (at most [`MAX_ERRORS`]).
    pub errors: Vec<AttemptError>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, alert_id, escalation_id, round, level, channel, event, target, \
    target_shown, status, job_id, attempts, response_status, response_id, last_error, errors, \
    created_at, updated_at, sent_at";

fn from_row(r: &AnyRow) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: r.try_get("id")?,
        alert_id: r.try_get("alert_id")?,
        escalation_id: r.try_get("escalation_id")?,
        round: r.try_get("round")?,
        level: r.try_get("level")?,
        channel: r.try_get::<String, _>("channel")?.parse()?,
        event: r.try_get::<String, _>("event")?.parse()?,
        target: r.try_get("target")?,
        target_shown: r.try_get("target_shown")?,
        status: r.try_get::<String, _>("status")?.parse()?,
        job_id: r.try_get("job_id")?,
        attempts: r.try_get("attempts")?,
        response_status: r.try_get("response_status")?,
        response_id: r.try_get("response_id")?,
        last_error: r.try_get("last_error")?,
        errors: serde_json::from_str(&r.try_get::<String, _>("errors")?).map_err(|e| {
            StoreError::Invalid(format!("alert_notifications.errors is not valid JSON: {e}"))
        })?,
        created_at: from_millis(r.try_get("created_at")?),
        updated_at: from_millis(r.try_get("updated_at")?),
        sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(from_millis),
    })
}

/// A notification to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub channel: Channel,
    pub event: NotificationEvent,
    pub target: String,
    pub target_shown: String,
}

/// What [`prepare_level`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The level's notifications (new or recorded by an earlier, interrupted run), to queue.
    Queue(Vec<Notification>),
    /// The alert was answered (or reopened into a new round) before the level was queued:
    /// nothing goes out, and the level says so.
    Suppressed,
}

/// Records the notifications of escalation `escalation_id` if its alert is still open in the
/// escalation's round; else marks the level suppressed. Idempotent.
pub async fn prepare_level(
    db: &Db,
    escalation_id: i64,
    new: &[NewNotification],
    now: DateTime<Utc>,
) -> Result<Prepared, StoreError> {
    let now_ms = to_millis(now);
    let mut tx = db.begin_serialized(NOTIFICATIONS_LOCK_KEY).await?;
    let row = sqlx::query(
        "SELECT e.alert_id, e.round, e.level, e.suppressed_at, a.status, a.escalation_round \
         FROM alert_escalations e JOIN alerts a ON a.id = e.alert_id WHERE e.id = $1",
    )
    .bind(escalation_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::Invalid(format!("no escalation {escalation_id}")))?;
    let alert_id: i64 = row.try_get("alert_id")?;
    let round: i64 = row.try_get("round")?;
    let level: i64 = row.try_get("level")?;
    let suppressed: Option<i64> = row.try_get("suppressed_at")?;
    let status: String = row.try_get("status")?;
    let current_round: i64 = row.try_get("escalation_round")?;
    if suppressed.is_some() || status != "open" || current_round != round {
        sqlx::query(
            "UPDATE alert_escalations SET suppressed_at = COALESCE(suppressed_at, $1) WHERE id = $2",
        )
        .bind(now_ms)
        .bind(escalation_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE alert_notifications SET status = 'suppressed', updated_at = $1 \
             WHERE escalation_id = $2 AND status = 'queued' AND job_id IS NULL",
        )
        .bind(now_ms)
        .bind(escalation_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Prepared::Suppressed);
    }
    for n in new {
        sqlx::query(
            "INSERT INTO alert_notifications (alert_id, escalation_id, round, level, channel, \
             event, target, target_shown, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $9) \
             ON CONFLICT (escalation_id, channel, event, target) DO NOTHING",
        )
        .bind(alert_id)
        .bind(escalation_id)
        .bind(round)
        .bind(level)
        .bind(n.channel.as_str())
        .bind(n.event.as_str())
        .bind(&n.target)
        .bind(&n.target_shown)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let all = for_escalation(db, escalation_id).await?;
    Ok(Prepared::Queue(
        all.into_iter()
            .filter(|n| n.event == NotificationEvent::Trigger)
            .collect(),
    ))
}

/// Records one follow-up notification (a PagerDuty acknowledge or resolve) on escalation
/// `escalation_id`; returns it (the existing one when recorded before).
pub async fn record_follow_up(
    db: &Db,
    escalation_id: i64,
    new: &NewNotification,
    now: DateTime<Utc>,
) -> Result<Notification, StoreError> {
    let now_ms = to_millis(now);
    sqlx::query(
        "INSERT INTO alert_notifications (alert_id, escalation_id, round, level, channel, event, \
         target, target_shown, status, created_at, updated_at) \
         SELECT alert_id, id, round, level, $1, $2, $3, $4, 'queued', $5, $5 \
         FROM alert_escalations WHERE id = $6 \
         ON CONFLICT (escalation_id, channel, event, target) DO NOTHING",
    )
    .bind(new.channel.as_str())
    .bind(new.event.as_str())
    .bind(&new.target)
    .bind(&new.target_shown)
    .bind(now_ms)
    .bind(escalation_id)
    .execute(db.pool())
    .await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM alert_notifications WHERE escalation_id = $1 AND channel = $2 \
         AND event = $3 AND target = $4"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(escalation_id)
        .bind(new.channel.as_str())
        .bind(new.event.as_str())
        .bind(&new.target)
        .fetch_one(db.pool())
        .await?;
    from_row(&row)
}

/// Remembers the job that delivers notification `id`.
pub async fn set_job(db: &Db, id: i64, job_id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE alert_notifications SET job_id = $1 WHERE id = $2")
        .bind(job_id)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Records that escalation `escalation_id`'s notifications are queued.
pub async fn mark_queued(
    db: &Db,
    escalation_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE alert_escalations SET queued_at = $1 WHERE id = $2 AND queued_at IS NULL")
        .bind(to_millis(now))
        .bind(escalation_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Records a sent notification with the provider's answer.
pub async fn mark_sent(
    db: &Db,
    id: i64,
    response_status: &str,
    response_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Notification>, StoreError> {
    let now_ms = to_millis(now);
    sqlx::query(
        "UPDATE alert_notifications SET status = 'sent', attempts = attempts + 1, \
         response_status = $1, response_id = $2, sent_at = $3, updated_at = $3 WHERE id = $4",
    )
    .bind(response_status)
    .bind(response_id)
    .bind(now_ms)
    .bind(id)
    .execute(db.pool())
    .await?;
    get(db, id).await
}

/// Records a failed attempt: `retrying`, or `dead` when `dead`. The error joins the list.
pub async fn mark_failed(
    db: &Db,
    id: i64,
    error: &str,
    dead: bool,
    now: DateTime<Utc>,
) -> Result<Option<Notification>, StoreError> {
    let now_ms = to_millis(now);
    let mut tx = db.begin_serialized(NOTIFICATIONS_LOCK_KEY).await?;
    let Some(row) = sqlx::query("SELECT errors FROM alert_notifications WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let mut errors: Vec<AttemptError> =
        serde_json::from_str(&row.try_get::<String, _>("errors")?).unwrap_or_default();
    errors.push(AttemptError {
        at: now,
        error: error.chars().take(2_000).collect(),
    });
    if errors.len() > MAX_ERRORS {
        errors.drain(..errors.len() - MAX_ERRORS);
    }
    let errors = serde_json::to_string(&errors)
        .map_err(|e| StoreError::Invalid(format!("notification errors: {e}")))?;
    sqlx::query(
        "UPDATE alert_notifications SET status = $1, attempts = attempts + 1, last_error = $2, \
         errors = $3, updated_at = $4 WHERE id = $5 AND status <> 'sent'",
    )
    .bind(if dead { "dead" } else { "retrying" })
    .bind(error)
    .bind(errors)
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    get(db, id).await
}

/// Marks notification `id` suppressed (its alert was answered before it went out).
pub async fn mark_suppressed(db: &Db, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE alert_notifications SET status = 'suppressed', updated_at = $1 \
         WHERE id = $2 AND status IN ('queued', 'retrying')",
    )
    .bind(to_millis(now))
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A dead notification back to `queued` for a retry (its errors are kept); `None` when it is
/// not dead. The level's `failed_at` is cleared: it may still be notified.
pub async fn reset_for_retry(
    db: &Db,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Option<Notification>, StoreError> {
    let now_ms = to_millis(now);
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE alert_notifications SET status = 'queued', updated_at = $1 \
         WHERE id = $2 AND status = 'dead'",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    sqlx::query(
        "UPDATE alert_escalations SET failed_at = NULL WHERE id = \
         (SELECT escalation_id FROM alert_notifications WHERE id = $1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    get(db, id).await
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Notification>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM alert_notifications WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Every notification of alert `alert_id`, oldest first.
pub async fn for_alert(db: &Db, alert_id: i64) -> Result<Vec<Notification>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM alert_notifications WHERE alert_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(alert_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Every notification of escalation `escalation_id`, oldest first.
pub async fn for_escalation(db: &Db, escalation_id: i64) -> Result<Vec<Notification>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM alert_notifications WHERE escalation_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(escalation_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Dead notifications, for the metric gauge and the dashboard.
pub async fn count_dead(db: &Db) -> Result<i64, StoreError> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS n FROM alert_notifications WHERE status = 'dead'")
            .fetch_one(db.pool())
            .await?
            .try_get("n")?,
    )
}

/// Where a level's notifications stand, taken together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelState {
    /// Some are queued or retrying.
    Pending,
    /// Every one was sent.
    Notified,
    /// All finished, some sent and some dead (or suppressed).
    Partial,
    /// Every one is dead; `newly`: this call recorded it (exactly one caller sees `true`).
    Failed { newly: bool },
    /// Nothing went out: the alert was answered first.
    Suppressed,
}

/// The state of escalation `escalation_id` from its trigger notifications; records
/// `notified_at` when every one was sent and `failed_at` when every one is dead.
pub async fn settle_level(
    db: &Db,
    escalation_id: i64,
    now: DateTime<Utc>,
) -> Result<LevelState, StoreError> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM alert_notifications \
         WHERE escalation_id = $1 AND event = 'trigger' GROUP BY status",
    )
    .bind(escalation_id)
    .fetch_all(db.pool())
    .await?;
    let mut counts = std::collections::HashMap::new();
    for r in &rows {
        let status: NotificationStatus = r.try_get::<String, _>("status")?.parse()?;
        counts.insert(status, r.try_get::<i64, _>("n")?);
    }
    let n = |s| counts.get(&s).copied().unwrap_or(0);
    let total: i64 = counts.values().sum();
    let (sent, dead, suppressed) = (
        n(NotificationStatus::Sent),
        n(NotificationStatus::Dead),
        n(NotificationStatus::Suppressed),
    );
    let now_ms = to_millis(now);
    if total == 0 || n(NotificationStatus::Queued) + n(NotificationStatus::Retrying) > 0 {
        return Ok(LevelState::Pending);
    }
    if sent == total {
        sqlx::query(
            "UPDATE alert_escalations SET notified_at = $1 WHERE id = $2 AND notified_at IS NULL",
        )
        .bind(now_ms)
        .bind(escalation_id)
        .execute(db.pool())
        .await?;
        return Ok(LevelState::Notified);
    }
    if dead == total {
        let done = sqlx::query(
            "UPDATE alert_escalations SET failed_at = $1 WHERE id = $2 AND failed_at IS NULL",
        )
        .bind(now_ms)
        .bind(escalation_id)
        .execute(db.pool())
        .await?;
        return Ok(LevelState::Failed {
            newly: done.rows_affected() == 1,
        });
    }
    if suppressed == total {
        return Ok(LevelState::Suppressed);
    }
    Ok(LevelState::Partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), *c);
        }
        for s in NotificationStatus::ALL {
            assert_eq!(s.as_str().parse::<NotificationStatus>().unwrap(), *s);
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
