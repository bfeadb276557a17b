//! `/api/v1/audit-logs`: read the tamper-evident audit trail (analysts) and verify its hash
//! chain (admin). The trail is append-only: there is no route that changes it.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use vigil_store::audit::{self, AuditFilter, AuditRecord, Verification};

use crate::auth::BearerAuth;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::list_envelope;
use crate::state::ApiState;

/// The audit-log routes.
pub struct AuditLogsApi;

/// One audit record.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditRecordView {
    /// Position in the chain: 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// The producer's id of the event (each is stored once).
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// `user:<name>`, `system` or `job:<id>`.
    pub actor: String,
    /// Dotted action, e.g. `job.enqueue`, `alert.acknowledge`, `email.dead`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub details: serde_json::Value,
    pub request_id: Option<String>,
    pub job_id: Option<String>,
    /// SHA-256 (hex) of the previous record; 64 zeros for the first.
    pub prev_hash: String,
    /// SHA-256 (hex) over this record's canonical encoding and `prev_hash`.
    pub hash: String,
}

impl From<AuditRecord> for AuditRecordView {
    fn from(r: AuditRecord) -> Self {
        AuditRecordView {
            seq: r.seq,
            event_id: r.event_id,
            occurred_at: r.occurred_at,
            recorded_at: r.recorded_at,
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            details: r.details,
            request_id: r.request_id,
            job_id: r.job_id,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

list_envelope!(
    /// A page of audit records, newest first.
    AuditLogList,
    AuditRecordView,
    {
        /// The page shown (1-based).
        page: u32,
        page_size: u32,
    }
);

/// The outcome of a chain walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum VerifyStatus {
    Ok,
    Failed,
}

/// The result of verifying the chain.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VerifyView {
    pub status: VerifyStatus,
    /// Records that checked out (all of them when `ok`).
    pub verified: u64,
    /// The first bad record's sequence number (when `failed`).
    pub sequence: Option<i64>,
    /// Why it is bad: `hash_mismatch`, `broken_link` or `gap` (when `failed`).
    pub fault: Option<String>,
    /// The same, for people (when `failed`).
    pub message: Option<String>,
}

fn query_pair(k: &str, v: &str) -> String {
    // Values appear in the links as given, percent-encoding what a URL cannot hold.
    let mut out = format!("{k}=");
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[OpenApi(tag = "Tags::AuditLogs")]
impl AuditLogsApi {
    /// List audit records, newest first, filtered by actor, action, target and time.
    #[oai(
        path = "/api/v1/audit-logs",
        method = "get",
        operation_id = "list_audit_logs"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
        /// Exact actor: `user:alice`, `system`, `job:<id>`.
        actor: Query<Option<String>>,
        /// Exact action, e.g. `job.enqueue`.
        action: Query<Option<String>>,
        /// `<type>` or `<type>:<id>`, e.g. `job` or `job:01J...`.
        target: Query<Option<String>>,
        /// Records that occurred at or after this time (RFC 3339).
        from: Query<Option<DateTime<Utc>>>,
        /// Records that occurred before this time (RFC 3339).
        to: Query<Option<DateTime<Utc>>>,
        /// 1-based page number (default 1).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Records per page, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        page_size: Query<Option<u32>>,
    ) -> ApiResult<Json<AuditLogList>> {
        if let (Some(f), Some(t)) = (from.0, to.0)
            && t <= f
        {
            return Err(ApiError::unprocessable("to must be after from"));
        }
        let (target_type, target_id) = match target.0.as_deref() {
            None => (None, None),
            Some(t) => match t.split_once(':') {
                Some((ty, id)) => (Some(ty.to_owned()), Some(id.to_owned())),
                None => (Some(t.to_owned()), None),
            },
        };
        let filter = AuditFilter {
            actor: actor.0.clone(),
            action: action.0.clone(),
            target_type,
            target_id,
            from: from.0,
            to: to.0,
        };
        let page = page.0.unwrap_or(1);
        let page_size = page_size.0.unwrap_or(50);
        let found = audit::list(state.db(), &filter, page, page_size).await?;
        let url = |p: u32| {
            let mut q = vec![format!("page={p}"), format!("page_size={page_size}")];
            for (k, v) in [
                ("actor", actor.0.clone()),
                ("action", action.0.clone()),
                ("target", target.0.clone()),
                ("from", from.0.map(|t| t.to_rfc3339())),
                ("to", to.0.map(|t| t.to_rfc3339())),
            ] {
                if let Some(v) = v {
                    q.push(query_pair(k, &v));
                }
            }
            format!("/api/v1/audit-logs?{}", q.join("&"))
        };
        let shown = u64::from(page) * u64::from(page_size);
        Ok(Json(AuditLogList {
            count: found.total,
            page,
            page_size,
            next: (shown < found.total).then(|| url(page + 1)),
            previous: (page > 1).then(|| url(page - 1)),
            results: found.items.into_iter().map(Into::into).collect(),
        }))
    }

    /// Walk the whole hash chain: OK with the count, or the first bad record and why (admin).
    #[oai(
        path = "/api/v1/audit-logs/verify",
        method = "get",
        operation_id = "verify_audit_logs"
    )]
    async fn verify(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
    ) -> ApiResult<Json<VerifyView>> {
        auth.0.require_admin()?;
        let v = audit::verify(state.db()).await?;
        Ok(Json(match &v {
            Verification::Ok { count } => VerifyView {
                status: VerifyStatus::Ok,
                verified: *count,
                sequence: None,
                fault: None,
                message: None,
            },
            Verification::Failed {
                seq,
                verified,
                fault,
            } => VerifyView {
                status: VerifyStatus::Failed,
                verified: *verified,
                sequence: Some(*seq),
                fault: Some(
                    match fault {
                        audit::ChainFault::HashMismatch { .. } => "hash_mismatch",
                        audit::ChainFault::BrokenLink { .. } => "broken_link",
                        audit::ChainFault::Gap { .. } => "gap",
                    }
                    .to_owned(),
                ),
                message: Some(v.to_string()),
            },
        }))
    }
}
