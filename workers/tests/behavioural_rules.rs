//! Behavioural rules over stored events, on SQLite and PostgreSQL: real Okta sample events
//! stored through the ingestion parser, the detector's scheduled run with a controlled
//! clock. A user opening ten SWA apps in five minutes and a sign-in far outside a user's
//! habit raise one alert each; look-alikes that must not fire do not; reruns (overlapping,
//! and after the alert was resolved) raise nothing more; the `behavioural_rules` schedule's
//! job runs them through the `alert_escalation` handler.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use prometheus::Registry;
use serde_json::{Value, json};
use vigil_jobs::EscalationSettings;
use vigil_queue::{NewJob, SchedulesSettings};
use vigil_rules::{MemoryWindows, RuleSet, RulesSettings};
use vigil_store::Db;
use vigil_store::alerts::{self, AlertAction, AlertQuery};
use vigil_store::events::{self, NewEvent};
use vigil_store::okta_event::parse_event;
use vigil_testkit::db::TestDb;
use vigil_testkit::fake_okta::FakeOkta;
use vigil_workers::alerts::{AlertWork, Detector, Escalator, WebhookSender};
use vigil_workers::runtime::Runtime;

use common::{cleanup, eventually, system};
use vigil_jobs::{AlertEscalationJob, Job as _};

/// The clock of the runs: 03:30 UTC.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 3, 30, 0).unwrap()
}

fn sample(prefix: &str) -> Value {
    let (_, text) = FakeOkta::sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix))
        .expect("sample");
    serde_json::from_str(&text).unwrap()
}

/// `user` signing in to app `app` (sign-on mode `mode`) at `at`, with `result`.
fn app_open(
    uuid: &str,
    user: &str,
    app: usize,
    mode: &str,
    at: DateTime<Utc>,
    result: &str,
) -> Value {
    let mut v = sample("17_user.authentication.sso");
    v["uuid"] = json!(uuid);
    v["published"] = json!(at.to_rfc3339());
    v["actor"]["alternateId"] = json!(user);
    v["outcome"]["result"] = json!(result);
    v["target"][0]["id"] = json!(format!("0oa-app-{app}"));
    v["target"][0]["detailEntry"]["signOnModeType"] = json!(mode);
    v
}

/// `user` starting an Okta session at `at`, with `result`.
fn signin(uuid: &str, user: &str, at: DateTime<Utc>, result: &str) -> Value {
    let mut v = sample("06_user.session.start");
    v["uuid"] = json!(uuid);
    v["published"] = json!(at.to_rfc3339());
    v["actor"]["alternateId"] = json!(user);
    v["outcome"]["result"] = json!(result);
    v
}

async fn store(db: &Db, events: &[Value]) {
    let parsed: Vec<NewEvent> = events
        .iter()
        .map(|e| {
            let raw = serde_json::value::RawValue::from_string(e.to_string()).unwrap();
            parse_event(&raw).unwrap()
        })
        .collect();
    events::insert_batch(db, &parsed).await.unwrap();
}

