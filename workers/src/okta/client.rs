//! The HTTP client of Okta's System Log API: one authorized `GET /api/v1/logs` per call,
//! with the page, its `link` headers and the rate-limit headers read back.
//!
//! Errors are classified for the poller: [`FetchError::Transient`] (5xx, timeouts, broken
//! bodies: retry with backoff), [`FetchError::RateLimited`] (429: wait for the reset) and
//! [`FetchError::Permanent`] (other 4xx: naming Okta's `errorCode` and `errorSummary`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde_json::value::RawValue;

use super::OktaError;
use super::auth::{Auth, OauthAuth, TokenState};
use super::budget::{Budget, Endpoint};
use super::keys::SigningKey;
use super::metrics::OrgMetrics;
use super::settings::{OktaAuthMode, OktaSettings};

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

/// One page of `/api/v1/logs`.
#[derive(Debug)]
pub struct LogsPage {
    /// The events, each as its raw JSON text.
    pub events: Vec<Box<RawValue>>,
    /// The `rel="next"` link (always there in polling mode).
    pub next: Option<String>,
    /// The `rel="self"` link.
    pub self_link: Option<String>,
    pub rate: RateLimit,
}

/// The Okta client: base URL, authentication, HTTP connection pool, rate budget.
#[derive(Debug)]
pub struct OktaClient {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    metrics: Option<OrgMetrics>,
    budget: Arc<Budget>,
    reserve_percent: u8,
}

/// What a request needs besides its URL: the connection pool, metrics and the budget.
pub(crate) struct Ctx<'a> {
    pub http: &'a reqwest::Client,
    pub metrics: Option<&'a OrgMetrics>,
    pub budget: &'a Budget,
}

impl OktaClient {
    /// Builds the client from settings (reads the key, makes the DPoP key).
    pub fn new(settings: &OktaSettings, metrics: Option<OrgMetrics>) -> Result<Self, OktaError> {
        let base = parse_domain(&settings.domain)?;
        let auth = match settings.auth {
            OktaAuthMode::Ssws => {
                let token = settings.api_token.clone().ok_or_else(|| {
                    OktaError::Config(
                        "okta.auth = \"ssws\" needs okta.api_token (or api_token_file)".to_owned(),
                    )
                })?;
                Auth::Ssws(token)
            }
            OktaAuthMode::Oauth => {
                if settings.client_id.trim().is_empty() {
                    return Err(OktaError::Config(
                        "okta.auth = \"oauth\" needs okta.client_id".to_owned(),
                    ));
                }
                let pem = settings.private_key.as_ref().ok_or_else(|| {
                    OktaError::Config(
                        "okta.auth = \"oauth\" needs okta.private_key_file (a PEM private key)"
                            .to_owned(),
                    )
                })?;
                let kid = Some(settings.key_id.as_str()).filter(|k| !k.is_empty());
                let client_key =
                    SigningKey::from_pem(secrecy::ExposeSecret::expose_secret(pem), kid)?;
                let dpop = if settings.dpop {
                    Some(SigningKey::generate_dpop()?)
                } else {
                    None
                };
                let token_url = base
                    .join("/oauth2/v1/token")
                    .map_err(|e| OktaError::Config(format!("okta.domain: {e}")))?
                    .to_string();
                Auth::Oauth(Box::new(OauthAuth {
                    client_id: settings.client_id.clone(),
                    scopes: settings.scopes.clone(),
                    token_url,
                    client_key,
                    dpop,
                    state: tokio::sync::Mutex::new(TokenState::default()),
                }))
            }
        };
        // reqwest is built without a default rustls provider; vigil uses ring everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.request_timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OktaError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(OktaClient {
            http,
            base,
            auth,
            metrics,
            budget: Arc::new(Budget::local()),
            reserve_percent: settings.rate_limit_reserve_percent.min(100),
        })
    }

    /// Shares the rate budget through `budget` (Redis) instead of keeping it in-process.
    pub fn with_budget(mut self, budget: Budget) -> OktaClient {
        self.budget = Arc::new(budget);
        self
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            http: &self.http,
            metrics: self.metrics.as_ref(),
            budget: &self.budget,
        }
    }

    /// The org's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Whether `url` points at the configured org (same scheme, host and port).
    pub fn is_own_url(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.path() == "/api/v1/logs"
    }

    /// `GET url` (a `/api/v1/logs` URL): one page. Handles token fetch, DPoP nonces and one
    /// token renewal after a 401 internally; everything else is the caller's to retry.
    pub async fn get_logs(&self, url: &Url) -> Result<LogsPage, FetchError> {
        let mut nonce_retried = false;
        let mut token_renewed = false;
        loop {
            let auth = self.auth.resource_auth(&self.ctx(), "GET", url).await?;
            if let Some(wait) = self.budget.take(Endpoint::Logs, self.reserve_percent).await {
                return Err(FetchError::budget_spent(Endpoint::Logs, wait));
            }
            let mut req = self
                .http
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .header(reqwest::header::AUTHORIZATION, auth.authorization);
            if let Some(proof) = auth.dpop {
                req = req.header("DPoP", proof);
            }
            let started = Instant::now();
            let resp = record(self.metrics.as_ref(), "logs", started, req.send().await)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let rate = rate_limit(&headers);
            self.budget
                .record(Endpoint::Logs, rate.limit, rate.remaining, rate.reset)
                .await;
            if let (Some(m), Some(r)) = (&self.metrics, rate.remaining) {
                m.rate_limit_remaining().set(r);
            }
            if status == StatusCode::UNAUTHORIZED
                && let Auth::Oauth(oauth) = &self.auth
            {
                let www = header_str(&headers, "www-authenticate").unwrap_or_default();
                let nonce = header_str(&headers, "dpop-nonce");
                if www.contains("use_dpop_nonce")
                    && let Some(nonce) = nonce
                    && !nonce_retried
                {
                    nonce_retried = true;
                    oauth.set_resource_nonce(nonce.to_owned()).await;
                    continue;
                }
                if !token_renewed {
                    token_renewed = true;
                    oauth.drop_token().await;
                    continue;
                }
            }
            let body = resp
                .text()
                .await
                .map_err(|e| FetchError::Transient(format!("Okta's response broke off: {e}")))?;
            if !status.is_success() {
                return Err(FetchError::from_status(
                    "logs",
                    status,
                    &rate,
                    describe_error("/api/v1/logs", status, &body),
                ));
            }
            let events: Vec<Box<RawValue>> = serde_json::from_str(&body).map_err(|e| {
                FetchError::Transient(format!(
                    "Okta's /api/v1/logs body is not a complete JSON array ({e})"
                ))
            })?;
            let (self_link, next) = links(&headers);
            return Ok(LogsPage {
                events,
                next,
                self_link,
                rate,
            });
        }
    }
}

