//! Alerts: raised by detection rules and security events, answered by people, escalated
//! until they are.
//!
//! # Raising
//! [`raise`] runs in one serialised transaction (see [`Db::begin_serialized`]): it looks for
//! the active (open or acknowledged) alert of the same rule and grouping key whose dedup
//! window still covers the event. Found: the event is linked to it and, if that link is new,
//! the count and `last_seen` move. Not found: a new alert opens, linked to every event of the
//! window that fired it. Links are unique per (alert, event), so raising twice on the same
//! event (a re-delivered job, two workers) changes nothing.
//!
//! # Transitions
//! `open → acknowledged → resolved`, `open → resolved`, and `reopen` from acknowledged or
//! resolved back to open. Each is a compare-and-set on the status, recorded in
//! `alert_transitions` with its actor and comment; anything else is [`TransitionOutcome::Invalid`].
//!
//! # Escalation bookkeeping
//! `escalation_level` is the last level reached and `next_escalation_at` when the next one is
//! due (NULL: none, or the alert is not open). [`claim_level`] moves one level forward with a
//! compare-and-set on the level, so each level is claimed once however many runs race for
//! it, and records the level in `alert_escalations` with `notified_at` NULL until its
//! notifications are queued ([`mark_notified`]); [`unnotified`] finds levels a crash left
//! half-done.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::{from_millis, to_millis};
use crate::{Db, StoreError};

/// Serialises alert raises across instances (PostgreSQL advisory lock key).
const ALERTS_LOCK_KEY: i64 = 0x7669_6769_6c02;
/// The largest page [`list`] returns.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(AlertStatus::Open),
            "acknowledged" => Ok(AlertStatus::Acknowledged),
            "resolved" => Ok(AlertStatus::Resolved),
            other => Err(StoreError::Invalid(format!(
                "unknown alert status `{other}`; expected open, acknowledged or resolved"
            ))),
        }
    }
}

/// What a person does to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    Acknowledge,
    Resolve,
    Reopen,
}

impl AlertAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertAction::Acknowledge => "acknowledge",
            AlertAction::Resolve => "resolve",
            AlertAction::Reopen => "reopen",
        }
    }

    /// The statuses this action may start from, and where it leads.
    pub const fn transition(self) -> (&'static [AlertStatus], AlertStatus) {
        match self {
            AlertAction::Acknowledge => (&[AlertStatus::Open], AlertStatus::Acknowledged),
            AlertAction::Resolve => (
                &[AlertStatus::Open, AlertStatus::Acknowledged],
                AlertStatus::Resolved,
            ),
            AlertAction::Reopen => (
                &[AlertStatus::Acknowledged, AlertStatus::Resolved],
                AlertStatus::Open,
            ),
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    pub rule_id: String,
    pub title: String,
    pub description: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    pub status: AlertStatus,
    pub group_key: String,
    /// Matching events linked to it.
    pub event_count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// What the rule observed when it fired (JSON text).
    pub details: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub escalation_policy: Option<String>,
    /// The last escalation level reached (0: none yet).
    pub escalation_level: i64,
    pub next_escalation_at: Option<DateTime<Utc>>,
    /// Escalation round: 1, plus one per reopen (each round escalates from its first level).
    pub escalation_round: i64,
    /// When the current round started (levels counted `since = "opened"` count from it).
    pub escalation_started_at: DateTime<Utc>,
    /// The Okta org of the event that opened it (`None`: a reported security event).
    pub org: Option<String>,
}

const COLUMNS: &str = "id, rule_id, title, description, severity, status, group_key, event_count, \
    first_seen, last_seen, details, created_at, updated_at, acknowledged_by, acknowledged_at, \
    resolved_by, resolved_at, escalation_policy, escalation_level, next_escalation_at, \
    escalation_round, escalation_started_at, org";

fn alert_from_row(row: &AnyRow) -> Result<Alert, StoreError> {
    let opt_time = |name: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(from_millis))
    };
    Ok(Alert {
        id: row.try_get("id")?,
        rule_id: row.try_get("rule_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        severity: row.try_get("severity")?,
        status: row.try_get::<String, _>("status")?.parse()?,
        group_key: row.try_get("group_key")?,
        event_count: row.try_get("event_count")?,
        first_seen: from_millis(row.try_get("first_seen")?),
        last_seen: from_millis(row.try_get("last_seen")?),
        details: row.try_get("details")?,
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
        acknowledged_by: row.try_get("acknowledged_by")?,
        acknowledged_at: opt_time("acknowledged_at")?,
        resolved_by: row.try_get("resolved_by")?,
        resolved_at: opt_time("resolved_at")?,
        escalation_policy: row.try_get("escalation_policy")?,
        escalation_level: row.try_get("escalation_level")?,
        next_escalation_at: opt_time("next_escalation_at")?,
        escalation_round: row.try_get("escalation_round")?,
        escalation_started_at: opt_time("escalation_started_at")?
            .unwrap_or(from_millis(row.try_get("created_at")?)),
        org: row.try_get("org")?,
    })
}

