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
use super::http::{Ctx, describe_error, header_str, rate_limit, record};
pub use super::http::{FetchError, RateLimit};
use super::keys::SigningKey;
use super::metrics::OrgMetrics;
use super::settings::{OktaAuthMode, OktaSettings};

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
