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
//! 7. A list answers `models::list_envelope!` (`{count, next, previous, results}`), and a
//!    request body gets an example (`#[oai(example)]` + `models::example!`) that succeeds
//!    as sent: `api/tests/contract.rs` checks both for every route.

pub mod alerts;
pub mod api_keys;
pub mod audit_logs;
pub mod auth;
pub mod emails;
pub mod enqueue_bulk;
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

/// Groups of operations in the docs, in the docs' order ([`TAG_ORDER`]): Auth first.
#[derive(TagsDerive)]
pub enum Tags {
    /// Sign in and renew tokens. In the docs, **Authorize** takes a username and password
    /// (OAuth2 password flow on `POST /api/v1/auth/token`) and keeps the token across reloads.
    Auth,
    /// Liveness, readiness and metrics.
    Health,
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
    // poem-openapi implements OpenApi for tuples of up to 16: related groups share one.
    (
        jobs::JobsApi,
        enqueue_bulk::EnqueueBulkApi,
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

/// The tags as the docs list them (poem-openapi sorts them by name; [`spec_json`] puts them
/// in this order): signing in comes first.
pub const TAG_ORDER: [&str; 14] = [
    "Auth",
    "Jobs",
    "Queues",
    "Schedules",
    "Alerts",
    "Events",
    "Emails",
    "AuditLogs",
    "Instances",
    "Stream",
    "Users",
    "ApiKeys",
    "OktaHooks",
    "Health",
];

/// The OpenAPI document served at `/openapi.json` and in the docs: poem-openapi's, with the
/// tags in [`TAG_ORDER`] and the rules poem-openapi cannot state but the job kinds check
/// (422 naming the field), so a client generated from the spec sends what is accepted:
/// exclusive fields (`run_at` or `delay_seconds`; an email's `body` or `template`; a bulk
/// action's `ids` or `filter`), email addresses, the templates and their variables, and the
/// `maxItems` of a bulk enqueue.
pub fn spec_json(service: &OpenApiService<Apis, ()>) -> String {
    let raw = service.spec();
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(&raw) else {
        return raw;
    };
    if let Some(tags) = doc.get_mut("tags").and_then(|t| t.as_array_mut()) {
        let rank = |t: &serde_json::Value| {
            let name = t.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            TAG_ORDER
                .iter()
                .position(|o| *o == name)
                .unwrap_or(TAG_ORDER.len())
        };
        tags.sort_by_key(rank);
    }
    // Request bodies refuse unknown fields (`deny_unknown_fields`, rule 4 above), which
    // poem-openapi does not state.
    let mut bodies: Vec<String> = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for op in paths
            .values()
            .filter_map(|o| o.as_object())
            .flat_map(|o| o.values())
        {
            for (ty, c) in op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if ty.starts_with("application/json") {
                    bodies.extend(schema_name(&c["schema"]));
                }
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        while let Some(name) = bodies.pop() {
            let Some(s) = schemas.get_mut(&name) else {
                continue;
            };
            if s.get("properties").is_none() || s.get("additionalProperties").is_some() {
                continue;
            }
            s["additionalProperties"] = false.into();
            for p in s["properties"]
                .as_object()
                .into_iter()
                .flat_map(|p| p.values())
            {
                bodies.extend(schema_name(p));
                bodies.extend(schema_name(&p["items"]));
                for a in p["allOf"].as_array().into_iter().flatten() {
                    bodies.extend(schema_name(a));
                }
            }
        }
        for s in schemas.values_mut() {
            if let Some(example) = s.get_mut("example") {
                drop_nulls(example);
            }
        }
        state_rules(schemas);
    }
    if let Some(flow) = doc.pointer_mut("/components/securitySchemes/OAuth2Password/flows/password")
    {
        flow["scopes"] = serde_json::json!({});
    }
    serde_json::to_string_pretty(&doc).unwrap_or(raw)
}

/// The component a `$ref` names.
fn schema_name(r: &serde_json::Value) -> Option<String> {
    r.get("$ref")?
        .as_str()?
        .strip_prefix("#/components/schemas/")
        .map(str::to_owned)
}

/// Leaves absent optional fields out of an example (poem-openapi writes them as null).
fn drop_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The rules of [`spec_json`], stated on the schemas.
fn state_rules(schemas: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::json;
    for s in schemas.values_mut() {
        let has = |f: &str| s["properties"].get(f).is_some();
        let exclusive_start = has("run_at") && has("delay_seconds");
        // The list envelope (`models::list_envelope!`): `next` and `previous` are always
        // there, a URL or null.
        let envelope = ["count", "next", "previous", "results"]
            .into_iter()
            .all(has);
        if exclusive_start {
            s["not"] = json!({"required": ["run_at", "delay_seconds"]});
        }
        if envelope {
            for f in ["next", "previous"] {
                s["properties"][f]["nullable"] = true.into();
                if let Some(required) = s["required"].as_array_mut() {
                    required.push(f.into());
                }
            }
        }
    }
    if let Some(jobs) = schemas.get_mut("BulkEnqueueIn") {
        jobs["properties"]["jobs"]["maxItems"] = enqueue_bulk::MAX_BULK_ENQUEUE.into();
    }
    if let Some(bulk) = schemas.get_mut("BulkRequest") {
        bulk["oneOf"] = json!([{"required": ["ids"]}, {"required": ["filter"]}]);
    }
    // What the kinds' validation refuses in strings: blanks, line breaks in a subject, the
    // audit action's alphabet.
    let blank = json!({"minLength": 1, "pattern": "\\S"});
    let strings = [
        (
            "EmailPayload",
            "subject",
            json!({"minLength": 1, "pattern": "^[^\\r\\n]*\\S[^\\r\\n]*$"}),
        ),
        (
            "EmailPayload",
            "idempotency_key",
            json!({"minLength": 1, "maxLength": 200, "pattern": "\\S"}),
        ),
        (
            "AuditPayload",
            "event_id",
            json!({"minLength": 1, "maxLength": 100, "pattern": "\\S"}),
        ),
        (
            "AuditPayload",
            "action",
            json!({"pattern": "^[a-z0-9._]{1,100}$"}),
        ),
        (
            "AuditPayload",
            "target_type",
            json!({"minLength": 1, "maxLength": 100, "pattern": "\\S"}),
        ),
        ("AuditPayload", "target_id", json!({"maxLength": 200})),
        (
            "NewKeyRequest",
            "name",
            json!({"pattern": "^[A-Za-z0-9._@-]{1,100}$"}),
        ),
        ("PasswordGrant", "grant_type", json!({"enum": ["password"]})),
    ];
    for (schema, field, rules) in strings {
        if let Some(p) = schemas
            .get_mut(schema)
            .and_then(|s| s["properties"].get_mut(field))
            .and_then(|p| p.as_object_mut())
        {
            p.extend(
                rules
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
    }
    if let Some(body) = schemas.get_mut("EmailBodyPayload") {
        body["anyOf"] = json!([
            {"required": ["text"], "properties": {"text": blank}},
            {"required": ["html"], "properties": {"html": blank}}
        ]);
    }
    if let Some(email) = schemas.get_mut("EmailPayload") {
        let templates = vigil_jobs::EmailJob::TEMPLATES;
        email["properties"]["to"]["items"]["format"] = "email".into();
        email["properties"]["template"]["enum"] = templates.iter().map(|(n, _)| *n).collect();
        let mut one_of = vec![json!({
            "required": ["body"],
            "not": {"anyOf": [{"required": ["template"]}, {"required": ["vars"]}]}
        })];
        for (name, vars) in templates {
            let vars: serde_json::Map<String, serde_json::Value> =
                vars.iter().map(|v| ((*v).to_owned(), json!({}))).collect();
            one_of.push(json!({
                "required": ["template"],
                "not": {"required": ["body"]},
                "properties": {
                    "template": {"enum": [name]},
                    "vars": {"type": "object", "properties": vars, "additionalProperties": false}
                }
            }));
        }
        email["oneOf"] = one_of.into();
    }
}

/// The Swagger UI page of `spec` (from [`spec_json`]): poem-openapi's, with
/// `persistAuthorization` on, so the token Authorize got survives a reload.
pub fn docs_html(service: &OpenApiService<Apis, ()>, spec: &str) -> String {
    let html = service.swagger_ui_html();
    // poem's page inlines its own document as `let spec = <JSON>;` (JSON holds no raw
    // newline, so the first `;\n` after it ends it): the served document goes there, without
    // making poem's document a second time to search for it.
    const INLINE: &str = "let spec = ";
    let html = match html
        .find(INLINE)
        .map(|i| i + INLINE.len())
        .and_then(|start| {
            let end = start + html[start..].find(";\n")?;
            Some(format!("{}{spec}{}", &html[..start], &html[end..]))
        }) {
        Some(patched) => patched,
        None => html,
    };
    html.replacen(
        "deepLinking: true,",
        "deepLinking: true,\n        persistAuthorization: true,",
        1,
    )
}

/// The OpenAPI service of every route group.
pub fn service(public_url: &str) -> OpenApiService<Apis, ()> {
    let apis = (
        health::HealthApi,
        auth::AuthApi,
        oidc::OidcApi,
        // poem-openapi implements OpenApi for tuples of up to 16: related groups share one.
        (
            jobs::JobsApi,
            enqueue_bulk::EnqueueBulkApi,
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