/// A rule (or security event) that fired, as [`raise`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertHit {
    pub rule_id: String,
    pub title: String,
    pub description: String,
    pub severity: String,
    pub group_key: String,
    /// The event that fired it, and its time.
    pub event_uuid: String,
    pub seen_at: DateTime<Utc>,
    /// The newest events of the window that fired it (linked when a new alert opens).
    pub window_uuids: Vec<String>,
    /// Matching events in that window (the new alert's count; may exceed the links).
    pub window_count: i64,
    /// The window's oldest event (the new alert's first_seen).
    pub first_seen: DateTime<Utc>,
    /// A repeat within this long of `last_seen` updates the alert.
    pub dedup_window_ms: i64,
    /// JSON text: what the rule observed.
    pub details: String,
    /// The escalation policy and when its first level is due, if one applies.
    pub escalation: Option<(String, DateTime<Utc>)>,
}

/// What [`raise`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub alert_id: i64,
    /// A new alert opened (else an active one was updated, or nothing changed).
    pub opened: bool,
    /// The event was linked for the first time.
    pub linked: bool,
}

/// Opens an alert for `hit` or updates the active one (see the module docs).
pub async fn raise(db: &Db, hit: &AlertHit, now: DateTime<Utc>) -> Result<Raised, StoreError> {
    let now_ms = to_millis(now);
    let seen_ms = to_millis(hit.seen_at);
    let mut tx = db.begin_serialized(ALERTS_LOCK_KEY).await?;
    let active = sqlx::query(
        "SELECT id, severity FROM alerts WHERE rule_id = $1 AND group_key = $2 \
         AND status IN ('open', 'acknowledged') AND dedup_until >= $3 ORDER BY id DESC LIMIT 1",
    )
    .bind(&hit.rule_id)
    .bind(&hit.group_key)
    .bind(seen_ms)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = active {
        let alert_id: i64 = row.try_get("id")?;
        let severity: String = row.try_get("severity")?;
        let linked = link(&mut tx, alert_id, &[hit.event_uuid.as_str()], now_ms).await? == 1;
        if linked {
            let severity = if severity_rank(&hit.severity) > severity_rank(&severity) {
                &hit.severity
            } else {
                &severity
            };
            sqlx::query(
                "UPDATE alerts SET event_count = event_count + 1, \
                 last_seen = CASE WHEN last_seen < $1 THEN $1 ELSE last_seen END, \
                 dedup_until = CASE WHEN dedup_until < $2 THEN $2 ELSE dedup_until END, \
                 severity = $3, updated_at = $4 WHERE id = $5",
            )
            .bind(seen_ms)
            .bind(seen_ms + hit.dedup_window_ms)
            .bind(severity)
            .bind(now_ms)
            .bind(alert_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        return Ok(Raised {
            alert_id,
            opened: false,
            linked,
        });
    }
    let (policy, next_at) = match &hit.escalation {
        Some((policy, at)) => (Some(policy.as_str()), Some(to_millis(*at))),
        None => (None, None),
    };
    // A new alert: every link is new, so its count and start are known before the insert.
    let uuids: BTreeSet<&str> = hit
        .window_uuids
        .iter()
        .chain([&hit.event_uuid])
        .map(String::as_str)
        .collect();
    let count = i64::try_from(uuids.len())
        .unwrap_or(i64::MAX)
        .max(hit.window_count);
    let first_ms = to_millis(hit.first_seen).min(seen_ms);
    let row = sqlx::query(
        "INSERT INTO alerts (rule_id, title, description, severity, status, group_key, \
         event_count, first_seen, last_seen, dedup_until, details, created_at, updated_at, \
         escalation_policy, escalation_level, next_escalation_at, org) \
         VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, $10, $11, $11, $12, 0, $13, \
         (SELECT org FROM events WHERE uuid = $14)) \
         RETURNING id",
    )
    .bind(&hit.rule_id)
    .bind(&hit.title)
    .bind(&hit.description)
    .bind(&hit.severity)
    .bind(&hit.group_key)
    .bind(count)
    .bind(first_ms)
    .bind(seen_ms)
    .bind(seen_ms + hit.dedup_window_ms)
    .bind(&hit.details)
    .bind(now_ms)
    .bind(policy)
    .bind(next_at)
    .bind(&hit.event_uuid)
    .fetch_one(&mut *tx)
    .await?;
    let alert_id: i64 = row.try_get("id")?;
    link(
        &mut tx,
        alert_id,
        &uuids.into_iter().collect::<Vec<_>>(),
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(Raised {
        alert_id,
        opened: true,
        linked: true,
    })
}

/// Links `uuids` to alert `alert_id` in one statement per 300; returns how many links are
/// new (already linked ones are skipped).
async fn link(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    alert_id: i64,
    uuids: &[&str],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut added = 0;
    for chunk in uuids.chunks(300) {
        // Placeholders in order: SQLite numbers parameters by first appearance.
        let rows = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO alert_events (alert_id, event_uuid, linked_at) VALUES {rows} \
             ON CONFLICT (alert_id, event_uuid) DO NOTHING"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for uuid in chunk {
            q = q.bind(alert_id).bind(*uuid).bind(now_ms);
        }
        added += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(added)
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 0,
    }
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Alert>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM alerts WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(alert_from_row)
        .transpose()
}

/// Filters of [`list`]; `page` counts from 1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    pub status: Option<AlertStatus>,
    pub severity: Option<String>,
    pub rule_id: Option<String>,
    pub page: u32,
    pub page_size: u32,
}

/// One page of alerts and the number matching the filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPage {
    pub items: Vec<Alert>,
    pub total: u64,
}

