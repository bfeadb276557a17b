//! Local Slack, Microsoft Teams and PagerDuty receivers: one real HTTP server that checks
//! each request against the format the service accepts, answers as the service does, and
//! keeps what it accepted, so tests see what an on-call engineer would see.
//!
//! - `POST /slack/...` (an incoming webhook): Block Kit. A `text` fallback; 1-50 blocks of
//!   `header` (plain_text, at most 150 characters), `section` (text or at most 10 fields,
//!   text objects `plain_text`/`mrkdwn` of at most 2000 characters), `actions` (buttons with
//!   plain_text labels of at most 75 and http(s) URLs of at most 3000), `context`,
//!   `divider`. Accepted: `200 ok`; else `400 invalid_blocks` / `invalid_payload`.
//! - `POST /teams/...` (an incoming webhook): `{"type": "message", "attachments": [...]}`
//!   with an Adaptive Card (`application/vnd.microsoft.card.adaptive`, `type`
//!   `AdaptiveCard`, a `version`, a non-empty `body` of `TextBlock` with `text` / `FactSet`
//!   with `facts` of `title` + `value`, `Action.OpenUrl` actions with a `url`). Accepted:
//!   `200 1`; else `400` with the reason.
//! - `POST /pagerduty/v2/enqueue` (Events API v2): the routing key must be the one set;
//!   `event_action` `trigger` (needs `payload.summary` of 1-1024 characters, `payload.source`,
//!   `payload.severity` one of critical/error/warning/info), `acknowledge` or `resolve` (need
//!   `dedup_key`). Accepted: `202 {"status":"success","message":"Event processed",
//!   "dedup_key":...}`; else `400 {"status":"invalid event","message":"Event object is
//!   invalid","errors":[...]}`. Dedup as PagerDuty does it: a trigger whose key has an open
//!   (triggered or acknowledged) incident adds an alert to it; after `resolve` the same key
//!   opens a new incident; acknowledge/resolve of a key without an open incident change
//!   nothing.
//!
//! [`ChannelReceiver::answer_next`] makes the next requests fail (status, `Retry-After`,
//! body) before any check, like a service under load.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, Request, Response, Server};
use serde_json::{Value, json};

/// A PagerDuty incident as the receiver keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub dedup_key: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: String,
    /// Triggers it absorbed (1 + deduplicated ones).
    pub alerts: u32,
    pub summary: String,
    pub severity: String,
}

/// A request the receiver refused, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub path: String,
    pub reason: String,
    pub body: String,
}

#[derive(Default)]
struct State {
    slack: Vec<Value>,
    teams: Vec<Value>,
    pagerduty: Vec<Value>,
    incidents: Vec<Incident>,
    rejected: Vec<Rejected>,
    /// Requests seen (accepted, refused or failed on purpose).
    requests: usize,
    answers: VecDeque<(u16, Option<u64>, String)>,
    routing_key: String,
}

