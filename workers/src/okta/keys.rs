//! Signing keys: the client-assertion key from PEM, the per-process DPoP key, and key
//! generation for `vigil okta keygen`.
//!
//! Keys never appear in `Debug` output, logs or errors: only their algorithm and `kid`.

use std::fmt;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use secrecy::SecretString;
use serde::Serialize;

use super::OktaError;

/// A private key that signs JWTs, with its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.jwk.common.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads an RSA (PKCS#1 or PKCS#8) or P-256 (PKCS#8) private key in PEM; signs with
    /// RS256 or ES256. `kid` goes into the JWK and each JWT header.
    pub fn from_pem(pem: &str, kid: Option<&str>) -> Result<SigningKey, OktaError> {
        let (alg, key) = if let Ok(k) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
            (Algorithm::RS256, k)
        } else if let Ok(k) = EncodingKey::from_ec_pem(pem.as_bytes()) {
            (Algorithm::ES256, k)
        } else {
            return Err(OktaError::Key(
                "the private key is not an RSA or P-256 private key in PEM".to_owned(),
            ));
        };
        Self::with_key(alg, key, kid)
    }

    fn with_key(alg: Algorithm, key: EncodingKey, kid: Option<&str>) -> Result<Self, OktaError> {
        let mut jwk = Jwk::from_encoding_key(&key, alg)
            .map_err(|e| OktaError::Key(format!("cannot derive the public key: {e}")))?;
        jwk.common.key_id = kid.filter(|k| !k.is_empty()).map(str::to_owned);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(SigningKey { alg, key, jwk })
    }

    /// A fresh P-256 key for DPoP proofs, kept in memory for the life of the process.
    pub fn generate_dpop() -> Result<SigningKey, OktaError> {
        let secret = random_p256();
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| OktaError::Key(format!("cannot encode the DPoP key: {e}")))?;
        let key = EncodingKey::from_ec_der(der.as_bytes());
        Self::with_key(Algorithm::ES256, key, None)
    }

    /// The signing algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (with `kid` and `use` when known).
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// A header for this key: `kid` set when known.
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.kid = self.jwk.common.key_id.clone();
        h
    }

    /// Signs `claims` under `header`.
    pub fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, OktaError> {
        jsonwebtoken::encode(header, claims, &self.key)
            .map_err(|e| OktaError::Key(format!("cannot sign a JWT: {e}")))
    }
}

fn random_p256() -> p256::SecretKey {
    loop {
        // A uniformly random scalar; the rare out-of-range value is simply drawn again.
        let bytes: [u8; 32] = rand::random();
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            return k;
        }
    }
}

/// Which key `vigil okta keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, RS256.
    Rs256,
    /// P-256, ES256.
    Es256,
}

/// A generated key pair: the private PEM to save and the public JWK to register in Okta.
pub struct GeneratedKey {
    pub private_pem: SecretString,
    pub public_jwk: serde_json::Value,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("public_jwk", &self.public_jwk)
            .finish_non_exhaustive()
    }
}

/// Generates a key pair (PKCS#8 PEM) and its public JWK carrying `kid`.
pub fn generate(kind: KeyKind, kid: &str) -> Result<GeneratedKey, OktaError> {
    let pem: String = match kind {
        KeyKind::Es256 => random_p256()
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| OktaError::Key(format!("cannot encode the key: {e}")))?
            .to_string(),
        KeyKind::Rs256 => {
            let mut rng = rsa::rand_core::OsRng;
            let key = rsa::RsaPrivateKey::new(&mut rng, 2048)
                .map_err(|e| OktaError::Key(format!("cannot generate an RSA key: {e}")))?;
            rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, rsa::pkcs8::LineEnding::LF)
                .map_err(|e| OktaError::Key(format!("cannot encode the key: {e}")))?
                .to_string()
        }
    };
    let signing = SigningKey::from_pem(&pem, Some(kid))?;
    let mut public_jwk = serde_json::to_value(signing.public_jwk())
        .map_err(|e| OktaError::Key(format!("cannot encode the JWK: {e}")))?;
    if let Some(obj) = public_jwk.as_object_mut() {
        obj.insert(
            "alg".to_owned(),
            serde_json::Value::String(format!("{:?}", signing.alg())),
        );
    }
    Ok(GeneratedKey {
        private_pem: SecretString::from(pem),
        public_jwk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_never_print() {
        let g = generate(KeyKind::Es256, "kid-1").unwrap();
        assert_eq!(g.public_jwk["kid"], "kid-1");
        assert_eq!(g.public_jwk["kty"], "EC");
        assert!(g.public_jwk.get("d").is_none(), "public only");
        let pem = secrecy::ExposeSecret::expose_secret(&g.private_pem).to_owned();
        let k = SigningKey::from_pem(&pem, Some("kid-1")).unwrap();
        assert_eq!(k.alg(), Algorithm::ES256);
        let shown = format!("{k:?} {g:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(SigningKey::from_pem("not a key", None).is_err());
        let d = SigningKey::generate_dpop().unwrap();
        assert!(d.public_jwk().common.key_id.is_none());
    }
}