/// Alerts matching `q`, newest first.
pub async fn list(db: &Db, q: &AlertQuery) -> Result<AlertPage, StoreError> {
    let page = q.page.max(1);
    let page_size = q.page_size.clamp(1, MAX_PAGE_SIZE);
    // Each filter adds a bound placeholder; values are never spliced into the SQL.
    let mut clauses = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    for (column, value) in [
        ("status", q.status.map(|s| s.as_str().to_owned())),
        ("severity", q.severity.clone()),
        ("rule_id", q.rule_id.clone()),
    ] {
        if let Some(v) = value {
            binds.push(v);
            clauses.push(format!("{column} = ${}", binds.len()));
        }
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let count_sql = format!("SELECT COUNT(*) AS n FROM alerts {filter}");
    let mut count = sqlx::query(sqlx::AssertSqlSafe(count_sql));
    for b in &binds {
        count = count.bind(b.as_str());
    }
    let total: i64 = count.fetch_one(db.pool()).await?.try_get("n")?;
    let n = binds.len();
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts {filter} ORDER BY id DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in &binds {
        query = query.bind(b.as_str());
    }
    let rows = query
        .bind(i64::from(page_size))
        .bind(i64::from(page - 1) * i64::from(page_size))
        .fetch_all(db.pool())
        .await?;
    Ok(AlertPage {
        items: rows.iter().map(alert_from_row).collect::<Result<_, _>>()?,
        total: total.max(0) as u64,
    })
}

/// The uuids of the events linked to alert `id`, oldest link first, at most `limit`.
pub async fn linked_events(db: &Db, id: i64, limit: u32) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT event_uuid FROM alert_events WHERE alert_id = $1 \
         ORDER BY linked_at, event_uuid LIMIT $2",
    )
    .bind(id)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| Ok(r.try_get("event_uuid")?)).collect()
}

