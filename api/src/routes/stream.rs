//! `GET /api/v1/stream`: the dashboard's live view as server-sent events (see
//! [`crate::live`]). Opening it costs one read of the caller's read budget; it then carries
//! every change of the queue counts, the job list, alerts, instances and schedules.

use poem::web::Data;
use poem::web::sse::Event;
use poem_openapi::OpenApi;
use poem_openapi::payload::EventStream;
use poem_openapi::types::ToJSON;

use crate::auth::BearerAuth;
use crate::live::LiveEvent;
use crate::routes::Tags;
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
        EventStream::new(state.live().subscribe(&state))
            .keep_alive(KEEP_ALIVE)
            .to_event(|e| {
                let kind = e.section.to_json_string().trim_matches('"').to_owned();
                Event::message(e.to_json_string()).event_type(kind)
            })
    }
}
