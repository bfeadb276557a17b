//! The tamper-evident audit trail: append-only, hash-chained records.
//!
//! # The chain
//! Records carry a gap-free `seq` (1, 2, 3, ...). Each record's `hash` is SHA-256 over its
//! canonical encoding, which includes `prev_hash`, the hash of the record before it (64 zeros
//! for record 1). Changing, removing or reordering any record breaks the chain at that point,
//! and [`verify`] names the first bad `seq`.
//!
//! # Canonical encoding (version 1)
//! The hashed bytes are the ASCII tag `vigil.audit.v1\n` followed by these fields, in this
//! order: `seq`, `event_id`, `occurred_at`, `recorded_at`, `actor`, `action`, `target_type`,
//! `target_id`, `details`, `request_id`, `job_id`, `prev_hash`. Each field is written as
//! `N` (absent) or `S` + its byte length as an 8-byte big-endian integer + its UTF-8 bytes.
//! Integers (`seq`, the two epoch-millisecond times) are written in decimal. `details` is
//! canonical JSON (object keys sorted by their UTF-8 bytes, no whitespace), which is also
//! exactly the text stored, so verification hashes the stored columns as they are.
//! Length prefixes make the encoding unambiguous: no two different records encode alike.
//!
//! # One chain, many writers
//! [`append`] runs in one transaction that first takes the chain's lock: on PostgreSQL a
//! transaction-scoped advisory lock ([`CHAIN_LOCK_KEY`]), on SQLite `BEGIN IMMEDIATE` (the
//! database's single write lock). It reads the chain head, drops events already stored (by
//! `event_id`, also UNIQUE in the schema), and inserts the batch with consecutive `seq`s. So
//! any number of vigil instances can append at once and the chain stays single and gap-free.
//!
//! # Append-only
//! This module has no update or delete; the schema's triggers reject both (and TRUNCATE on
//! PostgreSQL).

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::time::{from_millis, now_millis, to_millis};
use crate::{Db, StoreError};

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The PostgreSQL advisory lock key that serialises appends (`vigil` + 1 in ASCII).
pub const CHAIN_LOCK_KEY: i64 = 0x7669_6769_6c00_0001;

/// Rows per INSERT statement (13 parameters each: well under both engines' limits).
const INSERT_CHUNK: usize = 500;

/// Rows read per page while verifying.
const VERIFY_PAGE: i64 = 5000;

/// The largest page the list query returns.
pub const MAX_PAGE_SIZE: u32 = 500;

/// A record to append; `seq`, `recorded_at` and the hashes are assigned by [`append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRecord {
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    /// The actor's flat label (`user:alice`, `system`, `job:01J...`).
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub details: serde_json::Value,
    pub request_id: Option<String>,
    pub job_id: Option<String>,
}

impl From<&vigil_jobs::AuditJob> for NewAuditRecord {
    fn from(job: &vigil_jobs::AuditJob) -> Self {
        NewAuditRecord {
            event_id: job.event_id.clone(),
            occurred_at: job.occurred_at,
            actor: job.actor.label(),
            action: job.action.clone(),
            target_type: job.target_type.clone(),
            target_id: job.target_id.clone(),
            details: job.details.clone(),
            request_id: job.request_id.clone(),
            job_id: job.job_id.clone(),
        }
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub details: serde_json::Value,
    pub request_id: Option<String>,
    pub job_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// What one [`append`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Records inserted.
    pub written: u64,
    /// Records skipped because their `event_id` was already stored (or repeated in the batch).
    pub duplicates: u64,
    /// The chain head after the append (0 when the chain is empty).
    pub head_seq: i64,
}

/// The stored columns of one record, as hashed.
struct Columns<'a> {
    seq: i64,
    event_id: &'a str,
    occurred_at: i64,
    recorded_at: i64,
    actor: &'a str,
    action: &'a str,
    target_type: &'a str,
    target_id: &'a str,
    details: &'a str,
    request_id: Option<&'a str>,
    job_id: Option<&'a str>,
    prev_hash: &'a str,
}