/// The receiver; stops when dropped.
pub struct ChannelReceiver {
    base: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

struct Receive(Arc<Mutex<State>>);

fn answer(status: u16, retry_after: Option<u64>, body: String, json_body: bool) -> Response {
    let mut r = Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
    if let Some(s) = retry_after {
        r = r.header("Retry-After", s.to_string());
    }
    if json_body {
        r = r.content_type("application/json");
    }
    r.body(body)
}

impl Endpoint for Receive {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_owned();
        let body = req.take_body().into_string().await.unwrap_or_default();
        let mut state = lock(&self.0);
        state.requests += 1;
        if let Some((code, after, text)) = state.answers.pop_front() {
            return Ok(answer(code, after, text, false));
        }
        let parsed: Result<Value, _> = serde_json::from_str(&body);
        let reject = |state: &mut State, reason: String| {
            state.rejected.push(Rejected {
                path: path.clone(),
                reason: reason.clone(),
                body: body.clone(),
            });
        };
        if path.starts_with("/slack/") {
            let checked = parsed
                .map_err(|_| "invalid_payload".to_owned())
                .and_then(|v| check_slack(&v).map(|()| v));
            return Ok(match checked {
                Ok(v) => {
                    state.slack.push(v);
                    answer(200, None, "ok".into(), false)
                }
                Err(reason) => {
                    reject(&mut state, reason.clone());
                    answer(400, None, reason, false)
                }
            });
        }
        if path.starts_with("/teams/") {
            let checked = parsed
                .map_err(|e| format!("Bad payload: {e}"))
                .and_then(|v| check_teams(&v).map(|()| v));
            return Ok(match checked {
                Ok(v) => {
                    state.teams.push(v);
                    answer(200, None, "1".into(), false)
                }
                Err(reason) => {
                    reject(&mut state, reason.clone());
                    answer(
                        400,
                        None,
                        format!("Webhook message delivery failed with error: {reason}"),
                        false,
                    )
                }
            });
        }
        if path == "/pagerduty/v2/enqueue" {
            let key = state.routing_key.clone();
            let checked = parsed
                .map_err(|_| "Event object is invalid: not JSON".to_owned())
                .and_then(|v| check_pagerduty(&v, &key).map(|()| v));
            return Ok(match checked {
                Ok(v) => {
                    let dedup_key = apply_pagerduty(&mut state, &v);
                    state.pagerduty.push(v);
                    answer(
                        202,
                        None,
                        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key})
                            .to_string(),
                        true,
                    )
                }
                Err(reason) => {
                    reject(&mut state, reason.clone());
                    answer(
                        400,
                        None,
                        json!({"status": "invalid event", "message": "Event object is invalid",
                               "errors": [reason]})
                        .to_string(),
                        true,
                    )
                }
            });
        }
        reject(&mut state, "no such endpoint".into());
        Ok(answer(404, None, "no_service".into(), false))
    }
}

fn text_object(v: &Value, max: usize, kinds: &[&str]) -> Result<(), String> {
    let kind = v["type"].as_str().unwrap_or("");
    if !kinds.contains(&kind) {
        return Err(format!("invalid_blocks: text type `{kind}`"));
    }
    let text = v["text"]
        .as_str()
        .ok_or("invalid_blocks: text object without text")?;
    if text.is_empty() || text.chars().count() > max {
        return Err(format!("invalid_blocks: text must be 1-{max} characters"));
    }
    Ok(())
}

fn http_url(v: &Value, max: usize) -> Result<(), String> {
    let url = v.as_str().unwrap_or("");
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > max {
        return Err(format!("invalid url `{url}`"));
    }
    Ok(())
}

/// Slack's Block Kit rules for an incoming webhook message.
pub fn check_slack(v: &Value) -> Result<(), String> {
    if v["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        return Err("invalid_payload: no text fallback".into());
    }
    let blocks = v["blocks"]
        .as_array()
        .ok_or("invalid_blocks: blocks must be an array")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err("invalid_blocks: 1 to 50 blocks".into());
    }
    for b in blocks {
        match b["type"].as_str().unwrap_or("") {
            "header" => text_object(&b["text"], 150, &["plain_text"])?,
            "section" => {
                let fields = b["fields"].as_array();
                if b["text"].is_null() && fields.is_none() {
                    return Err("invalid_blocks: a section needs text or fields".into());
                }
                if !b["text"].is_null() {
                    text_object(&b["text"], 3000, &["plain_text", "mrkdwn"])?;
                }
                if let Some(fields) = fields {
                    if fields.is_empty() || fields.len() > 10 {
                        return Err("invalid_blocks: 1 to 10 fields".into());
                    }
                    for f in fields {
                        text_object(f, 2000, &["plain_text", "mrkdwn"])?;
                    }
                }
            }
            "actions" => {
                let elements = b["elements"]
                    .as_array()
                    .ok_or("invalid_blocks: actions without elements")?;
                if elements.is_empty() || elements.len() > 25 {
                    return Err("invalid_blocks: 1 to 25 elements".into());
                }
                for e in elements {
                    if e["type"] != "button" {
                        return Err("invalid_blocks: only buttons are expected".into());
                    }
                    text_object(&e["text"], 75, &["plain_text"])?;
                    http_url(&e["url"], 3000).map_err(|m| format!("invalid_blocks: {m}"))?;
                    if let Some(style) = e["style"].as_str()
                        && style != "primary"
                        && style != "danger"
                    {
                        return Err(format!("invalid_blocks: style `{style}`"));
                    }
                }
            }
            "context" | "divider" => {}
            other => return Err(format!("invalid_blocks: unknown block type `{other}`")),
        }
    }
    Ok(())
}

