//! `email`: send one email through SMTP and record the delivery.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::validate::{is_email_address, non_empty};
use crate::{Job, Queue, QueueSettings, Validate, ValidationError};

/// An email's literal content: text, HTML, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// Send one email.
///
/// Either `body` or `template` (+ `vars`) gives the content. Idempotent per job: a delivery
/// already recorded as sent is not sent again. Connection errors, timeouts and SMTP 4xx
/// replies retry; 5xx replies and invalid addresses are permanent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailJob {
    /// Recipients (1 to 50 addresses).
    pub to: Vec<String>,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<EmailBody>,
    /// Template name, e.g. `alert_notification`, `alert_escalation`, `generic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Template variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Deduplicates sends across jobs (e.g. one per alert and escalation level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The escalation notification this email delivers (its outcome is recorded there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<i64>,
}

impl EmailJob {
    pub const MAX_RECIPIENTS: usize = 50;
    pub const MAX_SUBJECT: usize = 998;
    /// The templates a job may name, each with the variables it takes (the workers' templates
    /// render exactly these; an alert template also takes what the escalator sends).
    pub const TEMPLATES: [(&'static str, &'static [&'static str]); 3] = [
        ("alert_notification", ALERT_VARS),
        ("alert_escalation", ALERT_VARS),
        ("generic", &["title", "message", "url"]),
    ];
}

/// The variables of the two alert templates.
const ALERT_VARS: &[&str] = &[
    "alert_id",
    "rule",
    "summary",
    "severity",
    "status",
    "count",
    "first_seen",
    "last_seen",
    "opened_at",
    "level",
    "policy",
    "waited_minutes",
    "group_key",
    "url",
    "events",
];

/// A template name and its variables checked against [`EmailJob::TEMPLATES`].
fn check_template(
    name: &str,
    vars: &BTreeMap<String, serde_json::Value>,
) -> Result<(), ValidationError> {
    let Some((_, known)) = EmailJob::TEMPLATES.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = EmailJob::TEMPLATES.iter().map(|(n, _)| *n).collect();
        return Err(ValidationError::new(
            "template",
            format!(
                "unknown email template `{name}`; valid: {}",
                names.join(", ")
            ),
        ));
    };
    match vars.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ValidationError::new(
            format!("vars.{k}"),
            format!(
                "template `{name}` has no variable `{k}`; valid: {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

impl Validate for EmailJob {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.to.is_empty() || self.to.len() > Self::MAX_RECIPIENTS {
            return Err(ValidationError::new(
                "to",
                format!("must hold 1 to {} addresses", Self::MAX_RECIPIENTS),
            ));
        }
        for (i, addr) in self.to.iter().enumerate() {
            if !is_email_address(addr) {
                return Err(ValidationError::new(
                    format!("to[{i}]"),
                    format!("`{addr}` is not an email address"),
                ));
            }
        }
        non_empty("subject", &self.subject, Self::MAX_SUBJECT)?;
        if self.subject.contains(['\r', '\n']) {
            return Err(ValidationError::new(
                "subject",
                "must not contain line breaks",
            ));
        }
        match (&self.body, &self.template) {
            (Some(_), Some(_)) => Err(ValidationError::new(
                "body",
                "give either body or template, not both",
            )),
            (None, None) => Err(ValidationError::new(
                "body",
                "one of body or template is required",
            )),
            (Some(body), None) => {
                let text = body.text.as_deref().unwrap_or("").trim();
                let html = body.html.as_deref().unwrap_or("").trim();
                if text.is_empty() && html.is_empty() {
                    Err(ValidationError::new("body", "needs text, html, or both"))
                } else {
                    Ok(())
                }
            }
            (None, Some(name)) => {
                non_empty("template", name, 100)?;
                check_template(name, &self.vars)
            }
        }?;
        if self.template.is_none() && !self.vars.is_empty() {
            return Err(ValidationError::new(
                "vars",
                "template variables need a template",
            ));
        }
        if let Some(key) = &self.idempotency_key {
            non_empty("idempotency_key", key, 200)?;
        }
        Ok(())
    }
}

impl Job for EmailJob {
    const QUEUE: Queue = Queue::new("email");

    fn settings() -> QueueSettings {
        QueueSettings {
            max_attempts: 8,
            concurrency: 4,
            ..QueueSettings::default()
        }
    }

    fn example() -> serde_json::Value {
        serde_json::json!({
            "to": ["soc@example.com"],
            "subject": "Weekly report",
            "body": {"text": "All quiet."}
        })
    }
}
