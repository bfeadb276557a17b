//! Okta System Log events: stored once by `uuid`, read back for the API and detection.
//!
//! Each event keeps its raw JSON exactly as Okta sent it, plus the columns the API filters
//! on (type, actor, outcome, IP, time). Inserts are batched multi-row statements with
//! `ON CONFLICT(uuid) DO NOTHING ... RETURNING`, so a page fetched twice (a retry, a restart,
//! an overlap) is stored once and the caller learns which events were new. Events that cannot
//! be read go to `okta_malformed_events` instead of blocking the stream.
//!
//! No event can block the stream: columns hold the [`storable`](crate::storable) form of
//! each value (bounded when indexed, no NUL), and when the database still refuses a batch,
//! [`insert_isolating_in`] stores its events one by one, each under its own savepoint, and
//! hands back the refused ones with the database's reason, for the malformed table.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

use crate::storable::{blames_the_row, indexed_form, text_form};
use crate::time::{from_millis, now_millis, to_millis};
use crate::{Db, StoreError};

/// Rows per INSERT statement: 19 parameters each stays far below both engines' limits.
const INSERT_CHUNK: usize = 500;

/// The longest event uuid stored (Okta's are 36 characters); the API's limit too. Ingestion
/// records an event with a longer uuid as malformed, so every stored event can be read back
/// by `GET /api/v1/events/{uuid}`.
pub const MAX_UUID_LEN: usize = 100;

/// The org of events stored without one: the single `[okta]` section's org.
pub const DEFAULT_ORG: &str = "default";

/// The largest page [`list`] returns.
pub const MAX_PAGE: u32 = 1000;

/// An event about to be stored: extracted columns plus the raw JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub uuid: String,
    pub published: DateTime<Utc>,
    pub event_type: String,
    pub severity: Option<String>,
    pub actor_id: Option<String>,
    pub actor_alternate_id: Option<String>,
    pub actor_display_name: Option<String>,
    pub client_ip: Option<String>,
    pub country: Option<String>,
    pub outcome_result: Option<String>,
    pub outcome_reason: Option<String>,
    pub display_message: Option<String>,
    pub transaction_id: Option<String>,
    /// The event exactly as received.
    pub raw: String,
    /// The `published` Okta reported when it lay further in the future than the allowed
    /// clock skew; `published` then holds the time of receipt ([`NewEvent::clamp_future`]).
    pub published_reported: Option<DateTime<Utc>>,
    /// The Okta org it came from (`[[okta.orgs]] name`; [`DEFAULT_ORG`] for `[okta]`).
    pub org: String,
    /// The app the event is about (`target[type=AppInstance].id`), for behavioural rules.
    pub app_id: Option<String>,
    /// That app's `detailEntry.signOnModeType` (`BROWSER_PLUGIN` for an SWA app, ...).
    pub app_sign_on_mode: Option<String>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: i64,
    pub uuid: String,
    pub published: DateTime<Utc>,
    pub event_type: String,
    pub severity: Option<String>,
    pub actor_id: Option<String>,
    pub actor_alternate_id: Option<String>,
    pub actor_display_name: Option<String>,
    pub client_ip: Option<String>,
    pub country: Option<String>,
    pub outcome_result: Option<String>,
    pub outcome_reason: Option<String>,
    pub display_message: Option<String>,
    pub transaction_id: Option<String>,
    pub raw: String,
    pub ingested_at: DateTime<Utc>,
    /// Set when `published` was clamped: what Okta reported (see [`NewEvent::clamp_future`]).
    pub published_reported: Option<DateTime<Utc>>,
    /// The Okta org it came from.
    pub org: String,
}

impl NewEvent {
    /// Clock sanity: when `published` lies more than `max_skew` after `received`, keeps it
    /// in `published_reported` (flagged) and stores `received` as `published`, so the event
    /// does not sit on top of every newest-first list nor fake the ingestion lag. Returns
    /// whether it was clamped.
    pub fn clamp_future(&mut self, received: DateTime<Utc>, max_skew: chrono::Duration) -> bool {
        match received.checked_add_signed(max_skew) {
            Some(limit) if self.published > limit => {}
            _ => return false,
        }
        self.published_reported = Some(self.published);
        self.published = received;
        true
    }