/// Events for both rules: some that must fire, look-alikes that must not.
fn scenario() -> Vec<Value> {
    let minutes = |m: i64| now() - chrono::Duration::minutes(m);
    let mut ev = Vec::new();
    let mut opens = |user: &str, mode: &str, result: &str, apps: &[usize], every_s: i64| {
        for (i, app) in apps.iter().enumerate() {
            let at = minutes(9) + chrono::Duration::seconds(every_s * i as i64);
            ev.push(app_open(
                &format!("{user}-open-{i}"),
                user,
                *app,
                mode,
                at,
                result,
            ));
        }
    };
    let ten: Vec<usize> = (0..10).collect();
    // Fires: ten distinct SWA apps in 4.5 minutes.
    opens("alice@example.com", "BROWSER_PLUGIN", "SUCCESS", &ten, 30);
    // Must not fire: the same ten apps by OIDC (not SWA); nine SWA apps (one opened twice);
    // ten SWA apps over 45 minutes; ten failed SWA sign-ins.
    opens("bob@example.com", "OPENID_CONNECT", "SUCCESS", &ten, 30);
    opens(
        "carol@example.com",
        "AUTO_LOGIN",
        "SUCCESS",
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 8],
        30,
    );
    opens("dave@example.com", "BROWSER_PLUGIN", "SUCCESS", &ten, -300);
    opens("erin@example.com", "BROWSER_PLUGIN", "FAILURE", &ten, 30);

    // Sign-in habits over the 25 days before: 09:xx UTC for most, 03:xx for owl.
    for day in 1..=25 {
        let day_start =
            Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap() - chrono::Duration::days(day);
        for (user, hour) in [
            ("night@example.com", 9),
            ("owl@example.com", 3),
            ("failed@example.com", 9),
        ] {
            let at = day_start + chrono::Duration::hours(hour) + chrono::Duration::minutes(15);
            ev.push(signin(&format!("{user}-day-{day}"), user, at, "SUCCESS"));
        }
    }
    for day in 1..=5 {
        let at = now() - chrono::Duration::days(day) + chrono::Duration::hours(6);
        ev.push(signin(
            &format!("newbie-day-{day}"),
            "newbie@example.com",
            at,
            "SUCCESS",
        ));
    }
    // Within the last hour, at 03:10 UTC: fires for night (a 09:00 user); must not fire for
    // owl (a 03:00 user), newbie (5 sign-ins: no habit yet) or failed (not a sign-in).
    let at = minutes(20);
    ev.push(signin("night-now", "night@example.com", at, "SUCCESS"));
    ev.push(signin("owl-now", "owl@example.com", at, "SUCCESS"));
    ev.push(signin("newbie-now", "newbie@example.com", at, "SUCCESS"));
    ev.push(signin("failed-now", "failed@example.com", at, "FAILURE"));
    ev
}

async fn all_alerts(db: &Db) -> Vec<alerts::Alert> {
    let q = AlertQuery {
        page_size: 100,
        ..Default::default()
    };
    let mut list = alerts::list(db, &q).await.unwrap().items;
    list.sort_by_key(|a| a.id);
    list
}

fn detector(db: &Db, engine: &vigil_queue::Engine) -> Detector {
    Detector::new(
        Arc::new(RuleSet::load(&RulesSettings::default()).unwrap()),
        Arc::new(MemoryWindows::default()),
        db.clone(),
        engine.clone(),
        Arc::new(EscalationSettings::default()),
        None,
    )
}