/// Parses `okta.domain`: an http(s) base URL without path, query or credentials.
pub(crate) fn parse_domain(domain: &str) -> Result<Url, OktaError> {
    let d = domain.trim().trim_end_matches('/');
    if d.is_empty() {
        return Err(OktaError::Config(
            "okta.domain is empty (e.g. https://acme.okta.com)".to_owned(),
        ));
    }
    let url = Url::parse(d).map_err(|e| OktaError::Config(format!("okta.domain `{d}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || !url.username().is_empty()
    {
        return Err(OktaError::Config(format!(
            "okta.domain `{d}` must be a base URL like https://acme.okta.com"
        )));
    }
    Ok(url)
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

fn header_str<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
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

/// `(self, next)` from the `link` headers (one per line, or comma-joined).
fn links(headers: &reqwest::header::HeaderMap) -> (Option<String>, Option<String>) {
    let mut self_link = None;
    let mut next = None;
    for value in headers.get_all("link") {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(",") {
            let part = part.trim();
            let Some((target, params)) =
                part.strip_prefix('<').and_then(|rest| rest.split_once('>'))
            else {
                continue;
            };
            let rel = params
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("rel="))
                .map(|r| r.trim_matches('"'))
                .next();
            match rel {
                Some("next") => next = Some(target.to_owned()),
                Some("self") => self_link = Some(target.to_owned()),
                _ => {}
            }
        }
    }
    (self_link, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn link_headers_on_separate_lines_or_joined() {
        let mut h = HeaderMap::new();
        h.append(
            "link",
            HeaderValue::from_static("<https://a.okta.com/api/v1/logs?limit=20>; rel=\"self\""),
        );
        h.append(
            "link",
            HeaderValue::from_static(
                "<https://a.okta.com/api/v1/logs?limit=20&after=1627500044869_1>; rel=\"next\"",
            ),
        );
        let (s, n) = links(&h);
        assert_eq!(
            s.as_deref(),
            Some("https://a.okta.com/api/v1/logs?limit=20")
        );
        assert!(n.unwrap().ends_with("after=1627500044869_1"));
        let mut h = HeaderMap::new();
        h.append(
            "link",
            HeaderValue::from_static("<https://x/1>; rel=\"self\", <https://x/2>; rel=\"next\""),
        );
        assert_eq!(links(&h).1.as_deref(), Some("https://x/2"));
    }

    #[test]
    fn errors_name_okta_codes() {
        let m = describe_error(
            "/api/v1/logs",
            StatusCode::FORBIDDEN,
            r#"{"errorCode":"E0000006","errorSummary":"You do not have permission to perform the requested action","errorLink":"E0000006","errorId":"x","errorCauses":[]}"#,
        );
        assert!(m.contains("E0000006: You do not have permission"), "{m}");
        let m = describe_error(
            "the token endpoint",
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_client","error_description":"The client_assertion signature is invalid."}"#,
        );
        assert!(m.contains("invalid_client: The client_assertion"), "{m}");
    }

    #[test]
    fn domains_must_be_base_urls() {
        assert!(parse_domain("https://acme.okta.com").is_ok());
        assert!(parse_domain("http://127.0.0.1:8080/").is_ok());
        assert!(parse_domain("acme.okta.com").is_err());
        assert!(parse_domain("https://acme.okta.com/api").is_err());
        assert!(parse_domain("").is_err());
    }
}
