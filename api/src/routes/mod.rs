//! The route groups, one module per resource, and the OpenAPI service that joins them.
//!
//! Each route group declares its own response types (`EmailView`, `AlertView`, ...) even
//! where they mirror a store row field for field: they are the public contract (documented,
//! stable field names, secrets and internals left out), while store types follow the schema.
//! The `From` conversions between them are where a rename or a new column is decided.
//!
//! # Adding a route group (events, alerts, emails, audit logs, ...)
//! 1. Create `routes/<resource>.rs` with `pub struct <Resource>Api;` and one
//!    `#[OpenApi(tag = "Tags::<Resource>")] impl <Resource>Api { ... }`. Use full paths
//!    (`/api/v1/<resource>/...`): the path segment after `/api/v1/` is the rate-limit group.
//! 2. Every operation takes `auth: BearerAuth` (401 without a valid token) and, if it changes
//!    state, calls `auth.0.require_admin()?` first (403 for analysts), then records the change
//!    with `crate::audit::record` (action `<resource>.<verb>`).
//! 3. Return `ApiResult<...>` (`crate::error`): errors get the one JSON error shape. State is
//!    `state: Data<&ApiState>`, the request id `rid: Data<&RequestId>`.
//! 4. Request bodies are `#[derive(Object)] #[oai(deny_unknown_fields)]`.
//! 5. Add a variant to [`Tags`] and the struct to the tuple in [`service`]; add `pub mod`.
//! 6. Test it in `api/tests/` with `common::TestApp` (in-process, real Redis and SQLite).

pub mod alerts;
pub mod api_keys;
pub mod audit_logs;
pub mod auth;
pub mod emails;
pub mod events;
pub mod health;
pub mod instances;
pub mod job_actions;
pub mod job_timeline;
pub mod jobs;
pub mod models;
pub mod oidc;
pub mod okta_hooks;
pub mod payloads;
pub mod queues;
pub mod schedules;
pub mod series;
pub mod stream;
pub mod users;

use poem_openapi::{OpenApiService, Tags as TagsDerive};

use crate::context::REQUEST_ID;

/// Groups of operations in the docs.
#[derive(TagsDerive)]
pub enum Tags {
    /// Liveness, readiness and metrics.
    Health,
    /// Sign in and renew tokens.
    Auth,
    /// Enqueue, read, search, retry, cancel and delete jobs, one by one or in bulk.
    Jobs,
    /// Queue counts, pause and resume, and each queue's charts.
    Queues,
    /// Cron schedules with their next and last runs.
    Schedules,
    /// Email delivery records.
    Emails,
    /// Stored Okta System Log events.
    Events,
    /// The tamper-evident audit trail and its verification.
    AuditLogs,
    /// Alerts from detection rules and security events; acknowledge, resolve, reopen.
    Alerts,
    /// The fleet: every live vigil instance with its role, queues and actors.
    Instances,
    /// The dashboard's live view: one server-sent-events stream instead of polling.
    Stream,
    /// The API's users: roles, enable/disable, passwords, sessions (admin).
    Users,
    /// API keys of service accounts (admin).
    ApiKeys,
    /// Okta Event Hooks: deliveries pushed by Okta (authenticated by a shared secret header).
    OktaHooks,
}

/// Every route group as one documented service (nested tuples: poem-openapi implements
/// `OpenApi` for tuples of up to 16).
pub type Apis = (
    health::HealthApi,
    auth::AuthApi,
    oidc::OidcApi,
    (
        jobs::JobsApi,
        job_actions::JobActionsApi,
        job_timeline::JobTimelineApi,
    ),
    (queues::QueuesApi, series::SeriesApi),
    schedules::SchedulesApi,
    emails::EmailsApi,
    events::EventsApi,
    audit_logs::AuditLogsApi,
    alerts::AlertsApi,
    instances::InstancesApi,
    stream::StreamApi,
    users::UsersApi,
    api_keys::ApiKeysApi,
    okta_hooks::OktaHooksApi,
);

/// The OpenAPI service of every route group.
pub fn service(public_url: &str) -> OpenApiService<Apis, ()> {
    let apis = (
        health::HealthApi,
        auth::AuthApi,
        oidc::OidcApi,
        (
            jobs::JobsApi,
            job_actions::JobActionsApi,
            job_timeline::JobTimelineApi,
        ),
        (queues::QueuesApi, series::SeriesApi),
        schedules::SchedulesApi,
        emails::EmailsApi,
        events::EventsApi,
        audit_logs::AuditLogsApi,
        alerts::AlertsApi,
        instances::InstancesApi,
        stream::StreamApi,
        users::UsersApi,
        api_keys::ApiKeysApi,
        okta_hooks::OktaHooksApi,
    );
    let mut service = OpenApiService::new(apis, "vigil API", env!("CARGO_PKG_VERSION"))
        .description(
            "Enqueue jobs and read the state of vigil, the security-operations worker system. \
             Authenticate with `POST /api/v1/auth/token`, then send `Authorization: Bearer \
             <access_token>`; service accounts send their API key as `Authorization: Bearer \
             <key>` or `X-API-Key: <key>`. Errors are `{\"error\", \"message\", \"request_id\"}`.",
        )
        .extra_response_header::<String, _>(
            poem_openapi::ExtraHeader::new(REQUEST_ID.to_ascii_uppercase())
                .description("The request id (echoed when a sane one was sent)."),
        );
    if !public_url.is_empty() {
        service = service.server(public_url);
    }
    service
}
