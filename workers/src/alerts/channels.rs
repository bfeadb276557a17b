//! Slack, Microsoft Teams and PagerDuty: one payload format each, sent with the webhook
//! sender's HTTP client (no redirects, the webhook timeout).
//!
//! - **Slack** incoming webhook: a Block Kit message (header; severity, rule, key, events,
//!   level, first/last seen as fields; a button to the alert page) with a plain `text`
//!   fallback for notifications. Slack answers `200 ok` or an error word in the body
//!   (`invalid_payload`, `no_service`, ...).
//! - **Teams** incoming webhook: a `message` with one Adaptive Card (1.4) attachment: title,
//!   a FactSet, an `Action.OpenUrl` to the alert page.
//! - **PagerDuty** Events API v2: `trigger` with `dedup_key` = `vigil-alert-<id>` (one
//!   incident per vigil alert: a later level or round adds to it while it is open),
//!   severity mapped (critical → critical, high → error, medium → warning, low → info),
//!   `acknowledge` and `resolve` with the same key when the alert is acknowledged or
//!   resolved in vigil. The routing key comes from the channel's settings (a secret).
//!
//! Every answer goes through [`super::http_outcome::classify`]: 2xx delivered, 429/5xx retried
//! (honouring `Retry-After`), other 4xx final with the body's reason. Channel URLs (they hold
//! tokens) and routing keys are never logged: targets show as `<kind>:<channel name>`.

use serde_json::{Value, json};
use vigil_jobs::EscalationSettings;
use vigil_jobs::escalation::{ChannelKind, ChannelSettings, redact_webhook};
use vigil_store::alerts::Alert;
use vigil_store::notifications::{Notification, NotificationEvent};

use super::http_outcome::{HttpOutcome, classify};

/// PagerDuty's dedup key of a vigil alert.
pub fn pagerduty_dedup_key(alert_id: i64) -> String {
    format!("vigil-alert-{alert_id}")
}

/// Sends notification `n` of `alert` to its configured channel.
pub(crate) async fn send(
    client: &reqwest::Client,
    settings: &EscalationSettings,
    n: &Notification,
    alert: &Alert,
) -> HttpOutcome {
    let Some(channel) = settings.channels.get(&n.target) else {
        return HttpOutcome::Final(format!(
            "channel `{}` is not configured (escalation.channels)",
            n.target
        ));
    };
    let link = settings.link(alert.id);
    let body = match (channel.kind, n.event) {
        (ChannelKind::Slack, NotificationEvent::Trigger) => slack_message(alert, n.level, &link),
        (ChannelKind::Teams, NotificationEvent::Trigger) => teams_message(alert, n.level, &link),
        (ChannelKind::Pagerduty, event) => pagerduty_event(channel, alert, n.level, event, &link),
        (kind, event) => {
            return HttpOutcome::Final(format!(
                "a {} channel has no `{event}` message",
                kind.as_str()
            ));
        }
    };
    let url = channel.endpoint();
    let sent = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    classify(
        sent,
        &format!("{} {}", channel.kind.as_str(), redact_webhook(url)),
    )
    .await
}

/// Slack mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

fn headline(alert: &Alert, level: i64) -> String {
    format!(
        "{} alert #{}: {} (level {level})",
        alert.severity.to_uppercase(),
        alert.id,
        alert.title.replace(['\r', '\n'], " ")
    )
}

/// The Block Kit message of `alert` at `level`.
pub fn slack_message(alert: &Alert, level: i64, link: &str) -> Value {
    let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": clip(&format!("*{name}*\n{}", slack_escape(value)), 2000)});
    json!({
        "text": clip(&format!("[vigil] {}", headline(alert, level)), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": clip(&headline(alert, level), 150), "emoji": false}},
            {"type": "section", "fields": [
                field("Severity", &alert.severity),
                field("Rule", &alert.rule_id),
                field("Key", &alert.group_key),
                field("Events", &alert.event_count.to_string()),
                field("Level", &format!("{level} of policy {}", alert.escalation_policy.as_deref().unwrap_or("-"))),
                field("Seen", &format!("{} – {}", alert.first_seen.to_rfc3339(), alert.last_seen.to_rfc3339())),
            ]},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open alert"},
                 "url": clip(link, 3000), "style": "danger"}
            ]}
        ]
    })
}

/// The Teams message (one Adaptive Card) of `alert` at `level`.
pub fn teams_message(alert: &Alert, level: i64, link: &str) -> Value {
    let fact = |title: &str, value: String| json!({"title": title, "value": value});
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
                     "color": if matches!(alert.severity.as_str(), "high" | "critical") { "Attention" } else { "Warning" },
                     "text": headline(alert, level)},
                    {"type": "FactSet", "facts": [
                        fact("Severity", alert.severity.clone()),
                        fact("Rule", alert.rule_id.clone()),
                        fact("Key", alert.group_key.clone()),
                        fact("Events", alert.event_count.to_string()),
                        fact("Level", format!("{level} of policy {}", alert.escalation_policy.as_deref().unwrap_or("-"))),
                        fact("First seen", alert.first_seen.to_rfc3339()),
                        fact("Last seen", alert.last_seen.to_rfc3339()),
                    ]}
                ],
                "actions": [{"type": "Action.OpenUrl", "title": "Open alert", "url": link}]
            }
        }]
    })
}

/// PagerDuty's severity for a vigil severity.
pub fn pagerduty_severity(severity: &str) -> &'static str {
    match severity {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        _ => "info",
    }
}

/// The Events API v2 event for `alert`.
pub fn pagerduty_event(
    channel: &ChannelSettings,
    alert: &Alert,
    level: i64,
    event: NotificationEvent,
    link: &str,
) -> Value {
    let dedup_key = pagerduty_dedup_key(alert.id);
    match event {
        NotificationEvent::Trigger => json!({
            "routing_key": channel.routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": "vigil",
            "client_url": link,
            "payload": {
                "summary": clip(&headline(alert, level), 1024),
                "source": "vigil",
                "severity": pagerduty_severity(&alert.severity),
                "timestamp": alert.last_seen.to_rfc3339(),
                "component": alert.rule_id,
                "group": alert.group_key,
                "class": alert.rule_id,
                "custom_details": {
                    "alert_id": alert.id,
                    "events": alert.event_count,
                    "level": level,
                    "round": alert.escalation_round,
                    "policy": alert.escalation_policy,
                    "first_seen": alert.first_seen,
                    "last_seen": alert.last_seen,
                }
            },
            "links": [{"href": link, "text": format!("vigil alert #{}", alert.id)}]
        }),
        NotificationEvent::Acknowledge | NotificationEvent::Resolve => json!({
            "routing_key": channel.routing_key,
            "event_action": event.as_str(),
            "dedup_key": dedup_key,
        }),
    }
}
