//! Where Okta polling resumes, committed atomically with the events that moved it.
//!
//! Okta's polling cursor is the `next` link of the last page (an opaque `after` value inside
//! a URL). [`commit_page`] stores a page's events and that link in ONE transaction: a crash
//! can lose neither an event whose page advanced the cursor, nor the cursor of stored events
//! (a replayed page is harmless anyway: events are unique by uuid).
//!
//! A page the database refuses is stored event by event
//! ([`events::insert_isolating_in`]): the refused events join the page's malformed ones and
//! the cursor moves on, so one event can never stop ingestion.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::events::{self, MalformedEvent, NewEvent, StoredEvent};

/// What [`commit_page`] stored.
#[derive(Debug, Default)]
pub struct Committed {
    /// Events stored for the first time, in page order.
    pub new: Vec<StoredEvent>,
    /// Parsed events the database refused, recorded as malformed with its reason.
    pub refused: Vec<MalformedEvent>,
}
use crate::time::{from_millis, now_millis, to_millis};
use crate::{Db, StoreError};

/// The cursor row used for the single configured Okta org.
pub const DEFAULT_SOURCE: &str = "default";

/// A stored polling cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The `next` link to request.
    pub next_url: String,
    /// The newest `published` of the page that produced it (for a fallback restart).
    pub last_published: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// The cursor of `source`, if polling ever committed a page.
pub async fn load(db: &Db, source: &str) -> Result<Option<Cursor>, StoreError> {
    let row = sqlx::query(
        "SELECT next_url, last_published, updated_at FROM okta_cursor WHERE source = $1",
    )
    .bind(source)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        let last: Option<i64> = row.try_get("last_published")?;
        Ok(Cursor {
            next_url: row.try_get("next_url")?,
            last_published: last.map(from_millis),
            updated_at: from_millis(row.try_get("updated_at")?),
        })
    })
    .transpose()
}

/// Forgets the cursor of `source` (the next poll starts from its initial window).
pub async fn clear(db: &Db, source: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM okta_cursor WHERE source = $1")
        .bind(source)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Stores a page in one transaction: its events (deduplicated by uuid), its malformed
/// events, the events the database refuses (as malformed), and — when `next_url` is given
/// (polling) — the cursor to resume from.
pub async fn commit_page(
    db: &Db,
    source: &str,
    page: &[NewEvent],
    malformed: &[MalformedEvent],
    next_url: Option<&str>,
) -> Result<Committed, StoreError> {
    let mut tx = db.begin_write().await?;
    let stored = events::insert_isolating_in(&mut tx, page).await?;
    events::record_malformed_in(&mut tx, malformed).await?;
    events::record_malformed_in(&mut tx, &stored.refused).await?;
    if let Some(next) = next_url {
        let last = page.iter().map(|e| to_millis(e.published)).max();
        sqlx::query(
            "INSERT INTO okta_cursor (source, next_url, last_published, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (source) DO UPDATE SET next_url = excluded.next_url, \
             last_published = COALESCE(excluded.last_published, okta_cursor.last_published), \
             updated_at = excluded.updated_at",
        )
        .bind(source)
        .bind(next)
        .bind(last)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Committed {
        new: stored.new,
        refused: stored.refused,
    })
}
