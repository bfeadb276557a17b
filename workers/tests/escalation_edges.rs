//! Escalation edge cases at the escalator, with the real runtime delivering to a real SMTP
//! server and webhook receiver, on PostgreSQL, with a controlled escalation clock:
//! - an alert acknowledged after its level was claimed but before that level's
//!   notifications were queued gets none (the level is suppressed); acknowledged after they
//!   were queued but before they ran, every notification ends `suppressed` and nothing
//!   reaches anyone;
//! - a reopened alert escalates again in a new round, from the policy's reopen level, timed
//!   from the reopen, and its notifications reach the receivers again.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::Registry;
use serde_json::Value;
use vigil_jobs::escalation::{EscalationLevel, EscalationPolicy, Since};
use vigil_jobs::{EscalationSettings, JobStatus};
use vigil_queue::{Engine, SchedulesSettings};
use vigil_store::Db;
use vigil_store::alerts::{self, Alert, AlertAction, AlertHit, EscalationTargets, Restart};
use vigil_store::notifications::{self, NotificationStatus};
use vigil_testkit::db::TestDb;
use vigil_testkit::smtp::SmtpServer;
use vigil_testkit::webhook::WebhookReceiver;
use vigil_workers::alerts::{AlertWork, Escalator, NotificationTracker, WebhookSender};
use vigil_workers::email::{EngineAuditSink, Mailer, SendRateLimiter, SmtpSettings, SmtpTls};
use vigil_workers::runtime::{Runtime, RuntimeHandle};

use common::{cleanup, eventually, jobs, system};
use vigil_jobs::{AlertEscalationJob, EmailJob, Job as _, NotificationJob};

const WAIT: Duration = Duration::from_secs(30);

/// Policy `soc` (high alerts): level 1 at +60 s, level 2 at +300 s from the round's start,
/// an email and the webhook each; reopened alerts start again at level 1. Policy `late`
/// (rule `acme_late`): the same levels, reopened alerts start at level 2.
fn policies(hook: &str) -> EscalationSettings {
    let level = |after: u64, email: &str| EscalationLevel {
        after_seconds: after,
        since: Since::Opened,
        emails: vec![email.to_owned()],
        webhooks: vec![hook.to_owned()],
        channels: vec![],
    };
    let policy = |name: &str, rules: Vec<String>, prefix: &str, reopen_level: usize| {
        EscalationPolicy {
            name: name.into(),
            // `late` is chosen by its rule only; `soc` by severity.
            severities: if rules.is_empty() {
                vec!["high".into()]
            } else {
                vec![]
            },
            rules,
            levels: vec![
                level(60, &format!("{prefix}-one@example.com")),
                level(300, &format!("{prefix}-two@example.com")),
            ],
            reopen_level,
        }
    };
    EscalationSettings {
        webhook_secret: "edge-secret".to_owned(),
        policies: vec![
            policy("late", vec!["acme_late".into()], "late", 2),
            policy("soc", vec![], "soc", 1),
        ],
        ..EscalationSettings::default()
    }
}

/// Opens a high alert of `rule` as detection does, with its policy's first level due.
async fn open_alert(db: &Db, settings: &EscalationSettings, rule: &str, key: &str) -> Alert {
    let now = Utc::now();
    let policy = settings.policy_for(rule, "high").expect("a policy");
    let hit = AlertHit {
        rule_id: rule.to_owned(),
        title: format!("{rule} for {key}"),
        description: String::new(),
        severity: "high".to_owned(),
        group_key: key.to_owned(),
        event_uuid: format!("{rule}-{key}-1"),
        seen_at: now,
        window_uuids: vec![],
        window_count: 1,
        first_seen: now,
        dedup_window_ms: 3_600_000,
        details: "{}".to_owned(),
        escalation: Some((policy.name.clone(), policy.due_at(1, now, now).unwrap())),
    };
    let raised = alerts::raise(db, &hit, now).await.unwrap();
    assert!(raised.opened);
    alerts::get(db, raised.alert_id).await.unwrap().unwrap()
}

