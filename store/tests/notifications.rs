//! Escalation notifications on both engines: one row per level and target; a level answered
//! between its claim and its queueing is suppressed; a level is notified only when every
//! notification was sent, failed when every one died (and only one caller learns it first);
//! the next level can be brought forward; a dead notification goes back to queued for a retry;
//! a reopened alert escalates again in a new round from its reopen level.

use chrono::{Duration, Utc};
use vigil_store::alerts::{self, AlertAction, AlertHit, EscalationTargets, Restart};
use vigil_store::notifications::{
    self, Channel, LevelState, NewNotification, NotificationEvent, NotificationStatus, Prepared,
};
use vigil_testkit::db::TestDb;

fn hit(key: &str) -> AlertHit {
    let now = Utc::now();
    AlertHit {
        rule_id: "okta_idp_created".into(),
        title: "Identity provider created".into(),
        description: String::new(),
        severity: "high".into(),
        group_key: key.into(),
        event_uuid: format!("{key}-e1"),
        seen_at: now,
        window_uuids: vec![],
        window_count: 1,
        first_seen: now,
        dedup_window_ms: 1000,
        details: "{}".into(),
        escalation: Some(("soc".into(), now)),
    }
}

fn targets() -> Vec<NewNotification> {
    let n = |channel, target: &str| NewNotification {
        channel,
        event: NotificationEvent::Trigger,
        target: target.into(),
        target_shown: target.into(),
    };
    vec![
        n(Channel::Email, "soc@example.com"),
        n(Channel::Webhook, "https://hooks.example.com/x"),
    ]
}

#[tokio::test]
async fn a_level_is_notified_only_when_every_notification_is_sent() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let now = Utc::now();
        let id = alerts::raise(&t.db, &hit("a"), now).await.unwrap().alert_id;
        let level = alerts::claim_level(
            &t.db,
            id,
            1,
            1,
            "soc",
            &EscalationTargets::default(),
            Some(now + Duration::hours(1)),
            now,
        )
        .await
        .unwrap()
        .expect("claimed");
        let Prepared::Queue(ns) = notifications::prepare_level(&t.db, level.id, &targets(), now)
            .await
            .unwrap()
        else {
            panic!("{kind:?}: an open alert's level is queued")
        };
        assert_eq!(ns.len(), 2, "{kind:?}");
        // Idempotent: an interrupted run that prepares again finds the same rows.
        let Prepared::Queue(again) = notifications::prepare_level(&t.db, level.id, &targets(), now)
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            again.iter().map(|n| n.id).collect::<Vec<_>>(),
            ns.iter().map(|n| n.id).collect::<Vec<_>>(),
            "{kind:?}"
        );
        let (email, hook) = (&ns[0], &ns[1]);
        notifications::mark_sent(&t.db, email.id, "250 OK", Some("<m@x>"), now)
            .await
            .unwrap();
        assert_eq!(
            notifications::settle_level(&t.db, level.id, now)
                .await
                .unwrap(),
            LevelState::Pending,
            "{kind:?}: the webhook is still queued"
        );
        notifications::mark_failed(&t.db, hook.id, "unreachable", false, now)
            .await
            .unwrap();
        let n = notifications::mark_sent(&t.db, hook.id, "HTTP 200", None, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n.attempts, 2, "{kind:?}");
        assert_eq!(n.errors.len(), 1, "{kind:?}: the failed attempt is kept");
        assert_eq!(
            notifications::settle_level(&t.db, level.id, now)
                .await
                .unwrap(),
            LevelState::Notified,
            "{kind:?}"
        );
        let stored = alerts::escalations(&t.db, id).await.unwrap();
        assert!(stored[0].notified_at.is_some(), "{kind:?}");
    }
}

