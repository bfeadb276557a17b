//! Rule evaluation throughput: events/s through every built-in rule, with in-memory windows
//! and with the Redis windows vigil runs with, and with the Sigma rules of `tests/sigma/okta`
//! loaded beside the built-in ones, each next to a baseline measured in the same run
//! (parsing the same events; one Redis round trip per event). Prints figures; asserts
//! nothing about speed.
//!
//! `cargo test --release -p vigil-rules --test rules_bench -- --ignored --nocapture`

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};
use vigil_rules::{MemoryWindows, RedisWindows, RuleSet, RulesSettings, WindowStore};

const EVENTS: usize = 100_000;

/// A realistic mix built from the real samples, over 83 minutes (one event every 50 ms):
/// - 90 %: the 24 samples as they are: successful sign-ins and SSO (which impossible travel
///   watches, so they match without firing), policy evaluations and rate limits (no rule),
///   and a lockout, a user report and an IdP sign-in (which fire: 1 event in 6 in all);
/// - 9 %: background noise, failed sign-ins of 2,000 users from 5,000 IPs (a few each:
///   below every threshold);
/// - 1 %: an attack, failed sign-ins from 10 IPs in turn against 50 users (brute force
///   by IP and password spray fire).
fn events() -> Vec<String> {
    let samples: Vec<Value> = vigil_testkit::fake_okta::FakeOkta::sample_events()
        .into_iter()
        .map(|(_, t)| serde_json::from_str(&t).unwrap())
        .collect();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z").unwrap();
    let failed = |e: &mut Value, ip: String, user: String| {
        e["eventType"] = json!("user.session.start");
        e["outcome"] = json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"});
        e["client"]["ipAddress"] = json!(ip);
        e["actor"]["alternateId"] = json!(user);
    };
    (0..EVENTS)
        .map(|i| {
            let mut e = samples[i % samples.len()].clone();
            e["uuid"] = json!(format!("bench-{i}"));
            let t = start + chrono::Duration::milliseconds(i as i64 * 50);
            e["published"] = json!(
                t.to_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
            let (n, k) = (i / 100, i % 100);
            if k == 50 {
                failed(
                    &mut e,
                    format!("203.0.113.{}", n % 10),
                    format!("staff{}@example.com", n % 50),
                );
            } else if k % 11 == 1 {
                let m = n * 9 + k / 11;
                failed(
                    &mut e,
                    format!("198.51.{}.{}", m % 5000 / 250, m % 5000 % 250),
                    format!("user{}@example.com", m * 7 % 2000),
                );
            }
            e.to_string()
        })
        .collect()
}

/// Events/s, firings and events matching a rule, evaluating `batch` events at a time (1: one by one; 1,000: a page,
/// as the detector does).
async fn measure(
    rules: &RuleSet,
    windows: &dyn WindowStore,
    events: &[String],
    batch: usize,
) -> (f64, BTreeMap<String, u64>, u64) {
    let started = Instant::now();
    let (mut firings, mut matching) = (BTreeMap::new(), 0u64);
    for chunk in events.chunks(batch) {
        let docs: Vec<Value> = chunk
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        for evaluation in rules.evaluate_all(&docs, windows).await.unwrap() {
            for f in evaluation.firings {
                *firings.entry(f.rule_id).or_insert(0) += 1;
            }
            matching += u64::from(!evaluation.matches.is_empty());
        }
    }
    (
        events.len() as f64 / started.elapsed().as_secs_f64(),
        firings,
        matching,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture, in release"]
async fn rule_evaluation_throughput() {
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    let events = events();

    let started = Instant::now();
    for text in &events {
        std::hint::black_box(serde_json::from_str::<Value>(text).unwrap());
    }
    let parse = events.len() as f64 / started.elapsed().as_secs_f64();

    let (memory, fired, matching) = measure(&rules, &MemoryWindows::default(), &events, 1).await;
    // The test Sigma rules plus 24 single-event rules of the usual shape of an Okta Sigma
    // pack (an eventtype list, some with a displaymessage or debugData test, a filter).
    let pack = tempfile::tempdir().unwrap();
    for i in 0..24 {
        let extra = match i % 3 {
            0 => "",
            1 => "    displaymessage|contains: 'user'\n",
            _ => "    debugcontext.debugdata.requesturi|startswith: '/api/'\n",
        };
        std::fs::write(
            pack.path().join(format!("r{i}.yml")),
            format!(
                "title: bench rule {i}\nid: bench-{i}\nlogsource:\n  product: okta\n  service: okta\ndetection:\n  selection:\n    eventtype:\n      - user.bench.{i}\n      - {}\n{extra}  filter:\n    actor.alternateid|endswith: '@bench.invalid'\n  condition: selection and not filter\nlevel: low\n",
                ["user.session.start", "policy.evaluate_sign_on", "user.authentication.sso", "system.push.send_factor_verify_push"][i % 4]
            ),
        )
        .unwrap();
    }
    let with_sigma = RuleSet::load(&RulesSettings {
        sigma: vec![
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigma/okta"),
            pack.path().to_path_buf(),
        ],
        ..Default::default()
    })
    .unwrap();
    let sigma_count = with_sigma.rules().len() - rules.rules().len();
    let (memory_sigma, fired_sigma, _) =
        measure(&with_sigma, &MemoryWindows::default(), &events, 1).await;

    let client = redis::Client::open(vigil_testkit::redis::shared_url()).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let started = Instant::now();
    for _ in 0..20_000 {
        let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    }
    let ping = 20_000.0 / started.elapsed().as_secs_f64();
    let mut redis_rates = Vec::new();
    for batch in [1, 1000] {
        let prefix = vigil_testkit::redis::unique_prefix("rules-bench");
        let redis_windows = RedisWindows::new(conn.clone(), &prefix);
        let (rate, batch_fired, _) = measure(&rules, &redis_windows, &events, batch).await;
        assert_eq!(
            batch_fired, fired,
            "the same firings whatever the store and batch"
        );
        redis_rates.push(rate);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }

    println!(
        "{} built-in rules, {} events (9 % failed sign-ins as noise, 1 % an attack): \
         {matching} match a rule, {} firings",
        rules.rules().len(),
        events.len(),
        fired.values().sum::<u64>()
    );
    let by_rule: Vec<String> = fired.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!("firings by rule: {}", by_rule.join(", "));
    println!("baseline parse only (serde_json): {parse:.0} events/s");
    println!(
        "rules (memory windows): {memory:.0} events/s = {:.0} % of parsing",
        100.0 * memory / parse
    );
    println!(
        "rules + {sigma_count} Sigma rules (memory windows): {memory_sigma:.0} events/s = {:.0} % of parsing, {:.0} % of built-in only ({} firings)",
        100.0 * memory_sigma / parse,
        100.0 * memory_sigma / memory,
        fired_sigma.values().sum::<u64>()
    );
    println!("baseline Redis PING round trips: {ping:.0}/s");
    println!(
        "rules (Redis windows, one event at a time): {:.0} events/s = {:.2} round trips' worth per event",
        redis_rates[0],
        ping / redis_rates[0]
    );
    println!(
        "rules (Redis windows, pages of 1,000 as the detector runs): {:.0} events/s = {:.0} % of in-memory",
        redis_rates[1],
        100.0 * redis_rates[1] / memory
    );
}
