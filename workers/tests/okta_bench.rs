//! Benchmark (ignored by default): events/s from the fake Okta org into PostgreSQL through
//! the real poller (OAuth + DPoP, 1000-event pages, parse, batched insert, cursor commit).
//!
//! `cargo test --release -p vigil-workers --test okta_bench -- --ignored --nocapture`
//! prints one JSON line. `VIGIL_BENCH_OKTA_EVENTS` sets the event count (default 100000).

mod okta_common;

use std::time::Instant;

use okta_common::*;
use vigil_testkit::db::TestDb;
use vigil_workers::okta::OktaPoller;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (release build)"]
async fn okta_ingest_throughput_into_postgres() {
    let n: u64 = std::env::var("VIGIL_BENCH_OKTA_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let t = TestDb::postgres().await;
    let (fake, mut settings) = oauth_org().await;
    settings.page_limit = 1000;
    settings.max_pages_per_run = u32::MAX;
    let start = recent() - chrono::Duration::days(2);
    for chunk in (0..n).step_by(10_000) {
        fake.add_events(events(chunk, (chunk + 10_000).min(n), start));
    }
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let started = Instant::now();
    let s = poller.poll().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(s.stored, n);
    assert_eq!(counts(&t.db).await, (n as i64, n as i64));
    println!(
        "{}",
        serde_json::json!({
            "bench": "okta_ingest",
            "engine": "postgres",
            "events": n,
            "pages": s.pages,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "events_per_sec": (n as f64 / secs).round(),
        })
    );
}