/// A status change, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub action: String,
    pub from_status: String,
    pub to_status: String,
    pub actor: String,
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// What [`transition`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Done(Box<Alert>),
    NotFound,
    /// The action does not apply to the alert's current status.
    Invalid(AlertStatus),
}

/// Where a reopened alert's new escalation round starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restart {
    /// The first level of the new round (1-based; 1 when no policy applies).
    pub from_level: i64,
    /// When that level is due (None: no escalation).
    pub due_at: Option<DateTime<Utc>>,
}

/// Applies `action` by `actor`. `restart` is where a reopened alert's escalation starts a
/// new round (ignored by the other actions, which stop escalation).
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    db: &Db,
    id: i64,
    action: AlertAction,
    actor: &str,
    comment: Option<&str>,
    now: DateTime<Utc>,
    restart: Restart,
) -> Result<TransitionOutcome, StoreError> {
    let now_ms = to_millis(now);
    let mut tx = db.begin_write().await?;
    let Some(current) = sqlx::query("SELECT status FROM alerts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(TransitionOutcome::NotFound);
    };
    let from: AlertStatus = current.try_get::<String, _>("status")?.parse()?;
    let (allowed, to) = action.transition();
    if !allowed.contains(&from) {
        return Ok(TransitionOutcome::Invalid(from));
    }
    // SQLite numbers `$n` placeholders by first appearance: each statement uses them in order.
    let update = match action {
        AlertAction::Acknowledge => sqlx::query(
            "UPDATE alerts SET status = $1, acknowledged_by = $2, acknowledged_at = $3, \
             next_escalation_at = NULL, updated_at = $3 WHERE id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(actor),
        AlertAction::Resolve => sqlx::query(
            "UPDATE alerts SET status = $1, resolved_by = $2, resolved_at = $3, \
             next_escalation_at = NULL, updated_at = $3 WHERE id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(actor),
        AlertAction::Reopen => sqlx::query(
            "UPDATE alerts SET status = $1, acknowledged_by = NULL, acknowledged_at = NULL, \
             resolved_by = NULL, resolved_at = NULL, next_escalation_at = $2, \
             updated_at = $3, escalation_round = escalation_round + 1, \
             escalation_started_at = $3, escalation_level = $4 WHERE id = $5 AND status = $6",
        )
        .bind(to.as_str())
        .bind(restart.due_at.map(to_millis))
        .bind(now_ms)
        .bind((restart.from_level - 1).max(0)),
    };
    let update = match action {
        AlertAction::Reopen => update,
        _ => update.bind(now_ms),
    }
    .bind(id)
    .bind(from.as_str());
    if update.execute(&mut *tx).await?.rows_affected() != 1 {
        // Changed under us: report what it is now.
        let now_status: String = sqlx::query("SELECT status FROM alerts WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("status")?;
        return Ok(TransitionOutcome::Invalid(now_status.parse()?));
    }
    sqlx::query(
        "INSERT INTO alert_transitions (alert_id, action, from_status, to_status, actor, comment, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(action.as_str())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(actor)
    .bind(comment)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    match get(db, id).await? {
        Some(alert) => Ok(TransitionOutcome::Done(Box::new(alert))),
        None => Ok(TransitionOutcome::NotFound),
    }
}

/// Alert `id`'s status changes, oldest first.
pub async fn transitions(db: &Db, id: i64) -> Result<Vec<Transition>, StoreError> {
    let rows = sqlx::query(
        "SELECT action, from_status, to_status, actor, comment, at FROM alert_transitions \
         WHERE alert_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Transition {
                action: r.try_get("action")?,
                from_status: r.try_get("from_status")?,
                to_status: r.try_get("to_status")?,
                actor: r.try_get("actor")?,
                comment: r.try_get("comment")?,
                at: from_millis(r.try_get("at")?),
            })
        })
        .collect()
}

/// Who one escalation level tells (stored as JSON text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationTargets {
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Named Slack, Teams and PagerDuty channels.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// One escalation level reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub id: i64,
    pub alert_id: i64,
    /// The alert's escalation round (1, plus one per reopen).
    pub round: i64,
    pub level: i64,
    pub policy: String,
    pub targets: EscalationTargets,
    pub escalated_at: DateTime<Utc>,
    /// When its notifications were recorded and queued (None: not yet).
    pub queued_at: Option<DateTime<Utc>>,
    /// When every one of its notifications had been sent (None: not all yet).
    pub notified_at: Option<DateTime<Utc>>,
    /// When it was found answered before its notifications were queued (nothing went out).
    pub suppressed_at: Option<DateTime<Utc>>,
    /// When every one of its notifications was dead.
    pub failed_at: Option<DateTime<Utc>>,
}

