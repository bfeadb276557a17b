//! The events store and the Okta cursor on both engines: dedup by uuid, filters, newest-first
//! pagination, and the cursor committed with its page.

use chrono::{Duration, TimeZone, Utc};
use vigil_store::events::{self, EventQuery, MalformedEvent, NewEvent};
use vigil_store::okta_cursor;
use vigil_testkit::db::TestDb;

fn event(i: i64, event_type: &str, actor: &str, outcome: &str, ip: &str) -> NewEvent {
    let published = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + Duration::seconds(i);
    NewEvent {
        uuid: format!("00000000-0000-4000-8000-{i:012}"),
        published,
        event_type: event_type.to_owned(),
        severity: Some("INFO".to_owned()),
        actor_id: Some(format!("00u{actor}")),
        actor_alternate_id: Some(format!("{actor}@example.com")),
        actor_display_name: Some(actor.to_owned()),
        client_ip: Some(ip.to_owned()),
        country: Some("France".to_owned()),
        outcome_result: Some(outcome.to_owned()),
        outcome_reason: None,
        display_message: Some("User login to Okta".to_owned()),
        transaction_id: None,
        raw: format!(r#"{{"uuid":"{i}","note":"raw kept \u00e9xactly"}}"#),
        published_reported: None,
        org: events::DEFAULT_ORG.to_owned(),
        app_id: None,
        app_sign_on_mode: None,
    }
}

#[tokio::test]
async fn batches_are_stored_once_and_report_what_was_new() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let batch: Vec<_> = (0..1200)
            .map(|i| event(i, "user.session.start", "alice", "SUCCESS", "1.2.3.4"))
            .collect();
        let new = events::insert_batch(&t.db, &batch).await.unwrap();
        assert_eq!(new.len(), 1200, "{kind:?}");
        assert_eq!(new[0].uuid, batch[0].uuid, "{kind:?}: input order");

        // Overlapping batch with an in-batch duplicate: only the truly new ones come back.
        let mut again: Vec<_> = (1100..1300)
            .map(|i| event(i, "user.session.start", "alice", "SUCCESS", "1.2.3.4"))
            .collect();
        again.push(event(
            1250,
            "user.session.start",
            "alice",
            "SUCCESS",
            "1.2.3.4",
        ));
        let new = events::insert_batch(&t.db, &again).await.unwrap();
        assert_eq!(new.len(), 100, "{kind:?}");
        assert_eq!(events::count(&t.db).await.unwrap(), 1300, "{kind:?}");

        let got = events::get(&t.db, &batch[7].uuid).await.unwrap().unwrap();
        assert_eq!(got.raw, batch[7].raw, "{kind:?}");
        assert_eq!(got.published, batch[7].published, "{kind:?}");
        assert_eq!(got.actor_alternate_id.as_deref(), Some("alice@example.com"));
        assert!(events::get(&t.db, "nope").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn filters_and_pagination_newest_first() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let mut batch = Vec::new();
        for i in 0..30 {
            let (actor, outcome, ip) = if i % 3 == 0 {
                ("bob", "FAILURE", "5.6.7.8")
            } else {
                ("alice", "SUCCESS", "1.2.3.4")
            };
            let ty = if i % 2 == 0 {
                "user.session.start"
            } else {
                "user.account.lock"
            };
            batch.push(event(i, ty, actor, outcome, ip));
        }
        events::insert_batch(&t.db, &batch).await.unwrap();

        let q = |f: &dyn Fn(&mut EventQuery)| {
            let mut q = EventQuery {
                limit: 100,
                ..Default::default()
            };
            f(&mut q);
            q
        };
        let page = events::list(&t.db, &q(&|_| {})).await.unwrap();
        assert_eq!(page.events.len(), 30, "{kind:?}");
        assert!(page.next_cursor.is_none());
        assert_eq!(
            page.events[0].uuid, batch[29].uuid,
            "{kind:?}: newest first"
        );

        let bob = events::list(&t.db, &q(&|q| q.actor = Some("bob@example.com".into())))
            .await
            .unwrap();
        assert_eq!(bob.events.len(), 10, "{kind:?}");
        let by_id = events::list(&t.db, &q(&|q| q.actor = Some("00ubob".into())))
            .await
            .unwrap();
        assert_eq!(by_id.events.len(), 10, "{kind:?}");
        let fail_starts = events::list(
            &t.db,
            &q(&|q| {
                q.outcome = Some("FAILURE".into());
                q.event_type = Some("user.session.start".into());
                q.ip = Some("5.6.7.8".into());
            }),
        )
        .await
        .unwrap();
        assert_eq!(fail_starts.events.len(), 5, "{kind:?}"); // i in 0,6,12,18,24
        assert_eq!(
            fail_starts.total, 5,
            "{kind:?}: the total counts the filters' matches"
        );
        assert_eq!(page.total, 30, "{kind:?}");
        let window = events::list(
            &t.db,
            &q(&|q| {
                q.since = Some(batch[10].published);
                q.until = Some(batch[20].published);
            }),
        )
        .await
        .unwrap();
        assert_eq!(window.events.len(), 10, "{kind:?}");

        // Cursor pagination walks everything once, newest first.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = events::list(
                &t.db,
                &q(&|q| {
                    q.limit = 7;
                    q.cursor = cursor.clone();
                }),
            )
            .await
            .unwrap();
            seen.extend(page.events.iter().map(|e| e.uuid.clone()));
            assert_eq!(page.total, 30, "{kind:?}: every page counts every match");
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let expected: Vec<_> = batch.iter().rev().map(|e| e.uuid.clone()).collect();
        assert_eq!(seen, expected, "{kind:?}");

        // Page pagination.
        let p2 = events::list(
            &t.db,
            &q(&|q| {
                q.limit = 10;
                q.offset = 10;
            }),
        )
        .await
        .unwrap();
        assert_eq!(p2.events[0].uuid, batch[19].uuid, "{kind:?}");
        assert!(
            events::list(&t.db, &q(&|q| q.cursor = Some("garbage".into())))
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn cursor_is_committed_with_its_page() {
    for t in TestDb::both().await {
        let kind = t.kind();
        assert!(okta_cursor::load(&t.db, "default").await.unwrap().is_none());
        let page: Vec<_> = (0..10)
            .map(|i| event(i, "user.session.start", "alice", "SUCCESS", "1.2.3.4"))
            .collect();
        let bad = MalformedEvent {
            uuid: None,
            reason: "missing uuid".into(),
            raw: "{}".into(),
        };
        let new = okta_cursor::commit_page(
            &t.db,
            "default",
            &page,
            std::slice::from_ref(&bad),
            Some("https://acme.okta.com/api/v1/logs?after=1_1"),
        )
        .await
        .unwrap();
        assert_eq!(new.new.len(), 10, "{kind:?}");
        assert!(new.refused.is_empty());
        let c = okta_cursor::load(&t.db, "default").await.unwrap().unwrap();
        assert_eq!(c.next_url, "https://acme.okta.com/api/v1/logs?after=1_1");
        assert_eq!(c.last_published, Some(page[9].published), "{kind:?}");

        // An empty page moves the cursor but keeps the last published.
        okta_cursor::commit_page(&t.db, "default", &[], &[], Some("https://x/2"))
            .await
            .unwrap();
        let c = okta_cursor::load(&t.db, "default").await.unwrap().unwrap();
        assert_eq!(c.next_url, "https://x/2");
        assert_eq!(c.last_published, Some(page[9].published), "{kind:?}");

        // Bounded pages (no next) leave the cursor alone.
        let more = vec![event(50, "user.session.start", "a", "SUCCESS", "1.1.1.1")];
        okta_cursor::commit_page(&t.db, "default", &more, &[], None)
            .await
            .unwrap();
        let c = okta_cursor::load(&t.db, "default").await.unwrap().unwrap();
        assert_eq!(c.next_url, "https://x/2");
        assert_eq!(events::malformed_count(&t.db).await.unwrap(), 1);
        assert_eq!(
            events::newest_published(&t.db).await.unwrap(),
            Some(more[0].published)
        );
        okta_cursor::clear(&t.db, "default").await.unwrap();
        assert!(okta_cursor::load(&t.db, "default").await.unwrap().is_none());
    }
}

#[tokio::test]
async fn future_events_are_clamped_flagged_and_kept_out_of_the_newest() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let received = Utc::now();
        let mut sane = event(1, "user.session.start", "alice", "SUCCESS", "1.2.3.4");
        sane.published = received - Duration::minutes(1);
        let mut future = event(2, "user.session.start", "mallory", "SUCCESS", "1.2.3.4");
        future.published = Utc.with_ymd_and_hms(2999, 1, 1, 0, 0, 0).unwrap();
        let skew = Duration::seconds(300);
        assert!(!sane.clamp_future(received, skew));
        assert!(future.clamp_future(received, skew));
        let mut near = event(3, "user.session.start", "bob", "SUCCESS", "1.2.3.4");
        near.published = received + Duration::seconds(299);
        assert!(
            !near.clamp_future(received, skew),
            "within the skew: as reported"
        );
        events::insert_batch(&t.db, &[sane.clone(), future.clone()])
            .await
            .unwrap();
        let got = events::get(&t.db, &future.uuid).await.unwrap().unwrap();
        assert_eq!(
            got.published_reported,
            Some(Utc.with_ymd_and_hms(2999, 1, 1, 0, 0, 0).unwrap()),
            "{kind:?}"
        );
        assert!(got.published <= Utc::now(), "{kind:?}");
        assert_eq!(
            events::newest_published(&t.db)
                .await
                .unwrap()
                .map(|p| p.timestamp_millis()),
            Some(sane.published.timestamp_millis()),
            "{kind:?}: the flagged event is not the newest"
        );
        let page = events::list(
            &t.db,
            &EventQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(page.events.len(), 2);
        assert_eq!(
            page.events[0].uuid, future.uuid,
            "{kind:?}: newest by receipt"
        );
    }
}