/// Applies `action` at `now` as the API does (a reopen restarts at the policy's reopen
/// level, timed from `now`).
async fn answer(
    db: &Db,
    settings: &EscalationSettings,
    a: &Alert,
    action: AlertAction,
    now: DateTime<Utc>,
) {
    let policy = settings
        .policy(a.escalation_policy.as_deref().unwrap())
        .unwrap();
    let restart = Restart {
        from_level: i64::try_from(policy.reopen_level).unwrap(),
        due_at: policy.due_at(policy.reopen_level, now, now),
    };
    let done = alerts::transition(db, a.id, action, "user:alice", None, now, restart)
        .await
        .unwrap();
    assert!(
        matches!(done, alerts::TransitionOutcome::Done(_)),
        "{done:?}"
    );
}

/// The runtime that delivers notification jobs (email and webhook), reporting to the
/// notification tracker.
fn start_runtime(
    e: &Engine,
    db: &Db,
    settings: &Arc<EscalationSettings>,
    smtp: u16,
) -> RuntimeHandle {
    let tracker = NotificationTracker::new(db.clone(), e.clone(), settings.clone(), None);
    let mailer = Mailer::new(
        &SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp,
            tls: SmtpTls::None,
            from: "vigil@example.com".into(),
            timeout_seconds: 5,
            ..SmtpSettings::default()
        },
        db.clone(),
        SendRateLimiter::Unlimited,
        Arc::new(EngineAuditSink::new(e.clone())),
    )
    .unwrap()
    .with_notifications(tracker.clone());
    let webhooks = WebhookSender::new(settings.clone(), db.clone(), None)
        .unwrap()
        .with_notifications(tracker);
    Runtime::builder(
        e.clone(),
        SchedulesSettings(BTreeMap::new()),
        &Registry::new(),
    )
    .job::<EmailJob>(mailer)
    .job::<NotificationJob>(webhooks.clone())
    .job::<AlertEscalationJob>(AlertWork {
        escalator: Escalator::new(db.clone(), e.clone(), settings.clone(), None),
        webhooks,
        detector: None,
    })
    .start()
    .unwrap()
}

async fn all_done(e: &Engine) -> bool {
    let mut list = jobs(e, EmailJob::QUEUE).await;
    list.extend(jobs(e, AlertEscalationJob::QUEUE).await);
    list.extend(jobs(e, NotificationJob::QUEUE).await);
    list.iter().all(|j| j.status == JobStatus::Done)
}

async fn statuses(db: &Db, alert_id: i64) -> Vec<(i64, i64, NotificationStatus)> {
    notifications::for_alert(db, alert_id)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.round, n.level, n.status))
        .collect()
}

