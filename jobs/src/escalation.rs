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

use std::collections::BTreeMap;

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
    /// When every notification of a level is dead, the next level is due at once (instead
    /// of at its time), so a broken channel never silences an incident.
    pub escalate_on_failure: bool,
    /// The link to an alert's page in Slack, Teams and PagerDuty messages; `{id}` becomes
    /// the alert id.
    pub alert_link: String,
    /// Named Slack, Teams and PagerDuty channels that levels name in `channels`.
    pub channels: BTreeMap<String, ChannelSettings>,
    pub policies: Vec<EscalationPolicy>,
}

/// What kind of HTTP integration a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A Slack incoming webhook (Block Kit message).
    Slack,
    /// A Microsoft Teams incoming webhook (Adaptive Card).
    Teams,
    /// PagerDuty Events API v2 (`trigger`, `acknowledge`, `resolve` by dedup key).
    Pagerduty,
}

impl ChannelKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::Pagerduty => "pagerduty",
        }
    }
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `[escalation.channels.<name>]`: one Slack / Teams webhook or PagerDuty service.
/// `url` and `routing_key` may come from files (`url_file`, `routing_key_file`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    pub kind: ChannelKind,
    /// Slack/Teams: the incoming webhook URL (a secret). PagerDuty: the Events API URL
    /// (default [`PAGERDUTY_EVENTS_URL`]).
    #[serde(default)]
    pub url: String,
    /// PagerDuty: the integration's routing key (a secret).
    #[serde(default)]
    pub routing_key: String,
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSettings")
            .field("kind", &self.kind)
            .field("url", &redact_webhook(&self.url))
            .field("routing_key", &"<redacted>")
            .finish()
    }
}

impl ChannelSettings {
    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        if self.url.is_empty() && self.kind == ChannelKind::Pagerduty {
            PAGERDUTY_EVENTS_URL
        } else {
            &self.url
        }
    }
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
            .field("escalate_on_failure", &self.escalate_on_failure)
            .field("alert_link", &self.alert_link)
            .field("channels", &self.channels)
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
            escalate_on_failure: true,
            alert_link: "http://127.0.0.1:8080/dashboard/#/alerts/{id}".to_owned(),
            channels: BTreeMap::new(),
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
    /// The level a reopened alert's new escalation round starts from (1-based).
    #[serde(default = "first_level")]
    pub reopen_level: usize,
}

fn first_level() -> usize {
    1
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
    /// Names of `[escalation.channels.<name>]` (Slack, Teams, PagerDuty) to notify.
    #[serde(default)]
    pub channels: Vec<String>,
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
        let link = &self.alert_link;
        if !(link.is_empty() || link.starts_with("https://") || link.starts_with("http://")) {
            return Err("alert_link: must be an http:// or https:// URL (with `{id}`)".to_owned());
        }
        for (name, c) in &self.channels {
            let at = |key: &str, msg: &str| format!("channels.{name}.{key}: {msg}");
            if name.is_empty()
                || name.len() > 100
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(format!(
                    "channels.{name}: a channel name is 1-100 letters, digits, `-` or `_`"
                ));
            }
            let url = c.endpoint();
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2000 {
                return Err(at(
                    "url",
                    "must be an http:// or https:// URL of at most 2000 characters \
                     (or give url_file)",
                ));
            }
            match c.kind {
                ChannelKind::Pagerduty if c.routing_key.trim().is_empty() => {
                    return Err(at(
                        "routing_key",
                        "a PagerDuty channel needs the integration's routing key \
                         (or routing_key_file)",
                    ));
                }
                ChannelKind::Slack | ChannelKind::Teams if !c.routing_key.is_empty() => {
                    return Err(at("routing_key", "only PagerDuty channels take one"));
                }
                _ => {}
            }
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
                if level.emails.is_empty() && level.webhooks.is_empty() && level.channels.is_empty()
                {
                    return Err(at("emails", "a level needs emails, webhooks or channels"));
                }
                for (k, c) in level.channels.iter().enumerate() {
                    if !self.channels.contains_key(c) {
                        return Err(at(
                            &format!("channels[{k}]"),
                            &format!("`{c}` is not a channel (define [escalation.channels.{c}])"),
                        ));
                    }
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
            if p.reopen_level == 0 || p.reopen_level > p.levels.len() {
                return Err(at(
                    "reopen_level",
                    &format!("must be a level of the policy, 1 to {}", p.levels.len()),
                ));
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

    /// The alert page's link for alert `id`.
    pub fn link(&self, id: i64) -> String {
        self.alert_link.replace("{id}", &id.to_string())
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
            channels: vec![],
        }
    }

    #[test]
    fn policies_are_chosen_by_rule_then_severity() {
        let p = |name: &str, sev: &[&str], rules: &[&str]| EscalationPolicy {
            name: name.into(),
            severities: sev.iter().map(|s| s.to_string()).collect(),
            rules: rules.iter().map(|s| s.to_string()).collect(),
            levels: vec![level(0, Since::Opened)],
            reopen_level: 1,
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
            reopen_level: 1,
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
                reopen_level: 1,
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