    /// This event as the columns hold it: indexed columns in their [`indexed_form`], other
    /// text in its [`text_form`]; `uuid` and `raw` unchanged (ingestion checks the uuid,
    /// and raw JSON text cannot hold a NUL byte).
    pub fn storable(&self) -> NewEvent {
        let idx = |s: &String| indexed_form(s).into_owned();
        let opt_idx = |s: &Option<String>| s.as_deref().map(|s| indexed_form(s).into_owned());
        let txt = |s: &Option<String>| s.as_deref().map(|s| text_form(s).into_owned());
        NewEvent {
            uuid: self.uuid.clone(),
            published: self.published,
            event_type: idx(&self.event_type),
            severity: txt(&self.severity),
            actor_id: opt_idx(&self.actor_id),
            actor_alternate_id: opt_idx(&self.actor_alternate_id),
            actor_display_name: txt(&self.actor_display_name),
            client_ip: opt_idx(&self.client_ip),
            country: txt(&self.country),
            outcome_result: opt_idx(&self.outcome_result),
            outcome_reason: txt(&self.outcome_reason),
            display_message: txt(&self.display_message),
            transaction_id: txt(&self.transaction_id),
            raw: self.raw.clone(),
            published_reported: self.published_reported,
            org: self.org.clone(),
            app_id: opt_idx(&self.app_id),
            app_sign_on_mode: opt_idx(&self.app_sign_on_mode),
        }
    }
}

impl StoredEvent {
    fn from_new(e: &NewEvent, id: i64, ingested_at: i64) -> StoredEvent {
        StoredEvent {
            id,
            uuid: e.uuid.clone(),
            published: e.published,
            event_type: e.event_type.clone(),
            severity: e.severity.clone(),
            actor_id: e.actor_id.clone(),
            actor_alternate_id: e.actor_alternate_id.clone(),
            actor_display_name: e.actor_display_name.clone(),
            client_ip: e.client_ip.clone(),
            country: e.country.clone(),
            outcome_result: e.outcome_result.clone(),
            outcome_reason: e.outcome_reason.clone(),
            display_message: e.display_message.clone(),
            transaction_id: e.transaction_id.clone(),
            raw: e.raw.clone(),
            ingested_at: from_millis(ingested_at),
            published_reported: e.published_reported,
            org: e.org.clone(),
        }
    }
}

/// An event that could not be read, kept for a human to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedEvent {
    /// The event's uuid when one could be read.
    pub uuid: Option<String>,
    /// What was wrong, e.g. "missing uuid".
    pub reason: String,
    /// The event's JSON text as received.
    pub raw: String,
}

const COLUMNS: &str = "id, uuid, published, event_type, severity, actor_id, actor_alternate_id, \
    actor_display_name, client_ip, country, outcome_result, outcome_reason, display_message, \
    transaction_id, raw, ingested_at, published_reported, org";

fn event_from_row(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        id: row.try_get("id")?,
        uuid: row.try_get("uuid")?,
        published: from_millis(row.try_get("published")?),
        event_type: row.try_get("event_type")?,
        severity: row.try_get("severity")?,
        actor_id: row.try_get("actor_id")?,
        actor_alternate_id: row.try_get("actor_alternate_id")?,
        actor_display_name: row.try_get("actor_display_name")?,
        client_ip: row.try_get("client_ip")?,
        country: row.try_get("country")?,
        outcome_result: row.try_get("outcome_result")?,
        outcome_reason: row.try_get("outcome_reason")?,
        display_message: row.try_get("display_message")?,
        transaction_id: row.try_get("transaction_id")?,
        raw: row.try_get("raw")?,
        ingested_at: from_millis(row.try_get("ingested_at")?),
        published_reported: row
            .try_get::<Option<i64>, _>("published_reported")?
            .map(from_millis),
        org: row.try_get("org")?,
    })
}

/// Stores `events` in one transaction; returns the ones that were new, in input order.
pub async fn insert_batch(db: &Db, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
    let mut tx = db.begin_write().await?;
    let new = insert_batch_in(&mut tx, events).await?;
    tx.commit().await?;
    Ok(new)
}