fn escalation_from_row(r: &AnyRow) -> Result<Escalation, StoreError> {
    let opt = |name: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(r.try_get::<Option<i64>, _>(name)?.map(from_millis))
    };
    Ok(Escalation {
        id: r.try_get("id")?,
        alert_id: r.try_get("alert_id")?,
        round: r.try_get("round")?,
        level: r.try_get("level")?,
        policy: r.try_get("policy")?,
        targets: serde_json::from_str(&r.try_get::<String, _>("targets")?).map_err(|e| {
            StoreError::Invalid(format!("alert_escalations.targets is not valid JSON: {e}"))
        })?,
        escalated_at: from_millis(r.try_get("escalated_at")?),
        queued_at: opt("queued_at")?,
        notified_at: opt("notified_at")?,
        suppressed_at: opt("suppressed_at")?,
        failed_at: opt("failed_at")?,
    })
}

const ESCALATION_COLUMNS: &str = "id, alert_id, round, level, policy, targets, escalated_at, \
    queued_at, notified_at, suppressed_at, failed_at";

/// Alert `id`'s escalation history, round by round, level by level.
pub async fn escalations(db: &Db, id: i64) -> Result<Vec<Escalation>, StoreError> {
    let sql = format!(
        "SELECT {ESCALATION_COLUMNS} FROM alert_escalations WHERE alert_id = $1 \
         ORDER BY round, level"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(escalation_from_row).collect()
}

/// Open alerts whose next escalation is due at `now` (only `only` when given), oldest due
/// first, at most `limit`.
pub async fn due(
    db: &Db,
    now: DateTime<Utc>,
    only: Option<i64>,
    limit: u32,
) -> Result<Vec<Alert>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts WHERE status = 'open' AND next_escalation_at IS NOT NULL \
         AND next_escalation_at <= $1 AND ($2 = 0 OR id = $2) ORDER BY next_escalation_at, id LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_millis(now))
        .bind(only.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(alert_from_row).collect()
}