#[test]
fn behavioural_rules_fire_once_per_finding_on_both_engines() {
    system(async {
        for t in TestDb::both().await {
            let kind = t.kind();
            let e =
                common::engine(&vigil_testkit::redis::unique_prefix("behaviour"), |_, _| {}).await;
            store(&t.db, &scenario()).await;
            let d = detector(&t.db, &e);

            let first = d.detect_behaviour(now()).await.unwrap();
            assert_eq!(first.alerts_opened.len(), 2, "{kind:?}: {first:?}");
            let raised: Vec<(String, String)> = all_alerts(&t.db)
                .await
                .into_iter()
                .map(|a| (a.rule_id, a.group_key))
                .collect();
            assert_eq!(
                raised,
                [
                    (
                        "okta_swa_app_burst".to_owned(),
                        "alice@example.com".to_owned()
                    ),
                    (
                        "okta_unusual_signin_hour".to_owned(),
                        "night@example.com".to_owned()
                    ),
                ],
                "{kind:?}"
            );
            let list = all_alerts(&t.db).await;
            let (swa, hour) = (&list[0], &list[1]);
            assert_eq!(
                swa.event_count, 10,
                "{kind:?}: every open of the burst is linked"
            );
            assert_eq!(swa.severity, "medium");
            let observed: Value = serde_json::from_str(&swa.details).unwrap();
            assert_eq!(observed["distinct_apps"], 10, "{kind:?}: {observed}");
            assert!(swa.description.contains("SWA"), "{}", swa.description);
            let mut linked = alerts::linked_events(&t.db, swa.id, 20).await.unwrap();
            linked.sort();
            assert_eq!(linked.len(), 10);
            assert!(
                linked
                    .iter()
                    .all(|u| u.starts_with("alice@example.com-open-")),
                "{linked:?}"
            );
            let observed: Value = serde_json::from_str(&hour.details).unwrap();
            assert_eq!(observed["hour_utc"], 3, "{kind:?}: {observed}");
            assert_eq!(observed["baseline_signins"], 25, "{kind:?}: {observed}");
            assert_eq!(
                observed["usual_hours_utc"],
                json!([9]),
                "{kind:?}: {observed}"
            );
            assert_eq!(
                alerts::linked_events(&t.db, hour.id, 5).await.unwrap(),
                ["night-now"]
            );

            // The next run, five minutes later, sees the same findings: nothing changes.
            let rerun = d
                .detect_behaviour(now() + chrono::Duration::minutes(5))
                .await
                .unwrap();
            assert!(
                rerun.alerts_opened.is_empty() && rerun.alerts_updated.is_empty(),
                "{kind:?}: {rerun:?}"
            );
            // Resolved, then found again by a later run: still no second alert.
            for a in &list {
                alerts::transition(
                    &t.db,
                    a.id,
                    AlertAction::Resolve,
                    "user:alice",
                    None,
                    Utc::now(),
                    alerts::Restart::default(),
                )
                .await
                .unwrap();
            }
            let after = d
                .detect_behaviour(now() + chrono::Duration::minutes(10))
                .await
                .unwrap();
            assert!(after.alerts_opened.is_empty(), "{kind:?}: {after:?}");
            assert_eq!(all_alerts(&t.db).await.len(), 2, "{kind:?}");
            cleanup(&e).await;
        }
    });
}

#[test]
fn the_behavioural_schedule_job_runs_the_rules_through_the_escalation_handler() {
    system(async {
        let t = TestDb::sqlite().await;
        let e = common::engine(
            &vigil_testkit::redis::unique_prefix("behaviour-job"),
            |_, q| {
                *q.get_mut(AlertEscalationJob::QUEUE) = common::quick_queue();
            },
        )
        .await;
        // Events of the last minutes (the handler's run uses the real clock).
        let base = Utc::now() - chrono::Duration::minutes(5);
        let burst: Vec<Value> = (0..10)
            .map(|i| {
                app_open(
                    &format!("job-open-{i}"),
                    "zoe@example.com",
                    i,
                    "BROWSER_PLUGIN",
                    base + chrono::Duration::seconds(10 * i as i64),
                    "SUCCESS",
                )
            })
            .collect();
        store(&t.db, &burst).await;
        let settings = Arc::new(EscalationSettings::default());
        let rt = Runtime::builder(
            e.clone(),
            SchedulesSettings(BTreeMap::new()),
            &Registry::new(),
        )
        .job::<AlertEscalationJob>(AlertWork {
            escalator: Escalator::new(t.db.clone(), e.clone(), settings.clone(), None),
            webhooks: WebhookSender::new(settings.clone(), t.db.clone(), None).unwrap(),
            detector: Some(Arc::new(detector(&t.db, &e))),
        })
        .start()
        .unwrap();
        // The payload the default `behavioural_rules` schedule enqueues.
        let payload = vigil_queue::SchedulesSettings::default().0["behavioural_rules"]
            .payload
            .clone();
        assert_eq!(payload, json!({"behavioural": true}));
        e.enqueue(NewJob::new(AlertEscalationJob::QUEUE, payload))
            .await
            .unwrap();
        eventually(
            Duration::from_secs(30),
            "the burst raised its alert",
            || async {
                all_alerts(&t.db)
                    .await
                    .iter()
                    .any(|a| a.rule_id == "okta_swa_app_burst" && a.group_key == "zoe@example.com")
            },
        )
        .await;
        rt.shutdown().await;
        cleanup(&e).await;
    });
}