/// Stores `events` on `conn` (inside the caller's transaction); returns the new ones, in
/// input order. A uuid already stored, or repeated within `events`, is skipped. Values are
/// stored in their [`NewEvent::storable`] form.
pub async fn insert_batch_in(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<Vec<StoredEvent>, StoreError> {
    let events: Vec<NewEvent> = events.iter().map(NewEvent::storable).collect();
    let events = events.as_slice();
    let ingested_at = now_millis();
    let mut ids: HashMap<String, i64> = HashMap::with_capacity(events.len());
    for chunk in events.chunks(INSERT_CHUNK) {
        let sql = insert_sql(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(e.uuid.as_str())
                .bind(to_millis(e.published))
                .bind(e.event_type.as_str())
                .bind(e.severity.as_deref())
                .bind(e.actor_id.as_deref())
                .bind(e.actor_alternate_id.as_deref())
                .bind(e.actor_display_name.as_deref())
                .bind(e.client_ip.as_deref())
                .bind(e.country.as_deref())
                .bind(e.outcome_result.as_deref())
                .bind(e.outcome_reason.as_deref())
                .bind(e.display_message.as_deref())
                .bind(e.transaction_id.as_deref())
                .bind(e.raw.as_str())
                .bind(ingested_at)
                .bind(e.published_reported.map(to_millis))
                .bind(e.org.as_str())
                .bind(e.app_id.as_deref())
                .bind(e.app_sign_on_mode.as_deref());
        }
        for row in q.fetch_all(&mut *conn).await? {
            let id: i64 = row.try_get("id")?;
            let uuid: String = row.try_get("uuid")?;
            ids.insert(uuid, id);
        }
    }
    let mut new = Vec::with_capacity(ids.len());
    for e in events {
        // `remove` also drops a uuid repeated later in the same batch.
        if let Some(id) = ids.remove(&e.uuid) {
            new.push(StoredEvent::from_new(e, id, ingested_at));
        }
    }
    Ok(new)
}

/// What [`insert_isolating_in`] did with a batch.
#[derive(Debug, Default)]
pub struct Isolated {
    /// The events stored for the first time, in input order.
    pub new: Vec<StoredEvent>,
    /// The events the database refused, each with its reason, for the malformed table.
    pub refused: Vec<MalformedEvent>,
}

/// Like [`insert_batch_in`], but a batch the database refuses does not fail: it is stored
/// again event by event, each under its own savepoint, and an event refused alone is handed
/// back in [`Isolated::refused`] with the database's message. Errors that do not blame the
/// data (a lost connection, a timeout) still fail the call, so the caller retries later
/// instead of recording good events as malformed.
pub async fn insert_isolating_in(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<Isolated, StoreError> {
    match savepoint(conn, events).await {
        Ok(new) => {
            return Ok(Isolated {
                new,
                refused: Vec::new(),
            });
        }
        Err(StoreError::Sql(e)) if blames_the_row(&e) => {
            tracing::warn!(error = %e, events = events.len(),
                "the database refused a page of events; storing them one by one");
        }
        Err(e) => return Err(e),
    }
    let mut out = Isolated::default();
    for e in events {
        match savepoint(conn, std::slice::from_ref(e)).await {
            Ok(new) => out.new.extend(new),
            Err(StoreError::Sql(err)) if blames_the_row(&err) => {
                let reason = match &err {
                    sqlx::Error::Database(db) => {
                        format!("the database refused it: {}", db.message())
                    }
                    other => format!("the database refused it: {other}"),
                };
                tracing::warn!(uuid = %e.uuid, %reason, "an event the database refuses is kept as malformed");
                out.refused.push(MalformedEvent {
                    uuid: Some(e.uuid.clone()),
                    reason,
                    raw: e.raw.clone(),
                });
            }
            Err(other) => return Err(other),
        }
    }
    Ok(out)
}

/// [`insert_batch_in`] under a savepoint: on failure only this insert is undone.
async fn savepoint(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut sp = sqlx::Connection::begin(&mut *conn).await?;
    match insert_batch_in(&mut sp, events).await {
        Ok(new) => {
            sp.commit().await?;
            Ok(new)
        }
        Err(e) => {
            sp.rollback().await?;
            Err(e)
        }
    }
}

fn insert_sql(rows: usize) -> String {
    const PER_ROW: usize = 19;
    let mut sql = String::with_capacity(200 + rows * 80);
    sql.push_str(
        "INSERT INTO events (uuid, published, event_type, severity, actor_id, \
         actor_alternate_id, actor_display_name, client_ip, country, outcome_result, \
         outcome_reason, display_message, transaction_id, raw, ingested_at, \
         published_reported, org, app_id, app_sign_on_mode) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..PER_ROW {
            if c > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(r * PER_ROW + c + 1).to_string());
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (uuid) DO NOTHING RETURNING id, uuid");
    sql
}

/// Marks events `ids` as run through detection.
pub async fn mark_detected(db: &Db, ids: &[i64], now: DateTime<Utc>) -> Result<(), StoreError> {
    for chunk in ids.chunks(INSERT_CHUNK) {
        let placeholders = (2..chunk.len() + 2)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("UPDATE events SET detected_at = $1 WHERE id IN ({placeholders})");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to_millis(now));
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(db.pool()).await?;
    }
    Ok(())
}

/// Events stored before `before` that detection has not marked (a crash in between), oldest
/// first, at most `limit`.
pub async fn undetected(
    db: &Db,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE detected_at IS NULL AND ingested_at < $1 \
         ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_millis(before))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// The events among `ids` that detection has not marked yet, in id order.
pub async fn undetected_by_ids(db: &Db, ids: &[i64]) -> Result<Vec<StoredEvent>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(INSERT_CHUNK) {
        let placeholders = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE detected_at IS NULL AND id IN ({placeholders}) \
             ORDER BY id"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(db.pool()).await? {
            found.push(event_from_row(&row)?);
        }
    }
    Ok(found)
}