impl Columns<'_> {
    /// SHA-256 over the canonical encoding (see the module docs), lower-case hex.
    fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"vigil.audit.v1\n");
        let mut field = |value: Option<&[u8]>| match value {
            None => h.update(b"N"),
            Some(bytes) => {
                h.update(b"S");
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(bytes);
            }
        };
        field(Some(self.seq.to_string().as_bytes()));
        field(Some(self.event_id.as_bytes()));
        field(Some(self.occurred_at.to_string().as_bytes()));
        field(Some(self.recorded_at.to_string().as_bytes()));
        field(Some(self.actor.as_bytes()));
        field(Some(self.action.as_bytes()));
        field(Some(self.target_type.as_bytes()));
        field(Some(self.target_id.as_bytes()));
        field(Some(self.details.as_bytes()));
        field(self.request_id.map(str::as_bytes));
        field(self.job_id.map(str::as_bytes));
        field(Some(self.prev_hash.as_bytes()));
        hex::encode(h.finalize())
    }
}

/// JSON with object keys sorted and no whitespace: the same value always gives the same text,
/// whatever order its producer wrote the keys in.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(item) = map.get(k) {
                        write(item, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// A record ready to insert.
struct Prepared {
    seq: i64,
    event_id: String,
    occurred_at: i64,
    recorded_at: i64,
    actor: String,
    action: String,
    target_type: String,
    target_id: String,
    details: String,
    request_id: Option<String>,
    job_id: Option<String>,
    prev_hash: String,
    hash: String,
}

/// Appends `records` to the chain in one transaction (see the module docs). Records whose
/// `event_id` is already stored are skipped. Either the whole batch is stored or none of it.
pub async fn append(db: &Db, records: &[NewAuditRecord]) -> Result<AppendOutcome, StoreError> {
    let mut tx = db.begin_serialized(CHAIN_LOCK_KEY).await?;

    // Event ids already in the chain.
    let mut seen: HashSet<String> = HashSet::new();
    for chunk in records.chunks(INSERT_CHUNK) {
        let placeholders = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT event_id FROM audit_log WHERE event_id IN ({placeholders})");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q.bind(r.event_id.as_str());
        }
        for row in q.fetch_all(&mut *tx).await? {
            seen.insert(row.try_get("event_id")?);
        }
    }

    let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    let (mut seq, mut prev_hash) = match head {
        Some(row) => (
            row.try_get::<i64, _>("seq")?,
            row.try_get::<String, _>("hash")?,
        ),
        None => (0, GENESIS_HASH.to_owned()),
    };

    let recorded_at = now_millis();
    let mut prepared = Vec::with_capacity(records.len());
    let mut duplicates = 0u64;
    for r in records {
        if !seen.insert(r.event_id.clone()) {
            duplicates += 1;
            continue;
        }
        seq += 1;
        let details = canonical_json(&r.details);
        let occurred_at = to_millis(r.occurred_at);
        let hash = Columns {
            seq,
            event_id: &r.event_id,
            occurred_at,
            recorded_at,
            actor: &r.actor,
            action: &r.action,
            target_type: &r.target_type,
            target_id: &r.target_id,
            details: &details,
            request_id: r.request_id.as_deref(),
            job_id: r.job_id.as_deref(),
            prev_hash: &prev_hash,
        }
        .hash();
        prepared.push(Prepared {
            seq,
            event_id: r.event_id.clone(),
            occurred_at,
            recorded_at,
            actor: r.actor.clone(),
            action: r.action.clone(),
            target_type: r.target_type.clone(),
            target_id: r.target_id.clone(),
            details,
            request_id: r.request_id.clone(),
            job_id: r.job_id.clone(),
            prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
            hash,
        });
    }

    for chunk in prepared.chunks(INSERT_CHUNK) {
        let values = (0..chunk.len())
            .map(|i| {
                let b = i * 13;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9,
                    b + 10,
                    b + 11,
                    b + 12,
                    b + 13
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO audit_log (seq, event_id, occurred_at, recorded_at, actor, action, \
             target_type, target_id, details, request_id, job_id, prev_hash, hash) VALUES {values}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            q = q
                .bind(p.seq)
                .bind(p.event_id.as_str())
                .bind(p.occurred_at)
                .bind(p.recorded_at)
                .bind(p.actor.as_str())
                .bind(p.action.as_str())
                .bind(p.target_type.as_str())
                .bind(p.target_id.as_str())
                .bind(p.details.as_str())
                .bind(p.request_id.as_deref())
                .bind(p.job_id.as_deref())
                .bind(p.prev_hash.as_str())
                .bind(p.hash.as_str());
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(AppendOutcome {
        written: prepared.len() as u64,
        duplicates,
        head_seq: seq,
    })
}

/// The hash `record` should carry, recomputed from its fields (for tools that check records
/// outside [`verify`]). `details` is hashed in its canonical JSON form, as stored.
pub fn compute_hash(record: &AuditRecord) -> String {
    Columns {
        seq: record.seq,
        event_id: &record.event_id,
        occurred_at: to_millis(record.occurred_at),
        recorded_at: to_millis(record.recorded_at),
        actor: &record.actor,
        action: &record.action,
        target_type: &record.target_type,
        target_id: &record.target_id,
        details: &canonical_json(&record.details),
        request_id: record.request_id.as_deref(),
        job_id: record.job_id.as_deref(),
        prev_hash: &record.prev_hash,
    }
    .hash()
}

const COLUMNS: &str = "seq, event_id, occurred_at, recorded_at, actor, action, target_type, \
                       target_id, details, request_id, job_id, prev_hash, hash";

/// The raw stored columns (owned), as read for verification.
struct RawRow {
    seq: i64,
    event_id: String,
    occurred_at: i64,
    recorded_at: i64,
    actor: String,
    action: String,
    target_type: String,
    target_id: String,
    details: String,
    request_id: Option<String>,
    job_id: Option<String>,
    prev_hash: String,
    hash: String,
}

impl RawRow {
    fn read(row: &AnyRow) -> Result<RawRow, StoreError> {
        Ok(RawRow {
            seq: row.try_get("seq")?,
            event_id: row.try_get("event_id")?,
            occurred_at: row.try_get("occurred_at")?,
            recorded_at: row.try_get("recorded_at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            details: row.try_get("details")?,
            request_id: row.try_get("request_id")?,
            job_id: row.try_get("job_id")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        })
    }

    fn computed_hash(&self) -> String {
        Columns {
            seq: self.seq,
            event_id: &self.event_id,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor: &self.actor,
            action: &self.action,
            target_type: &self.target_type,
            target_id: &self.target_id,
            details: &self.details,
            request_id: self.request_id.as_deref(),
            job_id: self.job_id.as_deref(),
            prev_hash: &self.prev_hash,
        }
        .hash()
    }

    fn into_record(self) -> AuditRecord {
        AuditRecord {
            seq: self.seq,
            event_id: self.event_id,
            occurred_at: from_millis(self.occurred_at),
            recorded_at: from_millis(self.recorded_at),
            actor: self.actor,
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            details: serde_json::from_str(&self.details)
                .unwrap_or(serde_json::Value::String(self.details)),
            request_id: self.request_id,
            job_id: self.job_id,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

/// Why the chain is broken at a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChainFault {
    /// The record's stored hash is not the hash of its content: it was changed.
    HashMismatch { stored: String, computed: String },
    /// The record's `prev_hash` is not the previous record's hash.
    BrokenLink { expected: String, found: String },
    /// Records are missing: this `seq` was expected, the next stored one is `found`.
    Gap { found: i64 },
}

impl fmt::Display for ChainFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainFault::HashMismatch { stored, computed } => write!(
                f,
                "hash mismatch (stored {stored}, content hashes to {computed}): the record was changed"
            ),
            ChainFault::BrokenLink { expected, found } => write!(
                f,
                "broken link (prev_hash {found}, previous record's hash is {expected})"
            ),
            ChainFault::Gap { found } => {
                write!(
                    f,
                    "gap (record missing; the next stored sequence is {found})"
                )
            }
        }
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Every record checks out.
    Ok { count: u64 },
    /// The first bad record.
    Failed {
        seq: i64,
        /// Records that checked out before it.
        verified: u64,
        fault: ChainFault,
    },
}

impl Verification {
    /// Whether the chain is intact.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verification::Ok { .. })
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verification::Ok { count } => write!(f, "OK {count} records"),
            Verification::Failed { seq, fault, .. } => {
                write!(f, "FAILED at sequence {seq}: {fault}")
            }
        }
    }
}

/// Walks the whole chain in `seq` order, recomputing every hash and link.
pub async fn verify(db: &Db) -> Result<Verification, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
    let mut expected_seq = 1i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut count = 0u64;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(expected_seq - 1)
            .bind(VERIFY_PAGE)
            .fetch_all(db.pool())
            .await?;
        if rows.is_empty() {
            return Ok(Verification::Ok { count });
        }
        for row in &rows {
            let r = RawRow::read(row)?;
            let fail = |fault| Verification::Failed {
                seq: expected_seq,
                verified: count,
                fault,
            };
            if r.seq != expected_seq {
                return Ok(fail(ChainFault::Gap { found: r.seq }));
            }
            let computed = r.computed_hash();
            if computed != r.hash {
                return Ok(fail(ChainFault::HashMismatch {
                    stored: r.hash,
                    computed,
                }));
            }
            if r.prev_hash != prev_hash {
                return Ok(fail(ChainFault::BrokenLink {
                    expected: prev_hash,
                    found: r.prev_hash,
                }));
            }
            prev_hash = r.hash;
            expected_seq += 1;
            count += 1;
        }
    }
}