/// One escalation by id.
pub async fn escalation(db: &Db, id: i64) -> Result<Option<Escalation>, StoreError> {
    let sql = format!("SELECT {ESCALATION_COLUMNS} FROM alert_escalations WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(escalation_from_row)
        .transpose()
}

/// Moves alert `alert_id` from level `level - 1` to `level` if it is still open there in
/// round `round`, and records the level with its targets. `None`: someone else claimed it,
/// or the alert was answered or reopened meanwhile.
#[allow(clippy::too_many_arguments)]
pub async fn claim_level(
    db: &Db,
    alert_id: i64,
    round: i64,
    level: i64,
    policy: &str,
    targets: &EscalationTargets,
    next_escalation_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<Escalation>, StoreError> {
    let now_ms = to_millis(now);
    let mut tx = db.begin_write().await?;
    let claimed = sqlx::query(
        "UPDATE alerts SET escalation_level = $1, next_escalation_at = $2, updated_at = $3 \
         WHERE id = $4 AND status = 'open' AND escalation_level = $5 AND escalation_round = $6",
    )
    .bind(level)
    .bind(next_escalation_at.map(to_millis))
    .bind(now_ms)
    .bind(alert_id)
    .bind(level - 1)
    .bind(round)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() != 1 {
        return Ok(None);
    }
    let sql = format!(
        "INSERT INTO alert_escalations (alert_id, round, level, policy, targets, escalated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ESCALATION_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(alert_id)
        .bind(round)
        .bind(level)
        .bind(policy)
        .bind(serde_json::to_string(targets).unwrap_or_else(|_| "{}".to_owned()))
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
    let escalation = escalation_from_row(&row)?;
    tx.commit().await?;
    Ok(Some(escalation))
}

/// Ends escalation of alert `id` (its policy no longer has a next level).
pub async fn stop_escalation(db: &Db, id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE alerts SET next_escalation_at = NULL WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Levels claimed at or before `before` whose notifications were never queued (a crash),
/// nor suppressed.
pub async fn unqueued(db: &Db, before: DateTime<Utc>) -> Result<Vec<Escalation>, StoreError> {
    let sql = format!(
        "SELECT {ESCALATION_COLUMNS} FROM alert_escalations WHERE queued_at IS NULL \
         AND suppressed_at IS NULL AND escalated_at <= $1 ORDER BY id LIMIT 100"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_millis(before))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(escalation_from_row).collect()
}

/// Brings the next level of alert `alert_id` forward to `now` (every notification of level
/// `level` of round `round` died), if the alert is still open at that level with a next
/// level to come. Returns whether it did.
pub async fn escalate_now(
    db: &Db,
    alert_id: i64,
    round: i64,
    level: i64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let now_ms = to_millis(now);
    let done = sqlx::query(
        "UPDATE alerts SET next_escalation_at = $1, updated_at = $1 WHERE id = $2 \
         AND status = 'open' AND escalation_round = $3 AND escalation_level = $4 \
         AND next_escalation_at IS NOT NULL AND next_escalation_at > $1",
    )
    .bind(now_ms)
    .bind(alert_id)
    .bind(round)
    .bind(level)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether webhook delivery `delivery_id` was already answered with 2xx.
pub async fn webhook_delivered(db: &Db, delivery_id: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("SELECT 1 AS one FROM alert_webhook_deliveries WHERE delivery_id = $1")
            .bind(delivery_id)
            .fetch_optional(db.pool())
            .await?
            .is_some(),
    )
}

/// Records a webhook delivery answered with `status_code` (2xx). Idempotent.
pub async fn record_webhook(
    db: &Db,
    delivery_id: &str,
    alert_id: i64,
    level: i64,
    status_code: u16,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_webhook_deliveries (delivery_id, alert_id, level, status_code, delivered_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id) DO NOTHING",
    )
    .bind(delivery_id)
    .bind(alert_id)
    .bind(level)
    .bind(i64::from(status_code))
    .bind(to_millis(now))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Alerts by status, for the dashboard and metrics.
pub async fn count_by_status(db: &Db) -> Result<Vec<(AlertStatus, i64)>, StoreError> {
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM alerts GROUP BY status")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>("status")?.parse()?, r.try_get("n")?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_the_documented_ones() {
        use AlertAction::*;
        use AlertStatus::*;
        assert_eq!(Acknowledge.transition(), (&[Open][..], Acknowledged));
        assert_eq!(Resolve.transition(), (&[Open, Acknowledged][..], Resolved));
        assert_eq!(Reopen.transition(), (&[Acknowledged, Resolved][..], Open));
        for s in ["open", "acknowledged", "resolved"] {
            assert_eq!(s.parse::<AlertStatus>().unwrap().as_str(), s);
        }
        assert!("closed".parse::<AlertStatus>().is_err());
    }
}
