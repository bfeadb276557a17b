//! The client side of a dashboard sign-in with the OIDC issuer (authorization code + PKCE).
//!
//! [`SsoClient::begin`] makes a sign-in's secrets (`state`, `nonce`, PKCE verifier, each 256
//! random bits), keeps them in Redis for [`PENDING_TTL`] under the `state` (so every API
//! instance can finish the sign-in), and builds the issuer's authorization URL with the
//! S256 code challenge. [`SsoClient::finish`] takes them back exactly once (`GETDEL`: a
//! replayed callback finds nothing) and redeems the code at the token endpoint with the
//! verifier and the client secret. The ID token is then checked by
//! [`super::oidc::OidcVerifier::verify_id_token`] (same JWKS cache as bearer tokens).
//! The endpoints come from the discovery document, cached for an hour.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use vigil_queue::RedisConn;

use crate::settings::OidcSettings;

/// How long a started sign-in may take at the issuer.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// How long the dashboard has to pick up the tokens of a finished sign-in.
pub const HANDOFF_TTL: Duration = Duration::from_secs(60);
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// Why a sign-in could not go on (messages are safe to show: no secrets).
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The issuer or Redis did not answer as expected.
    #[error("{0}")]
    Unavailable(String),
    /// The issuer refused the code (replayed, expired, PKCE or client mismatch).
    #[error("the identity provider refused the sign-in code ({0})")]
    Refused(String),
}

/// The endpoints of the discovery document that a sign-in uses.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// A started sign-in, kept until its callback.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    pub nonce: String,
    pub verifier: String,
}

/// Sign-ins with one issuer.
pub struct SsoClient {
    settings: OidcSettings,
    http: reqwest::Client,
    redis: RedisConn,
    prefix: String,
    discovery: Mutex<Option<(Instant, Discovery)>>,
}

impl std::fmt::Debug for SsoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoClient")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

/// 256 random bits, base64url (43 characters; also a valid PKCE verifier).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl SsoClient {
    /// A client for `settings` (no request is made until the first sign-in).
    pub fn new(settings: OidcSettings, redis: RedisConn, prefix: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the OIDC HTTP client: {e}"))?;
        Ok(Self {
            settings,
            http,
            redis,
            prefix: prefix.to_owned(),
            discovery: Mutex::new(None),
        })
    }

    async fn discovery(&self) -> Result<Discovery, SsoError> {
        let mut cached = self.discovery.lock().await;
        if let Some((at, d)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let unavailable = |why: String| {
            tracing::warn!(url = %self.settings.discovery(), why, "OIDC discovery failed");
            SsoError::Unavailable(
                "the identity provider's discovery document is unavailable".into(),
            )
        };
        let resp = self
            .http
            .get(self.settings.discovery())
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(resp.status().to_string()));
        }
        let found: Discovery = resp.json().await.map_err(|e| unavailable(e.to_string()))?;
        if found.issuer != self.settings.issuer {
            return Err(unavailable(format!(
                "the document names issuer {}, not auth.oidc.issuer",
                found.issuer
            )));
        }
        *cached = Some((Instant::now(), found.clone()));
        Ok(found)
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:oidc:{kind}:{id}", self.prefix)
    }

    async fn put(&self, key: String, value: String, ttl: Duration) -> Result<(), SsoError> {
        let mut conn = self.redis.clone();
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_down)
    }

    async fn take(&self, key: String) -> Result<Option<String>, SsoError> {
        let mut conn = self.redis.clone();
        redis::cmd("GETDEL")
            .arg(key)
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(redis_down)
    }

    /// Starts a sign-in: returns its `state` and the issuer's authorization URL.
    pub async fn begin(&self) -> Result<(String, String), SsoError> {
        let discovery = self.discovery().await?;
        let state = random_token();
        let pending = Pending {
            nonce: random_token(),
            verifier: random_token(),
        };
        let mut url = reqwest::Url::parse(&discovery.authorization_endpoint).map_err(|_| {
            SsoError::Unavailable("the issuer's authorization_endpoint is not a URL".into())
        })?;
        let mut scopes = vec!["openid"];
        scopes.extend(
            self.settings
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|s| *s != "openid"),
        );
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_url)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge(&pending.verifier))
            .append_pair("code_challenge_method", "S256");
        let value = serde_json::to_string(&pending)
            .map_err(|e| SsoError::Unavailable(format!("cannot encode a sign-in: {e}")))?;
        self.put(self.key("pending", &state), value, PENDING_TTL)
            .await?;
        Ok((state, url.into()))
    }

    /// The sign-in started with `state`, taken so that it cannot be finished twice.
    pub async fn take_pending(&self, state: &str) -> Result<Option<Pending>, SsoError> {
        Ok(self
            .take(self.key("pending", state))
            .await?
            .and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Redeems `code` with the sign-in's PKCE verifier; returns the ID token.
    pub async fn redeem(&self, code: &str, pending: &Pending) -> Result<String, SsoError> {
        #[derive(Deserialize)]
        struct Answer {
            id_token: Option<String>,
            error: Option<String>,
        }
        let discovery = self.discovery().await?;
        let secret = self
            .settings
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned());
        let resp = self
            .http
            .post(&discovery.token_endpoint)
            .basic_auth(&self.settings.client_id, secret)
            .header("Accept", "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.settings.redirect_url.as_str()),
                ("code_verifier", pending.verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "OIDC token endpoint unreachable");
                SsoError::Unavailable(
                    "the identity provider's token endpoint did not answer".into(),
                )
            })?;
        let status = resp.status();
        let answer: Answer = resp.json().await.map_err(|_| {
            SsoError::Unavailable(format!(
                "the identity provider's token endpoint answered {status} without JSON"
            ))
        })?;
        match (status.is_success(), answer.id_token, answer.error) {
            (true, Some(id_token), _) => Ok(id_token),
            (true, None, _) => Err(SsoError::Refused("no id_token in the answer".into())),
            (false, _, error) => {
                // Only the OAuth error code (a short token), never the description.
                let code: String = error
                    .unwrap_or_else(|| status.as_u16().to_string())
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(40)
                    .collect();
                Err(SsoError::Refused(code))
            }
        }
    }

    /// Keeps a finished sign-in's answer for the dashboard; returns the one-time code.
    pub async fn hand_off(&self, answer: &serde_json::Value) -> Result<String, SsoError> {
        let code = random_token();
        self.put(self.key("handoff", &code), answer.to_string(), HANDOFF_TTL)
            .await?;
        Ok(code)
    }

    /// The answer kept under a one-time code, taken.
    pub async fn take_handoff(&self, code: &str) -> Result<Option<serde_json::Value>, SsoError> {
        Ok(self
            .take(self.key("handoff", code))
            .await?
            .and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Whether the redirect URL is HTTPS (the state cookie is then `Secure`).
    pub fn secure(&self) -> bool {
        self.settings.redirect_url.starts_with("https://")
    }
}

fn redis_down(e: redis::RedisError) -> SsoError {
    tracing::warn!(error = %e, "Redis unavailable for an OIDC sign-in");
    SsoError::Unavailable("sign-in state is unavailable (Redis); retry later".into())
}