#[test]
fn acknowledging_before_a_level_is_queued_or_delivered_suppresses_its_notifications() {
    system(async {
        let smtp = SmtpServer::start().await;
        let hooks = WebhookReceiver::start().await;
        let t = TestDb::postgres().await;
        let e = common::engine(&vigil_testkit::redis::unique_prefix("edges-ack"), |_, q| {
            *q.get_mut(EmailJob::QUEUE) = common::quick_queue();
            *q.get_mut(AlertEscalationJob::QUEUE) = common::quick_queue();
            *q.get_mut(NotificationJob::QUEUE) = common::quick_queue();
        })
        .await;
        let settings = Arc::new(policies(&hooks.url("/hook")));
        settings.validate().unwrap();
        let escalator = Escalator::new(t.db.clone(), e.clone(), settings.clone(), None);

        // A. A run claims level 1 and stops before queueing its notifications (as a run cut
        //    short does); the alert is acknowledged; the next run finds the level and
        //    suppresses it instead of notifying.
        let a = open_alert(&t.db, &settings, "okta_account_locked", "a@example.com").await;
        let at = |s: i64| a.created_at + chrono::Duration::seconds(s);
        let policy = settings.policy("soc").unwrap();
        let targets = EscalationTargets {
            emails: policy.levels[0].emails.clone(),
            webhooks: policy.levels[0].webhooks.clone(),
            channels: vec![],
        };
        let claimed = alerts::claim_level(
            &t.db,
            a.id,
            1,
            1,
            "soc",
            &targets,
            policy.due_at(2, at(0), at(61)),
            at(61),
        )
        .await
        .unwrap()
        .expect("level 1 claimed");
        answer(&t.db, &settings, &a, AlertAction::Acknowledge, at(90)).await;
        let run = escalator.run(at(200), None).await.unwrap();
        assert_eq!(run.suppressed, 1, "{run:?}");
        assert_eq!(run.notifications, 0, "{run:?}");
        let level = alerts::escalation(&t.db, claimed.id)
            .await
            .unwrap()
            .unwrap();
        assert!(level.suppressed_at.is_some(), "{level:?}");
        assert_eq!(level.notified_at, None);
        assert!(
            statuses(&t.db, a.id).await.is_empty(),
            "nothing recorded to send"
        );

        // B. The next alert's level 1 is queued (an email job, a webhook job), then the alert
        //    is acknowledged before any job runs: each notification ends suppressed.
        let b = open_alert(&t.db, &settings, "okta_account_locked", "b@example.com").await;
        let at = |s: i64| b.created_at + chrono::Duration::seconds(s);
        let run = escalator.run(at(61), Some(b.id)).await.unwrap();
        assert_eq!(run.escalated, [(b.id, 1)]);
        assert_eq!(run.notifications, 2);
        answer(&t.db, &settings, &b, AlertAction::Acknowledge, Utc::now()).await;

        let rt = start_runtime(&e, &t.db, &settings, smtp.port());
        eventually(WAIT, "every notification job ran", || all_done(&e)).await;
        assert_eq!(
            statuses(&t.db, b.id).await,
            [
                (1, 1, NotificationStatus::Suppressed),
                (1, 1, NotificationStatus::Suppressed)
            ]
        );
        // Level 2 never comes for either, and nobody heard of them.
        let late = escalator.run(at(5_000), None).await.unwrap();
        assert!(late.escalated.is_empty(), "{late:?}");
        assert_eq!(smtp.messages().len(), 0, "no email");
        assert_eq!(hooks.received().len(), 0, "no webhook");

        rt.shutdown().await;
        cleanup(&e).await;
    });
}

