//! Escalation policies (`[escalation]` in config.toml): who hears about an unanswered alert,
//! and when. Shared because the API opens alerts too (security events) and reopens them.
//!
//! ```toml
//! [escalation]
//! webhook_secret_file = "/run/secrets/vigil_webhook"   # HMAC-SHA256 key for webhooks
//!
//! [[escalation.policies]]
//! name = "urgent"
//! severities = ["high", "critical"]     # or rules = ["okta_idp_created"]; rules win
//! levels = [
//!   { after_seconds = 0,   emails = ["soc@example.com"], webhooks = ["https://hooks.example.com/vigil"] },
//!   { after_seconds = 900, since = "previous", emails = ["oncall@example.com"] },
//! ]
//! ```
//!
//! Level *n* is due `after_seconds` after the alert opened (`since = "opened"`, the default)
//! or after level *n-1* was reached (`since = "previous"`). A policy naming the alert's rule
//! wins over one naming its severity; the first match in file order wins among equals.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::validate::is_email_address;

/// `[escalation]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationSettings {
    /// Key of the `X-Vigil-Signature` HMAC on webhook bodies (set it, or webhooks are refused).
    pub webhook_secret: String,
    /// Per webhook request.
    pub webhook_timeout_seconds: u64,
    /// Alerts looked at per escalation run.
    pub batch_size: u32,
    pub policies: Vec<EscalationPolicy>,
}

impl std::fmt::Debug for EscalationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EscalationSettings")
            .field(
                "webhook_secret",
                &if self.webhook_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("webhook_timeout_seconds", &self.webhook_timeout_seconds)
            .field("batch_size", &self.batch_size)
            .field("policies", &self.policies)
            .finish()
    }
}

impl Default for EscalationSettings {
    fn default() -> Self {
        EscalationSettings {
            webhook_secret: String::new(),
            webhook_timeout_seconds: 10,
            batch_size: 200,
            policies: Vec::new(),
        }
    }
}

/// An ordered list of levels for the alerts it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    pub name: String,
    /// Alert severities it applies to (`low`, `medium`, `high`, `critical`).
    #[serde(default)]
    pub severities: Vec<String>,
    /// Rule ids it applies to (wins over a severity match).
    #[serde(default)]
    pub rules: Vec<String>,
    pub levels: Vec<EscalationLevel>,
}

/// One step of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    pub after_seconds: u64,
    #[serde(default)]
    pub since: Since,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub webhooks: Vec<String>,
}

/// What a level's delay counts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Since {
    #[default]
    Opened,
    Previous,
}

/// The rule id of alerts opened by `POST /api/v1/events/security` (policies may name it).
pub const SECURITY_EVENT_RULE: &str = "security_event";

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

impl EscalationSettings {
    /// Checks every policy; the error names the key (`policies[i].levels[j].emails[k]`).
    pub fn validate(&self) -> Result<(), String> {
        if self.webhook_timeout_seconds == 0 || self.webhook_timeout_seconds > 300 {
            return Err("webhook_timeout_seconds: must be between 1 and 300".to_owned());
        }
        if self.batch_size == 0 {
            return Err("batch_size: must be at least 1".to_owned());
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            let at = |key: &str, msg: &str| format!("policies[{i}].{key}: {msg}");
            if p.name.trim().is_empty() || p.name.len() > 100 {
                return Err(at("name", "must be 1-100 characters"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(at("name", &format!("`{}` is used by two policies", p.name)));
            }
            if p.severities.is_empty() && p.rules.is_empty() {
                return Err(at(
                    "severities",
                    "give severities or rules (otherwise the policy never applies)",
                ));
            }
            for s in &p.severities {
                if !SEVERITIES.contains(&s.as_str()) {
                    return Err(at(
                        "severities",
                        &format!("`{s}` is not one of low, medium, high, critical"),
                    ));
                }
            }
            if p.levels.is_empty() {
                return Err(at("levels", "needs at least one level"));
            }
            for (j, level) in p.levels.iter().enumerate() {
                let at = |key: &str, msg: &str| format!("policies[{i}].levels[{j}].{key}: {msg}");
                if level.emails.is_empty() && level.webhooks.is_empty() {
                    return Err(at("emails", "a level needs emails or webhooks"));
                }
                for (k, e) in level.emails.iter().enumerate() {
                    if !is_email_address(e) {
                        return Err(at(
                            &format!("emails[{k}]"),
                            &format!("`{e}` is not an email address"),
                        ));
                    }
                }
                for (k, w) in level.webhooks.iter().enumerate() {
                    if !(w.starts_with("https://") || w.starts_with("http://")) || w.len() > 2000 {
                        return Err(at(
                            &format!("webhooks[{k}]"),
                            "must be an http:// or https:// URL of at most 2000 characters",
                        ));
                    }
                }
                if level.after_seconds > 30 * 24 * 3600 {
                    return Err(at("after_seconds", "must be at most 30 days"));
                }
            }
            if !p.levels.iter().all(|l| l.webhooks.is_empty()) && self.webhook_secret.is_empty() {
                return Err(at(
                    "levels",
                    "webhooks need escalation.webhook_secret (or webhook_secret_file) to sign them",
                ));
            }
        }
        Ok(())
    }

    /// The policy for an alert of `rule_id` at `severity`, if any.
    pub fn policy_for(&self, rule_id: &str, severity: &str) -> Option<&EscalationPolicy> {
        self.policies
            .iter()
            .find(|p| p.rules.iter().any(|r| r == rule_id))
            .or_else(|| {
                self.policies.iter().find(|p| {
                    p.severities
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(severity))
                })
            })
    }

    pub fn policy(&self, name: &str) -> Option<&EscalationPolicy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// Whether `url` is a webhook target of some policy (webhook jobs go nowhere else).
    pub fn is_webhook_target(&self, url: &str) -> bool {
        self.policies
            .iter()
            .flat_map(|p| &p.levels)
            .any(|l| l.webhooks.iter().any(|w| w == url))
    }
}

/// How a webhook URL is shown in logs and the API: scheme and host only (paths and queries
/// of webhooks often hold tokens).
pub fn redact_webhook(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}/…")
        }
        None => "<invalid url>".to_owned(),
    }
}

