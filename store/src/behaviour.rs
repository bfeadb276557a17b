//! The SQL of behavioural rules (`vigil_rules::behaviour`): bounded questions asked of the
//! stored events on a schedule. Every query has a time range on `published` and a LIMIT,
//! binds every value, and reads through an index of the events table:
//! `events_type_outcome_idx` (event type, outcome, published) for the org-wide scans,
//! `events_actor_type_idx` (actor, event type, published) for one user's history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use vigil_rules::behaviour::AppOpen;

use crate::time::{from_millis, to_millis};
use crate::{Db, StoreError};

/// The event of a sign-in to an app (SWA apps included).
const APP_SSO: &str = "user.authentication.sso";
const SUCCESS: &str = "SUCCESS";
/// Users per baseline query.
const ACTOR_CHUNK: usize = 200;

/// `$first, $first+1, ...` (`n` of them).
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Users (`actor.alternateId`) who opened at least `min_apps` distinct apps of a sign-on
/// mode in `modes` with a successful `user.authentication.sso` in `[since, until)`, at most
/// `limit`, sorted.
pub async fn swa_candidates(
    db: &Db,
    modes: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    min_apps: u64,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let n = modes.len();
    let sql = format!(
        "SELECT actor_alternate_id AS actor FROM events \
         WHERE event_type = $1 AND published >= $2 AND published < $3 AND outcome_result = $4 \
         AND actor_alternate_id IS NOT NULL AND app_id IS NOT NULL \
         AND app_sign_on_mode IN ({}) \
         GROUP BY actor_alternate_id HAVING COUNT(DISTINCT app_id) >= ${} \
         ORDER BY actor_alternate_id LIMIT ${}",
        placeholders(5, n),
        5 + n,
        6 + n
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(APP_SSO)
        .bind(to_millis(since))
        .bind(to_millis(until))
        .bind(SUCCESS);
    for m in modes {
        q = q.bind(m.as_str());
    }
    let rows = q
        .bind(i64::try_from(min_apps).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>("actor")?))
        .collect()
}

/// `actor`'s successful sign-ins to apps of a mode in `modes` in `[since, until)`, oldest
/// first: the newest `limit` of them.
pub async fn app_opens(
    db: &Db,
    actor: &str,
    modes: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<AppOpen>, StoreError> {
    let n = modes.len();
    let sql = format!(
        "SELECT uuid, published, app_id FROM events \
         WHERE actor_alternate_id = $1 AND published >= $2 AND published < $3 \
         AND event_type = $4 AND outcome_result = $5 AND app_id IS NOT NULL \
         AND app_sign_on_mode IN ({}) ORDER BY published DESC, id DESC LIMIT ${}",
        placeholders(6, n),
        6 + n
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(actor)
        .bind(to_millis(since))
        .bind(to_millis(until))
        .bind(APP_SSO)
        .bind(SUCCESS);
    for m in modes {
        q = q.bind(m.as_str());
    }
    let rows = q.bind(i64::from(limit)).fetch_all(db.pool()).await?;
    let mut opens = rows
        .iter()
        .map(|r| {
            Ok(AppOpen {
                uuid: r.try_get("uuid")?,
                published_ms: r.try_get("published")?,
                app: r.try_get("app_id")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    opens.reverse();
    Ok(opens)
}

/// A successful sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub uuid: String,
    pub actor: String,
    pub published: DateTime<Utc>,
}

/// Successful events of `event_types` in `[since, until)` with a known actor, oldest first,
/// at most `limit`.
pub async fn signins(
    db: &Db,
    event_types: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<SignIn>, StoreError> {
    let n = event_types.len();
    let sql = format!(
        "SELECT uuid, actor_alternate_id AS actor, published FROM events \
         WHERE event_type IN ({}) AND published >= ${} AND published < ${} \
         AND outcome_result = ${} AND actor_alternate_id IS NOT NULL \
         ORDER BY published, id LIMIT ${}",
        placeholders(1, n),
        n + 1,
        n + 2,
        n + 3,
        n + 4
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for t in event_types {
        q = q.bind(t.as_str());
    }
    let rows = q
        .bind(to_millis(since))
        .bind(to_millis(until))
        .bind(SUCCESS)
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SignIn {
                uuid: r.try_get("uuid")?,
                actor: r.try_get("actor")?,
                published: from_millis(r.try_get("published")?),
            })
        })
        .collect()
}

/// Each of `actors`' successful events of `event_types` in `[since, until)`, counted per
/// hour of the day (UTC): the baseline of the unusual-hours rule. Actors without any are
/// absent.
pub async fn signin_hours(
    db: &Db,
    event_types: &[String],
    actors: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<HashMap<String, [u64; 24]>, StoreError> {
    let mut hours: HashMap<String, [u64; 24]> = HashMap::new();
    let n = event_types.len();
    for chunk in actors.chunks(ACTOR_CHUNK) {
        let a = chunk.len();
        let sql = format!(
            "SELECT actor_alternate_id AS actor, (published / 3600000) % 24 AS hour, \
             COUNT(*) AS n FROM events \
             WHERE actor_alternate_id IN ({}) AND published >= ${} AND published < ${} \
             AND event_type IN ({}) AND outcome_result = ${} \
             GROUP BY actor_alternate_id, (published / 3600000) % 24 LIMIT ${}",
            placeholders(1, a),
            a + 1,
            a + 2,
            placeholders(a + 3, n),
            a + n + 3,
            a + n + 4
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for actor in chunk {
            q = q.bind(actor.as_str());
        }
        q = q.bind(to_millis(since)).bind(to_millis(until));
        for t in event_types {
            q = q.bind(t.as_str());
        }
        let rows = q
            .bind(SUCCESS)
            .bind(i64::try_from(a * 24).unwrap_or(i64::MAX))
            .fetch_all(db.pool())
            .await?;
        for r in rows {
            let actor: String = r.try_get("actor")?;
            let hour: i64 = r.try_get("hour")?;
            let count: i64 = r.try_get("n")?;
            if let (Ok(h), Ok(c)) = (usize::try_from(hour), u64::try_from(count))
                && h < 24
            {
                hours.entry(actor).or_insert([0; 24])[h] += c;
            }
        }
    }
    Ok(hours)
}

/// Whether event `uuid` is linked to an alert of `rule_id` (in any status): a behavioural
/// rule's rerun finding the same event raises nothing, even after the alert was resolved.
pub async fn already_raised(db: &Db, rule_id: &str, uuid: &str) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 AS found FROM alert_events ae WHERE ae.event_uuid = $1 \
         AND EXISTS (SELECT 1 FROM alerts a WHERE a.id = ae.alert_id AND a.rule_id = $2) LIMIT 1",
    )
    .bind(uuid)
    .bind(rule_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}
