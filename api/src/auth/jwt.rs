//! vigil's own tokens: issue and verify access and refresh JWTs.
//!
//! The algorithm is pinned by config (`auth.algorithm`): a token whose header names another
//! algorithm (`none`, or HS256 signed with an RS256 public key) is rejected before any key is
//! used. `iss`, `aud`, `exp`, `nbf` and `sub` are required and checked; the header's `kid`
//! must be vigil's; the `token_type` claim keeps refresh tokens out of API calls and access
//! tokens out of `/auth/refresh`.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use vigil_store::users::UserRole;

use crate::settings::{AuthSettings, JwtAlgorithm};

/// Which kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    Access,
    Refresh,
}

/// The claims of a vigil token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The username.
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    pub token_type: TokenType,
    pub role: UserRole,
    /// The sign-in session (token family) the token belongs to: a refresh rotates within it,
    /// and revoking it ends its access tokens too. Absent in tokens issued before sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Why a token was refused. The message is safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not accepted")]
    Algorithm,
    #[error("token signed with an unknown key id")]
    UnknownKey,
    #[error("invalid token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issuer not accepted")]
    Issuer,
    #[error("token audience not accepted")]
    Audience,
    #[error("token lacks a required claim")]
    MissingClaim,
    #[error("a {0} token cannot be used here")]
    WrongType(&'static str),
    #[error("token not accepted: {0}")]
    Other(String),
    #[error("token not accepted: the token grants no vigil role")]
    NoRole,
    #[error("the database did not answer in time; retry later")]
    Unavailable,
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
            ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => TokenError::Malformed,
            _ => TokenError::Other("unverifiable token".to_owned()),
        }
    }
}

/// A key configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("auth.jwt_secret (or auth.jwt_secret_file) is required for HS256")]
    MissingSecret,
    #[error("auth.jwt_secret must be at least 32 bytes")]
    ShortSecret,
    #[error("auth.private_key and auth.public_key (or their _file forms) are required for {0:?}")]
    MissingKeyPair(JwtAlgorithm),
    #[error("auth.{field} is not a valid {alg:?} PEM key: {reason}")]
    BadKey {
        field: &'static str,
        alg: JwtAlgorithm,
        reason: String,
    },
}

/// Converts the config name to jsonwebtoken's.
pub fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

/// Signing and verification keys for vigil's own tokens.
pub struct TokenKeys {
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    issuer: String,
    audience: String,
    access_secs: i64,
    refresh_secs: i64,
    leeway: u64,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("alg", &self.alg)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl TokenKeys {
    /// Loads the keys named by `[auth]`.
    pub fn from_settings(s: &AuthSettings) -> Result<TokenKeys, KeyError> {
        let (encoding, decoding) = match s.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = s.jwt_secret.as_ref().ok_or(KeyError::MissingSecret)?;
                let bytes = secret.expose_secret().as_bytes();
                if bytes.len() < 32 {
                    return Err(KeyError::ShortSecret);
                }
                (
                    EncodingKey::from_secret(bytes),
                    DecodingKey::from_secret(bytes),
                )
            }
            alg @ (JwtAlgorithm::RS256 | JwtAlgorithm::ES256) => {
                let (Some(private), Some(public)) = (&s.private_key, &s.public_key) else {
                    return Err(KeyError::MissingKeyPair(alg));
                };
                let private = private.expose_secret().as_bytes();
                let public = public.as_bytes();
                let bad = |field: &'static str| {
                    move |e: jsonwebtoken::errors::Error| KeyError::BadKey {
                        field,
                        alg,
                        reason: e.to_string(),
                    }
                };
                if alg == JwtAlgorithm::RS256 {
                    (
                        EncodingKey::from_rsa_pem(private).map_err(bad("private_key"))?,
                        DecodingKey::from_rsa_pem(public).map_err(bad("public_key"))?,
                    )
                } else {
                    (
                        EncodingKey::from_ec_pem(private).map_err(bad("private_key"))?,
                        DecodingKey::from_ec_pem(public).map_err(bad("public_key"))?,
                    )
                }
            }
        };
        Ok(TokenKeys {
            alg: algorithm(s.algorithm),
            encoding,
            decoding,
            key_id: s.key_id.clone(),
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
            access_secs: (s.access_token_minutes * 60) as i64,
            refresh_secs: (s.refresh_token_hours * 3600) as i64,
            leeway: s.leeway_seconds,
        })
    }

    /// vigil's key id (tokens with another `kid` are not vigil's).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Lifetime of a token of `ty`, in seconds.
    pub fn lifetime(&self, ty: TokenType) -> i64 {
        match ty {
            TokenType::Access => self.access_secs,
            TokenType::Refresh => self.refresh_secs,
        }
    }

    /// Signs a new token for `user` outside any session.
    pub fn issue(&self, user: &str, role: UserRole, ty: TokenType) -> Result<String, TokenError> {
        self.sign(&self.claims(user, role, ty, None))
    }

    /// The claims of a new token for `user` in session `sid` (a fresh `jti`), to sign with
    /// [`TokenKeys::sign`].
    pub fn claims(&self, user: &str, role: UserRole, ty: TokenType, sid: Option<&str>) -> Claims {
        let now = now_secs();
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_owned(),
            iat: now,
            nbf: now,
            exp: now + self.lifetime(ty),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            token_type: ty,
            role,
            sid: sid.map(str::to_owned),
        }
    }

    /// Signs arbitrary claims with vigil's key (tests forge edge cases with it).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| TokenError::Other(e.to_string()))
    }

    /// Verifies a token and checks it is of type `expected`.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::from)?;
        if header.alg != self.alg {
            return Err(TokenError::Algorithm);
        }
        if header.kid.as_deref() != Some(self.key_id.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        let mut validation = Validation::new(self.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?;
        if data.claims.token_type != expected {
            return Err(TokenError::WrongType(match data.claims.token_type {
                TokenType::Access => "access",
                TokenType::Refresh => "refresh",
            }));
        }
        Ok(data.claims)
    }
}

/// Reads only the header's `kid` (no verification), to route a token to its verifier.
pub fn peek_kid(token: &str) -> Result<Option<String>, TokenError> {
    Ok(jsonwebtoken::decode_header(token)
        .map_err(TokenError::from)?
        .kid)
}