/// Records events that could not be read (inside the caller's transaction).
pub async fn record_malformed_in(
    conn: &mut AnyConnection,
    malformed: &[MalformedEvent],
) -> Result<(), StoreError> {
    let now = now_millis();
    for m in malformed {
        sqlx::query(
            "INSERT INTO okta_malformed_events (uuid, reason, raw, received_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(m.uuid.as_deref().map(|u| indexed_form(u).into_owned()))
        .bind(text_form(&m.reason).into_owned())
        .bind(text_form(&m.raw).into_owned())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// How many malformed events were recorded.
pub async fn malformed_count(db: &Db) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM okta_malformed_events")
        .fetch_one(db.pool())
        .await?;
    Ok(row.try_get("n")?)
}

/// How many events are stored.
pub async fn count(db: &Db) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM events")
        .fetch_one(db.pool())
        .await?;
    Ok(row.try_get("n")?)
}

/// The newest `published` stored, if any (clamped events left out: their `published` is
/// the time of receipt, not Okta's).
pub async fn newest_published(db: &Db) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row =
        sqlx::query("SELECT MAX(published) AS p FROM events WHERE published_reported IS NULL")
            .fetch_one(db.pool())
            .await?;
    let p: Option<i64> = row.try_get("p")?;
    Ok(p.map(from_millis))
}

/// [`newest_published`] among the events of `org`.
pub async fn newest_published_of(db: &Db, org: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = sqlx::query(
        "SELECT MAX(published) AS p FROM events WHERE org = $1 AND published_reported IS NULL",
    )
    .bind(org)
    .fetch_one(db.pool())
    .await?;
    let p: Option<i64> = row.try_get("p")?;
    Ok(p.map(from_millis))
}

/// One event by uuid, with its raw JSON.
pub async fn get(db: &Db, uuid: &str) -> Result<Option<StoredEvent>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE uuid = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(uuid)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(event_from_row).transpose()
}

/// The stored events among `uuids`, by uuid (one query per 500).
pub async fn get_many(
    db: &Db,
    uuids: &[String],
) -> Result<HashMap<String, StoredEvent>, StoreError> {
    let mut found = HashMap::with_capacity(uuids.len());
    for chunk in uuids.chunks(INSERT_CHUNK) {
        let placeholders = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {COLUMNS} FROM events WHERE uuid IN ({placeholders})");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for uuid in chunk {
            q = q.bind(uuid.as_str());
        }
        for row in q.fetch_all(db.pool()).await? {
            let e = event_from_row(&row)?;
            found.insert(e.uuid.clone(), e);
        }
    }
    Ok(found)
}

/// Filters and pagination of [`list`]. Every filter is optional; all given ones must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Exact `eventType`, e.g. `user.session.start`.
    pub event_type: Option<String>,
    /// Matches the actor's `alternateId` (login) or `id`.
    pub actor: Option<String>,
    /// Exact `outcome.result`, e.g. `FAILURE`.
    pub outcome: Option<String>,
    /// Exact `client.ipAddress`.
    pub ip: Option<String>,
    /// `published >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `published < until`.
    pub until: Option<DateTime<Utc>>,
    /// Exact org name (`[[okta.orgs]] name`).
    pub org: Option<String>,
    /// Page size (1..=[`MAX_PAGE`]).
    pub limit: u32,
    /// Rows to skip (page pagination); ignored when `cursor` is set.
    pub offset: u64,
    /// Continue after this cursor (from [`EventPage::next_cursor`]).
    pub cursor: Option<String>,
}

/// One page of [`list`], newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    /// Pass back as [`EventQuery::cursor`] for the next (older) page; `None` on the last one.
    pub next_cursor: Option<String>,
    /// Events matching the filters (whatever the cursor or page).
    pub total: u64,
}