/// Filters of the list query; every given one must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exact actor label (`user:alice`, `system`, `job:...`).
    pub actor: Option<String>,
    /// Exact action (`job.enqueue`).
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// `occurred_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `occurred_at < to`.
    pub to: Option<DateTime<Utc>>,
}

/// One page of records, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Records matching the filter, over all pages.
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
}

/// Records matching `filter`, newest (highest `seq`) first. `page` counts from 1;
/// `page_size` is clamped to 1..=[`MAX_PAGE_SIZE`].
pub async fn list(
    db: &Db,
    filter: &AuditFilter,
    page: u32,
    page_size: u32,
) -> Result<AuditPage, StoreError> {
    let page = page.max(1);
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    enum Arg<'a> {
        Text(&'a str),
        Int(i64),
    }
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg<'_>> = Vec::new();
    let mut push = |cond: &str, arg| {
        args.push(arg);
        conds.push(format!("{cond} ${}", args.len()));
    };
    if let Some(v) = &filter.actor {
        push("actor =", Arg::Text(v));
    }
    if let Some(v) = &filter.action {
        push("action =", Arg::Text(v));
    }
    if let Some(v) = &filter.target_type {
        push("target_type =", Arg::Text(v));
    }
    if let Some(v) = &filter.target_id {
        push("target_id =", Arg::Text(v));
    }
    if let Some(v) = filter.from {
        push("occurred_at >=", Arg::Int(to_millis(v)));
    }
    if let Some(v) = filter.to {
        push("occurred_at <", Arg::Int(to_millis(v)));
    }
    let where_sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };

    let count_sql = format!("SELECT COUNT(*) AS n FROM audit_log{where_sql}");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(count_sql));
    for a in &args {
        q = match a {
            Arg::Text(s) => q.bind(*s),
            Arg::Int(i) => q.bind(*i),
        };
    }
    let total: i64 = q.fetch_one(db.pool()).await?.try_get("n")?;

    let n = args.len();
    let list_sql = format!(
        "SELECT {COLUMNS} FROM audit_log{where_sql} ORDER BY seq DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(list_sql));
    for a in &args {
        q = match a {
            Arg::Text(s) => q.bind(*s),
            Arg::Int(i) => q.bind(*i),
        };
    }
    let rows = q
        .bind(i64::from(page_size))
        .bind(i64::from(page - 1) * i64::from(page_size))
        .fetch_all(db.pool())
        .await?;
    let items = rows
        .iter()
        .map(|r| RawRow::read(r).map(RawRow::into_record))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AuditPage {
        items,
        total: total.max(0) as u64,
        page,
        page_size,
    })
}

