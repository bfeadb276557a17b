//! An Okta Event Hook sender: sends what Okta sends to an event hook's endpoint URL.
//!
//! - [`OktaHookSender::verify`]: the one-time verification request, a `GET` with
//!   `X-Okta-Verification-Challenge` (Okta expects `{"verification": "<challenge>"}` back).
//! - [`OktaHookSender::deliver`]: a delivery, a `POST` of Okta's envelope (`eventType:
//!   com.okta.event_hook`, `eventTypeVersion: 1.0`, `cloudEventsVersion: 0.1`, `source`,
//!   `eventId`, `eventTime`, `contentType`, `data.events` = System Log `LogEvent`s).
//!
//! Every request carries the hook's authentication header (field and secret as configured
//! in Okta), like Okta's own requests.

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

/// Sends Event Hook requests to one endpoint URL.
pub struct OktaHookSender {
    client: reqwest::Client,
    url: String,
    header: String,
    secret: String,
    hook_id: String,
}

/// An answer: status and JSON body (`Null` when not JSON).
#[derive(Debug, Clone)]
pub struct HookAnswer {
    pub status: u16,
    pub body: Value,
}

impl OktaHookSender {
    /// A sender to `url` authenticating with `header: secret`.
    pub fn new(url: &str, header: &str, secret: &str) -> OktaHookSender {
        OktaHookSender {
            client: reqwest::Client::new(),
            url: url.to_owned(),
            header: header.to_owned(),
            secret: secret.to_owned(),
            hook_id: format!("who{}", &uuid::Uuid::new_v4().simple().to_string()[..17]),
        }
    }

    /// The same sender with another secret (a wrong one, for refusals).
    pub fn with_secret(mut self, secret: &str) -> OktaHookSender {
        self.secret = secret.to_owned();
        self
    }

    /// Okta's one-time verification request with `challenge`.
    pub async fn verify(&self, challenge: &str) -> HookAnswer {
        let req = self
            .client
            .get(&self.url)
            .header("Accept", "application/json")
            .header("X-Okta-Verification-Challenge", challenge);
        self.send(req).await
    }

    /// One delivery of `events` in Okta's envelope.
    pub async fn deliver(&self, events: &[Value]) -> HookAnswer {
        let texts: Vec<String> = events.iter().map(Value::to_string).collect();
        self.deliver_raw(&texts).await
    }

    /// One delivery of events given as raw JSON texts (malformed ones included).
    pub async fn deliver_raw(&self, events: &[String]) -> HookAnswer {
        let req = self
            .client
            .post(&self.url)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(self.envelope(events));
        self.send(req).await
    }

    /// Okta's envelope around `events` (raw JSON texts).
    pub fn envelope(&self, events: &[String]) -> String {
        let source = format!(
            "https://example.okta.com/api/v1/eventHooks/{}",
            self.hook_id
        );
        let head = json!({
            "eventType": "com.okta.event_hook",
            "eventTypeVersion": "1.0",
            "cloudEventsVersion": "0.1",
            "source": source,
            "eventId": uuid::Uuid::new_v4().to_string(),
            "eventTime": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "contentType": "application/json",
        })
        .to_string();
        // The events are spliced in as sent, byte for byte.
        format!(
            "{},\"data\":{{\"events\":[{}]}}}}",
            &head[..head.len() - 1],
            events.join(",")
        )
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> HookAnswer {
        let resp = req
            .header(self.header.as_str(), self.secret.as_str())
            .send()
            .await
            .expect("the hook endpoint answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        HookAnswer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }
}