impl EscalationPolicy {
    /// When level `level` (1-based) is due for an alert opened at `opened`, the previous
    /// level having been reached at `previous` (`None` when past the last level).
    pub fn due_at(
        &self,
        level: usize,
        opened: DateTime<Utc>,
        previous: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let l = self.levels.get(level.checked_sub(1)?)?;
        let base = match l.since {
            Since::Opened => opened,
            Since::Previous => previous,
        };
        let after = i64::try_from(l.after_seconds).unwrap_or(i64::MAX);
        Some(base + Duration::seconds(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(after: u64, since: Since) -> EscalationLevel {
        EscalationLevel {
            after_seconds: after,
            since,
            emails: vec!["soc@example.com".into()],
            webhooks: vec![],
        }
    }

    #[test]
    fn policies_are_chosen_by_rule_then_severity() {
        let p = |name: &str, sev: &[&str], rules: &[&str]| EscalationPolicy {
            name: name.into(),
            severities: sev.iter().map(|s| s.to_string()).collect(),
            rules: rules.iter().map(|s| s.to_string()).collect(),
            levels: vec![level(0, Since::Opened)],
        };
        let s = EscalationSettings {
            policies: vec![
                p("sev", &["high"], &[]),
                p("rule", &[], &["okta_idp_created"]),
            ],
            ..Default::default()
        };
        s.validate().unwrap();
        assert_eq!(
            s.policy_for("okta_idp_created", "high").unwrap().name,
            "rule"
        );
        assert_eq!(
            s.policy_for("okta_brute_force_ip", "high").unwrap().name,
            "sev"
        );
        assert!(s.policy_for("okta_brute_force_ip", "low").is_none());
    }

    #[test]
    fn levels_count_from_opened_or_previous() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let p = EscalationPolicy {
            name: "p".into(),
            severities: vec!["high".into()],
            rules: vec![],
            levels: vec![level(60, Since::Opened), level(300, Since::Previous)],
        };
        let later = t0 + Duration::seconds(100);
        assert_eq!(p.due_at(1, t0, t0), Some(t0 + Duration::seconds(60)));
        assert_eq!(p.due_at(2, t0, later), Some(later + Duration::seconds(300)));
        assert_eq!(p.due_at(3, t0, later), None);
        assert_eq!(p.due_at(0, t0, later), None);
    }

    #[test]
    fn mistakes_name_the_key() {
        let mut s = EscalationSettings {
            policies: vec![EscalationPolicy {
                name: "p".into(),
                severities: vec!["urgent".into()],
                rules: vec![],
                levels: vec![level(0, Since::Opened)],
            }],
            ..Default::default()
        };
        assert_eq!(
            s.validate().unwrap_err(),
            "policies[0].severities: `urgent` is not one of low, medium, high, critical"
        );
        s.policies[0].severities = vec!["high".into()];
        s.policies[0].levels[0].emails = vec!["not-an-address".into()];
        assert!(
            s.validate()
                .unwrap_err()
                .starts_with("policies[0].levels[0].emails[0]:")
        );
        s.policies[0].levels[0].emails = vec![];
        s.policies[0].levels[0].webhooks = vec!["https://hooks.example.com/x".into()];
        assert!(s.validate().unwrap_err().contains("webhook_secret"));
        s.webhook_secret = "s3cret-s3cret".into();
        s.validate().unwrap();
        assert!(s.is_webhook_target("https://hooks.example.com/x"));
        assert!(!s.is_webhook_target("https://evil.example.com/x"));
    }

    #[test]
    fn webhooks_show_only_scheme_and_host() {
        assert_eq!(
            redact_webhook("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_webhook("https://user:pw@hooks.example.com:8443?token=s3cret"),
            "https://hooks.example.com:8443/…"
        );
        assert_eq!(redact_webhook("not a url"), "<invalid url>");
    }
}
