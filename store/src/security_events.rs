//! Security events posted through `POST /api/v1/events/security`: reports from other
//! systems (an EDR, a scanner, a person) that vigil keeps, runs through the detection rules
//! (as [`as_rule_document`]) and, for High and Critical ones, turns into an alert at once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::{from_millis, to_millis};
use crate::{Db, StoreError};

/// A security event about to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecurityEvent {
    pub uuid: String,
    pub source: String,
    pub event_type: String,
    /// 1 low, 2 medium, 3 high, 4 critical.
    pub severity: i64,
    pub description: String,
    /// JSON text.
    pub details: String,
    /// The user who posted it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A stored security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityEvent {
    pub id: i64,
    pub uuid: String,
    pub source: String,
    pub event_type: String,
    pub severity: i64,
    pub description: String,
    pub details: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// The alert it opened or updated, if any.
    pub alert_id: Option<i64>,
}

const COLUMNS: &str = "id, uuid, source, event_type, severity, description, details, created_by, created_at, alert_id";

fn from_row(r: &AnyRow) -> Result<SecurityEvent, StoreError> {
    Ok(SecurityEvent {
        id: r.try_get("id")?,
        uuid: r.try_get("uuid")?,
        source: r.try_get("source")?,
        event_type: r.try_get("event_type")?,
        severity: r.try_get("severity")?,
        description: r.try_get("description")?,
        details: r.try_get("details")?,
        created_by: r.try_get("created_by")?,
        created_at: from_millis(r.try_get("created_at")?),
        alert_id: r.try_get("alert_id")?,
    })
}

pub async fn insert(db: &Db, e: &NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
    let sql = format!(
        "INSERT INTO security_events (uuid, source, event_type, severity, description, details, \
         created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&e.uuid)
        .bind(&e.source)
        .bind(&e.event_type)
        .bind(e.severity)
        .bind(&e.description)
        .bind(&e.details)
        .bind(&e.created_by)
        .bind(to_millis(e.created_at))
        .fetch_one(db.pool())
        .await?;
    from_row(&row)
}

/// Records the alert a security event opened or updated.
pub async fn set_alert(db: &Db, id: i64, alert_id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE security_events SET alert_id = $1 WHERE id = $2")
        .bind(alert_id)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Security events the detection rules have not seen yet, oldest first, at most `limit`.
pub async fn undetected(db: &Db, limit: u32) -> Result<Vec<SecurityEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM security_events WHERE detected_at IS NULL ORDER BY id LIMIT $1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Marks security events `ids` as seen by the detection rules.
pub async fn mark_detected(db: &Db, ids: &[i64], now: DateTime<Utc>) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        let placeholders = (2..chunk.len() + 2)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql =
            format!("UPDATE security_events SET detected_at = $1 WHERE id IN ({placeholders})");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to_millis(now));
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(db.pool()).await?;
    }
    Ok(())
}

/// The event as a detection rule sees it: Okta's field names where they fit
/// (`eventType`, `published`, `displayMessage`, `actor.alternateId` = who posted it), plus
/// `source`, `severity` (1-4) and `details`.
pub fn as_rule_document(e: &SecurityEvent) -> serde_json::Value {
    serde_json::json!({
        "uuid": e.uuid,
        "published": e.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventType": e.event_type,
        "source": e.source,
        "severity": e.severity,
        "displayMessage": e.description,
        "actor": { "alternateId": e.created_by, "type": "vigil user" },
        "details": serde_json::from_str::<serde_json::Value>(&e.details).unwrap_or_default(),
    })
}

/// The security events among `uuids`, by uuid.
pub async fn get_many(
    db: &Db,
    uuids: &[String],
) -> Result<std::collections::HashMap<String, SecurityEvent>, StoreError> {
    let mut found = std::collections::HashMap::with_capacity(uuids.len());
    for chunk in uuids.chunks(500) {
        let placeholders = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {COLUMNS} FROM security_events WHERE uuid IN ({placeholders})");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for uuid in chunk {
            q = q.bind(uuid.as_str());
        }
        for row in q.fetch_all(db.pool()).await? {
            let e = from_row(&row)?;
            found.insert(e.uuid.clone(), e);
        }
    }
    Ok(found)
}