#[test]
fn a_reopened_alert_escalates_again_from_its_reopen_level_on_its_own_timeline() {
    system(async {
        let smtp = SmtpServer::start().await;
        let hooks = WebhookReceiver::start().await;
        let t = TestDb::postgres().await;
        let e = common::engine(
            &vigil_testkit::redis::unique_prefix("edges-reopen"),
            |_, q| {
                *q.get_mut(EmailJob::QUEUE) = common::quick_queue();
                *q.get_mut(AlertEscalationJob::QUEUE) = common::quick_queue();
                *q.get_mut(NotificationJob::QUEUE) = common::quick_queue();
            },
        )
        .await;
        let settings = Arc::new(policies(&hooks.url("/hook")));
        settings.validate().unwrap();
        let escalator = Escalator::new(t.db.clone(), e.clone(), settings.clone(), None);
        let rt = start_runtime(&e, &t.db, &settings, smtp.port());
        let webhook_levels = |hooks: &WebhookReceiver| -> Vec<(i64, i64)> {
            hooks
                .received()
                .iter()
                .map(|d| {
                    let body: Value = serde_json::from_str(&d.body).unwrap();
                    (
                        body["round"].as_i64().unwrap_or(0),
                        body["level"].as_i64().unwrap(),
                    )
                })
                .collect()
        };

        // Round 1: level 1 reaches its email address and the webhook; then resolved.
        let a = open_alert(&t.db, &settings, "okta_account_locked", "a@example.com").await;
        let at = |s: i64| a.created_at + chrono::Duration::seconds(s);
        assert_eq!(
            escalator.run(at(61), Some(a.id)).await.unwrap().escalated,
            [(a.id, 1)]
        );
        let mails = smtp.wait_for(1, WAIT).await;
        assert_eq!(mails[0].rcpt_to, ["soc-one@example.com"]);
        hooks.wait_for(1, WAIT).await;
        answer(&t.db, &settings, &a, AlertAction::Resolve, at(100)).await;

        // Reopened at +1000 s: round 2 starts at level 1 again, due 60 s after the reopen
        // (not after the alert opened), then level 2 at 300 s after the reopen.
        answer(&t.db, &settings, &a, AlertAction::Reopen, at(1_000)).await;
        let reopened = alerts::get(&t.db, a.id).await.unwrap().unwrap();
        assert_eq!(reopened.escalation_round, 2);
        assert_eq!(reopened.escalation_level, 0);
        let early = escalator.run(at(1_059), Some(a.id)).await.unwrap();
        assert!(early.escalated.is_empty(), "{early:?}");
        let l1 = escalator.run(at(1_061), Some(a.id)).await.unwrap();
        assert_eq!(l1.escalated, [(a.id, 1)]);
        assert_eq!(l1.notifications, 2);
        let mails = smtp.wait_for(2, WAIT).await;
        assert_eq!(mails[1].rcpt_to, ["soc-one@example.com"], "delivered again");
        hooks.wait_for(2, WAIT).await;
        assert!(
            escalator
                .run(at(1_299), Some(a.id))
                .await
                .unwrap()
                .escalated
                .is_empty()
        );
        let l2 = escalator.run(at(1_301), Some(a.id)).await.unwrap();
        assert_eq!(l2.escalated, [(a.id, 2)]);
        let mails = smtp.wait_for(3, WAIT).await;
        assert_eq!(mails[2].rcpt_to, ["soc-two@example.com"]);
        hooks.wait_for(3, WAIT).await;
        assert_eq!(webhook_levels(&hooks), [(1, 1), (2, 1), (2, 2)]);

        // The history keeps both rounds apart, each level notified (every notification sent).
        eventually(WAIT, "round 2 notified", || async {
            statuses(&t.db, a.id).await.len() == 6 && all_done(&e).await
        })
        .await;
        let history: Vec<(i64, i64, bool)> = alerts::escalations(&t.db, a.id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.round, h.level, h.notified_at.is_some()))
            .collect();
        assert_eq!(history, [(1, 1, true), (2, 1, true), (2, 2, true)]);
        let round2: Vec<NotificationStatus> = statuses(&t.db, a.id)
            .await
            .into_iter()
            .filter(|(round, _, _)| *round == 2)
            .map(|(_, _, s)| s)
            .collect();
        assert_eq!(round2, vec![NotificationStatus::Sent; 4]);

        // A policy with reopen_level = 2: the new round starts at level 2, due 300 s after
        // the reopen (level 2's own delay), and level 1 is not sent again.
        let c = open_alert(&t.db, &settings, "acme_late", "c@example.com").await;
        let at = |s: i64| c.created_at + chrono::Duration::seconds(s);
        answer(&t.db, &settings, &c, AlertAction::Resolve, at(10)).await;
        answer(&t.db, &settings, &c, AlertAction::Reopen, at(20)).await;
        assert!(
            escalator
                .run(at(319), Some(c.id))
                .await
                .unwrap()
                .escalated
                .is_empty()
        );
        let run = escalator.run(at(321), Some(c.id)).await.unwrap();
        assert_eq!(run.escalated, [(c.id, 2)]);
        let mails = smtp.wait_for(4, WAIT).await;
        assert_eq!(mails[3].rcpt_to, ["late-two@example.com"]);
        let levels: Vec<(i64, i64)> = alerts::escalations(&t.db, c.id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.round, h.level))
            .collect();
        assert_eq!(levels, [(2, 2)]);

        rt.shutdown().await;
        cleanup(&e).await;
    });
}
