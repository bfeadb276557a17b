//! Authentication to Okta: an SSWS token, or OAuth 2.0 client credentials with a
//! `private_key_jwt` client assertion and DPoP-bound access tokens.
//!
//! The OAuth flow follows Okta's wire format (README's Okta section): every token
//! request carries a fresh client assertion (new `jti`, `exp` five minutes ahead) and, with
//! DPoP, a fresh proof; a `use_dpop_nonce` answer is retried once with the nonce. Tokens are
//! cached and renewed shortly before they expire. Resource requests get a proof with `ath`.
//! Nothing here ever logs or prints a token, an assertion or a key.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::budget::Endpoint;
use super::http::{Ctx, FetchError, describe_error, rate_limit, record};
use super::keys::SigningKey;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of a client assertion: Okta refuses one hour or more.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// How requests to Okta are authorized.
pub(crate) enum Auth {
    Ssws(SecretString),
    Oauth(Box<OauthAuth>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Ssws(_) => f.write_str("Ssws([redacted])"),
            Auth::Oauth(o) => f
                .debug_struct("Oauth")
                .field("client_id", &o.client_id)
                .field("token_url", &o.token_url)
                .field("client_key", &o.client_key)
                .field("dpop", &o.dpop.is_some())
                .finish_non_exhaustive(),
        }
    }
}

/// OAuth 2.0 client credentials with `private_key_jwt` (+ DPoP).
pub(crate) struct OauthAuth {
    pub client_id: String,
    pub scopes: String,
    pub token_url: String,
    pub client_key: SigningKey,
    pub dpop: Option<SigningKey>,
    pub state: Mutex<TokenState>,
}

/// The cached token and the DPoP nonces last handed out by Okta.
#[derive(Default)]
pub(crate) struct TokenState {
    token: Option<Token>,
    token_nonce: Option<String>,
    resource_nonce: Option<String>,
}

struct Token {
    value: SecretString,
    dpop: bool,
    renew_at: Instant,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token_type: String,
    expires_in: u64,
    access_token: String,
}

/// The headers of one authorized resource request.
pub(crate) struct ResourceAuth {
    pub authorization: String,
    pub dpop: Option<String>,
}

impl fmt::Debug for ResourceAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResourceAuth([redacted])")
    }
}

