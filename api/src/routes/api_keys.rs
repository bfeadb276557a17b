//! `/api/v1/api-keys` (admins, signed in as a person): API keys of service accounts —
//! scripts and OpenAPI clients that should not sign in as a person nor share a person's rate
//! budget. A key has a name, a role, optionally the queues it may act on, its own
//! requests-per-minute budget, an expiry, its last use and a revocation. The key is shown
//! once, in the answer to its creation; vigil keeps only its SHA-256. Creating and revoking
//! are audited (`api_key.create`, `api_key.revoke`), and everything a key does is audited as
//! `user:key:<name>`.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use vigil_store::api_keys::{self, ApiKey, NewApiKey};
use vigil_store::users::validate_username;

use crate::audit::{self, Entry};
use crate::auth::{BearerAuth, api_keys as keys};
use crate::context::RequestId;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::QueueName;
use crate::routes::models::{example, list_envelope};
use crate::routes::users::RoleName;
use crate::state::ApiState;

/// The API key routes.
pub struct ApiKeysApi;

/// A new API key.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields, example)]
pub struct NewKeyRequest {
    /// A unique name: letters, digits, `.`, `_`, `@`, `-` (up to 100).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: String,
    /// What the key may do, as a user of that role.
    pub role: RoleName,
    /// Only these queues (enqueue, retry, cancel, pause, resume); absent = every queue.
    pub queues: Option<Vec<QueueName>>,
    /// Its own requests-per-minute budget per route group (1 to 100000); absent = the
    /// default authenticated budget.
    #[oai(validator(minimum(value = "1"), maximum(value = "100000")))]
    pub rate_per_minute: Option<u64>,
    /// When it stops working (must be in the future); absent = never.
    pub expires_at: Option<DateTime<Utc>>,
}

example!(
    NewKeyRequest,
    serde_json::json!({"name": "siem-forwarder", "role": "analyst", "queues": ["email"],
                       "rate_per_minute": 600})
);

/// An API key (never its secret). Absent fields are left out, not `null`.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct KeyView {
    /// The public part of the key (`vgk_<id>_...`): names it in logs and audit records.
    pub id: String,
    pub name: String,
    pub role: RoleName,
    pub queues: Option<Vec<String>>,
    pub rate_per_minute: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            role: k.role.into(),
            queues: k.queues,
            rate_per_minute: k.rate_per_minute,
            created_by: k.created_by,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A created key, with the key itself (shown this once).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedKey {
    /// Send as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Not shown again.
    pub key: String,
    #[oai(flatten)]
    pub info: KeyView,
}

/// Creating a key answers 201.
#[derive(Debug, ApiResponse)]
pub enum KeyCreated {
    #[oai(status = 201)]
    Created(Json<CreatedKey>),
}

/// Revoking a key answers 204.
#[derive(Debug, ApiResponse)]
pub enum KeyRevoked {
    /// The key no longer works.
    #[oai(status = 204)]
    Done,
}

list_envelope!(
    /// Every API key.
    KeyList,
    KeyView
);

#[OpenApi(tag = "Tags::ApiKeys")]
impl ApiKeysApi {
    /// Create an API key (admin, as a person). The answer holds the key; it is not shown
    /// again.
    #[oai(
        path = "/api/v1/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        body: Json<NewKeyRequest>,
    ) -> ApiResult<KeyCreated> {
        auth.0.require_admin()?;
        auth.0.require_person()?;
        let req = body.0;
        validate_username(&req.name).map_err(|_| {
            ApiError::unprocessable("name: 1 to 100 letters, digits, `.`, `_`, `@` or `-`")
        })?;
        let now = Utc::now();
        if req.expires_at.is_some_and(|t| t <= now) {
            return Err(ApiError::unprocessable("expires_at: must be in the future"));
        }
        let queues: Option<Vec<String>> = req.queues.map(|qs| {
            let mut names: Vec<String> = qs
                .into_iter()
                .map(|q| vigil_jobs::Queue::from(q).as_str().to_owned())
                .collect();
            names.sort();
            names.dedup();
            names
        });
        let generated = keys::generate();
        let created_by = auth.0.actor().label();
        let stored = api_keys::create(
            state.db(),
            &NewApiKey {
                id: &generated.id,
                name: &req.name,
                role: req.role.into(),
                queues: queues.as_deref(),
                secret_sha256: &generated.secret_sha256,
                rate_per_minute: req.rate_per_minute.and_then(|r| i64::try_from(r).ok()),
                created_by: &created_by,
                created_at_ms: now.timestamp_millis(),
                expires_at_ms: req.expires_at.map(|t| t.timestamp_millis()),
            },
        )
        .await
        .map_err(|e| match e {
            vigil_store::StoreError::Invalid(why) => ApiError::conflict(why),
            other => other.into(),
        })?;
        audit::record(
            state.engine(),
            Entry {
                actor: auth.0.actor(),
                action: "api_key.create",
                target_type: "api_key",
                target_id: &stored.id,
                details: serde_json::json!({"name": stored.name, "role": stored.role.as_str(),
                    "queues": stored.queues, "rate_per_minute": stored.rate_per_minute,
                    "expires_at": stored.expires_at}),
                request_id: Some(&rid.0.0),
                job_id: None,
            },
        )
        .await;
        tracing::info!(key = %stored.id, name = %stored.name, "API key created");
        Ok(KeyCreated::Created(Json(CreatedKey {
            key: generated.key,
            info: stored.into(),
        })))
    }

    /// Every API key, revoked and expired ones included (admin).
    #[oai(
        path = "/api/v1/api-keys",
        method = "get",
        operation_id = "list_api_keys"
    )]
    async fn list(&self, auth: BearerAuth, state: Data<&ApiState>) -> ApiResult<Json<KeyList>> {
        auth.0.require_admin()?;
        let all = api_keys::list(state.db()).await?;
        Ok(Json(KeyList::whole(
            all.into_iter().map(KeyView::from).collect(),
        )))
    }

    /// Revoke an API key (admin, as a person): it stops working at once on this instance
    /// and within `auth.user_cache_seconds` on others.
    #[oai(
        path = "/api/v1/api-keys/:id",
        method = "delete",
        operation_id = "revoke_api_key"
    )]
    async fn revoke(
        &self,
        auth: BearerAuth,
        state: Data<&ApiState>,
        rid: Data<&RequestId>,
        #[oai(validator(max_length = 100))] id: Path<String>,
    ) -> ApiResult<KeyRevoked> {
        auth.0.require_admin()?;
        auth.0.require_person()?;
        let Some(key) = api_keys::get(state.db(), &id.0).await? else {
            return Err(ApiError::not_found(format!("no API key `{}`", id.0)));
        };
        if !api_keys::revoke(state.db(), &key.id, Utc::now().timestamp_millis()).await? {
            return Err(ApiError::conflict(format!(
                "API key `{}` is already revoked",
                key.id
            )));
        }
        state.auth().forget_key(&key.id);
        audit::record(
            state.engine(),
            Entry {
                actor: auth.0.actor(),
                action: "api_key.revoke",
                target_type: "api_key",
                target_id: &key.id,
                details: serde_json::json!({"name": key.name}),
                request_id: Some(&rid.0.0),
                job_id: None,
            },
        )
        .await;
        Ok(KeyRevoked::Done)
    }
}
