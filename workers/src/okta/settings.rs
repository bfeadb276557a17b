//! `[okta]`: which Okta org(s) to read, how to authenticate, and how hard to poll them.
//!
//! One org: its domain and credentials sit in `[okta]` itself (the org is named
//! [`DEFAULT_ORG`]). Many orgs: one `[[okta.orgs]]` each (name, domain, credentials,
//! schedule); the rest of `[okta]` (page size, retries, clock skew...) applies to all.
//! [`OktaSettings::orgs`] resolves either form into one full [`OktaSettings`] per org.

use std::path::PathBuf;

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
    /// Many orgs: one entry per org (`[[okta.orgs]]`); empty: the org of `[okta]` itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<OktaOrgSettings>,
}

/// The org name of a single `[okta]` section (also its cursor row, and the org of events
/// stored before orgs had names).
pub const DEFAULT_ORG: &str = vigil_store::events::DEFAULT_ORG;

/// `[[okta.orgs]]`: one Okta org. Credentials are per org (nothing is inherited from
/// `[okta]` but the tuning keys); secrets are best given as `private_key_file` /
/// `api_token_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OktaOrgSettings {
    /// The org's name in vigil: events, alerts, metrics (`org` label), cursors and the
    /// `okta_fetch` payload's `org` use it. Lowercase letters, digits, `-`, `_`.
    pub name: String,
    /// The org's base URL, e.g. `https://acme.okta.com`.
    pub domain: String,
    /// `oauth` (default) or `ssws`.
    pub auth: Option<OktaAuthMode>,
    pub client_id: String,
    #[serde(serialize_with = "redacted")]
    pub private_key: Option<SecretString>,
    /// A file holding `private_key` (PEM).
    pub private_key_file: Option<PathBuf>,
    pub key_id: String,
    /// DPoP proofs (default true).
    pub dpop: Option<bool>,
    #[serde(serialize_with = "redacted")]
    pub api_token: Option<SecretString>,
    /// A file holding `api_token`.
    pub api_token_file: Option<PathBuf>,
    /// Scopes (default `[okta] scopes`).
    pub scopes: Option<String>,
    /// The org's own polling cron (six fields, seconds first); default: the `okta_fetch`
    /// schedule's.
    pub schedule: Option<String>,
}

/// One org, resolved: its name, its own schedule if any, and full settings for its client.
#[derive(Debug, Clone)]
pub struct ResolvedOrg {
    pub name: String,
    pub schedule: Option<String>,
    pub settings: OktaSettings,
}

impl OktaSettings {
    /// Every org to poll: the `[[okta.orgs]]` entries, or the single org of `[okta]` named
    /// [`DEFAULT_ORG`]. Errors name the key (`okta.orgs[1].name`, ...). Reads the orgs'
    /// `*_file` secrets.
    pub fn orgs(&self) -> Result<Vec<ResolvedOrg>, super::OktaError> {
        let err = |key: String, why: String| super::OktaError::Config(format!("{key}: {why}"));
        if self.orgs.is_empty() {
            return Ok(vec![ResolvedOrg {
                name: DEFAULT_ORG.to_owned(),
                schedule: None,
                settings: self.clone(),
            }]);
        }
        if !self.domain.trim().is_empty() {
            return Err(err(
                "okta.domain".to_owned(),
                "set together with [[okta.orgs]]; give each org its own domain in its \
                 [[okta.orgs]] entry and remove okta.domain"
                    .to_owned(),
            ));
        }
        let mut out: Vec<ResolvedOrg> = Vec::with_capacity(self.orgs.len());
        for (i, org) in self.orgs.iter().enumerate() {
            let key = |k: &str| format!("okta.orgs[{i}].{k}");
            vigil_jobs::check_org_name(&org.name).map_err(|why| err(key("name"), why))?;
            if out.iter().any(|o| o.name == org.name) {
                return Err(err(
                    key("name"),
                    format!("duplicate org name `{}`; each org needs its own", org.name),
                ));
            }
            if org.domain.trim().is_empty() {
                return Err(err(
                    key("domain"),
                    "missing: the org's base URL, e.g. https://acme.okta.com".to_owned(),
                ));
            }
            let same = |d: &str| {
                d.trim()
                    .trim_end_matches('/')
                    .eq_ignore_ascii_case(org.domain.trim().trim_end_matches('/'))
            };
            if let Some(j) = self.orgs[..i].iter().position(|o| same(&o.domain)) {
                return Err(err(
                    key("domain"),
                    format!("the same Okta org as okta.orgs[{j}]; configure each org once"),
                ));
            }
            let read = |k: &str, path: &PathBuf| {
                std::fs::read_to_string(path)
                    .map(|s| SecretString::from(s.trim_end_matches(['\r', '\n']).to_owned()))
                    .map_err(|e| err(key(k), format!("cannot read {}: {e}", path.display())))
            };
            let private_key = match &org.private_key_file {
                Some(p) => Some(read("private_key_file", p)?),
                None => org.private_key.clone(),
            };
            let api_token = match &org.api_token_file {
                Some(p) => Some(read("api_token_file", p)?),
                None => org.api_token.clone(),
            };
            let settings = OktaSettings {
                domain: org.domain.clone(),
                auth: org.auth.unwrap_or(OktaAuthMode::Oauth),
                client_id: org.client_id.clone(),
                private_key,
                key_id: org.key_id.clone(),
                dpop: org.dpop.unwrap_or(true),
                api_token,
                scopes: org.scopes.clone().unwrap_or_else(|| self.scopes.clone()),
                orgs: Vec::new(),
                ..self.clone()
            };
            out.push(ResolvedOrg {
                name: org.name.clone(),
                schedule: org.schedule.clone(),
                settings,
            });
        }
        Ok(out)
    }
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
            orgs: Vec::new(),
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
