//! Rate limits: the poller paces itself by `X-Rate-Limit-Remaining/-Reset` (keeping the
//! reserve share) and waits for the reset after a 429 (logs or token endpoint) instead of
//! hammering Okta; processes sharing a Redis share one budget per org.

mod okta_common;

use okta_common::*;
use std::time::Duration;
use vigil_testkit::db::TestDb;
use vigil_workers::okta::{KeyKind, OktaMetrics, OktaPoller};

#[tokio::test]
async fn the_poller_waits_for_the_reset_instead_of_collecting_429s() {
    let t = TestDb::sqlite().await;
    let (fake, mut settings) = oauth_org_with(KeyKind::Es256, |c| {
        c.rate_limit = 5;
        c.rate_window = Duration::from_secs(1);
    })
    .await;
    settings.page_limit = 10;
    settings.rate_limit_reserve_percent = 20; // keep 1 of 5
    fake.add_events(events(0, 105, recent()));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let s = poller.poll().await.unwrap();
    assert_eq!(s.stored, 105, "{s:?}");
    assert!(s.rate_limit_waits >= 2, "waited for resets: {s:?}");
    let c = fake.counters();
    assert_eq!(c.rate_limited, 0, "never ran into a 429: {c:?}");
    assert_eq!(c.logs_requests, 11);
}

#[tokio::test]
async fn an_exhausted_budget_means_one_429_then_a_wait_for_the_reset() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org_with(KeyKind::Es256, |c| {
        c.rate_limit = 50;
        c.rate_window = Duration::from_secs(2);
    })
    .await;
    fake.add_events(events(0, 30, recent()));
    fake.exhaust_rate_limit();
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let s = poller.poll().await.unwrap();
    assert_eq!(s.stored, 30);
    let c = fake.counters();
    assert_eq!(c.rate_limited, 1, "one 429, then patience: {c:?}");
    assert_eq!(c.status("/api/v1/logs", 429), 1);
    assert_eq!(c.logs_requests, 2);
}

#[tokio::test]
async fn a_429_from_the_token_endpoint_waits_for_its_reset() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org_with(KeyKind::Es256, |c| {
        c.token_rate_limit = 3;
        c.rate_window = Duration::from_secs(2);
    })
    .await;
    fake.add_events(events(0, 10, recent()));
    fake.exhaust_token_rate_limit();
    let registry = prometheus::Registry::new();
    let metrics = OktaMetrics::register(&registry).unwrap();
    let poller = OktaPoller::new(settings, t.db.clone(), Some(metrics.clone())).unwrap();
    let s = poller.poll().await.unwrap();
    assert_eq!(s.stored, 10, "{s:?}");
    let c = fake.counters();
    assert_eq!(
        c.status("/oauth2/v1/token", 429),
        1,
        "one 429, then a wait until X-Rate-Limit-Reset: {c:?}"
    );
    assert_eq!(c.tokens_issued, 1);
    assert_eq!(
        metrics
            .org("default")
            .rate_limit_waits("token", "429")
            .get(),
        1
    );
}

/// A budget shared through Redis under a fresh prefix.
async fn shared_budget_poller(
    settings: vigil_workers::okta::OktaSettings,
    db: vigil_store::Db,
    prefix: &str,
) -> OktaPoller {
    let conn = vigil_queue::Connector::new(&vigil_queue::RedisSettings {
        url: vigil_testkit::redis::shared_url(),
        ..Default::default()
    })
    .unwrap()
    .shared()
    .await
    .unwrap();
    OktaPoller::new(settings, db, None)
        .unwrap()
        .with_redis(conn, prefix)
}

#[tokio::test]
async fn two_processes_share_one_budget_and_never_collect_a_429() {
    // 6 requests a second, in 2-second windows: on the loaded 2-core CI machine a 1-second
    // window let scheduling delays (hundreds of ms) cross window edges once.
    let (fake, mut settings) = oauth_org_with(KeyKind::Es256, |c| {
        c.rate_limit = 12;
        c.rate_window = Duration::from_secs(2);
    })
    .await;
    settings.page_limit = 10;
    settings.rate_limit_reserve_percent = 0;
    fake.add_events(events(0, 150, recent()));
    let prefix = vigil_testkit::redis::unique_prefix("okta-budget");
    // Two "processes": a poller and a backfill of the same org, on their own databases.
    let (a, b) = (TestDb::sqlite().await, TestDb::sqlite().await);
    let poller = shared_budget_poller(settings.clone(), a.db.clone(), &prefix).await;
    let backfill = shared_budget_poller(settings, b.db.clone(), &prefix).await;
    let since = recent() - chrono::Duration::seconds(1);
    let until = chrono::Utc::now();
    let (p, f) = tokio::join!(
        poller.poll(),
        backfill.backfill(since, until, None, &|_| {})
    );
    let (p, f) = (p.unwrap(), f.unwrap());
    assert_eq!((p.stored, f.stored), (150, 150), "{p:?} {f:?}");
    let c = fake.counters();
    assert_eq!(
        c.rate_limited, 0,
        "together they stayed within the org's limit: {c:?}"
    );
    assert!(p.rate_limit_waits + f.rate_limit_waits >= 2, "{p:?} {f:?}");
}
