//! Rate limits: the poller paces itself by `X-Rate-Limit-Remaining/-Reset` (keeping the
//! reserve share) and waits for the reset after a 429 instead of hammering Okta.

mod okta_common;

use okta_common::*;
use std::time::Duration;
use vigil_testkit::db::TestDb;
use vigil_workers::okta::{KeyKind, OktaPoller};

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