/// The rules of a Teams incoming webhook message with an Adaptive Card.
pub fn check_teams(v: &Value) -> Result<(), String> {
    if v["type"] != "message" {
        return Err("type must be `message`".into());
    }
    let attachments = v["attachments"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("attachments must be a non-empty array")?;
    for a in attachments {
        if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
            return Err("contentType must be application/vnd.microsoft.card.adaptive".into());
        }
        let card = &a["content"];
        if card["type"] != "AdaptiveCard" {
            return Err("content.type must be AdaptiveCard".into());
        }
        if card["version"].as_str().is_none_or(|s| s.is_empty()) {
            return Err("content.version is required".into());
        }
        let body = card["body"]
            .as_array()
            .filter(|b| !b.is_empty())
            .ok_or("content.body must be a non-empty array")?;
        for el in body {
            match el["type"].as_str().unwrap_or("") {
                "TextBlock" => {
                    if el["text"].as_str().is_none_or(|t| t.is_empty()) {
                        return Err("a TextBlock needs text".into());
                    }
                }
                "FactSet" => {
                    let facts = el["facts"].as_array().ok_or("a FactSet needs facts")?;
                    for f in facts {
                        if !(f["title"].is_string() && f["value"].is_string()) {
                            return Err("a fact needs string title and value".into());
                        }
                    }
                }
                other => return Err(format!("unexpected element `{other}`")),
            }
        }
        for action in card["actions"].as_array().into_iter().flatten() {
            if action["type"] != "Action.OpenUrl" {
                return Err("only Action.OpenUrl actions are expected".into());
            }
            http_url(&action["url"], 2048)?;
        }
    }
    Ok(())
}

/// The rules of a PagerDuty Events API v2 event.
pub fn check_pagerduty(v: &Value, routing_key: &str) -> Result<(), String> {
    let key = v["routing_key"].as_str().unwrap_or("");
    if key.is_empty() || key != routing_key {
        return Err("'routing_key' is invalid".into());
    }
    let dedup = v["dedup_key"].as_str();
    if dedup.is_some_and(|d| d.is_empty() || d.len() > 255) {
        return Err("'dedup_key' must be 1-255 characters".into());
    }
    match v["event_action"].as_str().unwrap_or("") {
        "trigger" => {
            let p = &v["payload"];
            let summary = p["summary"].as_str().unwrap_or("");
            if summary.is_empty() || summary.chars().count() > 1024 {
                return Err("'payload.summary' must be 1-1024 characters".into());
            }
            if p["source"].as_str().is_none_or(|s| s.is_empty()) {
                return Err("'payload.source' is missing".into());
            }
            let sev = p["severity"].as_str().unwrap_or("");
            if !["critical", "error", "warning", "info"].contains(&sev) {
                return Err(format!(
                    "'payload.severity' `{sev}` is not critical, error, warning or info"
                ));
            }
            if let Some(ts) = p["timestamp"].as_str()
                && chrono::DateTime::parse_from_rfc3339(ts).is_err()
            {
                return Err("'payload.timestamp' is not ISO 8601".into());
            }
        }
        "acknowledge" | "resolve" => {
            if dedup.is_none() {
                return Err("'dedup_key' is required for acknowledge and resolve".into());
            }
        }
        other => return Err(format!("'event_action' `{other}` is invalid")),
    }
    Ok(())
}

