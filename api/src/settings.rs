//! The API's config sections: `[http]`, `[auth]` (with `[auth.oidc]`) and `[rate_limit]`.
//! Each has defaults, so an empty config file serves the API on 127.0.0.1:8080 with HS256
//! tokens once `auth.jwt_secret` (or `auth.jwt_secret_file`) is set.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// `[http]`: the listener and request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// `HOST:PORT` to listen on; port 0 picks a free port (logged).
    pub listen: String,
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS; empty means CORS is off (no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// Peers (CIDRs or addresses) whose `Forwarded` / `X-Forwarded-For` headers are believed;
    /// from any other peer the socket address is the client (see [`crate::proxy`]).
    pub trusted_proxies: Vec<String>,
    /// Removed: replaced by `trusted_proxies` (setting it is a config error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_forwarded_for: Option<bool>,
    /// The public base URL, used in the OpenAPI `servers` list; empty for relative.
    pub public_url: String,
    /// TLS certificate chain, PEM (set `tls_cert_file`). With `tls_key`, the listener speaks
    /// HTTPS only and answers with `Strict-Transport-Security`.
    pub tls_cert: Option<String>,
    /// TLS private key, PEM (set `tls_key_file`).
    #[serde(serialize_with = "redacted")]
    pub tls_key: Option<SecretString>,
}

impl HttpSettings {
    /// True when TLS is configured.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() || self.tls_key.is_some()
    }

    /// The TLS server configuration, if TLS is configured; the error names the key.
    pub fn tls_config(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        use secrecy::ExposeSecret;
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                crate::tls::server_config(cert, key.expose_secret()).map(Some)
            }
            (Some(_), None) => Err("http.tls_key: required with http.tls_cert".to_owned()),
            (None, Some(_)) => Err("http.tls_cert: required with http.tls_key".to_owned()),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            max_body_bytes: 1024 * 1024,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            trust_forwarded_for: None,
            public_url: String::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The signing algorithm of vigil's own tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `auth.jwt_secret`.
    HS256,
    /// RSA with `auth.private_key` / `auth.public_key` (PEM).
    RS256,
    /// ECDSA P-256 with `auth.private_key` / `auth.public_key` (PEM, PKCS#8).
    ES256,
}

/// `[auth]`: tokens and who may sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Pinned algorithm; tokens signed otherwise are rejected.
    pub algorithm: JwtAlgorithm,
    /// HS256 secret (at least 32 bytes). Prefer `jwt_secret_file`.
    #[serde(serialize_with = "redacted")]
    pub jwt_secret: Option<SecretString>,
    /// RS256/ES256 private key, PEM. Prefer `private_key_file`.
    #[serde(serialize_with = "redacted")]
    pub private_key: Option<SecretString>,
    /// RS256/ES256 public key, PEM (`public_key_file`).
    pub public_key: Option<String>,
    /// The `kid` header of issued tokens; a token with another `kid` is rejected.
    pub key_id: String,
    /// `iss` of issued tokens (checked on every token).
    pub issuer: String,
    /// `aud` of issued tokens (checked on every token).
    pub audience: String,
    /// Lifetime of an access token.
    pub access_token_minutes: u64,
    /// Lifetime of a refresh token.
    pub refresh_token_hours: u64,
    /// Allowed clock skew when checking `exp`/`nbf`.
    pub leeway_seconds: u64,
    /// How long a user's role/disabled flag is cached between database reads.
    pub user_cache_seconds: u64,
    /// Optionally also accept tokens of an external OpenID Connect issuer.
    pub oidc: Option<OidcSettings>,
    /// Per-account protection against password guessing.
    pub lockout: LockoutSettings,
}

/// `[auth.lockout]`: after `max_failures` failed sign-ins for one account name within
/// `window_seconds` (from any number of addresses), that name is locked for `base_lock_ms`;
/// each further lock lasts twice as long, up to `max_lock_ms`. A successful sign-in (after
/// the lock) or an admin's unlock resets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutSettings {
    pub enabled: bool,
    pub max_failures: u32,
    pub window_seconds: u64,
    pub base_lock_ms: u64,
    pub max_lock_ms: u64,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failures: 5,
            window_seconds: 900,
            base_lock_ms: 60_000,
            max_lock_ms: 3_600_000,
        }
    }
}

