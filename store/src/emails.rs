//! Email deliveries: one row per message, from the first attempt to `sent` or `dead`.
//!
//! A row is keyed by its `dedup_key` (`key:<idempotency key>` when the job has one, else
//! `job:<job id>`), so a re-delivered job, or two jobs sharing an idempotency key, find the
//! same row. An attempt first moves the row to `sending` with a compare-and-set
//! ([`start_attempt`]): only one worker sends at a time, and a row already `sent` is never
//! sent again.
//!
//! Status: `queued` (recorded, not tried) → `sending` → `sent` | `failed` (retryable, tried
//! again by the next attempt) | `dead` (permanent failure).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::{from_millis, now_millis};
use crate::{Db, StoreError};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    Queued,
    Sending,
    Sent,
    Failed,
    Dead,
}

impl EmailStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Queued => "queued",
            EmailStatus::Sending => "sending",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
            EmailStatus::Dead => "dead",
        }
    }
}

impl fmt::Display for EmailStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EmailStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => EmailStatus::Queued,
            "sending" => EmailStatus::Sending,
            "sent" => EmailStatus::Sent,
            "failed" => EmailStatus::Failed,
            "dead" => EmailStatus::Dead,
            other => {
                return Err(StoreError::Invalid(format!(
                    "unknown email status `{other}`; expected queued, sending, sent, failed or dead"
                )));
            }
        })
    }
}

/// One delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailRecord {
    pub id: i64,
    pub dedup_key: String,
    /// The job that first recorded it.
    pub job_id: String,
    pub idempotency_key: Option<String>,
    /// The `Message-ID` header (with angle brackets), the same on every attempt.
    pub message_id: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub template: Option<String>,
    pub status: EmailStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// The SMTP server's last reply (`250 2.0.0 queued as ...`, `550 5.1.1 no such user`).
    pub smtp_reply: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// What [`record`] stores for a new delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmail {
    pub dedup_key: String,
    pub job_id: String,
    pub idempotency_key: Option<String>,
    pub message_id: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub template: Option<String>,
}

/// The dedup key of a job's delivery.
pub fn dedup_key(job_id: &str, idempotency_key: Option<&str>) -> String {
    match idempotency_key {
        Some(key) => format!("key:{key}"),
        None => format!("job:{job_id}"),
    }
}

const COLUMNS: &str = "id, dedup_key, job_id, idempotency_key, message_id, recipients, subject, \
                       template, status, attempts, last_error, smtp_reply, created_at, \
                       updated_at, sent_at";

