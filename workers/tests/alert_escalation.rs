//! Detection and escalation end to end, on PostgreSQL, the shared Redis, a real SMTP server
//! and a real HTTP webhook receiver, with a controlled clock for escalation runs:
//! stored events → detector → alert (threshold windows in Redis, repeats update it) → level 1
//! and level 2 notifications (emails delivered, webhooks signed) → acknowledged → no further
//! escalation; runs repeated or racing and jobs delivered twice send nothing twice.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::Registry;
use serde_json::{Value, json};
use vigil_jobs::escalation::{EscalationLevel, EscalationPolicy, Since};
use vigil_jobs::{EscalationSettings, JobStatus, Queue};
use vigil_queue::{Engine, NewJob, SchedulesSettings};
use vigil_rules::{RedisWindows, RuleSet, RulesSettings};
use vigil_store::alerts::{self, AlertAction, AlertStatus};
use vigil_store::events::{self, NewEvent, StoredEvent};
use vigil_store::okta_event::parse_event;
use vigil_testkit::db::TestDb;
use vigil_testkit::fake_okta::FakeOkta;
use vigil_testkit::smtp::SmtpServer;
use vigil_testkit::webhook::WebhookReceiver;
use vigil_workers::alerts::{
    AlertWork, Detector, Escalator, NotificationTracker, WebhookSender, sign,
};
use vigil_workers::email::{EngineAuditSink, Mailer, SendRateLimiter, SmtpSettings, SmtpTls};
use vigil_workers::runtime::Runtime;

use common::{cleanup, eventually, jobs, system};
use vigil_jobs::{AlertEscalationJob, AuditJob, EmailJob, Job as _, NotificationJob};

const SECRET: &str = "webhook-secret-for-tests";

/// A real sample event (by file-name prefix) with fields replaced.
fn sample(prefix: &str, uuid: &str, published: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let (_, text) = FakeOkta::sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix))
        .expect("sample");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["uuid"] = json!(uuid);
    v["published"] = json!(published);
    edit(&mut v);
    v
}

async fn store(db: &vigil_store::Db, events: &[Value]) -> Vec<StoredEvent> {
    let parsed: Vec<NewEvent> = events
        .iter()
        .map(|e| {
            let raw = serde_json::value::RawValue::from_string(e.to_string()).unwrap();
            parse_event(&raw).unwrap()
        })
        .collect();
    events::insert_batch(db, &parsed).await.unwrap()
}

fn escalation(hook: &str) -> EscalationSettings {
    let level = |after: u64, since: Since, email: &str| EscalationLevel {
        after_seconds: after,
        since,
        emails: vec![email.to_owned()],
        webhooks: vec![hook.to_owned()],
        channels: vec![],
    };
    EscalationSettings {
        webhook_secret: SECRET.to_owned(),
        policies: vec![EscalationPolicy {
            name: "soc".into(),
            severities: vec!["high".into(), "critical".into()],
            rules: vec![],
            levels: vec![
                level(60, Since::Opened, "first@example.com"),
                level(300, Since::Opened, "second@example.com"),
                level(600, Since::Previous, "third@example.com"),
            ],
            reopen_level: 1,
        }],
        ..EscalationSettings::default()
    }
}

async fn all_done(e: &Engine, queue: Queue) -> bool {
    let list = jobs(e, queue).await;
    !list.is_empty() && list.iter().all(|j| j.status == JobStatus::Done)
}

