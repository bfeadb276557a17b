//! Threshold windows in the real Redis (shared instance, a unique key prefix per test): they
//! survive a restart of the worker, two workers evaluating at once share one window, and
//! every window key expires.

use serde_json::{Value, json};
use vigil_rules::{RedisWindows, RuleSet, RulesSettings};

async fn connection() -> redis::aio::ConnectionManager {
    let client = redis::Client::open(vigil_testkit::redis::shared_url()).unwrap();
    redis::aio::ConnectionManager::new(client)
        .await
        .expect("Redis must run on 127.0.0.1:6379 for tests")
}

/// A failed sign-in of `user` from `ip`, `seconds` after 10:00.
fn failure(n: usize, user: &str, ip: &str, seconds: i64) -> Value {
    let (_, text) = vigil_testkit::fake_okta::FakeOkta::sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with("06_user.session.start"))
        .unwrap();
    let mut e: Value = serde_json::from_str(&text).unwrap();
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap()
        + chrono::Duration::seconds(seconds);
    e["uuid"] = json!(format!("ev-{n}"));
    e["published"] = json!(
        t.to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    e["outcome"] = json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"});
    e["actor"]["alternateId"] = json!(user);
    e["client"]["ipAddress"] = json!(ip);
    e
}

async fn keys(prefix: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection().await)
        .await
        .unwrap()
}

