//! `/api/v1/emails`: the delivery record of every email vigil sent or tried to send (admin:
//! recipients are personal data).

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use vigil_store::emails::{self, EmailRecord, EmailStatus};

use crate::auth::BearerAuth;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::list_envelope;
use crate::state::ApiState;

/// The emails routes.
pub struct EmailsApi;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum EmailStatusName {
    /// Recorded, not tried yet.
    Queued,
    /// An attempt is talking to the SMTP server.
    Sending,
    /// The server accepted it.
    Sent,
    /// The last attempt failed; the job retries.
    Failed,
    /// Failed for good (a 5xx reply, a bad address, an unknown template).
    Dead,
}

impl From<EmailStatusName> for EmailStatus {
    fn from(s: EmailStatusName) -> Self {
        match s {
            EmailStatusName::Queued => EmailStatus::Queued,
            EmailStatusName::Sending => EmailStatus::Sending,
            EmailStatusName::Sent => EmailStatus::Sent,
            EmailStatusName::Failed => EmailStatus::Failed,
            EmailStatusName::Dead => EmailStatus::Dead,
        }
    }
}

impl From<EmailStatus> for EmailStatusName {
    fn from(s: EmailStatus) -> Self {
        match s {
            EmailStatus::Queued => EmailStatusName::Queued,
            EmailStatus::Sending => EmailStatusName::Sending,
            EmailStatus::Sent => EmailStatusName::Sent,
            EmailStatus::Failed => EmailStatusName::Failed,
            EmailStatus::Dead => EmailStatusName::Dead,
        }
    }
}

/// One email delivery.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EmailView {
    pub id: i64,
    /// The job that first recorded it.
    pub job_id: String,
    pub idempotency_key: Option<String>,
    /// The `Message-ID` header, the same on every attempt.
    pub message_id: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub template: Option<String>,
    pub status: EmailStatusName,
    /// Attempts that reached the sending step.
    pub attempts: i64,
    pub last_error: Option<String>,
    /// The SMTP server's last reply, e.g. `250 2.0.0 Ok: queued as ...`.
    pub smtp_reply: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<EmailRecord> for EmailView {
    fn from(r: EmailRecord) -> Self {
        EmailView {
            id: r.id,
            job_id: r.job_id,
            idempotency_key: r.idempotency_key,
            message_id: r.message_id,
            recipients: r.recipients,
            subject: r.subject,
            template: r.template,
            status: r.status.into(),
            attempts: r.attempts,
            last_error: r.last_error,
            smtp_reply: r.smtp_reply,
            created_at: r.created_at,
            updated_at: r.updated_at,
            sent_at: r.sent_at,
        }
    }
}

list_envelope!(
    /// A page of deliveries, newest first.
    EmailList,
    EmailView,
    {
        /// The page shown (1-based).
        page: u32,
        page_size: u32,
    }
);

#[OpenApi(tag = "Tags::Emails")]
impl EmailsApi {
    /// List email deliveries, newest first, optionally of one status (admin).
    #[oai(path = "/api/v1/emails", method = "get", operation_id = "list_emails")]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        status: Query<Option<EmailStatusName>>,
        /// 1-based page number (default 1).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Deliveries per page, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        page_size: Query<Option<u32>>,
    ) -> ApiResult<Json<EmailList>> {
        auth.0.require_admin()?;
        let page = page.0.unwrap_or(1);
        let page_size = page_size.0.unwrap_or(50);
        let found = emails::list(state.db(), status.0.map(Into::into), page, page_size).await?;
        let url = |p: u32| {
            let mut q = vec![format!("page={p}"), format!("page_size={page_size}")];
            if let Some(s) = status.0 {
                q.push(format!("status={}", EmailStatus::from(s)));
            }
            format!("/api/v1/emails?{}", q.join("&"))
        };
        let shown = u64::from(page) * u64::from(page_size);
        Ok(Json(EmailList {
            count: found.total,
            page,
            page_size,
            next: (shown < found.total).then(|| url(page + 1)),
            previous: (page > 1).then(|| url(page - 1)),
            results: found.items.into_iter().map(Into::into).collect(),
        }))
    }

    /// Read one email delivery (admin).
    #[oai(
        path = "/api/v1/emails/:id",
        method = "get",
        operation_id = "get_email"
    )]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        id: Path<i64>,
    ) -> ApiResult<Json<EmailView>> {
        auth.0.require_admin()?;
        match emails::get(state.db(), id.0).await? {
            Some(r) => Ok(Json(r.into())),
            None => Err(ApiError::not_found(format!("no email {}", id.0))),
        }
    }
}
