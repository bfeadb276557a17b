//! How one HTTP call of a notification ended ([`HttpOutcome`]) and how an answer is read
//! ([`classify`]): 2xx delivered (with the provider's id), 429/5xx and transport errors
//! retried (honouring `Retry-After`), anything else final with the body's reason. Shared by
//! the signed webhook (`webhook.rs`) and the chat/paging channels (`channels.rs`).

use std::time::Duration;

/// How one HTTP call of a notification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpOutcome {
    /// 2xx: the provider's status line and the id it gave, if any.
    Delivered { status: String, id: Option<String> },
    /// 429, 5xx, timeouts, unreachable: try again (after `Retry-After` seconds when given).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Any other answer: no retry can fix it; the error carries the body's reason.
    Final(String),
}

/// Reads the answer of a notification call (`target` is the redacted URL).
pub(crate) async fn classify(
    sent: Result<reqwest::Response, reqwest::Error>,
    target: &str,
) -> HttpOutcome {
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => {
            let why = if e.is_timeout() {
                "timed out"
            } else {
                "could not be reached"
            };
            return HttpOutcome::Retry {
                error: format!("{target} {why}"),
                after: None,
            };
        }
    };
    let status = resp.status();
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        // PagerDuty answers {"status":"success","dedup_key":"..."}; others plain text.
        let id = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["dedup_key"].as_str().map(str::to_owned))
            .or(id);
        return HttpOutcome::Delivered {
            status: format!("HTTP {}", status.as_u16()),
            id,
        };
    }
    let reason = reason_of(&body);
    let error = if reason.is_empty() {
        format!("{target} answered {status}")
    } else {
        format!("{target} answered {status}: {reason}")
    };
    if status.as_u16() == 429 || status.is_server_error() {
        HttpOutcome::Retry { error, after }
    } else {
        HttpOutcome::Final(error)
    }
}

/// The reason in an error body: PagerDuty's `message` and `errors`, else the text (at most
/// 300 characters, one line).
fn reason_of(body: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v.is_object() => {
            let mut parts: Vec<String> = Vec::new();
            for key in ["message", "error"] {
                if let Some(m) = v[key].as_str() {
                    parts.push(m.to_owned());
                }
            }
            if let Some(errors) = v["errors"].as_array() {
                parts.extend(errors.iter().filter_map(|e| e.as_str().map(str::to_owned)));
            }
            if parts.is_empty() {
                v.to_string()
            } else {
                parts.join("; ")
            }
        }
        _ => body.to_owned(),
    };
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(300).collect()
}