impl LockoutSettings {
    /// The problem with these values, naming the key under `auth.lockout`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_failures == 0 {
            return Err(("max_failures", "must be at least 1".to_owned()));
        }
        if self.window_seconds == 0 {
            return Err(("window_seconds", "must be at least 1".to_owned()));
        }
        if self.base_lock_ms == 0 {
            return Err(("base_lock_ms", "must be at least 1".to_owned()));
        }
        if self.max_lock_ms < self.base_lock_ms {
            return Err((
                "max_lock_ms",
                format!("must be at least base_lock_ms ({})", self.base_lock_ms),
            ));
        }
        Ok(())
    }

    /// The store's policy.
    pub fn policy(&self) -> vigil_store::lockouts::Policy {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        vigil_store::lockouts::Policy {
            max_failures: i64::from(self.max_failures),
            window_ms: ms(self.window_seconds.saturating_mul(1000)),
            base_lock_ms: ms(self.base_lock_ms),
            max_lock_ms: ms(self.max_lock_ms),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::HS256,
            jwt_secret: None,
            private_key: None,
            public_key: None,
            key_id: "vigil-1".to_owned(),
            issuer: "vigil".to_owned(),
            audience: "vigil-api".to_owned(),
            access_token_minutes: 60,
            refresh_token_hours: 24,
            leeway_seconds: 30,
            user_cache_seconds: 5,
            oidc: None,
            lockout: LockoutSettings::default(),
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

/// `[auth.oidc]`: an external issuer (e.g. the company's Okta) whose access tokens are
/// accepted, verified against its JWKS; with `client_id`, also the dashboard's "Sign in with
/// Okta" (see [`crate::routes::oidc`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcSettings {
    /// Exact `iss` of the external tokens.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Where the signing keys are published.
    pub jwks_url: String,
    /// Accepted algorithms (RS256 and/or ES256).
    pub algorithms: Vec<JwtAlgorithm>,
    /// The claim naming the user (`sub`, `email`, ...).
    pub username_claim: String,
    /// The claim holding the role or groups (a string or an array of strings).
    pub role_claim: String,
    /// Values of `role_claim` that make an admin.
    pub admin_values: Vec<String>,
    /// Values of `role_claim` that make an analyst; a token with neither is refused.
    pub analyst_values: Vec<String>,
    /// Keys are refetched at most this often, and when a token names an unknown `kid`.
    pub jwks_cache_seconds: u64,
    /// Dashboard sign-in (authorization code + PKCE) is on when this is set: the OAuth
    /// client id of vigil's web app at the issuer (the ID token's `aud`).
    pub client_id: String,
    /// The web app's client secret (`client_secret_file`), sent with `client_secret_basic`.
    #[serde(serialize_with = "redacted")]
    pub client_secret: Option<SecretString>,
    /// vigil's callback as registered at the issuer:
    /// `https://<vigil>/api/v1/auth/oidc/callback`.
    pub redirect_url: String,
    /// Scopes asked for at sign-in (`openid` is always sent).
    pub scopes: Vec<String>,
    /// The discovery document; empty: `<issuer>/.well-known/openid-configuration`.
    pub discovery_url: String,
}

impl OidcSettings {
    /// True when dashboard sign-in is configured (`client_id` set).
    pub fn sign_in(&self) -> bool {
        !self.client_id.trim().is_empty()
    }

    /// The discovery document's URL.
    pub fn discovery(&self) -> String {
        if self.discovery_url.is_empty() {
            format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            )
        } else {
            self.discovery_url.clone()
        }
    }

    /// The problem with these values, naming the key under `auth.oidc`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let url = |v: &str| v.starts_with("https://") || v.starts_with("http://");
        if !url(&self.issuer) {
            return Err((
                "issuer",
                "must be the issuer's URL (https://...)".to_owned(),
            ));
        }
        if !url(&self.jwks_url) {
            return Err((
                "jwks_url",
                "must be the issuer's JWKS URL (https://...)".to_owned(),
            ));
        }
        if self.admin_values.is_empty() && self.analyst_values.is_empty() {
            return Err((
                "analyst_values",
                "admin_values and analyst_values are both empty: no one would get a role"
                    .to_owned(),
            ));
        }
        if !self.sign_in() {
            return Ok(());
        }
        if self.client_secret.is_none() {
            return Err((
                "client_secret",
                "required with auth.oidc.client_id (set client_secret_file)".to_owned(),
            ));
        }
        if !url(&self.redirect_url) || !self.redirect_url.ends_with(CALLBACK_PATH) {
            return Err((
                "redirect_url",
                format!("must be vigil's public URL of {CALLBACK_PATH} (https://...)"),
            ));
        }
        if !self.discovery_url.is_empty() && !url(&self.discovery_url) {
            return Err(("discovery_url", "must be a URL (https://...)".to_owned()));
        }
        Ok(())
    }
}

/// The path of the sign-in callback (the end of `auth.oidc.redirect_url`).
pub const CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            jwks_url: String::new(),
            algorithms: vec![JwtAlgorithm::RS256],
            username_claim: "sub".to_owned(),
            role_claim: "groups".to_owned(),
            admin_values: vec!["vigil-admins".to_owned()],
            analyst_values: vec!["vigil-analysts".to_owned()],
            jwks_cache_seconds: 3600,
            client_id: String::new(),
            client_secret: None,
            redirect_url: String::new(),
            scopes: vec![
                "openid".to_owned(),
                "profile".to_owned(),
                "email".to_owned(),
                "groups".to_owned(),
            ],
            discovery_url: String::new(),
        }
    }
}

/// Requests per minute for one route group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLimit {
    /// Per client IP, for requests without a valid token.
    pub anonymous_per_minute: u64,
    /// Per user, for requests with a valid token.
    pub authenticated_per_minute: u64,
}

/// `[rate_limit]`: request budgets, shared by every API instance through Redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Per client IP, for requests without a valid token.
    pub anonymous_per_minute: u64,
    /// Per user, for requests with a valid token (a user's reads count in `read_per_minute`).
    pub authenticated_per_minute: u64,
    /// Per user, for their `GET`/`HEAD` requests with a valid token, across every group:
    /// the dashboard's reads and the opening of its live stream.
    pub read_per_minute: u64,
    /// Own budgets for route groups: the path segment after `/api/v1/` (`auth`, `jobs`,
    /// `queues`, `schedules`, `events`, `alerts`, ...). Other groups share the default budget.
    /// A user's reads are counted in `read_per_minute` instead.
    pub groups: BTreeMap<String, GroupLimit>,
    /// Paths never limited (probes and scrapers).
    pub exempt_paths: Vec<String>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            anonymous_per_minute: 20,
            authenticated_per_minute: 100,
            read_per_minute: 600,
            groups: BTreeMap::new(),
            exempt_paths: vec![
                "/health".to_owned(),
                "/ready".to_owned(),
                "/metrics".to_owned(),
            ],
        }
    }
}