/// One record by `seq`.
pub async fn get(db: &Db, seq: i64) -> Result<Option<AuditRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(seq)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref()
        .map(|r| RawRow::read(r).map(RawRow::into_record))
        .transpose()
}

/// How many records the chain holds.
pub async fn count(db: &Db) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
        .fetch_one(db.pool())
        .await?
        .try_get("n")?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"z": [true, null, "x\"y"], "c": 1.5}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":1.5,"z":[true,null,"x\"y"]},"b":1}"#
        );
    }

    fn cols<'a>(details: &'a str, request_id: Option<&'a str>) -> Columns<'a> {
        Columns {
            seq: 1,
            event_id: "e",
            occurred_at: 1,
            recorded_at: 2,
            actor: "system",
            action: "a.b",
            target_type: "t",
            target_id: "1",
            details,
            request_id,
            job_id: None,
            prev_hash: GENESIS_HASH,
        }
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        // Absent and empty differ; moving bytes between fields changes the hash.
        assert_ne!(cols("{}", None).hash(), cols("{}", Some("")).hash());
        let mut a = cols("{}", None);
        a.target_type = "ab";
        a.target_id = "c";
        let mut b = cols("{}", None);
        b.target_type = "a";
        b.target_id = "bc";
        assert_ne!(a.hash(), b.hash());
        assert_eq!(cols("{}", None).hash().len(), 64);
    }
}
