//! `GET /api/v1/stream`: the dashboard's live view as server-sent events (see
//! [`crate::live`]). Opening it costs one read of the caller's read budget; it then carries
//! every change of the queue counts, the job list, alerts, instances and schedules.

use poem::web::Data;
use poem::web::sse::Event;
use poem_openapi::OpenApi;
use poem_openapi::payload::EventStream;
use poem_openapi::types::ToJSON;

use serde_json::Value;
use vigil_store::alerts::AlertQuery;

use crate::auth::BearerAuth;
use crate::live::{LIVE_ALERTS, LIVE_EVERY, LiveEvent, LiveSection};
use crate::routes::{Tags, alerts, instances, queues, schedules};
use crate::state::ApiState;

/// How often an idle stream sends a comment line, so proxies keep it open.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The stream route.
pub struct StreamApi;

#[OpenApi(tag = "Tags::Stream")]
impl StreamApi {
    /// The live view (server-sent events). Each event's type names its section (`queues`,
    /// `jobs`, `alerts`, `instances`, `schedules`) and its data is a `LiveEvent`; every
    /// section is sent once on connect, then whenever it changes (read once a second per
    /// server). The stream ends after two minutes: reconnect (with a current token).
    #[oai(path = "/api/v1/stream", method = "get", operation_id = "live_stream")]
    async fn stream(
        &self,
        _auth: BearerAuth,
        state: Data<&ApiState>,
    ) -> EventStream<futures::stream::BoxStream<'static, LiveEvent>> {
        let reader = state.clone();
        EventStream::new(state.live().subscribe(move || {
            tokio::spawn(read_loop(reader));
        }))
        .keep_alive(KEEP_ALIVE)
        .to_event(|e| {
            let kind = e.section.to_json_string().trim_matches('"').to_owned();
            Event::message(e.to_json_string()).event_type(kind)
        })
    }
}

/// Reads every section each [`LIVE_EVERY`] until no stream is open.
async fn read_loop(state: ApiState) {
    let hub = state.live();
    let mut last_counts: Option<Value> = None;
    loop {
        if hub.stop_if_idle() {
            return;
        }
        let mut next = hub.sections();
        let newest = AlertQuery {
            page: 1,
            page_size: LIVE_ALERTS,
            ..AlertQuery::default()
        };
        let (queue_list, actors, alert_list, schedule_list) = tokio::join!(
            queues::queue_views(&state),
            state.engine().actors(),
            alerts::alert_list(state.db(), &newest),
            schedules::schedule_views(&state),
        );
        // A section that cannot be read keeps its last value (logged).
        let mut put = |section, value: Result<Value, String>| match value {
            Ok(v) => {
                next.insert(section, v);
            }
            Err(e) => tracing::debug!(?section, error = %e, "live view: section not read"),
        };
        if let Ok(list) = &queue_list {
            let counts: Vec<Value> = list
                .iter()
                .map(|q| serde_json::json!([q.queue.to_json(), q.counts.to_json()]))
                .collect();
            let counts = Value::from(counts);
            if last_counts.as_ref() != Some(&counts) {
                last_counts = Some(counts);
                put(
                    LiveSection::Jobs,
                    Ok(serde_json::json!({"changed_at": chrono::Utc::now()})),
                );
            }
        }
        put(LiveSection::Queues, json(queue_list));
        put(
            LiveSection::Instances,
            json(
                actors
                    .map(instances::group)
                    .map_err(crate::error::ApiError::from),
            ),
        );
        put(LiveSection::Alerts, json(alert_list));
        put(LiveSection::Schedules, json(schedule_list));
        hub.publish(next);
        tokio::time::sleep(LIVE_EVERY).await;
    }
}

/// A route's answer as JSON, as the route would send it.
fn json<T: ToJSON>(value: crate::error::ApiResult<T>) -> Result<Value, String> {
    value
        .map(|v| v.to_json().unwrap_or_default())
        .map_err(|e| format!("{e:?}"))
}
