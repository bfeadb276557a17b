//! `[smtp]`: how vigil reaches its mail server, and how fast it may send.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (local development, a relay on localhost).
    None,
    /// Plain connection upgraded with STARTTLS (required: no fallback to plain text).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// `[smtp]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    /// Mail server host name (also the name checked against its TLS certificate).
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// SMTP AUTH user; no authentication when unset.
    pub username: Option<String>,
    /// SMTP AUTH password. Prefer `password_file`.
    #[serde(serialize_with = "redacted")]
    pub password: Option<SecretString>,
    /// The `From` mailbox, e.g. `vigil <vigil@example.com>`.
    pub from: String,
    /// An optional `Reply-To` mailbox.
    pub reply_to: Option<String>,
    /// Most SMTP connections kept open (and reused) at once.
    pub pool_max_size: u32,
    /// Deadline of one message's whole SMTP exchange (connect included); a timeout retries.
    pub timeout_seconds: u64,
    /// Messages per minute across every vigil instance (shared through Redis); 0 = no limit.
    pub rate_per_minute: u32,
    /// How long a send waits for a free slot under the rate limit before its job is handed
    /// back for a later retry.
    pub rate_wait_seconds: u64,
    /// While the server is unreachable, the first wait before one send probes it again;
    /// each failed probe doubles it.
    pub outage_probe_seconds: u64,
    /// The longest wait between probes.
    pub outage_probe_max_seconds: u64,
    /// An outage longer than this makes waiting messages dead (saying since when the server
    /// is unreachable).
    pub outage_give_up_seconds: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "vigil <vigil@localhost>".to_owned(),
            reply_to: None,
            pool_max_size: 4,
            timeout_seconds: 30,
            rate_per_minute: 120,
            rate_wait_seconds: 30,
            outage_probe_seconds: 5,
            outage_probe_max_seconds: 60,
            outage_give_up_seconds: 24 * 3600,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_serialized() {
        let s = SmtpSettings {
            password: Some(SecretString::from("hunter2")),
            ..Default::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!format!("{s:?}").contains("hunter2"));
        let back: SmtpSettings =
            serde_json::from_str(r#"{"tls": "starttls", "password": "x", "port": 587}"#).unwrap();
        assert_eq!((back.tls, back.port), (SmtpTls::Starttls, 587));
    }
}
