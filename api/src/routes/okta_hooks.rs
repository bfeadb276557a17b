//! `/api/v1/hooks/okta/events`: Okta Event Hooks, the push side of Okta ingestion.
//!
//! - `GET` with `X-Okta-Verification-Challenge` is Okta's one-time verification: the answer
//!   is `{"verification": "<the challenge>"}`.
//! - `POST` is a delivery: Okta's envelope (`eventType: com.okta.event_hook`, ...) whose
//!   `data.events` are System Log `LogEvent`s. They are parsed by the same code as polling
//!   (`vigil_store::okta_event`), clamped by the same clock sanity and stored through the
//!   same transaction ([`okta_cursor::commit_page`], no cursor move), so an event delivered
//!   and polled is stored once (by uuid) and a bad one becomes a malformed record. The new
//!   events' ids go to detection as an `alert_escalation` job (`okta_event_ids`), which a
//!   worker picks up within moments; if queueing fails, the next polling run's sweep detects
//!   them. The API never calls the workers: it meets them in SQL and Redis, as elsewhere.
//!
//! Both requests must carry the configured header (`okta.event_hook_header`, default
//! `Authorization`) with the configured secret (`okta.event_hook_secret`), compared in
//! constant time; without a configured secret the route answers 404. Tokens of vigil's own
//! users are not accepted here, and the secret is never logged or echoed.

use poem::web::Data;
use poem::{Body, Request};
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vigil_jobs::AlertEscalationJob;
use vigil_queue::NewJob;
use vigil_store::events::{MalformedEvent, NewEvent};
use vigil_store::okta_cursor;
use vigil_store::okta_event::parse_event;

use crate::error::{ApiError, ApiResult};
use crate::routes::Tags;
use crate::state::ApiState;
use vigil_jobs::Job as _;

pub use crate::okta_hook::{OktaHookMetrics, OktaHookSettings};

/// The Event Hook routes.
pub struct OktaHooksApi;

/// The answer to Okta's one-time verification.
#[derive(Debug, Clone, Object)]
pub struct Verification {
    /// The `X-Okta-Verification-Challenge` value, echoed.
    pub verification: String,
}

/// What a delivery did.
#[derive(Debug, Clone, Object)]
pub struct HookReceipt {
    /// Events in `data.events`.
    pub received: u64,
    /// Events stored for the first time.
    pub stored: u64,
    /// Events already stored (polled first, or a delivery repeated).
    pub duplicates: u64,
    /// Events kept in the malformed table instead.
    pub malformed: u64,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Option<EnvelopeData<'a>>,
}

#[derive(Deserialize)]
struct EnvelopeData<'a> {
    #[serde(borrow)]
    events: Option<Vec<&'a RawValue>>,
}

/// The configured hook, or 404 when off.
fn settings(state: &ApiState) -> ApiResult<&OktaHookSettings> {
    state.settings().okta_hook.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "Okta Event Hooks are off here: set okta.event_hook_secret to receive them",
        )
    })
}

/// Checks the secret header in constant time (both sides hashed first, so not even the
/// length is compared directly).
fn authorize(state: &ApiState, cfg: &OktaHookSettings, req: &Request) -> ApiResult<()> {
    let given = req
        .headers()
        .get(cfg.header.as_str())
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let want = Sha256::digest(cfg.secret.expose_secret().as_bytes());
    let got = Sha256::digest(given);
    if bool::from(want[..].ct_eq(&got[..])) && !given.is_empty() {
        return Ok(());
    }
    state
        .hook_metrics()
        .deliveries
        .with_label_values(&["unauthorized"])
        .inc();
    tracing::warn!(header = %cfg.header, "an Okta Event Hook request without the configured secret was refused");
    Err(ApiError::unauthorized(format!(
        "missing or wrong {} header: it must carry okta.event_hook_secret",
        cfg.header
    )))
}

