//! vigil's own job kinds: one file per kind, each a payload type with its validation and its
//! [`Job`] declaration (queue name, default settings, default schedule, example). Each
//! documents what its handler does, whether re-running it is safe, and how it fails.

mod alert_escalation;
mod audit;
mod email;
mod notification;
mod okta_fetch;

pub use alert_escalation::{AlertEscalationJob, WebhookDelivery};
pub use audit::{AuditActor, AuditJob};
pub use email::{EmailBody, EmailJob};
pub use notification::NotificationJob;
pub use okta_fetch::{MAX_ORG_NAME_LEN, OktaFetchJob, check_org_name};

use crate::job::Kind;
/// The kinds this crate declares, known to every process from the start.
pub(crate) fn builtin() -> Vec<Kind> {
    vec![
        Kind::of::<OktaFetchJob>(),
        Kind::of::<EmailJob>(),
        Kind::of::<AuditJob>(),
        Kind::of::<AlertEscalationJob>(),
        Kind::of::<NotificationJob>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Job, ValidationError};
    use chrono::{Duration, Utc};
    use serde_json::json;

    fn email(v: serde_json::Value) -> Result<EmailJob, ValidationError> {
        EmailJob::decode(v)
    }

    #[test]
    fn email_needs_recipients_subject_and_one_kind_of_content() {
        assert!(email(json!({"to": ["a@b.c"], "subject": "hi", "body": {"text": "x"}})).is_ok());
        assert!(email(json!({"to": ["a@b.c"], "subject": "hi", "template": "generic"})).is_ok());
        assert_eq!(
            email(json!({"to": [], "subject": "hi", "body": {"text": "x"}}))
                .unwrap_err()
                .field,
            "to"
        );
        assert_eq!(
            email(json!({"to": ["a@b.c", "nope"], "subject": "hi", "body": {"text": "x"}}))
                .unwrap_err()
                .field,
            "to[1]"
        );
        assert_eq!(
            email(json!({"to": ["a@b.c"], "subject": "a\nBcc: x@y.z", "body": {"text": "x"}}))
                .unwrap_err()
                .field,
            "subject"
        );
        assert_eq!(
            email(json!({"to": ["a@b.c"], "subject": "hi"}))
                .unwrap_err()
                .field,
            "body"
        );
        assert_eq!(
            email(json!({"to": ["a@b.c"], "subject": "hi", "body": {}}))
                .unwrap_err()
                .field,
            "body"
        );
    }

    #[test]
    fn unknown_templates_and_template_variables_are_refused_naming_the_valid_ones() {
        let ok = json!({"to": ["a@b.c"], "subject": "hi", "template": "generic",
            "vars": {"title": "t", "message": "m", "url": "https://x.example"}});
        assert!(email(ok).is_ok());
        let err = email(json!({"to": ["a@b.c"], "subject": "hi", "template": "nope"})).unwrap_err();
        assert_eq!(err.field, "template");
        assert!(
            err.message.contains("unknown email template `nope`"),
            "{err}"
        );
        assert!(err.message.contains("generic"), "{err}");
        let err = email(
            json!({"to": ["a@b.c"], "subject": "hi", "template": "generic",
            "vars": {"titel": "t"}}),
        )
        .unwrap_err();
        assert_eq!(err.field, "vars.titel");
        assert!(err.message.contains("title"), "{err}");
        let err = email(
            json!({"to": ["a@b.c"], "subject": "hi", "body": {"text": "x"},
            "vars": {"title": "t"}}),
        )
        .unwrap_err();
        assert_eq!(err.field, "vars");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err =
            email(json!({"to": ["a@b.c"], "subject": "hi", "body": {"text": "x"}, "bcc": []}))
                .unwrap_err();
        assert!(err.message.contains("bcc"), "{err}");
    }

    #[test]
    fn okta_fetch_windows() {
        assert!(OktaFetchJob::decode(json!({})).is_ok());
        let since = Utc::now() - Duration::hours(1);
        assert!(OktaFetchJob::decode(json!({"since": since, "limit": 1000})).is_ok());
        let err =
            OktaFetchJob::decode(json!({"since": since, "until": since - Duration::minutes(1)}))
                .unwrap_err();
        assert_eq!(err.field, "until");
        let err = OktaFetchJob::decode(json!({"limit": 5})).unwrap_err();
        assert_eq!(err.field, "since");
        let old = Utc::now() - Duration::days(91);
        assert_eq!(
            OktaFetchJob::decode(json!({"since": old}))
                .unwrap_err()
                .field,
            "since"
        );
    }

    #[test]
    fn audit_actions_are_dotted_lower_case() {
        let ok = json!({"event_id": "e1", "occurred_at": Utc::now(), "actor": {"kind": "user", "id": "alice"},
                        "action": "job.enqueue", "target_type": "job", "target_id": "01J"});
        let parsed = AuditJob::decode(ok.clone()).unwrap();
        assert_eq!(parsed.action, "job.enqueue");
        let mut bad = ok;
        bad["action"] = json!("Job Enqueue");
        assert_eq!(AuditJob::decode(bad).unwrap_err().field, "action");
    }

    #[test]
    fn payload_json_round_trips() {
        let p = AlertEscalationJob::decode(json!({"alert_id": 7})).unwrap();
        assert_eq!(
            AlertEscalationJob::decode(serde_json::to_value(&p).unwrap()).unwrap(),
            p
        );
        assert!(AlertEscalationJob::decode(json!({"alert_id": 0})).is_err());
    }

    #[test]
    fn every_builtin_example_validates_and_declares_a_distinct_queue() {
        let kinds = builtin();
        for k in &kinds {
            k.validate(&k.example)
                .unwrap_or_else(|e| panic!("{}: {e}", k.queue));
        }
        let queues: std::collections::BTreeSet<_> = kinds.iter().map(|k| k.queue).collect();
        assert_eq!(queues.len(), kinds.len());
    }
}
