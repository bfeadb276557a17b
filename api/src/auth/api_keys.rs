//! API keys of service accounts: `vgk_<id>_<secret>`, where `id` (16 hex digits) names the
//! key and `secret` is 256 random bits (64 hex digits). Only the SHA-256 of the secret is
//! stored, compared in constant time. A key is sent as `Authorization: Bearer <key>` or
//! `X-API-Key: <key>`.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this, so it is told apart from a JWT without a lookup.
pub const PREFIX: &str = "vgk_";

/// What an API key may do beyond its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub id: String,
    pub name: String,
    /// The queues it may act on; None = every queue.
    pub queues: Option<Vec<String>>,
    /// Its own requests-per-minute budget; None = the authenticated default.
    pub rate_per_minute: Option<u64>,
}

/// A new key: its id, the secret's hash to store, and the whole key to show once.
pub struct Generated {
    pub id: String,
    pub secret_sha256: String,
    pub key: String,
}

/// Makes a new random key.
pub fn generate() -> Generated {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::fill(&mut id);
    rand::fill(&mut secret);
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    Generated {
        key: format!("{PREFIX}{id}_{secret}"),
        secret_sha256: sha256_hex(&secret),
        id,
    }
}

/// The id and secret of a well-formed key.
pub fn parse(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(PREFIX)?.split_once('_')?;
    let hex16 = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex16(id, 16) && hex16(secret, 64)).then_some((id, secret))
}

/// Hex SHA-256 of `secret`.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// True when `secret` hashes to `stored` (constant-time comparison).
pub fn matches(secret: &str, stored: &str) -> bool {
    sha256_hex(secret)
        .as_bytes()
        .ct_eq(stored.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_match_only_their_own_hash() {
        let g = generate();
        let (id, secret) = parse(&g.key).unwrap();
        assert_eq!(id, g.id);
        assert!(matches(secret, &g.secret_sha256));
        assert!(!matches(
            &secret.replace('a', "b").replace('0', "1"),
            &g.secret_sha256
        ));
        assert_ne!(generate().key, g.key);
        for bad in [
            "",
            "vgk_",
            "vgk_abc_def",
            "eyJhbGciOi.x.y",
            &g.key[..g.key.len() - 1],
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
