//! One polling run per org at a time across processes: a tick that fires during a run is
//! skipped and counted, and ticks that waited behind a long run collapse into one.

mod okta_common;

use std::sync::Arc;
use std::time::Duration;

use okta_common::*;
use vigil_jobs::Job as _;
use vigil_jobs::OktaFetchJob;
use vigil_testkit::db::TestDb;
use vigil_testkit::fake_okta::Fault;
use vigil_workers::okta::{OktaMetrics, OktaPoller};

async fn poller(
    settings: vigil_workers::okta::OktaSettings,
    db: vigil_store::Db,
    prefix: &str,
    registry: &prometheus::Registry,
) -> (OktaPoller, OktaMetrics) {
    let conn = vigil_queue::Connector::new(&vigil_queue::RedisSettings {
        url: vigil_testkit::redis::shared_url(),
        ..Default::default()
    })
    .unwrap()
    .shared()
    .await
    .unwrap();
    let metrics = OktaMetrics::register(registry).unwrap();
    let p = OktaPoller::new(settings, db, Some(metrics.clone()))
        .unwrap()
        .with_redis(conn, prefix);
    (p, metrics)
}

#[tokio::test]
async fn overlapping_ticks_are_skipped_and_counted_not_queued() {
    let t = TestDb::sqlite().await;
    let (fake, mut settings) = oauth_org().await;
    settings.page_limit = 10;
    let start = recent();
    fake.add_events(events(0, 50, start));
    fake.inject_every(Some((1, Fault::Hang(Duration::from_millis(100)))));
    let prefix = vigil_testkit::redis::unique_prefix("okta-runs");
    let (reg_a, reg_b) = (prometheus::Registry::new(), prometheus::Registry::new());
    let (a, _) = poller(settings.clone(), t.db.clone(), &prefix, &reg_a).await;
    let (b, b_metrics) = poller(settings, t.db.clone(), &prefix, &reg_b).await;
    let a = Arc::new(a);

    // A tick queued before the long run starts (it waits in the queue behind it).
    let queued_tick = vigil_queue::new_job_id(OktaFetchJob::QUEUE);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let run = {
        let a = a.clone();
        tokio::spawn(async move {
            a.fetch(
                &vigil_queue::new_job_id(OktaFetchJob::QUEUE),
                &OktaFetchJob::default(),
            )
            .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.counters().logs_requests == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another process's tick during the run: skipped, no request to Okta.
    let s = b
        .fetch(
            &vigil_queue::new_job_id(OktaFetchJob::QUEUE),
            &OktaFetchJob::default(),
        )
        .await
        .unwrap();
    assert!(s.skipped, "{s:?}");
    let first = run.await.unwrap().unwrap();
    assert_eq!(first.stored, 50, "{first:?}");
    assert_eq!(
        fake.counters().logs_requests,
        u64::from(first.requests),
        "the skipped tick spent no request"
    );

    // The tick that waited behind the run: covered by it, skipped.
    let s = b
        .fetch(&queued_tick, &OktaFetchJob::default())
        .await
        .unwrap();
    assert!(s.skipped, "{s:?}");
    assert_eq!(b_metrics.org("default").runs_skipped().get(), 2);

    // A tick created after the run runs.
    fake.inject_every(None);
    fake.add_events(events(50, 55, start));
    let s = b
        .fetch(
            &vigil_queue::new_job_id(OktaFetchJob::QUEUE),
            &OktaFetchJob::default(),
        )
        .await
        .unwrap();
    assert!(!s.skipped);
    assert_eq!(s.stored, 5, "{s:?}");
    // Backfills are never skipped.
    let job = OktaFetchJob {
        since: Some(start),
        ..Default::default()
    };
    let s = a
        .fetch(&vigil_queue::new_job_id(OktaFetchJob::QUEUE), &job)
        .await
        .unwrap();
    assert!(!s.skipped && s.duplicates == 55, "{s:?}");
}