fn parse_cursor(c: &str) -> Result<(i64, i64), StoreError> {
    let bad = || StoreError::Invalid("cursor is not one this server issued".to_owned());
    let (p, id) = c.split_once('_').ok_or_else(bad)?;
    Ok((
        p.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

/// Events matching `q`, newest `published` first (ties by id, newest first).
pub async fn list(db: &Db, q: &EventQuery) -> Result<EventPage, StoreError> {
    let limit = q.limit.clamp(1, MAX_PAGE);
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE 1 = 1");
    let mut n = 0;
    let mut ph = || {
        n += 1;
        format!("${n}")
    };
    enum Arg<'a> {
        S(&'a str),
        I(i64),
    }
    let mut args: Vec<Arg<'_>> = Vec::new();
    // Filter values in the form the indexed columns hold (bounded, no NUL).
    let event_type = q.event_type.as_deref().map(indexed_form);
    let actor = q.actor.as_deref().map(indexed_form);
    let outcome = q.outcome.as_deref().map(indexed_form);
    let ip = q.ip.as_deref().map(indexed_form);
    if let Some(t) = &event_type {
        sql.push_str(&format!(" AND event_type = {}", ph()));
        args.push(Arg::S(t));
    }
    if let Some(a) = &actor {
        sql.push_str(&format!(
            " AND (actor_alternate_id = {} OR actor_id = {})",
            ph(),
            ph()
        ));
        args.push(Arg::S(a));
        args.push(Arg::S(a));
    }
    if let Some(o) = &outcome {
        sql.push_str(&format!(" AND outcome_result = {}", ph()));
        args.push(Arg::S(o));
    }
    if let Some(ip) = &ip {
        sql.push_str(&format!(" AND client_ip = {}", ph()));
        args.push(Arg::S(ip));
    }
    if let Some(org) = &q.org {
        sql.push_str(&format!(" AND org = {}", ph()));
        args.push(Arg::S(org));
    }
    if let Some(s) = q.since {
        sql.push_str(&format!(" AND published >= {}", ph()));
        args.push(Arg::I(to_millis(s)));
    }
    if let Some(u) = q.until {
        sql.push_str(&format!(" AND published < {}", ph()));
        args.push(Arg::I(to_millis(u)));
    }
    // The filters alone, for the count.
    let count_sql = sql.replacen(&format!("SELECT {COLUMNS}"), "SELECT COUNT(*) AS n", 1);
    let count_args = args.len();
    if let Some(c) = &q.cursor {
        let (p, id) = parse_cursor(c)?;
        sql.push_str(&format!(
            " AND (published < {} OR (published = {} AND id < {}))",
            ph(),
            ph(),
            ph()
        ));
        args.extend([Arg::I(p), Arg::I(p), Arg::I(id)]);
    }
    sql.push_str(&format!(" ORDER BY published DESC, id DESC LIMIT {}", ph()));
    args.push(Arg::I(i64::from(limit) + 1));
    if q.cursor.is_none() && q.offset > 0 {
        sql.push_str(&format!(" OFFSET {}", ph()));
        args.push(Arg::I(i64::try_from(q.offset).unwrap_or(i64::MAX)));
    }
    let mut count = sqlx::query(sqlx::AssertSqlSafe(count_sql));
    for a in &args[..count_args] {
        count = match a {
            Arg::S(s) => count.bind(*s),
            Arg::I(i) => count.bind(*i),
        };
    }
    let total: i64 = count.fetch_one(db.pool()).await?.try_get("n")?;
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in args {
        query = match a {
            Arg::S(s) => query.bind(s),
            Arg::I(i) => query.bind(i),
        };
    }
    let rows = query.fetch_all(db.pool()).await?;
    let mut events = rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events
            .last()
            .map(|e| format!("{}_{}", to_millis(e.published), e.id))
    } else {
        None
    };
    Ok(EventPage {
        events,
        next_cursor,
        total: u64::try_from(total).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_every_placeholder() {
        let sql = insert_sql(2);
        assert!(sql.contains("($1,$2,"));
        assert!(sql.contains(",$38)"));
        assert!(!sql.contains("$39"));
    }

    #[test]
    fn cursors_parse_or_are_refused() {
        assert_eq!(
            parse_cursor("1700000000000_42").unwrap(),
            (1700000000000, 42)
        );
        assert!(parse_cursor("x").is_err());
        assert!(parse_cursor("1_x").is_err());
    }
}
