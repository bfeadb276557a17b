//! Benchmark (ignored by default): Okta throughput into PostgreSQL, as a ratio to a baseline
//! measured in the same run on the same machine, so the figure means something on a loaded
//! or slow host.
//!
//! - **baseline**: a bare batched insert of the same events, already parsed, 1000 per
//!   transaction (`events::insert_batch`): what the database alone can take.
//! - **ingest**: the real poller from the fake Okta org (OAuth + DPoP, 1000-event pages,
//!   HTTP, parse, batched insert, cursor commit), no detection.
//! - **ingest + detection**: the same with the detector over the built-in rules (threshold
//!   windows in Redis, alerts in PostgreSQL), as the daemon runs it.
//!
//! `cargo test --release -p vigil-workers --test okta_bench -- --ignored --nocapture`
//! prints one JSON line. `VIGIL_BENCH_OKTA_EVENTS` sets the event count (default 100000).

mod common;
mod okta_common;

use std::sync::Arc;
use std::time::Instant;

use okta_common::*;
use vigil_jobs::EscalationSettings;
use vigil_rules::{RedisWindows, RuleSet, RulesSettings};
use vigil_store::events::{self, NewEvent};
use vigil_store::okta_event::parse_event;
use vigil_testkit::db::TestDb;
use vigil_workers::alerts::Detector;
use vigil_workers::okta::OktaPoller;

/// The events, published over the two days before the polling window.
fn generated(n: u64) -> Vec<serde_json::Value> {
    let start = recent() - chrono::Duration::days(2);
    events(0, n, start)
}

/// events/s of the baseline: parsed events inserted 1000 per batch.
async fn baseline(n: u64) -> f64 {
    let t = TestDb::postgres().await;
    let parsed: Vec<NewEvent> = generated(n)
        .iter()
        .map(|e| {
            let raw = serde_json::value::RawValue::from_string(e.to_string()).unwrap();
            parse_event(&raw).unwrap()
        })
        .collect();
    let started = Instant::now();
    for chunk in parsed.chunks(1000) {
        events::insert_batch(&t.db, chunk).await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(counts(&t.db).await, (n as i64, n as i64));
    n as f64 / secs
}

/// events/s of the poller from the fake org, with the built-in rules when `detect`.
async fn ingest(n: u64, detect: bool) -> f64 {
    let t = TestDb::postgres().await;
    let (fake, mut settings) = oauth_org().await;
    settings.page_limit = 1000;
    settings.max_pages_per_run = u32::MAX;
    let all = generated(n);
    for chunk in all.chunks(10_000) {
        fake.add_events(chunk.to_vec());
    }
    let mut poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let prefix = vigil_testkit::redis::unique_prefix("okta-bench");
    let engine = common::engine(&prefix, |_, _| {}).await;
    if detect {
        poller = poller.with_sink(Arc::new(Detector::new(
            Arc::new(RuleSet::load(&RulesSettings::default()).unwrap()),
            Arc::new(RedisWindows::new(engine.redis(), engine.prefix())),
            t.db.clone(),
            engine.clone(),
            Arc::new(EscalationSettings::default()),
            None,
        )));
    }
    let started = Instant::now();
    let s = poller.poll().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(s.stored, n);
    assert_eq!(counts(&t.db).await, (n as i64, n as i64));
    common::cleanup(&engine).await;
    n as f64 / secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (release build)"]
async fn okta_ingest_throughput_into_postgres() {
    let n: u64 = std::env::var("VIGIL_BENCH_OKTA_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let base = baseline(n).await;
    let plain = ingest(n, false).await;
    let detected = ingest(n, true).await;
    let ratio = |x: f64| (x / base * 1000.0).round() / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "bench": "okta_ingest",
            "engine": "postgres",
            "events": n,
            "baseline_insert_events_per_sec": base.round(),
            "ingest_events_per_sec": plain.round(),
            "ingest_with_detection_events_per_sec": detected.round(),
            "ingest_ratio_to_baseline": ratio(plain),
            "ingest_with_detection_ratio_to_baseline": ratio(detected),
            "issue_18_target_events_per_sec": 20_000,
        })
    );
}