fn verify_signature(d: &vigil_testkit::webhook::Delivery) {
    let header = &d.headers["x-vigil-signature"];
    let t: i64 = header
        .split(',')
        .find_map(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .expect("t=");
    assert_eq!(
        header,
        &sign(SECRET.as_bytes(), t, d.body.as_bytes()),
        "valid signature"
    );
    assert!((Utc::now().timestamp() - t).abs() < 120, "fresh timestamp");
    assert_eq!(d.headers["content-type"], "application/json");
    assert_eq!(d.headers["x-vigil-event"], "alert.escalated");
}

#[test]
fn an_alert_escalates_level_by_level_until_acknowledged_and_never_notifies_twice() {
    system(async {
        let smtp = SmtpServer::start().await;
        let hooks = WebhookReceiver::start().await;
        let t = TestDb::postgres().await;
        let prefix = vigil_testkit::redis::unique_prefix("alerts");
        let e = common::engine(&prefix, |_, q| {
            *q.get_mut(EmailJob::QUEUE) = common::quick_queue();
            *q.get_mut(AlertEscalationJob::QUEUE) = common::quick_queue();
            *q.get_mut(NotificationJob::QUEUE) = common::quick_queue();
        })
        .await;
        let settings = Arc::new(escalation(&hooks.url("/hooks/vigil")));
        settings.validate().unwrap();
        let rules = Arc::new(RuleSet::load(&RulesSettings::default()).unwrap());
        let detector = Detector::new(
            rules,
            Arc::new(RedisWindows::new(e.redis(), e.prefix())),
            t.db.clone(),
            e.clone(),
            settings.clone(),
            None,
        );

        // 1. Two lockouts: the single-lockout rule fires twice into one alert; the repeated
        //    lockout rule (3 in 3 h) does not yet.
        let lock = |uuid: &str, at: &str| sample("14_user.account.lock", uuid, at, |_| {});
        let first = store(
            &t.db,
            &[
                lock("lock-1", "2026-11-22T10:00:00.000Z"),
                lock("lock-2", "2026-11-22T10:30:00.000Z"),
            ],
        )
        .await;
        let s = detector.detect(&first).await.unwrap();
        assert_eq!(s.alerts_opened.len(), 1, "{s:?}");
        assert_eq!(
            s.alerts_updated, s.alerts_opened,
            "the repeat updates the open alert"
        );
        let single = alerts::get(&t.db, s.alerts_opened[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(single.rule_id, "okta_account_locked");
        assert_eq!(single.event_count, 2);

        // The third lockout within 3 h opens the threshold alert, linked to all three; it is
        // also more than an hour after the last single lockout, so that rule opens anew.
        let third = store(&t.db, &[lock("lock-3", "2026-11-22T12:59:00.000Z")]).await;
        let s = detector.detect(&third).await.unwrap();
        assert_eq!(s.alerts_opened.len(), 2, "{s:?}");
        let mut opened = Vec::new();
        for id in &s.alerts_opened {
            opened.push(alerts::get(&t.db, *id).await.unwrap().unwrap());
        }
        let rules: Vec<&str> = opened.iter().map(|a| a.rule_id.as_str()).collect();
        assert_eq!(rules, ["okta_account_locked", "okta_repeated_lockouts"]);
        let alert = opened.pop().unwrap();
        let alert_id = alert.id;
        assert_eq!(alert.severity, "high");
        assert_eq!(alert.event_count, 3);
        assert_eq!(alert.first_seen.to_rfc3339(), "2026-11-22T10:00:00+00:00");
        assert_eq!(alert.escalation_policy.as_deref(), Some("soc"));
        assert_eq!(alert.escalation_level, 0);
        let mut linked = alerts::linked_events(&t.db, alert_id, 10).await.unwrap();
        linked.sort();
        assert_eq!(linked, ["lock-1", "lock-2", "lock-3"]);

        // Detecting the same events again (a re-delivered page) changes nothing.
        let again = detector.detect(&third).await.unwrap();
        assert!(
            again.alerts_opened.is_empty() && again.alerts_updated.is_empty(),
            "{again:?}"
        );
        assert_eq!(
            alerts::get(&t.db, alert_id)
                .await
                .unwrap()
                .unwrap()
                .event_count,
            3
        );

        // Opening it queued an escalation run for it, and audit records.
        let runs = jobs(&e, AlertEscalationJob::QUEUE).await;
        assert!(
            runs.iter()
                .any(|j| j.payload == json!({"alert_id": alert_id})),
            "{runs:?}"
        );
        let audits: Vec<Value> = jobs(&e, AuditJob::QUEUE)
            .await
            .into_iter()
            .map(|j| j.payload)
            .collect();
        assert!(audits.iter().any(|p| p["action"] == "alert.open"
            && p["target_id"].as_str() == Some(alert_id.to_string().as_str())));

        // 2. The escalation clock, controlled: nothing before level 1 is due.
        let escalator = Escalator::new(t.db.clone(), e.clone(), settings.clone(), None);
        let t0: DateTime<Utc> = alert.created_at;
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let early = escalator.run(at(59), None).await.unwrap();
        assert!(
            early.escalated.iter().all(|(id, _)| *id != alert_id),
            "{early:?}"
        );

        // Level 1 at +60 s: one email job and one webhook job queued, once.
        let l1 = escalator.run(at(61), Some(alert_id)).await.unwrap();
        assert_eq!(l1.escalated, [(alert_id, 1)]);
        assert_eq!(l1.notifications, 2);
        let repeat = escalator.run(at(62), Some(alert_id)).await.unwrap();
        assert!(repeat.escalated.is_empty(), "{repeat:?}");

        // Deliver through the real runtime: SMTP and the webhook receiver get them.
        let mailer = Mailer::new(
            &SmtpSettings {
                host: "127.0.0.1".into(),
                port: smtp.port(),
                tls: SmtpTls::None,
                from: "vigil@example.com".into(),
                timeout_seconds: 2,
                ..SmtpSettings::default()
            },
            t.db.clone(),
            SendRateLimiter::Unlimited,
            Arc::new(EngineAuditSink::new(e.clone())),
        )
        .unwrap();
        let tracker = NotificationTracker::new(t.db.clone(), e.clone(), settings.clone(), None);
        let mailer = mailer.with_notifications(tracker.clone());
        let webhooks = WebhookSender::new(settings.clone(), t.db.clone(), None)
            .unwrap()
            .with_notifications(tracker);
        let registry = Registry::new();
        let rt = Runtime::builder(e.clone(), SchedulesSettings(BTreeMap::new()), &registry)
            .job::<EmailJob>(mailer)
            .job::<NotificationJob>(webhooks.clone())
            .job::<AlertEscalationJob>(AlertWork {
                escalator: Escalator::new(t.db.clone(), e.clone(), settings.clone(), None),
                webhooks,
                detector: None,
            })
            .start()
            .unwrap();
        let mails = smtp.wait_for(1, Duration::from_secs(20)).await;
        assert_eq!(mails[0].rcpt_to, ["first@example.com"]);
        let subject = mails[0].header("Subject").unwrap();
        assert!(
            subject.contains(&format!("high alert #{alert_id}")),
            "{subject}"
        );
        assert!(mails[0].data.contains("Repeated lockouts of one user"));
        let got = hooks.wait_for(1, Duration::from_secs(20)).await;
        verify_signature(&got[0]);
        assert_eq!(got[0].path, "/hooks/vigil");
        let body: Value = serde_json::from_str(&got[0].body).unwrap();
        assert_eq!(body["level"], 1);
        assert_eq!(body["policy"], "soc");
        assert_eq!(body["alert"]["id"], alert_id);
        assert_eq!(body["alert"]["rule_id"], "okta_repeated_lockouts");
        assert_eq!(body["alert"]["count"], 3);
        assert_eq!(
            got[0].headers["x-vigil-delivery"],
            body["delivery_id"].as_str().unwrap()
        );

        // 3. Level 2 at +300 s, with two runs racing for it: claimed and sent once.
        let (a, b) = tokio::join!(escalator.run(at(301), None), escalator.run(at(301), None));
        let claimed: Vec<(i64, i64)> = a
            .unwrap()
            .escalated
            .into_iter()
            .chain(b.unwrap().escalated)
            .collect();
        assert_eq!(
            claimed
                .iter()
                .filter(|(id, _)| *id == alert_id)
                .collect::<Vec<_>>(),
            [&(alert_id, 2)]
        );
        let mails = smtp.wait_for(2, Duration::from_secs(20)).await;
        assert_eq!(mails[1].rcpt_to, ["second@example.com"]);
        assert!(
            mails[1]
                .header("Subject")
                .unwrap()
                .contains("ESCALATION level 2")
        );
        let got = hooks.wait_for(2, Duration::from_secs(20)).await;
        verify_signature(&got[1]);
        assert_eq!(
            serde_json::from_str::<Value>(&got[1].body).unwrap()["level"],
            2
        );

        // 4. Duplicate delivery of both jobs (as after a crash): nothing is sent twice.
        eventually(
            Duration::from_secs(20),
            "notification jobs done",
            || async { all_done(&e, EmailJob::QUEUE).await },
        )
        .await;
        let level2_ids: Vec<i64> = vigil_store::notifications::for_alert(&t.db, alert_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.level == 2)
            .map(|n| n.id)
            .collect();
        let level2: Vec<NewJob> = jobs(&e, EmailJob::QUEUE)
            .await
            .into_iter()
            .chain(jobs(&e, NotificationJob::QUEUE).await)
            .filter(|j| level2_ids.contains(&j.payload["notification_id"].as_i64().unwrap_or(0)))
            .map(|j| NewJob::new(j.queue, j.payload))
            .collect();
        assert_eq!(level2.len(), 2, "the level-2 email and webhook jobs");
        let copies = e.enqueue_many(level2).await.unwrap();
        for c in &copies {
            let id = c.job.id.clone();
            eventually(Duration::from_secs(20), "the copy ran", || {
                let (e, id) = (e.clone(), id.clone());
                async move {
                    e.get(&id)
                        .await
                        .unwrap()
                        .is_some_and(|j| j.status == JobStatus::Done)
                }
            })
            .await;
        }
        assert_eq!(smtp.messages().len(), 2, "no second level-2 email");
        assert_eq!(hooks.received().len(), 2, "no second level-2 webhook");

        // 5. Acknowledged: level 3 (due at +900 s) never comes.
        let done = alerts::transition(
            &t.db,
            alert_id,
            AlertAction::Acknowledge,
            "user:alice",
            Some("looking"),
            Utc::now(),
            alerts::Restart::default(),
        )
        .await
        .unwrap();
        assert!(
            matches!(done, alerts::TransitionOutcome::Done(ref a) if a.status == AlertStatus::Acknowledged)
        );
        let late = escalator.run(at(5_000), None).await.unwrap();
        assert!(
            late.escalated.iter().all(|(id, _)| *id != alert_id),
            "{late:?}"
        );
        // Whatever the late run queued has run: still only the two levels' messages.
        eventually(
            Duration::from_secs(20),
            "every delivery job settled",
            || async {
                all_done(&e, EmailJob::QUEUE).await && all_done(&e, NotificationJob::QUEUE).await
            },
        )
        .await;
        assert_eq!(smtp.messages().len(), 2);
        assert_eq!(hooks.received().len(), 2);

        // The history: two levels, both notified (every notification sent); every step
        // audited.
        eventually(Duration::from_secs(20), "both levels notified", || async {
            alerts::escalations(&t.db, alert_id)
                .await
                .unwrap()
                .iter()
                .all(|h| h.notified_at.is_some())
        })
        .await;
        let history = alerts::escalations(&t.db, alert_id).await.unwrap();
        assert_eq!(history.iter().map(|h| h.level).collect::<Vec<_>>(), [1, 2]);
        let sent = vigil_store::notifications::for_alert(&t.db, alert_id)
            .await
            .unwrap();
        assert_eq!(sent.len(), 4, "an email and a webhook per level: {sent:?}");
        for n in &sent {
            assert_eq!(
                n.status,
                vigil_store::notifications::NotificationStatus::Sent
            );
            assert!(n.response_status.is_some(), "{n:?}");
        }
        let audits: Vec<Value> = jobs(&e, AuditJob::QUEUE)
            .await
            .into_iter()
            .map(|j| j.payload)
            .collect();
        let steps: Vec<i64> = audits
            .iter()
            .filter(|p| {
                p["action"] == "alert.escalate"
                    && p["target_id"].as_str() == Some(alert_id.to_string().as_str())
            })
            .map(|p| p["details"]["level"].as_i64().unwrap())
            .collect();
        assert_eq!(steps.len(), 2, "{steps:?}");

        rt.shutdown().await;
        cleanup(&e).await;
    });
}

#[test]
fn a_webhook_receiver_error_retries_and_a_4xx_is_permanent() {
    system(async {
        let hooks = WebhookReceiver::start().await;
        let t = TestDb::sqlite().await;
        let settings = Arc::new(escalation(&hooks.url("/h")));
        let hit = alerts::AlertHit {
            rule_id: "okta_idp_created".into(),
            title: "Identity provider created".into(),
            description: String::new(),
            severity: "high".into(),
            group_key: "admin@example.com".into(),
            event_uuid: "e1".into(),
            seen_at: Utc::now(),
            window_uuids: vec![],
            window_count: 1,
            first_seen: Utc::now(),
            dedup_window_ms: 1000,
            details: "{}".into(),
            escalation: None,
        };
        let id = alerts::raise(&t.db, &hit, Utc::now())
            .await
            .unwrap()
            .alert_id;
        let sender = WebhookSender::new(settings.clone(), t.db.clone(), None).unwrap();
        let delivery = vigil_jobs::WebhookDelivery {
            alert_id: id,
            level: 1,
            url: hooks.url("/h"),
        };

        hooks.answer_next(&[503, 429, 410]);
        let retry = |r: Result<(), vigil_workers::JobError>| {
            matches!(r, Err(vigil_workers::JobError::Retryable(_)))
        };
        assert!(retry(sender.deliver(&delivery).await), "503 retries");
        assert!(retry(sender.deliver(&delivery).await), "429 retries");
        let gone = sender.deliver(&delivery).await;
        assert!(
            matches!(gone, Err(vigil_workers::JobError::Permanent(ref m)) if m.contains("410")),
            "{gone:?}"
        );
        sender.deliver(&delivery).await.expect("200 delivers");
        sender
            .deliver(&delivery)
            .await
            .expect("a repeat is a no-op");
        assert_eq!(
            hooks.received().len(),
            4,
            "the repeat after success did not call"
        );

        // A URL that no policy names is refused without a request.
        let elsewhere = vigil_jobs::WebhookDelivery {
            alert_id: id,
            level: 1,
            url: "http://127.0.0.1:9/steal".into(),
        };
        let refused = sender.deliver(&elsewhere).await;
        assert!(
            matches!(refused, Err(vigil_workers::JobError::Permanent(ref m)) if m.contains("not a webhook target")),
            "{refused:?}"
        );
    });
}

#[test]
fn events_a_crash_kept_from_detection_are_caught_by_the_sweep() {
    system(async {
        let t = TestDb::postgres().await;
        let prefix = vigil_testkit::redis::unique_prefix("sweep");
        let e = common::engine(&prefix, |_, _| {}).await;
        let detector = Detector::new(
            Arc::new(RuleSet::load(&RulesSettings::default()).unwrap()),
            Arc::new(RedisWindows::new(e.redis(), e.prefix())),
            t.db.clone(),
            e.clone(),
            Arc::new(EscalationSettings::default()),
            None,
        );
        // Three lockouts stored, then the worker died before detecting them.
        let lock = |uuid: &str, at: &str| sample("14_user.account.lock", uuid, at, |_| {});
        store(
            &t.db,
            &[
                lock("s-1", "2026-11-22T10:00:00.000Z"),
                lock("s-2", "2026-11-22T10:20:00.000Z"),
                lock("s-3", "2026-11-22T10:40:00.000Z"),
            ],
        )
        .await;
        let now = Utc::now();
        // Just stored: maybe still being detected by the worker that stored them; left alone.
        let early = detector.sweep_at(now).await.unwrap();
        assert_eq!(early.events, 0);
        // Two minutes on, the sweep detects them in order: the repeated-lockout alert opens.
        let later = now + chrono::Duration::minutes(3);
        let swept = detector.sweep_at(later).await.unwrap();
        assert_eq!(swept.events, 3);
        let mut rules = Vec::new();
        for id in &swept.alerts_opened {
            rules.push(alerts::get(&t.db, *id).await.unwrap().unwrap().rule_id);
        }
        rules.sort();
        assert_eq!(rules, ["okta_account_locked", "okta_repeated_lockouts"]);
        // Marked: the next sweep has nothing to do.
        assert_eq!(detector.sweep_at(later).await.unwrap().events, 0);
        assert!(
            events::undetected(&t.db, later, 10)
                .await
                .unwrap()
                .is_empty()
        );
        cleanup(&e).await;
    });
}

#[test]
fn security_events_posted_through_the_api_go_through_custom_rules() {
    system(async {
        let t = TestDb::sqlite().await;
        let prefix = vigil_testkit::redis::unique_prefix("secrules");
        let e = common::engine(&prefix, |_, _| {}).await;
        // An operator's rule: 3 malware reports from one source within 10 minutes.
        let custom: RulesSettings = serde_json::from_value(json!({"custom": [{
            "id": "acme_malware_outbreak", "title": "Malware outbreak", "severity": "critical",
            "group_by": ["source"],
            "match": [{"event_types": ["malware.detected"]}],
            "threshold": {"window_seconds": 600, "count": 3}
        }]}))
        .unwrap();
        let detector = Detector::new(
            Arc::new(RuleSet::load(&custom).unwrap()),
            Arc::new(RedisWindows::new(e.redis(), e.prefix())),
            t.db.clone(),
            e.clone(),
            Arc::new(EscalationSettings::default()),
            None,
        );
        let post = |n: i64, kind: &str| vigil_store::security_events::NewSecurityEvent {
            uuid: format!("sec-{n}"),
            source: "edr".into(),
            event_type: kind.into(),
            severity: 2,
            description: format!("host-{n}"),
            details: "{}".into(),
            created_by: "user:alice".into(),
            created_at: Utc::now(),
        };
        for (n, kind) in [
            (1, "malware.detected"),
            (2, "malware.detected"),
            (3, "login.odd"),
        ] {
            vigil_store::security_events::insert(&t.db, &post(n, kind))
                .await
                .unwrap();
        }
        let first = detector.detect_security_events().await.unwrap();
        assert_eq!(first.events, 3);
        assert!(
            first.alerts_opened.is_empty(),
            "two reports are not an outbreak"
        );
        vigil_store::security_events::insert(&t.db, &post(4, "malware.detected"))
            .await
            .unwrap();
        let second = detector.detect_security_events().await.unwrap();
        assert_eq!(second.events, 1, "each event is seen once");
        let [id] = second.alerts_opened[..] else {
            panic!("the third report opens an alert: {second:?}")
        };
        let alert = alerts::get(&t.db, id).await.unwrap().unwrap();
        assert_eq!(alert.rule_id, "acme_malware_outbreak");
        assert_eq!(alert.severity, "critical");
        assert_eq!(alert.group_key, "edr");
        assert_eq!(alert.event_count, 3);
        let mut linked = alerts::linked_events(&t.db, id, 10).await.unwrap();
        linked.sort();
        assert_eq!(linked, ["sec-1", "sec-2", "sec-4"]);
        assert_eq!(detector.detect_security_events().await.unwrap().events, 0);
        cleanup(&e).await;
    });
}

#[test]
fn sigma_rules_raise_group_and_escalate_like_builtin_ones() {
    system(async {
        let t = TestDb::sqlite().await;
        let prefix = vigil_testkit::redis::unique_prefix("sigma-alerts");
        let e = common::engine(&prefix, |_, _| {}).await;
        let sigma_id = "bd527844-d2d9-43b7-b986-904003e58d5b";
        // The Sigma rules written for the rules crate's tests, with one tuned in config; an
        // escalation policy that names the Sigma rule by its id.
        let settings: RulesSettings = serde_json::from_value(json!({
            "sigma": [concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/tests/sigma/okta")],
            "sigma_override": {"1bba3aec-3ca1-491b-afde-d79ff7043b8b": {"enabled": false}},
        }))
        .unwrap();
        let rules = RuleSet::load(&settings).unwrap();
        assert!(rules.get(sigma_id).is_some());
        let policy = EscalationSettings {
            policies: vec![EscalationPolicy {
                name: "sigma-admins".into(),
                severities: vec![],
                rules: vec![sigma_id.into()],
                reopen_level: 1,
                levels: vec![EscalationLevel {
                    after_seconds: 0,
                    since: Since::Opened,
                    emails: vec!["soc@example.com".into()],
                    webhooks: vec![],
                    channels: vec![],
                }],
            }],
            ..EscalationSettings::default()
        };
        let detector = Detector::new(
            Arc::new(rules),
            Arc::new(RedisWindows::new(e.redis(), e.prefix())),
            t.db.clone(),
            e.clone(),
            Arc::new(policy),
            None,
        );
        let admin = |uuid: &str, at: &str, user: &str| {
            sample("06_user.session.start", uuid, at, |v| {
                v["eventType"] = json!("user.session.access_admin_app");
                v["securityContext"]["isProxy"] = json!(true);
                v["actor"]["alternateId"] = json!(user);
            })
        };
        let stored = store(
            &t.db,
            &[
                admin("sg-1", "2026-11-22T10:00:00.000Z", "eve@example.com"),
                admin("sg-2", "2026-11-22T10:05:00.000Z", "eve@example.com"),
                admin("sg-3", "2026-11-22T10:06:00.000Z", "bob@example.com"),
            ],
        )
        .await;
        let summary = detector.detect_and_mark(&stored).await.unwrap();
        let mut sigma_alerts = Vec::new();
        for id in &summary.alerts_opened {
            let a = alerts::get(&t.db, *id).await.unwrap().unwrap();
            if a.rule_id == sigma_id {
                sigma_alerts.push(a);
            }
        }
        sigma_alerts.sort_by(|a, b| a.group_key.cmp(&b.group_key));
        // One alert per user (grouped by actor.alternateId): eve's repeat updated hers.
        assert_eq!(sigma_alerts.len(), 2, "{summary:?}");
        let (bob, eve) = (&sigma_alerts[0], &sigma_alerts[1]);
        assert_eq!(
            (bob.group_key.as_str(), bob.event_count),
            ("bob@example.com", 1)
        );
        assert_eq!(
            (eve.group_key.as_str(), eve.event_count),
            ("eve@example.com", 2)
        );
        assert_eq!(eve.severity, "high");
        assert_eq!(eve.title, "Okta admin console opened through an anonymizer");
        assert!(
            eve.description.contains("anonymizing proxy"),
            "{}",
            eve.description
        );
        assert_eq!(eve.escalation_policy.as_deref(), Some("sigma-admins"));
        // The escalation job for the new alert was queued, as for a built-in rule.
        let queued = jobs(&e, AlertEscalationJob::QUEUE).await;
        assert!(
            queued
                .iter()
                .any(|j| j.payload["alert_id"] == json!(eve.id)),
            "{queued:?}"
        );
        cleanup(&e).await;
    });
}

#[test]
fn channels_retry_429_and_5xx_after_retry_after_and_keep_a_4xx_reason() {
    use vigil_jobs::escalation::{ChannelKind, ChannelSettings};
    use vigil_store::notifications::{self, NotificationStatus, Prepared};
    use vigil_testkit::channels::ChannelReceiver;
    system(async {
        let key = "R0UT1NGKEY0123456789abcdef012345";
        let rx = ChannelReceiver::start(key).await;
        let t = TestDb::sqlite().await;
        let prefix = vigil_testkit::redis::unique_prefix("channels");
        let e = common::engine(&prefix, |_, _| {}).await;
        let mut s = escalation("http://127.0.0.1:9/unused");
        s.channels.insert(
            "pd".into(),
            ChannelSettings {
                kind: ChannelKind::Pagerduty,
                url: rx.pagerduty_url(),
                routing_key: key.into(),
            },
        );
        s.channels.insert(
            "slack".into(),
            ChannelSettings {
                kind: ChannelKind::Slack,
                url: rx.slack_url(),
                routing_key: String::new(),
            },
        );
        let settings = Arc::new(s);
        let mut hit = alerts::AlertHit {
            rule_id: "okta_idp_created".into(),
            title: "Identity provider created".into(),
            description: String::new(),
            severity: "high".into(),
            group_key: "admin@example.com".into(),
            event_uuid: "e1".into(),
            seen_at: Utc::now(),
            window_uuids: vec![],
            window_count: 1,
            first_seen: Utc::now(),
            dedup_window_ms: 1000,
            details: "{}".into(),
            escalation: None,
        };
        hit.escalation = Some(("soc".into(), Utc::now()));
        let id = alerts::raise(&t.db, &hit, Utc::now())
            .await
            .unwrap()
            .alert_id;
        let level = alerts::claim_level(
            &t.db,
            id,
            1,
            1,
            "soc",
            &Default::default(),
            None,
            Utc::now(),
        )
        .await
        .unwrap()
        .unwrap();
        let new = |c, target: &str| notifications::NewNotification {
            channel: c,
            event: notifications::NotificationEvent::Trigger,
            target: target.into(),
            target_shown: target.into(),
        };
        let Prepared::Queue(ns) = notifications::prepare_level(
            &t.db,
            level.id,
            &[
                new(notifications::Channel::Pagerduty, "pd"),
                new(notifications::Channel::Slack, "slack"),
            ],
            Utc::now(),
        )
        .await
        .unwrap() else {
            panic!()
        };
        let tracker = NotificationTracker::new(t.db.clone(), e.clone(), settings.clone(), None);
        let sender = WebhookSender::new(settings.clone(), t.db.clone(), None)
            .unwrap()
            .with_notifications(tracker);

        // 429 with Retry-After: a retry after that long; 503: a retry with the backoff.
        rx.answer_next(&[(429, Some(7), "slow down"), (503, None, "")]);
        let r = sender.deliver_notification(ns[0].id, None, false).await;
        assert!(
            matches!(r, Err(vigil_workers::JobError::RetryAfter(d, _)) if d == Duration::from_secs(7)),
            "{r:?}"
        );
        let r = sender.deliver_notification(ns[0].id, None, false).await;
        assert!(
            matches!(r, Err(vigil_workers::JobError::Retryable(_))),
            "{r:?}"
        );
        sender
            .deliver_notification(ns[0].id, None, false)
            .await
            .unwrap();
        let pd = notifications::get(&t.db, ns[0].id).await.unwrap().unwrap();
        assert_eq!(pd.status, NotificationStatus::Sent);
        assert_eq!(pd.attempts, 3);
        assert_eq!(
            pd.response_id.as_deref(),
            Some(format!("vigil-alert-{id}").as_str())
        );
        assert_eq!(rx.incidents()[0].severity, "error", "high maps to error");

        // Any other 4xx is final, with the body's reason.
        rx.answer_next(&[(404, None, "no_service")]);
        let r = sender.deliver_notification(ns[1].id, None, false).await;
        assert!(
            matches!(r, Err(vigil_workers::JobError::Permanent(ref m)) if m.contains("no_service")),
            "{r:?}"
        );
        let slack = notifications::get(&t.db, ns[1].id).await.unwrap().unwrap();
        assert_eq!(slack.status, NotificationStatus::Dead);
        assert!(slack.last_error.unwrap().contains("404"));
        assert!(
            !slack.errors[0].error.contains("s3cr3tS1ackT0ken"),
            "the URL's token is not in the error"
        );
        cleanup(&e).await;
    });
}