/// Applies an accepted event to the incidents; returns its dedup key.
fn apply_pagerduty(state: &mut State, v: &Value) -> String {
    let key = v["dedup_key"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let open = state
        .incidents
        .iter_mut()
        .rev()
        .find(|i| i.dedup_key == key && i.status != "resolved");
    match (v["event_action"].as_str().unwrap_or(""), open) {
        ("trigger", Some(incident)) => incident.alerts += 1,
        ("trigger", None) => state.incidents.push(Incident {
            dedup_key: key.clone(),
            status: "triggered".into(),
            alerts: 1,
            summary: v["payload"]["summary"].as_str().unwrap_or("").to_owned(),
            severity: v["payload"]["severity"].as_str().unwrap_or("").to_owned(),
        }),
        ("acknowledge", Some(incident)) => incident.status = "acknowledged".into(),
        ("resolve", Some(incident)) => incident.status = "resolved".into(),
        _ => {}
    }
    key
}

impl ChannelReceiver {
    /// Starts on a free port of 127.0.0.1; PagerDuty accepts `routing_key`.
    pub async fn start(routing_key: &str) -> ChannelReceiver {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind the channel receiver");
        let addr = *acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("a TCP address");
        let state = Arc::new(Mutex::new(State {
            routing_key: routing_key.to_owned(),
            ..State::default()
        }));
        let endpoint = Receive(state.clone());
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(endpoint).await;
        });
        ChannelReceiver {
            base: format!("http://{addr}"),
            state,
            server,
        }
    }

    /// A Slack incoming webhook URL (the path holds the secret, as Slack's do).
    pub fn slack_url(&self) -> String {
        format!("{}/slack/services/T0001/B0001/s3cr3tS1ackT0ken", self.base)
    }

    /// A Teams incoming webhook URL.
    pub fn teams_url(&self) -> String {
        format!("{}/teams/webhookb2/s3cr3t-teams-token", self.base)
    }

    /// The Events API v2 URL.
    pub fn pagerduty_url(&self) -> String {
        format!("{}/pagerduty/v2/enqueue", self.base)
    }

    /// Answers the next requests with (status, Retry-After seconds, body), in order, without
    /// checking them.
    pub fn answer_next(&self, answers: &[(u16, Option<u64>, &str)]) {
        lock(&self.state)
            .answers
            .extend(answers.iter().map(|(c, a, b)| (*c, *a, (*b).to_owned())));
    }

    pub fn slack(&self) -> Vec<Value> {
        lock(&self.state).slack.clone()
    }

    pub fn teams(&self) -> Vec<Value> {
        lock(&self.state).teams.clone()
    }

    /// Accepted PagerDuty events, in order.
    pub fn pagerduty(&self) -> Vec<Value> {
        lock(&self.state).pagerduty.clone()
    }

    pub fn incidents(&self) -> Vec<Incident> {
        lock(&self.state).incidents.clone()
    }

    pub fn rejected(&self) -> Vec<Rejected> {
        lock(&self.state).rejected.clone()
    }

    /// Every request seen, accepted or not.
    pub fn requests(&self) -> usize {
        lock(&self.state).requests
    }

    /// Waits until `check` holds (panics after `timeout`).
    pub async fn wait_until(&self, what: &str, timeout: Duration, check: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !check(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "channel receiver: timed out waiting for {what}; rejected: {:?}",
                self.rejected()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagerduty_dedups_while_open_and_reopens_after_resolve() {
        let mut s = State::default();
        let trigger = json!({"event_action": "trigger", "dedup_key": "k",
                             "payload": {"summary": "x", "severity": "error"}});
        apply_pagerduty(&mut s, &trigger);
        apply_pagerduty(&mut s, &trigger);
        assert_eq!(s.incidents.len(), 1);
        assert_eq!(s.incidents[0].alerts, 2);
        apply_pagerduty(
            &mut s,
            &json!({"event_action": "acknowledge", "dedup_key": "k"}),
        );
        assert_eq!(s.incidents[0].status, "acknowledged");
        apply_pagerduty(
            &mut s,
            &json!({"event_action": "resolve", "dedup_key": "k"}),
        );
        apply_pagerduty(
            &mut s,
            &json!({"event_action": "resolve", "dedup_key": "nope"}),
        );
        apply_pagerduty(&mut s, &trigger);
        assert_eq!(
            s.incidents
                .iter()
                .map(|i| i.status.as_str())
                .collect::<Vec<_>>(),
            ["resolved", "triggered"]
        );
    }

    #[test]
    fn slack_blocks_are_checked() {
        let ok = json!({"text": "t", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*a*\nb"}]},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": "https://x"}]}
        ]});
        check_slack(&ok).unwrap();
        let mut bad = ok.clone();
        bad["blocks"][0]["text"]["type"] = json!("mrkdwn");
        assert!(check_slack(&bad).is_err(), "a header is plain_text only");
        let mut bad = ok;
        bad["blocks"][0]["text"]["text"] = json!("x".repeat(151));
        assert!(check_slack(&bad).is_err());
    }
}