/// `htu`: scheme, host and path of `url`, without query or fragment.
pub(crate) fn htu(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// `ath`: base64url(SHA-256(access token)).
pub(crate) fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

impl OauthAuth {
    fn client_assertion(&self) -> Result<String, FetchError> {
        let now = chrono::Utc::now().timestamp();
        let claims = AssertionClaims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: &self.token_url,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        self.client_key
            .sign(&self.client_key.header(), &claims)
            .map_err(|e| FetchError::Permanent(e.to_string()))
    }

    fn proof(
        key: &SigningKey,
        htm: &str,
        htu: &str,
        nonce: Option<&str>,
        token: Option<&str>,
    ) -> Result<String, FetchError> {
        let mut header = jsonwebtoken::Header::new(key.alg());
        header.typ = Some("dpop+jwt".to_owned());
        header.jwk = Some(key.public_jwk().clone());
        let claims = ProofClaims {
            htm,
            htu,
            iat: chrono::Utc::now().timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
            nonce,
            ath: token.map(ath),
        };
        key.sign(&header, &claims)
            .map_err(|e| FetchError::Permanent(e.to_string()))
    }

    /// Headers for a resource request to `url`, fetching a token first when needed.
    pub async fn resource_auth(
        &self,
        ctx: &Ctx<'_>,
        htm: &str,
        url: &Url,
    ) -> Result<ResourceAuth, FetchError> {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_none_or(|t| Instant::now() >= t.renew_at)
        {
            state.token = None;
            let token = self.request_token(ctx, &mut state).await?;
            state.token = Some(token);
        }
        let Some(token) = state.token.as_ref() else {
            return Err(FetchError::Permanent("no access token".to_owned()));
        };
        let value = token.value.expose_secret();
        match (&self.dpop, token.dpop) {
            (Some(key), true) => Ok(ResourceAuth {
                authorization: format!("DPoP {value}"),
                dpop: Some(Self::proof(
                    key,
                    htm,
                    &htu(url),
                    state.resource_nonce.as_deref(),
                    Some(value),
                )?),
            }),
            _ => Ok(ResourceAuth {
                authorization: format!("Bearer {value}"),
                dpop: None,
            }),
        }
    }

    /// Forgets the cached token (Okta said it is no longer valid).
    pub async fn drop_token(&self) {
        self.state.lock().await.token = None;
    }

    /// Remembers the nonce a resource server asked for.
    pub async fn set_resource_nonce(&self, nonce: String) {
        self.state.lock().await.resource_nonce = Some(nonce);
    }

    async fn request_token(
        &self,
        ctx: &Ctx<'_>,
        state: &mut TokenState,
    ) -> Result<Token, FetchError> {
        // First try plus one retry per fresh nonce; Okta asks for a nonce at most once.
        for _ in 0..3 {
            let assertion = self.client_assertion()?;
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", self.scopes.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ];
            if let Some(wait) = ctx.budget.take(Endpoint::Token, 0).await {
                return Err(FetchError::budget_spent(Endpoint::Token, wait));
            }
            let mut req = ctx
                .http
                .post(&self.token_url)
                .header(reqwest::header::ACCEPT, "application/json")
                .form(&form);
            if let Some(key) = &self.dpop {
                let proof = Self::proof(
                    key,
                    "POST",
                    &self.token_url,
                    state.token_nonce.as_deref(),
                    None,
                )?;
                req = req.header("DPoP", proof);
            }
            let started = Instant::now();
            let resp = req.send().await;
            let resp = record(ctx.metrics, "token", started, resp)?;
            let status = resp.status();
            let rate = rate_limit(resp.headers());
            ctx.budget
                .record(Endpoint::Token, rate.limit, rate.remaining, rate.reset)
                .await;
            if let Some(nonce) = resp
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
            {
                state.token_nonce = Some(nonce.to_owned());
            }
            let body = resp
                .text()
                .await
                .map_err(|e| FetchError::Transient(format!("token response broken: {e}")))?;
            if status.is_success() {
                let t: TokenResponse = serde_json::from_str(&body).map_err(|_| {
                    FetchError::Transient("token response is not Okta's token JSON".to_owned())
                })?;
                let lifetime = Duration::from_secs(t.expires_in);
                // Renew a minute early (or at 80% of a short lifetime).
                let margin = Duration::from_secs(60).min(lifetime / 5);
                tracing::debug!(token_type = %t.token_type, expires_in = t.expires_in, "Okta access token issued");
                return Ok(Token {
                    value: SecretString::from(t.access_token),
                    dpop: t.token_type.eq_ignore_ascii_case("DPoP"),
                    renew_at: Instant::now() + lifetime - margin,
                });
            }
            let oauth_error = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
            if status == reqwest::StatusCode::BAD_REQUEST
                && oauth_error.as_deref() == Some("use_dpop_nonce")
                && state.token_nonce.is_some()
            {
                tracing::debug!("Okta asked for a DPoP nonce; retrying the token request");
                continue;
            }
            return Err(FetchError::from_status(
                "token",
                status,
                &rate,
                describe_error("the token endpoint", status, &body),
            ));
        }
        Err(FetchError::Permanent(
            "Okta's token endpoint kept asking for a new DPoP nonce".to_owned(),
        ))
    }
}

impl Auth {
    /// Headers for a resource request.
    pub async fn resource_auth(
        &self,
        ctx: &Ctx<'_>,
        htm: &str,
        url: &Url,
    ) -> Result<ResourceAuth, FetchError> {
        match self {
            Auth::Ssws(token) => Ok(ResourceAuth {
                authorization: format!("SSWS {}", token.expose_secret()),
                dpop: None,
            }),
            Auth::Oauth(o) => o.resource_auth(ctx, htm, url).await,
        }
    }
}
