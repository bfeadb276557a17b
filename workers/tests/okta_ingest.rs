//! Okta ingestion end to end against the fake org: many pages with faults, interruption and
//! resume from the cursor, late events, malformed events, bounded backfills.

mod okta_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use okta_common::*;
use vigil_jobs::OktaFetchJob;
use vigil_store::events::{self, StoredEvent};
use vigil_store::okta_cursor;
use vigil_testkit::db::TestDb;
use vigil_testkit::fake_okta::{Fault, generated_event};
use vigil_workers::JobError;
use vigil_workers::okta::{NewEventsSink, OktaMetrics, OktaPoller};

#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl NewEventsSink for Collect {
    fn on_new_events<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .extend(events.iter().map(|e| e.uuid.clone()));
        })
    }
}

#[tokio::test]
async fn many_pages_with_faults_store_every_event_exactly_once() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let (fake, settings) = oauth_org().await;
        let n = 2_450u64;
        fake.add_events(events(0, n, recent()));
        // Faults: a truncated body, a hang past the timeout, a 500 on every 4th request.
        fake.inject(Fault::Truncated);
        fake.inject(Fault::Hang(Duration::from_secs(3)));
        fake.inject_every(Some((4, Fault::ServerError)));

        let registry = prometheus::Registry::new();
        let metrics = OktaMetrics::register(&registry).unwrap();
        let sink = Arc::new(Collect::default());
        let poller = OktaPoller::new(settings, t.db.clone(), Some(metrics.clone()))
            .unwrap()
            .with_sink(sink.clone());
        let summary = poller
            .fetch("job-1", &OktaFetchJob::default())
            .await
            .unwrap();
        assert!(summary.caught_up, "{kind:?}: {summary:?}");
        assert_eq!(summary.stored, n, "{kind:?}: {summary:?}");
        assert!(
            summary.retries >= 3,
            "{kind:?}: faults were retried: {summary:?}"
        );
        assert_eq!(counts(&t.db).await, (n as i64, n as i64), "{kind:?}");
        assert_eq!(
            sink.0.lock().unwrap().len(),
            n as usize,
            "{kind:?}: sink saw each new event once"
        );

        // The cursor is the last page's next link: it points past the last event.
        let cursor = okta_cursor::load(&t.db, "default").await.unwrap().unwrap();
        assert!(
            cursor.next_url.ends_with(&format!("_{n}")),
            "{kind:?}: {}",
            cursor.next_url
        );
        assert!(cursor.next_url.starts_with(&fake.base_url()));

        // Metrics saw the work.
        let org = metrics.org("default");
        assert_eq!(org.events_ingested().get(), n, "{kind:?}");
        assert!(org.requests("logs", "500").get() >= 1);
        assert!(org.requests("logs", "timeout").get() >= 1);
        assert!(org.ingestion_lag().get() > 0.0);
        fake.inject_every(None);

        // Nothing new: one request, an empty page, the cursor stays valid, nothing doubled.
        let before = fake.counters().logs_requests;
        let again = poller
            .fetch("job-2", &OktaFetchJob::default())
            .await
            .unwrap();
        assert_eq!((again.stored, again.received), (0, 0), "{kind:?}");
        assert_eq!(fake.counters().logs_requests, before + 1, "{kind:?}");

        // Late events (published two hours ago, persisted now) and new ones are picked up.
        let late = generated_event(900_000, Utc::now() - chrono::Duration::hours(2));
        fake.add_events([late.clone()]);
        fake.add_events(events(n, n + 10, recent()));
        let third = poller
            .fetch("job-3", &OktaFetchJob::default())
            .await
            .unwrap();
        assert_eq!(third.stored, 11, "{kind:?}");
        let uuid = late["uuid"].as_str().unwrap();
        assert!(
            events::get(&t.db, uuid).await.unwrap().is_some(),
            "{kind:?}: late event stored"
        );
        assert_eq!(
            counts(&t.db).await,
            (n as i64 + 11, n as i64 + 11),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn an_interrupted_run_resumes_from_the_cursor_without_loss_or_duplicates() {
    let t = TestDb::postgres().await;
    let (fake, settings) = oauth_org().await;
    let n = 3_000u64;
    fake.add_events(events(0, n, recent()));
    // Slow every page down so the run can be cut in the middle.
    fake.inject_every(Some((1, Fault::Hang(Duration::from_millis(60)))));

    let poller = OktaPoller::new(settings.clone(), t.db.clone(), None).unwrap();
    let run = tokio::spawn(async move { poller.poll().await });
    while fake.counters().events_served < 1_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.abort(); // the worker dies mid-run: in-flight request and transaction are dropped
    let _ = run.await;
    let (stored_before, _) = counts(&t.db).await;
    assert!(
        stored_before > 0 && (stored_before as u64) < n,
        "{stored_before}"
    );
    let cursor = okta_cursor::load(&t.db, "default").await.unwrap().unwrap();
    assert!(
        cursor.next_url.ends_with(&format!("_{stored_before}")),
        "cursor matches the stored pages: {} vs {stored_before}",
        cursor.next_url
    );

    // A new process (new poller, new token) resumes where the cursor says.
    fake.inject_every(None);
    // The fake finishes the aborted request's page server-side after its 60 ms hang; wait
    // until every request it received was answered, so only the resumed run's pages are
    // counted below.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = fake.counters();
        let answered: u64 = c
            .by_status
            .iter()
            .filter(|((path, _), _)| path == "/api/v1/logs")
            .map(|(_, n)| n)
            .sum();
        if answered == c.logs_requests {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fake never answered: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let served_before = fake.counters().events_served;
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let summary = poller.poll().await.unwrap();
    assert!(summary.caught_up);
    assert_eq!(
        summary.duplicates, 0,
        "resumed exactly at the cursor: {summary:?}"
    );
    assert_eq!(counts(&t.db).await, (n as i64, n as i64));
    assert_eq!(
        fake.counters().events_served - served_before,
        n - stored_before as u64
    );
}

#[tokio::test]
async fn malformed_events_are_recorded_and_skipped() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org().await;
    fake.add_events(events(0, 5, recent()));
    let now = Utc::now().timestamp_millis();
    fake.add_raw_event(
        r#"{"published":"2024-01-01T00:00:00.000Z","eventType":"x"}"#,
        now,
    );
    fake.add_raw_event(r#""just a string""#, now);
    fake.add_events(events(5, 10, recent()));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let summary = poller.poll().await.unwrap();
    assert_eq!((summary.stored, summary.malformed), (10, 2), "{summary:?}");
    assert_eq!(events::malformed_count(&t.db).await.unwrap(), 2);
    assert_eq!(counts(&t.db).await, (10, 10));
}

#[tokio::test]
async fn bounded_backfills_respect_window_and_limit_and_leave_the_cursor() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org().await;
    let start = recent();
    fake.add_events(events(0, 500, start));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();

    // Window [start+100s, start+400s) holds 300 events; limit 250 stops early.
    let job = OktaFetchJob {
        since: Some(start + chrono::Duration::seconds(100)),
        until: Some(start + chrono::Duration::seconds(400)),
        limit: Some(250),
        ..Default::default()
    };
    let summary = poller.fetch("b1", &job).await.unwrap();
    assert_eq!(summary.stored, 250, "{summary:?}");
    let job = OktaFetchJob { limit: None, ..job };
    let summary = poller.fetch("b2", &job).await.unwrap();
    assert!(summary.caught_up);
    assert_eq!(
        (summary.received, summary.stored, summary.duplicates),
        (300, 50, 250)
    );
    assert!(
        okta_cursor::load(&t.db, "default").await.unwrap().is_none(),
        "bounded runs never move the cursor"
    );
    let oldest = events::list(
        &t.db,
        &events::EventQuery {
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(oldest.events.len(), 300);
    assert_eq!(
        oldest.events.last().unwrap().published,
        start + chrono::Duration::seconds(100)
    );
}

#[tokio::test]
async fn transient_failures_give_up_as_retryable_after_the_configured_retries() {
    let t = TestDb::sqlite().await;
    let (fake, mut settings) = oauth_org().await;
    settings.max_retries = 2;
    fake.add_events(events(0, 10, recent()));
    fake.inject_every(Some((1, Fault::ServerError)));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let err = poller.poll().await.unwrap_err();
    assert!(matches!(err, JobError::Retryable(_)), "{err:?}");
    assert!(err.to_string().contains("E0000009"), "{err}");
    assert_eq!(fake.counters().logs_requests, 3, "one try + two retries");
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let t = TestDb::sqlite().await;
    let (_fake, settings) = oauth_org().await;
    let (other, _) = oauth_org().await;
    // A cursor from another org: polling restarts from the initial window instead.
    okta_cursor::commit_page(
        &t.db,
        "default",
        &[],
        &[],
        Some(&format!("{}/api/v1/logs?after=1_5", other.base_url())),
    )
    .await
    .unwrap();
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    poller.poll().await.unwrap();
    assert_eq!(other.counters().logs_requests, 0);
    let c = okta_cursor::load(&t.db, "default").await.unwrap().unwrap();
    assert!(!c.next_url.starts_with(&other.base_url()));
}
