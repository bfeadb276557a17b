//! Tokens of an external OpenID Connect issuer (e.g. the company's Okta), verified against the
//! issuer's JWKS. Keys are cached for `jwks_cache_seconds` and refetched when a token names an
//! unknown `kid` (at most once every 10 seconds, so forged `kid`s cannot flood the issuer).
//! The role comes from a configurable claim (a string or an array of strings). The same
//! verifier checks the ID tokens of dashboard sign-ins ([`OidcVerifier::verify_id_token`]).

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use vigil_store::users::UserRole;

use crate::auth::jwt::{TokenError, algorithm};
use crate::settings::OidcSettings;

const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Verifies tokens of one external issuer.
pub struct OidcVerifier {
    settings: OidcSettings,
    client: reqwest::Client,
    cache: Mutex<Option<(Instant, JwkSet)>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// A verified external identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub username: String,
    pub role: UserRole,
}

impl OidcVerifier {
    /// A verifier for `settings` (no request is made until the first token).
    pub fn new(settings: OidcSettings) -> Result<OidcVerifier, String> {
        // vigil uses rustls with ring; install it unless the process already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the JWKS HTTP client: {e}"))?;
        Ok(OidcVerifier {
            settings,
            client,
            cache: Mutex::new(None),
        })
    }

    async fn fetch(&self) -> Result<JwkSet, TokenError> {
        let resp = self
            .client
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "JWKS fetch failed");
                TokenError::Other("the identity provider's keys are unavailable".to_owned())
            })?;
        if !resp.status().is_success() {
            tracing::warn!(status = %resp.status(), "JWKS fetch failed");
            return Err(TokenError::Other(
                "the identity provider's keys are unavailable".to_owned(),
            ));
        }
        resp.json::<JwkSet>().await.map_err(|e| {
            tracing::warn!(error = %e, "JWKS is not valid JSON");
            TokenError::Other("the identity provider's keys are unreadable".to_owned())
        })
    }

    /// The key for `kid`: from the cache, else after a refetch.
    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        let mut cache = self.cache.lock().await;
        let ttl = Duration::from_secs(self.settings.jwks_cache_seconds);
        let stale = cache.as_ref().is_none_or(|(at, _)| at.elapsed() > ttl);
        if stale {
            *cache = Some((Instant::now(), self.fetch().await?));
        }
        let found = cache.as_ref().and_then(|(_, set)| set.find(kid).cloned());
        let jwk = match found {
            Some(jwk) => jwk,
            None => {
                let may_refetch = cache
                    .as_ref()
                    .is_none_or(|(at, _)| at.elapsed() >= MIN_REFETCH);
                if !may_refetch {
                    return Err(TokenError::UnknownKey);
                }
                let set = self.fetch().await?;
                let jwk = set.find(kid).cloned();
                *cache = Some((Instant::now(), set));
                jwk.ok_or(TokenError::UnknownKey)?
            }
        };
        DecodingKey::from_jwk(&jwk).map_err(|_| TokenError::UnknownKey)
    }

    /// Verifies an external access token and maps it to a vigil identity.
    pub async fn verify(&self, token: &str, leeway: u64) -> Result<ExternalIdentity, TokenError> {
        let claims = self
            .claims(
                token,
                &self.settings.audience,
                leeway,
                &["exp", "iss", "aud"],
            )
            .await?;
        self.identity(&claims)
    }

    /// Verifies an ID token of a dashboard sign-in: signed by the issuer, for `client_id`
    /// (`aud`, and `azp` when present), carrying the `nonce` this sign-in sent (compared in
    /// constant time); then maps it to a vigil identity.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
        leeway: u64,
    ) -> Result<ExternalIdentity, TokenError> {
        let client_id = &self.settings.client_id;
        let claims = self
            .claims(token, client_id, leeway, &["exp", "iss", "aud", "sub"])
            .await?;
        if let Some(azp) = claims.get("azp")
            && azp.as_str() != Some(client_id.as_str())
        {
            return Err(TokenError::Audience);
        }
        let sent = claims.get("nonce").and_then(|v| v.as_str()).unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err(TokenError::Other(
                "the ID token's nonce is not this sign-in's".to_owned(),
            ));
        }
        self.identity(&claims)
    }

    /// A token's claims after the signature, algorithm, `iss`, `aud`, `exp` and `nbf` checks.
    async fn claims(
        &self,
        token: &str,
        audience: &str,
        leeway: u64,
        required: &[&str],
    ) -> Result<serde_json::Value, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        let allowed: Vec<_> = self
            .settings
            .algorithms
            .iter()
            .map(|a| algorithm(*a))
            .collect();
        if !allowed.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = allowed;
        validation.leeway = leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(required);
        Ok(jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)?.claims)
    }

    /// The user (`username_claim`) and role (`role_claim` against the configured values).
    fn identity(&self, claims: &serde_json::Value) -> Result<ExternalIdentity, TokenError> {
        let username = claims
            .get(&self.settings.username_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim)?
            .to_owned();
        let values: Vec<&str> = match claims.get(&self.settings.role_claim) {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str()).collect()
            }
            _ => Vec::new(),
        };
        let has = |wanted: &[String]| values.iter().any(|v| wanted.iter().any(|w| w == v));
        let role = if has(&self.settings.admin_values) {
            UserRole::Admin
        } else if has(&self.settings.analyst_values) {
            UserRole::Analyst
        } else {
            return Err(TokenError::NoRole);
        };
        Ok(ExternalIdentity { username, role })
    }

    /// The settings this verifier was built from.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }
}