fn from_row(row: &AnyRow) -> Result<EmailRecord, StoreError> {
    let recipients: String = row.try_get("recipients")?;
    let status: String = row.try_get("status")?;
    let sent_at: Option<i64> = row.try_get("sent_at")?;
    Ok(EmailRecord {
        id: row.try_get("id")?,
        dedup_key: row.try_get("dedup_key")?,
        job_id: row.try_get("job_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        message_id: row.try_get("message_id")?,
        recipients: serde_json::from_str(&recipients)
            .map_err(|e| StoreError::Invalid(format!("stored recipients are not JSON: {e}")))?,
        subject: row.try_get("subject")?,
        template: row.try_get("template")?,
        status: status.parse()?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        smtp_reply: row.try_get("smtp_reply")?,
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
        sent_at: sent_at.map(from_millis),
    })
}

/// Records a delivery as `queued`, or returns the row already recorded under its dedup key
/// (whatever its status).
pub async fn record(db: &Db, new: &NewEmail) -> Result<EmailRecord, StoreError> {
    let now = now_millis();
    let recipients = serde_json::to_string(&new.recipients)
        .map_err(|e| StoreError::Invalid(format!("recipients: {e}")))?;
    sqlx::query(
        "INSERT INTO emails (dedup_key, job_id, idempotency_key, message_id, recipients, subject, \
         template, status, attempts, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $9) \
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(new.dedup_key.as_str())
    .bind(new.job_id.as_str())
    .bind(new.idempotency_key.as_deref())
    .bind(new.message_id.as_str())
    .bind(recipients)
    .bind(new.subject.as_str())
    .bind(new.template.as_deref())
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    find_by_dedup_key(db, &new.dedup_key).await?.ok_or_else(|| {
        StoreError::Invalid(format!("email `{}` vanished after insert", new.dedup_key))
    })
}

/// Moves a delivery to `sending` and counts the attempt, if no other attempt holds it: the
/// row must be `queued` or `failed`, or `sending` with an expired lease (a worker that died
/// mid-send). Returns false when another attempt holds it or it is already `sent`/`dead`.
pub async fn start_attempt(db: &Db, id: i64, lease_ms: i64) -> Result<bool, StoreError> {
    let now = now_millis();
    let done = sqlx::query(
        "UPDATE emails SET status = 'sending', attempts = attempts + 1, lease_until = $1, \
         updated_at = $2 \
         WHERE id = $3 AND (status IN ('queued', 'failed') \
                            OR (status = 'sending' AND lease_until < $4))",
    )
    .bind(now + lease_ms)
    .bind(now)
    .bind(id)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hands a delivery to a later attempt of its job: a `dead` row is reopened (the job was
/// retried by an operator) and a `sending` row's claim is released (the attempt that held it
/// lost its job lease, so the engine already gave the job to this one). Returns whether a row
/// changed.
pub async fn supersede(db: &Db, id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE emails SET status = 'failed', lease_until = NULL, updated_at = $1 \
         WHERE id = $2 AND status IN ('dead', 'sending')",
    )
    .bind(now_millis())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a successful send with the server's reply.
pub async fn mark_sent(db: &Db, id: i64, smtp_reply: &str) -> Result<(), StoreError> {
    let now = now_millis();
    sqlx::query(
        "UPDATE emails SET status = 'sent', smtp_reply = $1, last_error = NULL, \
         lease_until = NULL, sent_at = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(smtp_reply)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Records a failed attempt: `failed` (another attempt may follow) or `dead`.
pub async fn mark_failed(
    db: &Db,
    id: i64,
    status: EmailStatus,
    error: &str,
    smtp_reply: Option<&str>,
) -> Result<(), StoreError> {
    if !matches!(status, EmailStatus::Failed | EmailStatus::Dead) {
        return Err(StoreError::Invalid(format!(
            "a failed attempt ends in failed or dead, not {status}"
        )));
    }
    sqlx::query(
        "UPDATE emails SET status = $1, last_error = $2, smtp_reply = COALESCE($3, smtp_reply), \
         lease_until = NULL, updated_at = $4 WHERE id = $5",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(smtp_reply)
    .bind(now_millis())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// One delivery by id.
pub async fn get(db: &Db, id: i64) -> Result<Option<EmailRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM emails WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// One delivery by dedup key.
pub async fn find_by_dedup_key(db: &Db, key: &str) -> Result<Option<EmailRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM emails WHERE dedup_key = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPage {
    pub items: Vec<EmailRecord>,
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

/// The largest page [`list`] returns.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Deliveries, newest first, optionally of one status. `page` counts from 1.
pub async fn list(
    db: &Db,
    status: Option<EmailStatus>,
    page: u32,
    page_size: u32,
) -> Result<EmailPage, StoreError> {
    let page = page.max(1);
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    let offset = i64::from(page - 1) * i64::from(page_size);
    let (total, rows) = match status {
        Some(s) => {
            let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM emails WHERE status = $1")
                .bind(s.as_str())
                .fetch_one(db.pool())
                .await?
                .try_get("n")?;
            let sql = format!(
                "SELECT {COLUMNS} FROM emails WHERE status = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(s.as_str())
                .bind(i64::from(page_size))
                .bind(offset)
                .fetch_all(db.pool())
                .await?;
            (total, rows)
        }
        None => {
            let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM emails")
                .fetch_one(db.pool())
                .await?
                .try_get("n")?;
            let sql = format!("SELECT {COLUMNS} FROM emails ORDER BY id DESC LIMIT $1 OFFSET $2");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(i64::from(page_size))
                .bind(offset)
                .fetch_all(db.pool())
                .await?;
            (total, rows)
        }
    };
    Ok(EmailPage {
        items: rows.iter().map(from_row).collect::<Result<_, _>>()?,
        total: total.max(0) as u64,
        page,
        page_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_keys() {
        for s in ["queued", "sending", "sent", "failed", "dead"] {
            assert_eq!(s.parse::<EmailStatus>().unwrap().as_str(), s);
        }
        assert!("bounced".parse::<EmailStatus>().is_err());
        assert_eq!(dedup_key("01J", None), "job:01J");
        assert_eq!(dedup_key("01J", Some("alert-7-l1")), "key:alert-7-l1");
    }
}
