//! `/api/v1/events`: the Okta System Log events vigil stored (analysts and admins), newest
//! first, with the filters an analyst reaches for, and each event's raw JSON as received.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use vigil_store::StoreError;
use vigil_store::events::{self, EventQuery, StoredEvent};

use crate::auth::BearerAuth;
use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::routes::models::{encode, list_envelope};
use crate::state::ApiState;

/// The events routes.
pub struct EventsApi;

// `GET /api/v1/events/{uuid}` accepts every uuid ingestion stores (`max_length` below counts
// characters, as ingestion does); keep the two limits one.
const _: () = assert!(events::MAX_UUID_LEN == 100);

/// One stored event: the indexed fields, and (on the single-event route) the raw event.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EventView {
    /// Okta's event id.
    pub uuid: String,
    /// The Okta org it came from (`[[okta.orgs]] name`; `default` for a single `[okta]`).
    pub org: String,
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
    pub ingested_at: DateTime<Utc>,
    /// Present when Okta's `published` lay further in the future than the allowed clock
    /// skew: the time Okta reported; `published` is then the time vigil received the event.
    pub published_reported: Option<DateTime<Utc>>,
    /// The event exactly as Okta sent it (only on `GET /api/v1/events/{uuid}`).
    pub raw: Option<serde_json::Value>,
}

impl EventView {
    fn new(e: StoredEvent, with_raw: bool) -> EventView {
        let raw = with_raw.then(|| {
            vigil_store::storable::parse_lenient(&e.raw)
                .unwrap_or(serde_json::Value::String(e.raw.clone()))
        });
        EventView {
            uuid: e.uuid,
            org: e.org,
            published: e.published,
            event_type: e.event_type,
            severity: e.severity,
            actor_id: e.actor_id,
            actor_alternate_id: e.actor_alternate_id,
            actor_display_name: e.actor_display_name,
            client_ip: e.client_ip,
            country: e.country,
            outcome_result: e.outcome_result,
            outcome_reason: e.outcome_reason,
            display_message: e.display_message,
            transaction_id: e.transaction_id,
            ingested_at: e.ingested_at,
            published_reported: e.published_reported,
            raw,
        }
    }
}

list_envelope!(
    /// A page of events, newest first. `next` follows the cursor (stable while events
    /// arrive); `previous` is given for `page` paging only.
    EventList,
    EventView,
    {
        /// Pass as `cursor` for the next (older) page; absent on the last page.
        #[oai(skip_serializing_if_is_none)]
        next_cursor: Option<String>,
    }
);

#[OpenApi(tag = "Tags::Events")]
impl EventsApi {
    /// List stored events, newest first. Page with `cursor` (stable while events arrive) or
    /// with `page` (simple, may shift as new events arrive).
    #[oai(path = "/api/v1/events", method = "get", operation_id = "list_events")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
        /// Exact event type, e.g. `user.session.start`.
        event_type: Query<Option<String>>,
        /// The actor's login (`alternateId`) or id.
        actor: Query<Option<String>>,
        /// Exact outcome, e.g. `FAILURE`.
        outcome: Query<Option<String>>,
        /// Exact client IP address.
        ip: Query<Option<String>>,
        /// Events published at or after this time (RFC 3339).
        since: Query<Option<DateTime<Utc>>>,
        /// Events published before this time (RFC 3339).
        until: Query<Option<DateTime<Utc>>>,
        /// Events of this Okta org (`[[okta.orgs]] name`; `default` for a single `[okta]`).
        #[oai(validator(max_length = 64))]
        org: Query<Option<String>>,
        /// 1-based page number (ignored with `cursor`).
        #[oai(validator(minimum(value = "1"), maximum(value = "100000")))]
        page: Query<Option<u32>>,
        /// Events per page, 1 to 1000 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        page_size: Query<Option<u32>>,
        /// The `next_cursor` of the previous page.
        #[oai(validator(max_length = 100))]
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<EventList>> {
        let page_size = page_size.0.unwrap_or(50);
        let page = page.0.unwrap_or(1);
        let query = EventQuery {
            event_type: event_type.0,
            actor: actor.0,
            outcome: outcome.0,
            ip: ip.0,
            since: since.0,
            until: until.0,
            org: org.0,
            limit: page_size,
            offset: u64::from(page - 1) * u64::from(page_size),
            cursor: cursor.0,
        };
        let found = events::list(state.db(), &query)
            .await
            .map_err(|e| match e {
                StoreError::Invalid(why) => ApiError::bad_request(why),
                other => other.into(),
            })?;
        // The links keep the filters; `next` goes on with the cursor.
        let link = |last: String| {
            let mut q = vec![format!("page_size={page_size}"), last];
            for (name, v) in [
                ("event_type", &query.event_type),
                ("actor", &query.actor),
                ("outcome", &query.outcome),
                ("ip", &query.ip),
                ("org", &query.org),
            ] {
                if let Some(v) = v {
                    q.push(format!("{name}={}", encode(v)));
                }
            }
            for (name, t) in [("since", query.since), ("until", query.until)] {
                if let Some(t) = t {
                    q.push(format!("{name}={}", encode(&t.to_rfc3339())));
                }
            }
            format!("/api/v1/events?{}", q.join("&"))
        };
        let next = found
            .next_cursor
            .as_deref()
            .map(|c| link(format!("cursor={}", encode(c))));
        let previous =
            (query.cursor.is_none() && page > 1).then(|| link(format!("page={}", page - 1)));
        Ok(Json(EventList {
            count: found.total,
            next,
            previous,
            results: found
                .events
                .into_iter()
                .map(|e| EventView::new(e, false))
                .collect(),
            next_cursor: found.next_cursor,
        }))
    }

    /// Read one event with its raw JSON.
    #[oai(
        path = "/api/v1/events/:uuid",
        method = "get",
        operation_id = "get_event"
    )]
    async fn get(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
        /// Okta's event uuid (at most 100 characters, as ingestion accepts).
        #[oai(validator(max_length = 100))]
        uuid: Path<String>,
    ) -> ApiResult<Json<EventView>> {
        match events::get(state.db(), &uuid.0).await? {
            Some(e) => Ok(Json(EventView::new(e, true))),
            None => Err(ApiError::not_found(format!("no event {}", uuid.0))),
        }
    }
}
