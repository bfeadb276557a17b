//! `[okta]`: which Okta org to read, how to authenticate, and how hard to poll it.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How vigil authenticates to Okta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OktaAuthMode {
    /// OAuth 2.0 client credentials with a `private_key_jwt` client assertion (recommended).
    Oauth,
    /// An SSWS API token (acts with the permissions of the admin who created it).
    Ssws,
}

/// `[okta]` settings. Secrets (`private_key`, `api_token`) are best given as
/// `private_key_file` / `api_token_file`: the config loader reads the file into the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OktaSettings {
    /// Poll Okta on the `okta_fetch` schedule.
    pub enabled: bool,
    /// The org's base URL, e.g. `https://acme.okta.com` (no path).
    pub domain: String,
    /// `oauth` or `ssws`.
    pub auth: OktaAuthMode,
    /// The API Services app's client id (oauth).
    pub client_id: String,
    /// The app's private key, PEM (RSA or P-256), whose public JWK is registered in Okta.
    #[serde(serialize_with = "redacted")]
    pub private_key: Option<SecretString>,
    /// The `kid` of that key as registered in Okta.
    pub key_id: String,
    /// Send DPoP proofs (Okta requires them for new API Services apps).
    pub dpop: bool,
    /// The SSWS API token (ssws).
    #[serde(serialize_with = "redacted")]
    pub api_token: Option<SecretString>,
    /// Space-separated scopes requested (oauth).
    pub scopes: String,
    /// How far back the very first poll starts.
    pub initial_window_minutes: u32,
    /// Events per request (Okta's maximum is 1000).
    pub page_limit: u32,
    /// Share of each rate-limit window left unused for other Okta clients of the org.
    pub rate_limit_reserve_percent: u8,
    /// Timeout of one HTTP request.
    pub request_timeout_seconds: u64,
    /// Pages fetched per polling run at most (the next run continues from the cursor).
    pub max_pages_per_run: u32,
    /// Retries of one request after a 5xx, a timeout or a broken body, within a run.
    pub max_retries: u32,
    /// First backoff between those retries (doubles each time).
    pub retry_backoff_millis: u64,
    /// Clock sanity: an event published more than this many seconds after vigil received
    /// it is stored with `published` = the time of receipt and Okta's time kept in
    /// `published_reported` (flagged), out of the lag metric and newest-first ordering.
    pub max_clock_skew_seconds: u64,
    /// Okta Event Hooks: the secret Okta sends in [`Self::event_hook_header`] (the hook's
    /// "Authentication secret"); unset turns `/api/v1/hooks/okta/events` off. Best given as
    /// `event_hook_secret_file`.
    #[serde(serialize_with = "redacted")]
    pub event_hook_secret: Option<SecretString>,
    /// The header carrying it (the hook's "Authentication field").
    pub event_hook_header: String,
}

impl Default for OktaSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            domain: String::new(),
            auth: OktaAuthMode::Oauth,
            client_id: String::new(),
            private_key: None,
            key_id: String::new(),
            dpop: true,
            api_token: None,
            scopes: "okta.logs.read".to_owned(),
            initial_window_minutes: 60,
            page_limit: 1000,
            rate_limit_reserve_percent: 10,
            request_timeout_seconds: 30,
            max_pages_per_run: 100,
            max_retries: 3,
            retry_backoff_millis: 500,
            max_clock_skew_seconds: 300,
            event_hook_secret: None,
            event_hook_header: "Authorization".to_owned(),
        }
    }
}

/// Secrets serialize as `[redacted]` (so `vigil check-config` never prints them).
fn redacted<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}