async fn cleanup(prefix: &str) {
    let found = keys(prefix).await;
    if !found.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(found)
            .query_async(&mut connection().await)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_window_survives_a_worker_restart() {
    let prefix = vigil_testkit::redis::unique_prefix("rules");
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    {
        let before = RedisWindows::new(connection().await, &prefix);
        for i in 0..19 {
            let e = failure(i, &format!("u{i}"), "203.0.113.5", i as i64 * 60);
            let ev = rules.evaluate(&e, &before).await.unwrap();
            assert!(
                ev.firings
                    .iter()
                    .all(|f| f.rule_id != "okta_brute_force_ip")
            );
        }
    } // the worker goes away with its connection
    let after = RedisWindows::new(connection().await, &prefix);
    let e = failure(19, "u19", "203.0.113.5", 19 * 60);
    let ev = rules.evaluate(&e, &after).await.unwrap();
    let f = ev
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_brute_force_ip")
        .expect("the 20th failure fires, counting the 19 seen before the restart");
    assert_eq!(f.window_uuids.len(), 20);
    cleanup(&prefix).await;
}

/// Evaluates `events` in order; the window sizes of the brute-force firings.
async fn feed(rules: &RuleSet, windows: &RedisWindows, events: Vec<&Value>) -> Vec<usize> {
    let mut fired = Vec::new();
    for e in events {
        let ev = rules.evaluate(e, windows).await.unwrap();
        if let Some(f) = ev
            .firings
            .iter()
            .find(|f| f.rule_id == "okta_brute_force_ip")
        {
            fired.push(f.window_uuids.len());
        }
    }
    fired
}

#[tokio::test]
async fn two_workers_share_one_window() {
    let prefix = vigil_testkit::redis::unique_prefix("rules");
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    let a = RedisWindows::new(connection().await, &prefix);
    let b = RedisWindows::new(connection().await, &prefix);
    let events: Vec<Value> = (0..40)
        .map(|i| failure(i, &format!("u{i}"), "203.0.113.6", i as i64 * 30))
        .collect();
    let evens: Vec<&Value> = events.iter().step_by(2).collect();
    let odds: Vec<&Value> = events.iter().skip(1).step_by(2).collect();
    let (fa, fb) = tokio::join!(feed(&rules, &a, evens), feed(&rules, &b, odds));
    // Alone, each half (20 events) would fire once, on its last event; sharing the window,
    // the threshold is met from about the 20th event on, whoever evaluates it (each worker
    // sees what the other has added so far, so a few may lag behind by an event or two).
    let fired = fa.len() + fb.len();
    assert!(fired >= 15, "fired {fired} times: {fa:?} {fb:?}");
    // The last events see (nearly) all 40: which of the two last ones is added first races.
    let largest = fa.iter().chain(&fb).max().copied().unwrap();
    assert!(largest >= 39, "{fa:?} {fb:?}");
    let held: u64 = redis::cmd("ZCARD")
        .arg(format!(
            "{prefix}:rules:{{okta_brute_force_ip}}:203.0.113.6"
        ))
        .query_async(&mut connection().await)
        .await
        .unwrap();
    assert_eq!(held, 40, "one window holds all 40 events");
    cleanup(&prefix).await;
}

#[tokio::test]
async fn window_keys_expire() {
    let prefix = vigil_testkit::redis::unique_prefix("rules");
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    let w = RedisWindows::new(connection().await, &prefix);
    rules
        .evaluate(&failure(0, "u0", "203.0.113.7", 0), &w)
        .await
        .unwrap();
    let found = keys(&prefix).await;
    assert!(!found.is_empty(), "threshold rules keep windows");
    for key in found {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection().await)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_batch_evaluates_exactly_like_one_event_at_a_time() {
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    // Failures from 3 IPs against 12 users, one every 20 s: several threshold rules fire
    // part-way through.
    let events: Vec<Value> = (0..60)
        .map(|i| {
            failure(
                i,
                &format!("u{}", i % 12),
                &format!("203.0.113.{}", 20 + i % 3),
                i as i64 * 20,
            )
        })
        .collect();
    let summary = |e: &vigil_rules::Evaluation| {
        let fired: Vec<(String, usize)> = e
            .firings
            .iter()
            .map(|f| (f.rule_id.clone(), f.window_uuids.len()))
            .collect();
        (e.uuid.clone(), e.matches.clone(), fired)
    };
    let one_prefix = vigil_testkit::redis::unique_prefix("rules");
    let one = RedisWindows::new(connection().await, &one_prefix);
    let mut singly = Vec::new();
    for e in &events {
        singly.push(summary(&rules.evaluate(e, &one).await.unwrap()));
    }
    let batch_prefix = vigil_testkit::redis::unique_prefix("rules");
    let batch = RedisWindows::new(connection().await, &batch_prefix);
    let batched: Vec<_> = rules
        .evaluate_all(&events, &batch)
        .await
        .unwrap()
        .iter()
        .map(summary)
        .collect();
    assert!(
        singly.iter().any(|(_, _, f)| !f.is_empty()),
        "the sequence fires rules"
    );
    assert_eq!(batched, singly);
    cleanup(&one_prefix).await;
    cleanup(&batch_prefix).await;
}

/// The firings of `rule` (their observed figures) over `events`, evaluated in order.
async fn firings_of(
    rules: &RuleSet,
    windows: &dyn vigil_rules::WindowStore,
    events: &[Value],
    rule: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    for e in events {
        let ev = rules.evaluate(e, windows).await.unwrap();
        out.extend(
            ev.firings
                .into_iter()
                .filter(|f| f.rule_id == rule)
                .map(|f| json!({"key": f.group_key, "observed": f.observed})),
        );
    }
    out
}

#[tokio::test]
async fn a_grouping_key_cannot_reach_into_another_window() {
    // Okta logs what was typed as the user name of a failed sign-in, so an attacker picks
    // grouping keys. Ten failures "as" `ceo@x.com:f0` from one IP, then ten against
    // `ceo@x.com` from one other IP: one source each, no distributed brute force. (Redis
    // keys were `…:{key}` and `…:{key}:f0`, so the first ten landed among the IPs of
    // `ceo@x.com`'s window: 11 "distinct IPs", and it fired.)
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    let mut events: Vec<Value> = (0..10)
        .map(|i| failure(i, "ceo@x.com:f0", "198.51.100.1", i as i64 * 10))
        .collect();
    events.extend((10..20).map(|i| failure(i, "ceo@x.com", "203.0.113.1", i as i64 * 10)));
    let prefix = vigil_testkit::redis::unique_prefix("rules");
    let redis = RedisWindows::new(connection().await, &prefix);
    let rule = "okta_distributed_brute_force";
    let in_redis = firings_of(&rules, &redis, &events, rule).await;
    let in_memory = firings_of(
        &rules,
        &vigil_rules::MemoryWindows::default(),
        &events,
        rule,
    )
    .await;
    assert_eq!(in_redis, in_memory, "Redis windows behave as in memory");
    assert!(in_redis.is_empty(), "{in_redis:?}");

    // Keys with `:` (IPv6) and `%` still group, count and fire as usual.
    let v6: Vec<Value> = (0..20)
        .map(|i| failure(100 + i, &format!("u{i}%3A"), "2001:db8::7", i as i64 * 10))
        .collect();
    let fired = firings_of(&rules, &redis, &v6, "okta_brute_force_ip").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["key"], "2001:db8::7");
    assert_eq!(fired[0]["observed"]["count"], 20);
    let found = keys(&prefix).await;
    assert!(
        found
            .iter()
            .any(|k| k.ends_with(":{okta_brute_force_ip}:2001%3Adb8%3A%3A7")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|k| k.ends_with(":{okta_brute_force_user}:u0%253A")),
        "{found:?}"
    );
    // Braces in event data are escaped too: they would move a key to another Cluster slot.
    let braces: Vec<Value> = (0..3)
        .map(|i| failure(200 + i, "{evil}", "192.0.2.9", i as i64 * 10))
        .collect();
    firings_of(&rules, &redis, &braces, "okta_brute_force_user").await;
    let found = keys(&prefix).await;
    assert!(
        found
            .iter()
            .any(|k| k.ends_with(":{okta_brute_force_user}:%7Bevil%7D")),
        "{found:?}"
    );
    assert!(
        found.iter().all(|k| k.matches('{').count() == 1),
        "only the rule's own hash tag: {found:?}"
    );
    cleanup(&prefix).await;
}

#[tokio::test]
async fn two_workers_evaluating_the_same_event_count_it_once() {
    // Redelivery: both workers get the same 19 failures at once; still 19, no alert.
    let prefix = vigil_testkit::redis::unique_prefix("rules");
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    let a = RedisWindows::new(connection().await, &prefix);
    let b = RedisWindows::new(connection().await, &prefix);
    let events: Vec<Value> = (0..19)
        .map(|i| failure(i, &format!("u{i}"), "203.0.113.8", i as i64 * 30))
        .collect();
    let (fa, fb) = tokio::join!(
        feed(&rules, &a, events.iter().collect()),
        feed(&rules, &b, events.iter().rev().collect())
    );
    assert!(fa.is_empty() && fb.is_empty(), "{fa:?} {fb:?}");
    let held: u64 = redis::cmd("ZCARD")
        .arg(format!(
            "{prefix}:rules:{{okta_brute_force_ip}}:203.0.113.8"
        ))
        .query_async(&mut connection().await)
        .await
        .unwrap();
    assert_eq!(held, 19);
    // The 20th, on either worker, fires with 20 events linked.
    let last = failure(19, "u19", "203.0.113.8", 19 * 30);
    assert_eq!(feed(&rules, &b, vec![&last]).await, [20]);
    cleanup(&prefix).await;
}

/// The same events through a Redis Cluster (windows spread over the shards by rule, pipelines
/// sent per slot) and a Sentinel-managed master fire exactly as in memory, one by one and as
/// a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_on_a_cluster_and_on_sentinel_behave_as_in_memory() {
    use vigil_testkit::redis_topology::{RedisCluster, SentinelSet};
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    let events: Vec<Value> = (0..60)
        .map(|i| {
            failure(
                i,
                &format!("u{}", i % 7),
                &format!("203.0.113.{}", i % 3),
                i as i64 * 5,
            )
        })
        .collect();
    let expected = firings_of(
        &rules,
        &vigil_rules::MemoryWindows::default(),
        &events,
        "okta_brute_force_ip",
    )
    .await;
    assert!(!expected.is_empty(), "the events fire in memory");

    let cluster = RedisCluster::start(3, 0);
    let client = redis::cluster::ClusterClient::new(cluster.nodes()).unwrap();
    let conn = client.get_async_connection().await.unwrap();
    let on_cluster = RedisWindows::new(conn.clone(), "vigil-test").clustered(true);
    let fired = firings_of(&rules, &on_cluster, &events, "okta_brute_force_ip").await;
    assert_eq!(fired, expected, "one by one on the Cluster");
    let paged = RedisWindows::new(conn, "vigil-test-page").clustered(true);
    let page = rules.evaluate_all(&events, &paged).await.unwrap();
    let in_page: usize = page
        .iter()
        .map(|e| {
            e.firings
                .iter()
                .filter(|f| f.rule_id == "okta_brute_force_ip")
                .count()
        })
        .sum();
    assert_eq!(in_page, expected.len(), "a page on the Cluster");

    let set = SentinelSet::start();
    let master = format!("redis://127.0.0.1:{}/0", set.master_port());
    let conn = redis::Client::open(master)
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let on_sentinel_master = RedisWindows::new(conn, "vigil-test");
    let fired = firings_of(&rules, &on_sentinel_master, &events, "okta_brute_force_ip").await;
    assert_eq!(fired, expected, "on the Sentinel-managed master");
}

