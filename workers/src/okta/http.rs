//! What every request to Okta shares, whichever endpoint it calls (System Log, token):
//! the error classification ([`FetchError`]), the rate-limit headers ([`RateLimit`]), the
//! request context (connection pool, metrics, budget), metrics recording and Okta's error
//! bodies. Used by the log client (`client.rs`) and the token client (`auth.rs`).

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::budget::{Budget, Endpoint};
use super::metrics::OrgMetrics;

/// Why a request to Okta failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Another try may work (5xx, timeout, connection, truncated body).
    #[error("{0}")]
    Transient(String),
    /// No request now: Okta answered 429 (`by_okta`), or the org's shared budget for
    /// `endpoint` is spent down to its reserve (nothing was sent). `wait` is the time to
    /// `X-Rate-Limit-Reset` when known.
    #[error("{message}")]
    RateLimited {
        endpoint: &'static str,
        wait: Option<Duration>,
        by_okta: bool,
        message: String,
    },
    /// No retry will fix it (4xx other than 429, refused credentials).
    #[error("{0}")]
    Permanent(String),
}

impl FetchError {
    /// The error of a non-2xx answer of `endpoint` with rate-limit headers `rate`.
    pub(crate) fn from_status(
        endpoint: &'static str,
        status: StatusCode,
        rate: &RateLimit,
        message: String,
    ) -> FetchError {
        if status == StatusCode::TOO_MANY_REQUESTS {
            FetchError::RateLimited {
                endpoint,
                wait: reset_wait(rate.reset),
                by_okta: true,
                message,
            }
        } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            FetchError::Transient(message)
        } else {
            FetchError::Permanent(message)
        }
    }

    /// The error of a request not sent because the shared budget is spent.
    pub(crate) fn budget_spent(endpoint: Endpoint, wait: Duration) -> FetchError {
        FetchError::RateLimited {
            endpoint: endpoint.as_str(),
            wait: Some(wait),
            by_okta: false,
            message: format!(
                "the org's Okta rate budget for {} is spent down to its reserve until the reset",
                endpoint.as_str()
            ),
        }
    }
}

/// How long until `reset` (epoch seconds) plus a small margin; `None` without a reset.
pub(crate) fn reset_wait(reset: Option<i64>) -> Option<Duration> {
    let reset_ms = reset?.checked_mul(1000)?;
    let wait = reset_ms + 250 - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(wait.max(0) as u64).min(MAX_RESET_WAIT))
}

/// The longest single wait for a rate-limit reset (Okta windows are one minute).
pub(crate) const MAX_RESET_WAIT: Duration = Duration::from_secs(120);

/// `X-Rate-Limit-*` of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: Option<i64>,
    pub remaining: Option<i64>,
    /// UTC epoch seconds when the window resets.
    pub reset: Option<i64>,
}

/// What a request needs besides its URL: the connection pool, metrics and the budget.
pub(crate) struct Ctx<'a> {
    pub http: &'a reqwest::Client,
    pub metrics: Option<&'a OrgMetrics>,
    pub budget: &'a Budget,
}

/// Counts a response (or its absence) in the metrics and maps transport errors.
pub(crate) fn record(
    metrics: Option<&OrgMetrics>,
    endpoint: &str,
    started: Instant,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, FetchError> {
    let status = match &resp {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".to_owned(),
        Err(_) => "error".to_owned(),
    };
    if let Some(m) = metrics {
        m.requests(endpoint, &status).inc();
        m.latency(endpoint).observe(started.elapsed().as_secs_f64());
    }
    resp.map_err(|e| {
        if e.is_timeout() {
            FetchError::Transient(format!("Okta {endpoint} request timed out"))
        } else {
            // reqwest errors name the URL, never headers: no secret in here.
            FetchError::Transient(format!("Okta {endpoint} request failed: {e}"))
        }
    })
}

/// A one-line description of an Okta error response: `errorCode` and `errorSummary` for
/// the management API, `error` and `error_description` for OAuth endpoints.
pub(crate) fn describe_error(what: &str, status: StatusCode, body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let detail = match (
        s("errorCode"),
        s("errorSummary"),
        s("error"),
        s("error_description"),
    ) {
        (Some(code), Some(summary), _, _) => format!("{code}: {summary}"),
        (Some(code), None, _, _) => code,
        (_, _, Some(err), Some(desc)) => format!("{err}: {desc}"),
        (_, _, Some(err), None) => err,
        _ => "no Okta error object in the body".to_owned(),
    };
    format!("Okta {what} answered {status}: {detail}")
}

pub(crate) fn header_str<'a>(
    headers: &'a reqwest::header::HeaderMap,
    name: &str,
) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn rate_limit(headers: &reqwest::header::HeaderMap) -> RateLimit {
    let num = |n: &str| header_str(headers, n).and_then(|v| v.trim().parse::<i64>().ok());
    RateLimit {
        limit: num("x-rate-limit-limit"),
        remaining: num("x-rate-limit-remaining"),
        reset: num("x-rate-limit-reset"),
    }
}