#[tokio::test]
async fn a_level_whose_every_notification_died_fails_once_and_brings_the_next_level_forward() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let now = Utc::now();
        let id = alerts::raise(&t.db, &hit("b"), now).await.unwrap().alert_id;
        let later = now + Duration::hours(1);
        let level = alerts::claim_level(
            &t.db,
            id,
            1,
            1,
            "soc",
            &EscalationTargets::default(),
            Some(later),
            now,
        )
        .await
        .unwrap()
        .unwrap();
        let Prepared::Queue(ns) = notifications::prepare_level(&t.db, level.id, &targets(), now)
            .await
            .unwrap()
        else {
            panic!()
        };
        for n in &ns {
            notifications::mark_failed(&t.db, n.id, "first", false, now)
                .await
                .unwrap();
            let dead = notifications::mark_failed(&t.db, n.id, "second", true, now)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(dead.status, NotificationStatus::Dead, "{kind:?}");
            assert_eq!(
                dead.errors
                    .iter()
                    .map(|e| e.error.as_str())
                    .collect::<Vec<_>>(),
                ["first", "second"],
                "{kind:?}: every error kept"
            );
        }
        assert_eq!(
            notifications::settle_level(&t.db, level.id, now)
                .await
                .unwrap(),
            LevelState::Failed { newly: true },
            "{kind:?}"
        );
        assert_eq!(
            notifications::settle_level(&t.db, level.id, now)
                .await
                .unwrap(),
            LevelState::Failed { newly: false },
            "{kind:?}: only the first settle reports it"
        );
        assert!(
            !alerts::escalate_now(&t.db, id, 1, 2, now).await.unwrap(),
            "{kind:?}: not at level 2"
        );
        assert!(
            alerts::escalate_now(&t.db, id, 1, 1, now).await.unwrap(),
            "{kind:?}"
        );
        let alert = alerts::get(&t.db, id).await.unwrap().unwrap();
        assert_eq!(
            alert.next_escalation_at.map(|t| t.timestamp_millis()),
            Some(now.timestamp_millis()),
            "{kind:?}"
        );
        assert_eq!(
            alerts::due(&t.db, now, Some(id), 10).await.unwrap().len(),
            1
        );

        // A retry puts the dead notification back and un-fails the level.
        let back = notifications::reset_for_retry(&t.db, ns[1].id, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.status, NotificationStatus::Queued, "{kind:?}");
        assert_eq!(back.errors.len(), 2, "{kind:?}");
        assert!(
            notifications::reset_for_retry(&t.db, ns[1].id, now)
                .await
                .unwrap()
                .is_none(),
            "{kind:?}: only a dead one"
        );
        assert!(
            alerts::escalations(&t.db, id).await.unwrap()[0]
                .failed_at
                .is_none(),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn an_acknowledgement_between_claim_and_queueing_suppresses_the_level() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let now = Utc::now();
        let id = alerts::raise(&t.db, &hit("c"), now).await.unwrap().alert_id;
        let level = alerts::claim_level(
            &t.db,
            id,
            1,
            1,
            "soc",
            &EscalationTargets::default(),
            None,
            now,
        )
        .await
        .unwrap()
        .unwrap();
        alerts::transition(
            &t.db,
            id,
            AlertAction::Acknowledge,
            "user:alice",
            None,
            now,
            Restart::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            notifications::prepare_level(&t.db, level.id, &targets(), now)
                .await
                .unwrap(),
            Prepared::Suppressed,
            "{kind:?}"
        );
        assert!(
            notifications::for_alert(&t.db, id)
                .await
                .unwrap()
                .is_empty(),
            "{kind:?}: nothing recorded to send"
        );
        let stored = alerts::escalations(&t.db, id).await.unwrap();
        assert!(stored[0].suppressed_at.is_some(), "{kind:?}");
        assert!(
            alerts::unqueued(&t.db, now + Duration::hours(1))
                .await
                .unwrap()
                .iter()
                .all(|e| e.alert_id != id),
            "{kind:?}: a suppressed level is not resumed"
        );
    }
}

#[tokio::test]
async fn a_reopened_alert_escalates_again_in_a_new_round_from_its_reopen_level() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let now = Utc::now();
        let id = alerts::raise(&t.db, &hit("d"), now).await.unwrap().alert_id;
        for level in 1..=2 {
            alerts::claim_level(
                &t.db,
                id,
                1,
                level,
                "soc",
                &EscalationTargets::default(),
                None,
                now,
            )
            .await
            .unwrap()
            .unwrap();
        }
        alerts::transition(
            &t.db,
            id,
            AlertAction::Resolve,
            "user:alice",
            None,
            now,
            Restart::default(),
        )
        .await
        .unwrap();
        let reopened_at = now + Duration::minutes(10);
        let due = reopened_at + Duration::minutes(1);
        let out = alerts::transition(
            &t.db,
            id,
            AlertAction::Reopen,
            "user:alice",
            Some("it came back"),
            reopened_at,
            Restart {
                from_level: 1,
                due_at: Some(due),
            },
        )
        .await
        .unwrap();
        let alerts::TransitionOutcome::Done(alert) = out else {
            panic!("{kind:?}: {out:?}")
        };
        assert_eq!(
            (
                alert.escalation_round,
                alert.escalation_level,
                alert.next_escalation_at.map(|t| t.timestamp_millis())
            ),
            (2, 0, Some(due.timestamp_millis())),
            "{kind:?}"
        );
        assert_eq!(
            alert.escalation_started_at.timestamp_millis(),
            reopened_at.timestamp_millis(),
            "{kind:?}"
        );
        assert!(
            alerts::claim_level(
                &t.db,
                id,
                1,
                1,
                "soc",
                &EscalationTargets::default(),
                None,
                due
            )
            .await
            .unwrap()
            .is_none(),
            "{kind:?}: the old round cannot claim"
        );
        let again = alerts::claim_level(
            &t.db,
            id,
            2,
            1,
            "soc",
            &EscalationTargets::default(),
            None,
            due,
        )
        .await
        .unwrap()
        .expect("round 2 level 1");
        assert_eq!((again.round, again.level), (2, 1), "{kind:?}");
        let history = alerts::escalations(&t.db, id).await.unwrap();
        assert_eq!(
            history
                .iter()
                .map(|e| (e.round, e.level))
                .collect::<Vec<_>>(),
            [(1, 1), (1, 2), (2, 1)],
            "{kind:?}"
        );
    }
}