#[OpenApi(tag = "Tags::OktaHooks")]
impl OktaHooksApi {
    /// Okta's one-time Event Hook verification: echoes `X-Okta-Verification-Challenge` as
    /// `{"verification": ...}`. Needs the configured secret header.
    #[oai(
        path = "/api/v1/hooks/okta/events",
        method = "get",
        operation_id = "verify_okta_event_hook"
    )]
    async fn verify(
        &self,
        state: Data<&ApiState>,
        req: &Request,
        /// The challenge Okta sends.
        #[oai(name = "X-Okta-Verification-Challenge", validator(max_length = 1000))]
        challenge: Header<String>,
    ) -> ApiResult<Json<Verification>> {
        let cfg = settings(&state)?;
        authorize(&state, cfg, req)?;
        state
            .hook_metrics()
            .deliveries
            .with_label_values(&["verified"])
            .inc();
        tracing::info!("Okta Event Hook verified");
        Ok(Json(Verification {
            verification: challenge.0,
        }))
    }

    /// An Okta Event Hook delivery (`application/json`, Okta's envelope with `data.events`):
    /// stores the events as polling does (once per uuid) and queues their detection. Needs
    /// the configured secret header.
    #[oai(
        path = "/api/v1/hooks/okta/events",
        method = "post",
        operation_id = "deliver_okta_event_hook"
    )]
    async fn deliver(
        &self,
        state: Data<&ApiState>,
        req: &Request,
        body: Body,
    ) -> ApiResult<Json<HookReceipt>> {
        let cfg = settings(&state)?;
        authorize(&state, cfg, req)?;
        let metrics = state.hook_metrics();
        let bytes = body
            .into_bytes()
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        let envelope: Envelope<'_> = serde_json::from_slice(&bytes).map_err(|e| {
            metrics.deliveries.with_label_values(&["bad_request"]).inc();
            ApiError::bad_request(format!("not an Okta Event Hook delivery (JSON): {e}"))
        })?;
        let Some(raw_events) = envelope.data.and_then(|d| d.events) else {
            metrics.deliveries.with_label_values(&["bad_request"]).inc();
            return Err(ApiError::bad_request(
                "not an Okta Event Hook delivery: no data.events array",
            ));
        };
        let received = chrono::Utc::now();
        let mut events: Vec<NewEvent> = Vec::with_capacity(raw_events.len());
        let mut malformed: Vec<MalformedEvent> = Vec::new();
        for raw in &raw_events {
            match parse_event(raw) {
                Ok(mut e) => {
                    if e.clamp_future(received, cfg.max_clock_skew) {
                        tracing::warn!(uuid = %e.uuid, "pushed Okta event published in the future beyond okta.max_clock_skew_seconds; stored with the time of receipt and flagged");
                    }
                    events.push(e);
                }
                Err(m) => {
                    tracing::warn!(uuid = ?m.uuid, reason = %m.reason, "malformed pushed Okta event recorded");
                    malformed.push(m);
                }
            }
        }
        let committed = match okta_cursor::commit_page(
            state.db(),
            okta_cursor::DEFAULT_SOURCE,
            &events,
            &malformed,
            None,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                metrics.deliveries.with_label_values(&["error"]).inc();
                return Err(e.into());
            }
        };
        let receipt = HookReceipt {
            received: raw_events.len() as u64,
            stored: committed.new.len() as u64,
            duplicates: (events.len() - committed.new.len() - committed.refused.len()) as u64,
            malformed: (malformed.len() + committed.refused.len()) as u64,
        };
        metrics.deliveries.with_label_values(&["stored"]).inc();
        metrics
            .events
            .with_label_values(&["stored"])
            .inc_by(receipt.stored);
        metrics
            .events
            .with_label_values(&["duplicate"])
            .inc_by(receipt.duplicates);
        metrics
            .events
            .with_label_values(&["malformed"])
            .inc_by(receipt.malformed);
        let ids: Vec<i64> = committed.new.iter().map(|e| e.id).collect();
        for chunk in ids.chunks(AlertEscalationJob::MAX_OKTA_EVENTS) {
            queue_detection(&state, chunk).await;
        }
        tracing::info!(
            received = receipt.received,
            stored = receipt.stored,
            duplicates = receipt.duplicates,
            malformed = receipt.malformed,
            "Okta Event Hook delivery"
        );
        Ok(Json(receipt))
    }
}

/// Queues detection of the stored events `ids`; the polling sweep catches up on failure.
async fn queue_detection(state: &ApiState, ids: &[i64]) {
    let job = AlertEscalationJob {
        okta_event_ids: ids.to_vec(),
        ..Default::default()
    };
    let mut new = NewJob::new(
        AlertEscalationJob::QUEUE,
        serde_json::to_value(job).unwrap_or_default(),
    );
    if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
        new.idempotency_key = Some(format!("okta-hook-events-{first}-{last}"));
    }
    if let Err(e) = state.engine().enqueue(new).await {
        tracing::warn!(events = ids.len(), error = %e,
            "could not queue detection of pushed Okta events; the next polling run's sweep detects them");
    }
}