/// A successful SSO of session `sid` (sample 17, which carries a session), `minutes` after
/// 10:00, from ASN `asn` in `country` with browser `ua`.
fn session_event(uuid: &str, sid: &str, minutes: i64, asn: u32, country: &str, ua: &str) -> Value {
    let (_, text) = vigil_testkit::fake_okta::FakeOkta::sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with("17_user.authentication.sso"))
        .unwrap();
    let mut e: Value = serde_json::from_str(&text).unwrap();
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap()
        + chrono::Duration::minutes(minutes);
    e["uuid"] = json!(uuid);
    e["published"] = json!(t.to_utc().to_rfc3339());
    e["authenticationContext"] = json!({"externalSessionId": sid, "rootSessionId": null});
    e["securityContext"]["asNumber"] = json!(asn);
    e["client"]["geographicalContext"]["country"] = json!(country);
    e["client"]["userAgent"]["rawUserAgent"] = json!(ua);
    e["debugContext"] = json!({"debugData": {}});
    e
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CURL: &str = "python-requests/2.32.3";

#[tokio::test]
async fn a_stolen_session_is_critical_and_its_state_is_shared_idempotent_and_expires() {
    let prefix = vigil_testkit::redis::unique_prefix("rules-session");
    let rules = RuleSet::load(&RulesSettings::default()).unwrap();
    let worker_a = RedisWindows::new(connection().await, &prefix);
    let worker_b = RedisWindows::new(connection().await, &prefix);
    let stolen = |e: &vigil_rules::Evaluation| {
        e.firings
            .iter()
            .find(|f| f.rule_id == "okta_stolen_session")
            .cloned()
    };
    // The owner signs in (worker A), keeps using the session from the same network and
    // browser, and from a new network with the same browser (travel): nothing.
    let owner = session_event("s1", "idxSESSION1", 0, 7922, "United States", FIREFOX);
    let ev = rules.evaluate(&owner, &worker_a).await.unwrap();
    assert!(ev.matches.iter().any(|m| m == "okta_stolen_session"));
    assert!(stolen(&ev).is_none());
    let same = session_event("s2", "idxSESSION1", 5, 7922, "United States", FIREFOX);
    assert!(stolen(&rules.evaluate(&same, &worker_b).await.unwrap()).is_none());
    let travel = session_event("s3", "idxSESSION1", 30, 3741, "France", FIREFOX);
    assert!(stolen(&rules.evaluate(&travel, &worker_b).await.unwrap()).is_none());
    // Another client on the same network (a second browser behind the same NAT): nothing.
    let nat = session_event("s4", "idxSESSION1", 31, 7922, "United States", CURL);
    assert!(stolen(&rules.evaluate(&nat, &worker_a).await.unwrap()).is_none());
    // The cookie replayed from another ASN and country with another client, seen by the
    // other worker: critical, linking the session's first event.
    let thief = session_event("s5", "idxSESSION1", 40, 9009, "Romania", CURL);
    let ev = rules.evaluate(&thief, &worker_b).await.unwrap();
    let f = stolen(&ev).expect("a stolen session fires");
    assert_eq!(f.severity, vigil_rules::Severity::Critical);
    assert_eq!(f.group_key, "idxSESSION1");
    assert_eq!(f.window_uuids, ["s1", "s5"]);
    assert_eq!(f.observed["first"]["securityContext.asNumber"], "7922");
    assert_eq!(
        f.observed["now"]["client.geographicalContext.country"],
        "Romania"
    );
    assert_eq!(
        f.observed["session"]["field"],
        "authenticationContext.externalSessionId"
    );
    // Replaying events changes nothing: the owner's first event is still the origin, and
    // the thief's event fires the same way again (the alert is updated, not duplicated).
    assert!(stolen(&rules.evaluate(&owner, &worker_a).await.unwrap()).is_none());
    let again = stolen(&rules.evaluate(&thief, &worker_a).await.unwrap()).expect("same answer");
    assert_eq!(again.window_uuids, ["s1", "s5"]);
    // Another session is its own state.
    let other = session_event("o1", "idxSESSION2", 41, 9009, "Romania", CURL);
    assert!(stolen(&rules.evaluate(&other, &worker_a).await.unwrap()).is_none());
    // After the session's 12-hour lifetime the state starts over: the new event is the origin.
    let later = session_event("s6", "idxSESSION1", 13 * 60, 1111, "Japan", "Other/1.0");
    assert!(stolen(&rules.evaluate(&later, &worker_a).await.unwrap()).is_none());
    // Okta's `unknown` placeholder is not a session.
    let u1 = session_event("u1", "unknown", 50, 7922, "United States", FIREFOX);
    let u2 = session_event("u2", "unknown", 51, 9009, "Romania", CURL);
    rules.evaluate(&u1, &worker_a).await.unwrap();
    assert!(stolen(&rules.evaluate(&u2, &worker_a).await.unwrap()).is_none());

    // Every session key expires (after twice the lifetime), all under the rule's hash tag.
    let found: Vec<String> = keys(&prefix)
        .await
        .into_iter()
        .filter(|k| k.contains("{okta_stolen_session}"))
        .collect();
    assert_eq!(
        found.len(),
        2,
        "two sessions, `unknown` not kept: {found:?}"
    );
    let mut conn = connection().await;
    for key in &found {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 2 * 43_200_000, "{key}: {ttl}");
    }
    cleanup(&prefix).await;
}
