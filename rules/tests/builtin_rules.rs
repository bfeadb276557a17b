//! Every built-in rule on real Okta sample events (testkit/okta-samples) and on sequences
//! built from them: events that must fire, similar ones that must not, thresholds and windows
//! at their edges, and the quirks of real events. Fresh in-memory windows per sequence; the
//! Redis windows have their own tests (`redis_windows.rs`).

use serde_json::{Value, json};
use vigil_rules::{Evaluation, MemoryWindows, RuleSet, RulesSettings, Severity};
use vigil_testkit::fake_okta::FakeOkta;

/// The sample event whose file name starts with `prefix`.
fn sample(prefix: &str) -> Value {
    let (_, text) = FakeOkta::sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix}"));
    serde_json::from_str(&text).unwrap()
}

/// Sets `path` (dotted; objects created on the way) to `value`.
fn set(mut event: Value, path: &str, value: Value) -> Value {
    let mut at = &mut event;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if !at[*part].is_object() {
            at[*part] = json!({});
        }
        at = &mut at[*part];
    }
    at[parts[parts.len() - 1]] = value;
    event
}

/// `event` with a new uuid and `published` = 10:00 + `seconds`.
fn at(event: &Value, uuid: &str, seconds: i64) -> Value {
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap()
        + chrono::Duration::seconds(seconds);
    let e = set(event.clone(), "uuid", json!(uuid));
    set(
        e,
        "published",
        json!(
            t.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
    )
}

fn rules() -> RuleSet {
    RuleSet::load(&RulesSettings::default()).unwrap()
}

/// Evaluates `events` in order with fresh windows.
async fn run(events: &[Value]) -> Vec<Evaluation> {
    let (rules, windows) = (rules(), MemoryWindows::default());
    let mut out = Vec::new();
    for e in events {
        out.push(rules.evaluate(e, &windows).await.unwrap());
    }
    out
}

fn fired(e: &Evaluation, rule: &str) -> bool {
    e.firings.iter().any(|f| f.rule_id == rule)
}

fn matched(e: &Evaluation, rule: &str) -> bool {
    e.matches.iter().any(|m| m == rule)
}

/// Evaluates one event.
async fn one(event: Value) -> Evaluation {
    run(&[event]).await.remove(0)
}

fn typed(event_type: &str) -> Value {
    set(
        sample("06_user.session.start"),
        "eventType",
        json!(event_type),
    )
}

// ---------------------------------------------------------------- single-event rules ------

#[tokio::test]
async fn single_event_rules_fire_on_their_events_and_not_on_neighbours() {
    // (rule, events that fire, similar events that do not)
    let cases: Vec<(&str, Vec<Value>, Vec<Value>)> = vec![
        (
            "okta_account_locked",
            vec![sample("14_user.account.lock")],
            vec![
                sample("23_user.account.update_password"),
                typed("user.account.unlock"),
            ],
        ),
        (
            "okta_admin_role_granted",
            vec![
                typed("user.account.privilege.grant"),
                typed("group.privilege.grant"),
                typed("iam.resourceset.bindings.add"),
            ],
            vec![
                typed("user.account.privilege.revoke"),
                typed("group.user_membership.add"),
            ],
        ),
        (
            "okta_api_token_created",
            vec![typed("system.api_token.create")],
            vec![
                typed("system.api_token.revoke"),
                typed("system.api_token.update"),
            ],
        ),
        (
            "okta_api_token_revoked",
            vec![typed("system.api_token.revoke")],
            vec![typed("system.api_token.create")],
        ),
        (
            "okta_policy_tampering",
            vec![
                typed("policy.lifecycle.update"),
                typed("policy.lifecycle.deactivate"),
                typed("policy.rule.delete"),
                typed("application.policy.sign_on.update"),
                typed("application.policy.sign_on.rule.delete"),
            ],
            vec![
                sample("09_policy.evaluate_sign_on"),
                typed("policy.lifecycle.create"),
            ],
        ),
        (
            "okta_network_zone_tampering",
            vec![
                typed("zone.update"),
                typed("zone.deactivate"),
                typed("zone.delete"),
            ],
            vec![typed("zone.create"), typed("zone.activate")],
        ),
        (
            "okta_mfa_reset",
            vec![
                typed("user.mfa.factor.deactivate"),
                typed("user.mfa.factor.reset_all"),
                typed("system.mfa.factor.deactivate"),
                set(
                    typed("user.mfa.factor.reset_all"),
                    "outcome.reason",
                    json!("User reset all factors"),
                ),
            ],
            vec![
                set(
                    typed("user.mfa.factor.deactivate"),
                    "outcome.reason",
                    json!("User reset SECURITY_QUESTION factor"),
                ),
                typed("user.mfa.factor.activate"),
            ],
        ),
        (
            "okta_threatinsight",
            vec![set(
                typed("security.threat.detected"),
                "outcome.result",
                json!("DENY"),
            )],
            vec![
                sample("06_user.session.start"),
                typed("security.request.blocked"),
            ],
        ),
        (
            "okta_user_reported_suspicious",
            vec![sample(
                "11_user.account.report_suspicious_activity_by_enduser",
            )],
            vec![sample("07_user.session.end")],
        ),
        (
            "okta_idp_created",
            vec![typed("system.idp.lifecycle.create")],
            vec![
                typed("system.idp.lifecycle.update"),
                typed("system.idp.lifecycle.activate"),
            ],
        ),
        (
            "okta_org2org_app_changed",
            vec![
                set(
                    typed("application.lifecycle.create"),
                    "target",
                    json!([{"type": "AppInstance", "displayName": "Org2Org", "id": "0oa1"}]),
                ),
                set(
                    typed("application.lifecycle.activate"),
                    "target",
                    json!([{"type": "AppInstance", "displayName": "Acme org2org hub", "id": "0oa2"}]),
                ),
            ],
            vec![
                set(
                    typed("application.lifecycle.create"),
                    "target",
                    json!([{"type": "AppInstance", "displayName": "Slack", "id": "0oa3"}]),
                ),
                typed("application.lifecycle.create"),
            ],
        ),
        (
            "okta_idp_signin",
            vec![sample("15_user.authentication.auth_via_IDP")],
            vec![
                sample("17_user.authentication.sso"),
                sample("13_user.authentication.verify"),
            ],
        ),
        (
            "okta_fastpass_phishing",
            vec![set(
                set(
                    sample("16_user.authentication.auth_via_mfa"),
                    "outcome.result",
                    json!("FAILURE"),
                ),
                "outcome.reason",
                json!("FastPass declined phishing attempt"),
            )],
            vec![
                sample("16_user.authentication.auth_via_mfa"),
                set(
                    set(
                        sample("16_user.authentication.auth_via_mfa"),
                        "outcome.result",
                        json!("FAILURE"),
                    ),
                    "outcome.reason",
                    json!("INVALID_CREDENTIALS"),
                ),
            ],
        ),
    ];
    for (rule, firing, quiet) in cases {
        for (i, e) in firing.into_iter().enumerate() {
            let ev = one(e).await;
            assert!(
                matched(&ev, rule) && fired(&ev, rule),
                "{rule}: firing case {i}: {ev:?}"
            );
            let f = ev.firings.iter().find(|f| f.rule_id == rule).unwrap();
            assert_eq!(
                f.window_uuids,
                std::slice::from_ref(&ev.uuid),
                "{rule}: the alert links the event"
            );
        }
        for (i, e) in quiet.into_iter().enumerate() {
            let ev = one(e).await;
            assert!(
                !matched(&ev, rule) && !fired(&ev, rule),
                "{rule}: quiet case {i}: {ev:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_super_administrator_grant_is_high_and_others_medium() {
    let grant = typed("user.account.privilege.grant");
    let ev = one(grant.clone()).await;
    let f = ev
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_admin_role_granted")
        .unwrap();
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.group_key, "admin@okta.com", "grouped by who granted it");
    let sa = set(
        grant,
        "debugContext.debugData.privilegeGranted",
        json!("Super administrator, Read only Administrator"),
    );
    let ev = one(sa).await;
    let f = ev
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_admin_role_granted")
        .unwrap();
    assert_eq!(f.severity, Severity::High);
}

#[tokio::test]
async fn anonymizing_proxy_sign_ins_and_admin_pages_fire_whatever_the_boolean_looks_like() {
    let start = sample("06_user.session.start");
    for proxy in [json!(true), json!("true"), json!("True")] {
        let ev = one(set(start.clone(), "securityContext.isProxy", proxy.clone())).await;
        assert!(fired(&ev, "okta_anonymizing_proxy"), "isProxy = {proxy}");
    }
    for proxy in [json!(false), json!("false"), Value::Null] {
        let ev = one(set(start.clone(), "securityContext.isProxy", proxy.clone())).await;
        assert!(!matched(&ev, "okta_anonymizing_proxy"), "isProxy = {proxy}");
    }
    // Key case differs from Okta's documentation: still read.
    let mut odd = start.clone();
    let ctx = odd
        .as_object_mut()
        .unwrap()
        .remove("securityContext")
        .unwrap();
    odd["SecurityContext"] = set(ctx, "isProxy", json!(true));
    assert!(fired(&one(odd).await, "okta_anonymizing_proxy"));
    // An admin page through a proxy (any event type), but not without the proxy.
    let admin = set(
        set(
            typed("user.session.access_admin_app"),
            "debugContext.debugData.requestUri",
            json!("/admin/users"),
        ),
        "securityContext.isProxy",
        json!(true),
    );
    assert!(fired(&one(admin.clone()).await, "okta_anonymizing_proxy"));
    let direct = set(admin, "securityContext.isProxy", json!(false));
    assert!(!fired(&one(direct).await, "okta_anonymizing_proxy"));
    // The real Okta Verify sample came through a VPN (isProxy true) but is no session start.
    let ev = one(sample("24_user.authentication.auth_via_mfa")).await;
    assert!(!fired(&ev, "okta_anonymizing_proxy"));
}

#[tokio::test]
async fn missing_and_null_fields_do_not_panic_or_fire() {
    let bare = json!({"uuid": "bare", "published": "2026-11-22T10:00:00.000Z", "eventType": "user.session.start"});
    let ev = one(bare).await;
    assert!(
        ev.firings
            .iter()
            .all(|f| f.rule_id != "okta_brute_force_ip")
    );
    let nulls = json!({"uuid": "n", "published": "2026-11-22T10:00:00.000Z", "eventType": "user.session.start",
                       "actor": null, "client": null, "outcome": null, "securityContext": null, "target": null,
                       "debugContext": {"debugData": null}});
    let ev = one(nulls).await;
    assert!(ev.firings.is_empty(), "{ev:?}");
    let empty = one(json!({})).await;
    assert!(empty.matches.is_empty());
}

// ------------------------------------------------------------------- threshold rules -------

fn failure(user: &str, ip: &str) -> Value {
    let e = set(
        sample("06_user.session.start"),
        "outcome",
        json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"}),
    );
    let e = set(e, "actor.alternateId", json!(user));
    set(e, "client.ipAddress", json!(ip))
}

#[tokio::test]
async fn brute_force_by_ip_fires_on_the_twentieth_failure_within_an_hour() {
    let events: Vec<Value> = (0..20)
        .map(|i| {
            at(
                &failure(&format!("u{i}@x.com"), "203.0.113.9"),
                &format!("f{i}"),
                i * 60,
            )
        })
        .collect();
    let evs = run(&events).await;
    assert!(
        evs[..19].iter().all(|e| !fired(e, "okta_brute_force_ip")),
        "19 is not enough"
    );
    let f = evs[19]
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_brute_force_ip")
        .expect("the 20th fires");
    assert_eq!(f.group_key, "203.0.113.9");
    assert_eq!(f.window_uuids.len(), 20);
    assert_eq!(f.observed["count"], 20);
    assert!(
        evs.iter().all(|e| !fired(e, "okta_brute_force_user")),
        "20 different users"
    );

    // 20 failures spread over 76 minutes: never 20 within one hour.
    let spread: Vec<Value> = (0..20)
        .map(|i| {
            at(
                &failure("a@x.com", "203.0.113.10"),
                &format!("s{i}"),
                i * 240,
            )
        })
        .collect();
    assert!(
        run(&spread)
            .await
            .iter()
            .all(|e| !fired(e, "okta_brute_force_ip"))
    );
    // Successes never count.
    let ok: Vec<Value> = (0..25)
        .map(|i| {
            at(
                &set(
                    failure("a@x.com", "203.0.113.11"),
                    "outcome.result",
                    json!("SUCCESS"),
                ),
                &format!("o{i}"),
                i,
            )
        })
        .collect();
    assert!(
        run(&ok)
            .await
            .iter()
            .all(|e| !matched(e, "okta_brute_force_ip"))
    );
}

#[tokio::test]
async fn brute_force_by_user_counts_one_user_across_ips() {
    let events: Vec<Value> = (0..20)
        .map(|i| {
            at(
                &failure("victim@x.com", &format!("198.51.100.{i}")),
                &format!("u{i}"),
                i * 30,
            )
        })
        .collect();
    let evs = run(&events).await;
    assert!(!fired(&evs[18], "okta_brute_force_user"));
    let f = evs[19]
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_brute_force_user")
        .unwrap();
    assert_eq!(f.group_key, "victim@x.com");
    assert!(!fired(&evs[19], "okta_brute_force_ip"));
}

#[tokio::test]
async fn three_lockouts_within_three_hours_fire_and_a_single_one_is_low() {
    let lock = sample("14_user.account.lock");
    let evs = run(&[
        at(&lock, "l1", 0),
        at(&lock, "l2", 3600),
        at(&lock, "l3", 10_700),
    ])
    .await;
    assert!(fired(&evs[0], "okta_account_locked"));
    assert_eq!(
        evs[0]
            .firings
            .iter()
            .find(|f| f.rule_id == "okta_account_locked")
            .unwrap()
            .severity,
        Severity::Low
    );
    assert!(!fired(&evs[1], "okta_repeated_lockouts"));
    let f = evs[2]
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_repeated_lockouts")
        .unwrap();
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.group_key, "john.doe@example.com");
    // The third lockout 3 h + 1 s after the first: the first has left the window.
    let late = run(&[
        at(&lock, "m1", 0),
        at(&lock, "m2", 3600),
        at(&lock, "m3", 10_801),
    ])
    .await;
    assert!(!fired(&late[2], "okta_repeated_lockouts"));
}

#[tokio::test]
async fn password_spray_needs_many_users_a_few_tries_each_spread_over_five_minutes() {
    // 5 users x 3 tries from one IP, one try every 30 s (7 minutes in all).
    let spray: Vec<Value> = (0..15)
        .map(|i| {
            at(
                &failure(&format!("user{}@x.com", i % 5), "192.0.2.50"),
                &format!("p{i}"),
                i * 30,
            )
        })
        .collect();
    let evs = run(&spray).await;
    assert!(evs[..14].iter().all(|e| !fired(e, "okta_password_spray")));
    let f = evs[14]
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_password_spray")
        .expect("fires at 15");
    assert_eq!(f.observed["distinct actor.alternateId"], 5);
    assert_eq!(f.observed["per actor.alternateId (average)"], 3.0);
    // The same 15 tries within 4 minutes: too fast for a spray (min spread 5 min).
    let fast: Vec<Value> = (0..15)
        .map(|i| {
            at(
                &failure(&format!("user{}@x.com", i % 5), "192.0.2.51"),
                &format!("q{i}"),
                i * 17,
            )
        })
        .collect();
    assert!(
        run(&fast)
            .await
            .iter()
            .all(|e| !fired(e, "okta_password_spray"))
    );
    // 15 users tried once each (average 1, below 2): not a spray.
    let once: Vec<Value> = (0..15)
        .map(|i| {
            at(
                &failure(&format!("user{i}@x.com"), "192.0.2.52"),
                &format!("r{i}"),
                i * 30,
            )
        })
        .collect();
    assert!(
        run(&once)
            .await
            .iter()
            .all(|e| !fired(e, "okta_password_spray"))
    );
    // 3 users x 5 tries: too few users.
    let few: Vec<Value> = (0..15)
        .map(|i| {
            at(
                &failure(&format!("user{}@x.com", i % 3), "192.0.2.53"),
                &format!("t{i}"),
                i * 30,
            )
        })
        .collect();
    assert!(
        run(&few)
            .await
            .iter()
            .all(|e| !fired(e, "okta_password_spray"))
    );
}

#[tokio::test]
async fn credential_stuffing_is_many_users_once_or_twice_within_fifteen_minutes() {
    let stuffing: Vec<Value> = (0..25)
        .map(|i| {
            at(
                &failure(&format!("victim{i}@x.com"), "192.0.2.60"),
                &format!("c{i}"),
                i * 20,
            )
        })
        .collect();
    let evs = run(&stuffing).await;
    assert!(!fired(&evs[23], "okta_credential_stuffing"), "24 attempts");
    assert!(
        fired(&evs[24], "okta_credential_stuffing"),
        "25 attempts, 25 users"
    );
    // 12 users tried about twice each: only 12 users.
    let twice: Vec<Value> = (0..25)
        .map(|i| {
            at(
                &failure(&format!("victim{}@x.com", i % 12), "192.0.2.61"),
                &format!("d{i}"),
                i * 20,
            )
        })
        .collect();
    assert!(
        run(&twice)
            .await
            .iter()
            .all(|e| !fired(e, "okta_credential_stuffing"))
    );
    // 25 users over 25 minutes: never 25 within 15 minutes.
    let slow: Vec<Value> = (0..25)
        .map(|i| {
            at(
                &failure(&format!("victim{i}@x.com"), "192.0.2.62"),
                &format!("e{i}"),
                i * 60,
            )
        })
        .collect();
    assert!(
        run(&slow)
            .await
            .iter()
            .all(|e| !fired(e, "okta_credential_stuffing"))
    );
}

#[tokio::test]
async fn distributed_brute_force_needs_many_sources_and_a_sign_of_spread() {
    let from = |ip: &str, country: &str| {
        set(
            failure("ceo@x.com", ip),
            "client.geographicalContext.country",
            json!(country),
        )
    };
    // 10 tries from 5 IPs in 2 countries.
    let spread: Vec<Value> = (0..10)
        .map(|i| {
            let country = if i % 2 == 0 { "Canada" } else { "Brazil" };
            at(
                &from(&format!("203.0.113.{}", i % 5), country),
                &format!("g{i}"),
                i * 60,
            )
        })
        .collect();
    let evs = run(&spread).await;
    assert!(!fired(&evs[8], "okta_distributed_brute_force"));
    let f = evs[9]
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_distributed_brute_force")
        .unwrap();
    assert_eq!(f.group_key, "ceo@x.com");
    // 5 IPs, but one country, one ASN, one browser: not distributed enough.
    let same: Vec<Value> = (0..10)
        .map(|i| {
            at(
                &from(&format!("203.0.113.{}", i % 5), "Canada"),
                &format!("h{i}"),
                i * 60,
            )
        })
        .collect();
    assert!(
        run(&same)
            .await
            .iter()
            .all(|e| !fired(e, "okta_distributed_brute_force"))
    );
    // 8 IPs in one country: enough by IP count alone.
    let many: Vec<Value> = (0..10)
        .map(|i| {
            at(
                &from(&format!("203.0.113.{}", i % 8), "Canada"),
                &format!("k{i}"),
                i * 60,
            )
        })
        .collect();
    assert!(fired(&run(&many).await[9], "okta_distributed_brute_force"));
}

#[tokio::test]
async fn mfa_push_bombing_in_both_okta_forms() {
    let deny = set(
        typed("user.mfa.okta_verify.deny_push"),
        "actor.id",
        json!("00uvictim"),
    );
    let classic: Vec<Value> = (0..5)
        .map(|i| at(&deny, &format!("m{i}"), i * 60))
        .collect();
    let evs = run(&classic).await;
    assert!(!fired(&evs[3], "okta_mfa_push_bombing"));
    let f = evs[4]
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_mfa_push_bombing")
        .unwrap();
    assert_eq!(f.group_key, "00uvictim");
    // Identity Engine: auth_via_mfa with OKTA_VERIFY_PUSH rejected (the real sample, flipped).
    let oie = set(
        set(
            sample("24_user.authentication.auth_via_mfa"),
            "outcome.result",
            json!("FAILURE"),
        ),
        "outcome.reason",
        json!("INVALID_CREDENTIALS"),
    );
    let pushes: Vec<Value> = (0..5)
        .map(|i| at(&oie, &format!("o{i}"), i * 100))
        .collect();
    assert!(fired(&run(&pushes).await[4], "okta_mfa_push_bombing"));
    // Five accepted pushes, or five denied over more than 10 minutes: nothing.
    let accepted: Vec<Value> = (0..5)
        .map(|i| {
            at(
                &sample("24_user.authentication.auth_via_mfa"),
                &format!("a{i}"),
                i * 60,
            )
        })
        .collect();
    assert!(
        run(&accepted)
            .await
            .iter()
            .all(|e| !matched(e, "okta_mfa_push_bombing"))
    );
    let slow: Vec<Value> = (0..5)
        .map(|i| at(&deny, &format!("s{i}"), i * 160))
        .collect();
    assert!(
        run(&slow)
            .await
            .iter()
            .all(|e| !fired(e, "okta_mfa_push_bombing"))
    );
}

#[tokio::test]
async fn a_success_right_after_push_bombing_is_critical() {
    let deny = set(
        typed("user.mfa.okta_verify.deny_push"),
        "actor.id",
        json!("00uvictim"),
    );
    let success = set(
        sample("06_user.session.start"),
        "actor.id",
        json!("00uvictim"),
    );
    let mut events: Vec<Value> = (0..5)
        .map(|i| at(&deny, &format!("d{i}"), i * 60))
        .collect();
    events.push(at(&success, "ok", 600));
    let evs = run(&events).await;
    let f = evs[5]
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_mfa_push_bombing_accepted")
        .expect("the success after the bombing fires");
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.group_key, "00uvictim");
    assert_eq!(f.observed["okta_mfa_push_bombing before"], 5);
    // Only 4 denied pushes before: an ordinary sign-in.
    let mut fewer: Vec<Value> = (0..4)
        .map(|i| at(&deny, &format!("e{i}"), i * 60))
        .collect();
    fewer.push(at(&success, "ok2", 600));
    let evs = run(&fewer).await;
    assert!(matched(&evs[4], "okta_mfa_push_bombing_accepted"));
    assert!(!fired(&evs[4], "okta_mfa_push_bombing_accepted"));
    // The bombing ended more than 20 minutes earlier.
    let mut late: Vec<Value> = (0..5)
        .map(|i| at(&deny, &format!("f{i}"), i * 60))
        .collect();
    late.push(at(&success, "ok3", 240 + 1201));
    assert!(!fired(
        &run(&late).await[5],
        "okta_mfa_push_bombing_accepted"
    ));
    // Another user's success after the bombing: nothing.
    let mut other: Vec<Value> = (0..5)
        .map(|i| at(&deny, &format!("g{i}"), i * 60))
        .collect();
    other.push(at(
        &set(success.clone(), "actor.id", json!("00uother")),
        "ok4",
        600,
    ));
    assert!(!fired(
        &run(&other).await[5],
        "okta_mfa_push_bombing_accepted"
    ));
}

#[tokio::test]
async fn impossible_travel_is_two_countries_within_thirty_minutes_without_a_proxy() {
    let signin = |country: &str| {
        set(
            sample("06_user.session.start"),
            "client.geographicalContext.country",
            json!(country),
        )
    };
    let near = run(&[
        at(&signin("Canada"), "a", 0),
        at(&signin("Japan"), "b", 1799),
    ])
    .await;
    let f = near[1]
        .firings
        .iter()
        .find(|f| f.rule_id == "okta_impossible_travel")
        .expect("fires");
    assert_eq!(f.observed["distinct client.geographicalContext.country"], 2);
    let far = run(&[
        at(&signin("Canada"), "c", 0),
        at(&signin("Japan"), "d", 1801),
    ])
    .await;
    assert!(!fired(&far[1], "okta_impossible_travel"));
    let home = run(&[
        at(&signin("Canada"), "e", 0),
        at(&signin("Canada"), "f", 60),
    ])
    .await;
    assert!(!fired(&home[1], "okta_impossible_travel"));
    let vpn = set(signin("Japan"), "securityContext.isProxy", json!(true));
    let proxied = run(&[at(&signin("Canada"), "g", 0), at(&vpn, "h", 60)]).await;
    assert!(!matched(&proxied[1], "okta_impossible_travel"));
}

#[tokio::test]
async fn an_event_seen_twice_counts_once() {
    let e = failure("a@x.com", "203.0.113.77");
    let mut events: Vec<Value> = (0..19).map(|i| at(&e, &format!("x{i}"), i)).collect();
    events.push(at(&e, "x18", 18)); // a replay of the 19th
    let evs = run(&events).await;
    assert!(
        evs.iter().all(|e| !fired(e, "okta_brute_force_ip")),
        "still 19 distinct events"
    );
}

#[tokio::test]
async fn every_builtin_rule_is_covered_by_these_tests() {
    let source = include_str!("builtin_rules.rs");
    for rule in rules().rules() {
        assert!(
            source.contains(&format!("\"{}\"", rule.id)),
            "{} has no test",
            rule.id
        );
    }
}

// ------------------------------------------------- every threshold rule at its edges ------
// What an analyst checks on an alert: which rule, grouped by what, how bad, how many events
// it links, since when; and that one event less, or one second later, makes no alert.

/// The firing of `rule` on `ev`; panics (naming both) when it did not fire.
#[track_caller]
fn firing<'a>(ev: &'a Evaluation, rule: &str) -> &'a vigil_rules::Firing {
    ev.firings
        .iter()
        .find(|f| f.rule_id == rule)
        .unwrap_or_else(|| panic!("{rule} did not fire on {}: {ev:?}", ev.uuid))
}

/// Whether `rule` fired on none of `evs`.
fn never(evs: &[Evaluation], rule: &str) -> bool {
    evs.iter().all(|e| !fired(e, rule))
}

/// `make(i)` for i in `0..n`, uuid `{tag}{i}`, at `seconds(i)` after 10:00.
fn series(
    n: usize,
    tag: &str,
    make: impl Fn(usize) -> Value,
    seconds: impl Fn(usize) -> i64,
) -> Vec<Value> {
    (0..n)
        .map(|i| at(&make(i), &format!("{tag}{i}"), seconds(i)))
        .collect()
}

#[tokio::test]
async fn brute_force_windows_reach_back_exactly_one_hour() {
    // 19 failures of one user from one IP, one a minute, then the 20th at `last`.
    let attempts = |tag: &str, last: i64| {
        series(
            20,
            tag,
            |_| failure("target@x.com", "203.0.113.40"),
            |i| if i == 19 { last } else { i as i64 * 60 },
        )
    };
    // The 20th exactly one hour after the first: the first is still in the window.
    let evs = run(&attempts("in", 3600)).await;
    for rule in ["okta_brute_force_ip", "okta_brute_force_user"] {
        assert!(
            never(&evs[..19], rule),
            "{rule}: 19 failures are not enough"
        );
        let f = firing(&evs[19], rule);
        assert_eq!(f.severity, Severity::High, "{rule}");
        assert_eq!(f.count, 20, "{rule}");
        assert_eq!(f.window_uuids.len(), 20, "{rule}");
        assert_eq!(f.window_uuids[0], "in19", "{rule}: newest first");
        assert_eq!(f.window_uuids[19], "in0", "{rule}: back to the first");
        assert_eq!(f.event_uuid, "in19");
        assert_eq!(f.first_seen, evs[0].published, "{rule}");
        assert_eq!(f.dedup_window_seconds, 3600, "{rule}");
    }
    assert_eq!(
        firing(&evs[19], "okta_brute_force_ip").group_key,
        "203.0.113.40"
    );
    assert_eq!(
        firing(&evs[19], "okta_brute_force_user").group_key,
        "target@x.com"
    );
    // One second later the first failure has left the window: 19 again.
    let evs = run(&attempts("out", 3601)).await;
    assert!(matched(&evs[19], "okta_brute_force_ip"));
    assert!(never(&evs, "okta_brute_force_ip") && never(&evs, "okta_brute_force_user"));
    // Failed SSO (the real sample) is no failed sign-in for these two rules.
    let sso = series(
        25,
        "sso",
        |_| sample("18_user.authentication.sso"),
        |i| i as i64,
    );
    let evs = run(&sso).await;
    assert!(
        evs.iter()
            .all(|e| !matched(e, "okta_brute_force_ip") && !matched(e, "okta_brute_force_user"))
    );
}

#[tokio::test]
async fn repeated_lockouts_link_all_three_of_one_user_only() {
    let lock = sample("14_user.account.lock");
    let other = set(lock.clone(), "actor.alternateId", json!("jane@example.com"));
    let evs = run(&[
        at(&lock, "l1", 0),
        at(&other, "o1", 60),
        at(&lock, "l2", 120),
        at(&other, "o2", 180),
        at(&lock, "l3", 10_800),
    ])
    .await;
    assert!(never(&evs[..4], "okta_repeated_lockouts"), "2 each");
    for e in &evs {
        let f = firing(e, "okta_account_locked");
        assert_eq!((f.severity, f.count), (Severity::Low, 1));
    }
    assert_eq!(
        firing(&evs[1], "okta_account_locked").group_key,
        "jane@example.com"
    );
    // The third exactly 3 h after the first: still within the window.
    let f = firing(&evs[4], "okta_repeated_lockouts");
    assert_eq!(f.group_key, "john.doe@example.com");
    assert_eq!(f.window_uuids, ["l3", "l2", "l1"]);
    assert_eq!(f.count, 3);
    assert_eq!(f.first_seen, evs[0].published);
    // An unlock is no lockout.
    let unlock = set(lock, "eventType", json!("user.account.unlock"));
    let evs = run(&series(3, "u", |_| unlock.clone(), |i| i as i64)).await;
    assert!(
        evs.iter()
            .all(|e| !matched(e, "okta_account_locked") && !matched(e, "okta_repeated_lockouts")),
        "{evs:?}"
    );
}

#[tokio::test]
async fn password_spray_edges_spread_and_tries_per_user() {
    // 5 users x 3 tries from one IP in Okta's several failure forms (session start and
    // authentication, INVALID_CREDENTIALS and LOCKED_OUT); the 15th at `last` seconds.
    let spray = |tag: &str, ip: &str, last: i64| {
        series(
            15,
            tag,
            |i| {
                let e = failure(&format!("user{}@x.com", i % 5), ip);
                if i % 3 == 1 {
                    let e = set(e, "eventType", json!("user.authentication.verify"));
                    set(e, "outcome.reason", json!("LOCKED_OUT"))
                } else {
                    e
                }
            },
            |i| if i == 14 { last } else { i as i64 * 20 },
        )
    };
    // First to last 5 minutes exactly: a spray.
    let evs = run(&spray("a", "192.0.2.70", 300)).await;
    assert!(never(&evs[..14], "okta_password_spray"));
    let f = firing(&evs[14], "okta_password_spray");
    assert_eq!(f.group_key, "192.0.2.70");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.window_uuids.len(), 15);
    assert_eq!(f.observed["count"], 15);
    assert_eq!(f.observed["distinct actor.alternateId"], 5);
    assert_eq!(f.observed["per actor.alternateId (average)"], 3.0);
    assert_eq!(f.observed["spread_seconds"], 300);
    // One second short of 5 minutes: not yet.
    let evs = run(&spray("b", "192.0.2.71", 299)).await;
    assert!(never(&evs, "okta_password_spray"));

    // Tries per user between 2 and 8 on average, both ends included. One user hammered
    // `hammer` times, then 4 more users once each, one try every 30 s.
    let heavy = |tag: &str, ip: &str, hammer: usize| {
        series(
            hammer + 4,
            tag,
            |i| {
                let user = if i < hammer {
                    "boss@x.com".to_owned()
                } else {
                    format!("user{i}@x.com")
                };
                failure(&user, ip)
            },
            |i| i as i64 * 30,
        )
    };
    let evs = run(&heavy("c", "192.0.2.72", 36)).await;
    assert!(never(&evs[..39], "okta_password_spray"), "4 users");
    let f = firing(&evs[39], "okta_password_spray");
    assert_eq!(f.observed["per actor.alternateId (average)"], 8.0);
    let evs = run(&heavy("d", "192.0.2.73", 37)).await;
    assert!(
        never(&evs, "okta_password_spray"),
        "41 tries at 5 users: 8.2 each, a brute force on one user, not a spray"
    );
    // 8 users: the 15th try makes 1.875 per user (not yet), the 16th 2.0 (a spray).
    let evs = run(&series(
        16,
        "e",
        |i| failure(&format!("user{}@x.com", i % 8), "192.0.2.74"),
        |i| i as i64 * 30,
    ))
    .await;
    assert!(never(&evs[..15], "okta_password_spray"));
    assert_eq!(
        firing(&evs[15], "okta_password_spray").observed["per actor.alternateId (average)"],
        2.0
    );
    // Other failure reasons are no password guesses.
    let mfa = series(
        16,
        "f",
        |i| {
            set(
                failure(&format!("user{}@x.com", i % 5), "192.0.2.75"),
                "outcome.reason",
                json!("VERIFICATION_ERROR"),
            )
        },
        |i| i as i64 * 30,
    );
    assert!(
        run(&mfa)
            .await
            .iter()
            .all(|e| !matched(e, "okta_password_spray"))
    );
}

#[tokio::test]
async fn credential_stuffing_edges_users_tries_per_user_and_window() {
    let stuffing = |tag: &str, ip: &str, users: usize, n: usize, last: i64| {
        series(
            n,
            tag,
            |i| failure(&format!("v{}@x.com", i % users), ip),
            |i| if i == n - 1 { last } else { i as i64 * 10 },
        )
    };
    // 25 tries against exactly 15 users (1.67 each) within 15 minutes.
    let evs = run(&stuffing("a", "192.0.2.80", 15, 25, 240)).await;
    assert!(never(&evs[..24], "okta_credential_stuffing"));
    let f = firing(&evs[24], "okta_credential_stuffing");
    assert_eq!(f.group_key, "192.0.2.80");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.window_uuids.len(), 25);
    assert_eq!(f.observed["distinct actor.alternateId"], 15);
    assert_eq!(f.dedup_window_seconds, 900);
    // 14 users: too few.
    let evs = run(&stuffing("b", "192.0.2.81", 14, 40, 390)).await;
    assert!(never(&evs, "okta_credential_stuffing"));
    // The 25th exactly 15 minutes after the first counts; a second later it is alone.
    let evs = run(&stuffing("c", "192.0.2.82", 25, 25, 900)).await;
    assert_eq!(firing(&evs[24], "okta_credential_stuffing").count, 25);
    let evs = run(&stuffing("d", "192.0.2.83", 25, 25, 901)).await;
    assert!(never(&evs, "okta_credential_stuffing"));

    // At most 2 tries per user on average: 14 users tried `before` times in all, then a
    // 15th user once. 29 + 1 = 30 tries at 15 users is 2.0 each; 31 is 2.07.
    let capped = |tag: &str, ip: &str, before: usize| {
        series(
            before + 1,
            tag,
            |i| {
                if i < before {
                    failure(&format!("v{}@x.com", i % 14), ip)
                } else {
                    failure("last@x.com", ip)
                }
            },
            |i| i as i64 * 10,
        )
    };
    let evs = run(&capped("e", "192.0.2.84", 29)).await;
    assert!(never(&evs[..29], "okta_credential_stuffing"));
    let f = firing(&evs[29], "okta_credential_stuffing");
    assert_eq!(f.observed["per actor.alternateId (average)"], 2.0);
    let evs = run(&capped("f", "192.0.2.85", 30)).await;
    assert!(
        never(&evs, "okta_credential_stuffing"),
        "2.07 tries per user: not stuffing"
    );
}

#[tokio::test]
async fn distributed_brute_force_edges_each_sign_of_spread() {
    // 10 failures against one user from `ips` IPs, with `countries`, `asns` and `agents`
    // distinct values, one a minute; the 10th at `last`.
    let attack =
        |tag: &str, ips: usize, countries: usize, asns: usize, agents: usize, last: i64| {
            series(
                10,
                tag,
                |i| {
                    let e = failure("ceo@x.com", &format!("203.0.113.{}", i % ips));
                    let e = set(
                        e,
                        "client.geographicalContext.country",
                        json!(["Canada", "Brazil", "Japan"][i % countries]),
                    );
                    let e = set(e, "securityContext.asNumber", json!(7018 + (i % asns)));
                    set(
                        e,
                        "client.userAgent.rawUserAgent",
                        json!(format!("Mozilla/5.0 agent{}", i % agents)),
                    )
                },
                |i| if i == 9 { last } else { i as i64 * 60 },
            )
        };
    let rule = "okta_distributed_brute_force";
    // 5 IPs, and 2 countries, or 3 ASNs, or 3 browsers: each enough.
    for (tag, countries, asns, agents, sign) in [
        (
            "country",
            2,
            1,
            1,
            "distinct client.geographicalContext.country",
        ),
        ("asn", 1, 3, 1, "distinct securityContext.asNumber"),
        ("agent", 1, 1, 3, "distinct client.userAgent.rawUserAgent"),
    ] {
        let evs = run(&attack(tag, 5, countries, asns, agents, 540)).await;
        assert!(never(&evs[..9], rule), "{tag}: 9 tries are not enough");
        let f = firing(&evs[9], rule);
        assert_eq!(f.group_key, "ceo@x.com", "{tag}");
        assert_eq!(f.severity, Severity::High, "{tag}");
        assert_eq!(f.window_uuids.len(), 10, "{tag}");
        assert_eq!(f.observed["distinct client.ipAddress"], 5, "{tag}");
        assert!(
            f.observed[sign].as_u64().unwrap() >= 2,
            "{tag}: {}",
            f.observed
        );
    }
    // One short of each sign: 5 IPs, 1 country, 2 ASNs, 2 browsers.
    assert!(never(&run(&attack("flat", 5, 1, 2, 2, 540)).await, rule));
    // 4 IPs, however spread: too few sources.
    assert!(never(&run(&attack("four", 4, 3, 3, 3, 540)).await, rule));
    // 8 IPs alone are enough; the 10th exactly 30 minutes after the first still counts,
    // a second later the first has left the window.
    assert!(fired(
        &run(&attack("eight", 8, 1, 1, 1, 1800)).await[9],
        rule
    ));
    assert!(never(&run(&attack("late", 8, 1, 1, 1, 1801)).await, rule));
}

#[tokio::test]
async fn mfa_push_bombing_edges_mixed_forms_window_and_other_factors() {
    let rule = "okta_mfa_push_bombing";
    // The real Okta Verify push (actor.id ANONYMIZED), denied, in both Okta forms.
    let oie = set(
        set(
            sample("24_user.authentication.auth_via_mfa"),
            "outcome.result",
            json!("FAILURE"),
        ),
        "outcome.reason",
        json!("INVALID_CREDENTIALS"),
    );
    let classic = set(
        set(
            oie.clone(),
            "eventType",
            json!("user.mfa.okta_verify.deny_push"),
        ),
        "debugContext.debugData",
        json!({}),
    );
    // 3 classic and 2 Identity Engine denials count together; the 5th exactly 10 minutes
    // after the first still counts.
    let mixed = |tag: &str, last: i64| {
        series(
            5,
            tag,
            |i| if i < 3 { classic.clone() } else { oie.clone() },
            |i| if i == 4 { last } else { i as i64 * 60 },
        )
    };
    let evs = run(&mixed("a", 600)).await;
    assert!(never(&evs[..4], rule));
    let f = firing(&evs[4], rule);
    assert_eq!(f.group_key, "ANONYMIZED", "grouped by actor.id");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.window_uuids, ["a4", "a3", "a2", "a1", "a0"]);
    assert_eq!(f.dedup_window_seconds, 600);
    assert!(never(&run(&mixed("b", 601)).await, rule));
    // Five denials spread over five users: nobody is bombed.
    let users = series(
        5,
        "c",
        |i| set(classic.clone(), "actor.id", json!(format!("00u{i}"))),
        |i| i as i64 * 10,
    );
    let evs = run(&users).await;
    assert!(evs.iter().all(|e| matched(e, rule)) && never(&evs, rule));
    // Failed verifications that are not rejected pushes: another factor, another reason.
    for (field, value) in [
        ("debugContext.debugData.factor", "SMS_FACTOR"),
        ("debugContext.debugData.factor", "SIGNED_NONCE"),
        ("outcome.reason", "VERIFICATION_ERROR"),
    ] {
        let evs = run(&series(
            5,
            "d",
            |_| set(oie.clone(), field, json!(value)),
            |i| i as i64 * 10,
        ))
        .await;
        assert!(evs.iter().all(|e| !matched(e, rule)), "{field} = {value}");
    }
}

#[tokio::test]
async fn impossible_travel_edges_per_user_successes_only() {
    let rule = "okta_impossible_travel";
    let signin = |user: &str, country: &str| {
        set(
            set(
                sample("06_user.session.start"),
                "client.geographicalContext.country",
                json!(country),
            ),
            "actor.id",
            json!(user),
        )
    };
    // A real SSO from France, then a session from Canada 29 minutes later.
    let sso = set(
        sample("17_user.authentication.sso"),
        "actor.id",
        json!("00ua"),
    );
    let evs = run(&[at(&sso, "a1", 0), at(&signin("00ua", "Canada"), "a2", 1740)]).await;
    assert!(!fired(&evs[0], rule));
    let f = firing(&evs[1], rule);
    assert_eq!(f.group_key, "00ua");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.window_uuids, ["a2", "a1"]);
    assert_eq!(f.dedup_window_seconds, 1800);
    // Exactly 30 minutes apart still counts; 31 minutes do not.
    let evs = run(&[at(&sso, "b1", 0), at(&signin("00ua", "Canada"), "b2", 1800)]).await;
    assert!(fired(&evs[1], rule));
    let evs = run(&[at(&sso, "c1", 0), at(&signin("00ua", "Canada"), "c2", 1860)]).await;
    assert!(!fired(&evs[1], rule));
    // Two users, one country each: no travel.
    let evs = run(&[
        at(&signin("00ua", "Canada"), "d1", 0),
        at(&signin("00ub", "Japan"), "d2", 60),
    ])
    .await;
    assert!(never(&evs, rule));
    // A failed sign-in from Japan is someone else trying, not the user travelling.
    let failed = set(signin("00ua", "Japan"), "outcome.result", json!("FAILURE"));
    let evs = run(&[
        at(&signin("00ua", "Canada"), "e1", 0),
        at(&failed, "e2", 60),
    ])
    .await;
    assert!(!matched(&evs[1], rule) && never(&evs, rule));
}

#[tokio::test]
async fn admin_role_severity_follows_the_role_granted() {
    let rule = "okta_admin_role_granted";
    for (event_type, granted, severity) in [
        (
            "group.privilege.grant",
            Some("Super administrator"),
            Severity::High,
        ),
        (
            "iam.resourceset.bindings.add",
            Some("super ADMINISTRATOR"),
            Severity::High,
        ),
        (
            "user.account.privilege.grant",
            Some("Read only Administrator"),
            Severity::Medium,
        ),
        (
            "user.account.privilege.grant",
            Some("Help Desk Administrator, Super administrator"),
            Severity::High,
        ),
        ("iam.resourceset.bindings.add", None, Severity::Medium),
    ] {
        let mut e = typed(event_type);
        if let Some(g) = granted {
            e = set(e, "debugContext.debugData.privilegeGranted", json!(g));
        }
        let ev = one(e).await;
        let f = firing(&ev, rule);
        assert_eq!(f.severity, severity, "{event_type} {granted:?}");
        assert_eq!(f.count, 1);
    }
    // Revoking Super administrator is no grant.
    let revoke = set(
        typed("user.account.privilege.revoke"),
        "debugContext.debugData.privilegeRevoked",
        json!("Super administrator"),
    );
    assert!(!matched(&one(revoke).await, rule));
}

#[tokio::test]
async fn a_replay_of_the_firing_event_does_not_grow_the_window() {
    let e = failure("a@x.com", "203.0.113.78");
    let mut events = series(20, "r", |_| e.clone(), |i| i as i64);
    events.push(events[19].clone());
    let evs = run(&events).await;
    let first = firing(&evs[19], "okta_brute_force_ip");
    let again = firing(&evs[20], "okta_brute_force_ip");
    assert_eq!((first.count, again.count), (20, 20));
    assert_eq!(first.window_uuids, again.window_uuids);
}

#[tokio::test]
async fn field_quirks_on_threshold_rules() {
    // Values and event types in another case still match.
    let shouting = set(
        set(
            failure("a@x.com", "203.0.113.90"),
            "outcome.result",
            json!("failure"),
        ),
        "eventType",
        json!("USER.SESSION.START"),
    );
    let ev = one(shouting).await;
    assert!(matched(&ev, "okta_brute_force_ip"), "{ev:?}");
    // Keys in another case still group.
    let mut odd = failure("a@x.com", "203.0.113.91");
    let client = odd.as_object_mut().unwrap().remove("client").unwrap();
    odd["Client"] = json!({"IPAddress": client["ipAddress"].clone()});
    let evs = run(&series(20, "k", |_| odd.clone(), |i| i as i64)).await;
    assert_eq!(
        firing(&evs[19], "okta_brute_force_ip").group_key,
        "203.0.113.91"
    );
    // Without the grouping field (missing, null or Okta's "null") an event matches but is
    // not counted: no alert on an empty key.
    for (tag, ip) in [
        ("m", None),
        ("n", Some(Value::Null)),
        ("s", Some(json!("null"))),
    ] {
        let mut e = failure("b@x.com", "0.0.0.0");
        match ip {
            None => {
                e["client"].as_object_mut().unwrap().remove("ipAddress");
            }
            Some(v) => e["client"]["ipAddress"] = v,
        }
        let evs = run(&series(25, tag, |_| e.clone(), |i| i as i64)).await;
        assert!(matched(&evs[24], "okta_brute_force_ip"), "{tag}");
        assert!(never(&evs, "okta_brute_force_ip"), "{tag}");
        // The user is still known: brute force against the user fires.
        assert_eq!(
            firing(&evs[19], "okta_brute_force_user").group_key,
            "b@x.com"
        );
    }
}

/// `event` with every top-level key lower-cased, as data lakes export it.
fn lowercased(event: &Value) -> Value {
    Value::Object(
        event
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    )
}

#[tokio::test]
async fn lowercase_top_level_keys_match_like_okta_s_own() {
    let lock = lowercased(&sample("14_user.account.lock"));
    assert!(lock.get("eventType").is_none() && lock.get("eventtype").is_some());
    let ev = one(lock).await;
    assert!(fired(&ev, "okta_account_locked"), "{ev:?}");
    assert_eq!(ev.uuid, sample("14_user.account.lock")["uuid"]);
    // `published` read from its lower-case, SQL-style form is the window's clock.
    let mut failures = Vec::new();
    for i in 0..20 {
        let mut e = lowercased(&at(
            &set(
                sample("06_user.session.start"),
                "outcome",
                json!({"result": "FAILURE"}),
            ),
            &format!("lf{i}"),
            i * 60,
        ));
        e["published"] = json!(format!("2026-11-22 10:{i:02}:00.5"));
        failures.push(e);
    }
    let evs = run(&failures).await;
    assert!(never(&evs[..19], "okta_brute_force_ip"));
    let f = firing(&evs[19], "okta_brute_force_ip");
    assert_eq!(f.first_seen.to_rfc3339(), "2026-11-22T10:00:00.500+00:00");
}

// ------------------------------------------------------ coverage added in #16 ------------

/// `event_type` on sample 06 with `actor` and `target` replaced.
fn acted(event_type: &str, actor: &str, target: Value) -> Value {
    let e = set(
        typed(event_type),
        "actor",
        json!({"id": "00uA", "type": "User", "alternateId": actor, "displayName": actor}),
    );
    set(e, "target", target)
}

fn user_target(login: &str) -> Value {
    json!([{"id": format!("00u-{login}"), "type": "User", "alternateId": login, "displayName": login}])
}

const SUPPORT: &str = "system@okta.com";

#[tokio::test]
async fn okta_support_apps_idps_tokens_and_limits_fire_on_their_events_only() {
    let app = |event_type: &str, reason: Option<&str>| {
        let e = acted(
            event_type,
            "admin@example.com",
            json!([{"id": "0oa1", "type": "AppInstance", "alternateId": "Acme SCIM", "displayName": "Acme SCIM"}]),
        );
        match reason {
            Some(r) => set(e, "outcome", json!({"result": "SUCCESS", "reason": r})),
            None => e,
        }
    };
    let show_password = |actor: &str, user: &str| {
        acted(
            "application.user_membership.show_password",
            actor,
            json!([{"id": "0oa1", "type": "AppInstance", "alternateId": "Payroll", "displayName": "Payroll"},
                   {"id": "0ua1", "type": "AppUser", "alternateId": user, "displayName": user},
                   {"id": "00u9", "type": "User", "alternateId": user, "displayName": user}]),
        )
    };
    let admin_console = |behaviors: Option<&str>, security_data: Option<&str>, app: &str| {
        let mut e = acted(
            "policy.evaluate_sign_on",
            "admin@example.com",
            json!([{"id": "0oa2", "type": "AppInstance", "alternateId": app, "displayName": app}]),
        );
        e = set(e, "debugContext", json!({"debugData": {}}));
        if let Some(b) = behaviors {
            e = set(e, "debugContext.debugData.behaviors", json!(b));
        }
        if let Some(d) = security_data {
            e = set(e, "debugContext.debugData.logOnlySecurityData", json!(d));
        }
        e
    };
    let both =
        "{New Geo-Location=NEGATIVE, New Device=POSITIVE, New IP=POSITIVE, New City=NEGATIVE}";
    let device_only =
        "{New Geo-Location=NEGATIVE, New Device=POSITIVE, New IP=NEGATIVE, New City=NEGATIVE}";
    let json_both = r#"{"risk":{"level":"MEDIUM"},"behaviors":{"New Device":"POSITIVE","New IP":"POSITIVE","Velocity":"NEGATIVE"}}"#;
    let json_ip_only =
        r#"{"risk":{"level":"LOW"},"behaviors":{"New Device":"NEGATIVE","New IP":"POSITIVE"}}"#;
    let mfa = sample("24_user.authentication.auth_via_mfa");
    let cases: Vec<(&str, Vec<Value>, Vec<Value>)> = vec![
        (
            "okta_support_impersonation",
            vec![
                acted(
                    "user.session.impersonation.grant",
                    "admin@example.com",
                    user_target("admin@example.com"),
                ),
                acted(
                    "user.session.impersonation.initiate",
                    SUPPORT,
                    user_target("admin@example.com"),
                ),
            ],
            vec![
                acted(
                    "user.session.impersonation.end",
                    SUPPORT,
                    user_target("a@example.com"),
                ),
                acted("user.session.start", SUPPORT, user_target("a@example.com")),
            ],
        ),
        (
            "okta_support_reset_or_mfa_change",
            vec![
                acted(
                    "user.account.reset_password",
                    SUPPORT,
                    user_target("a@example.com"),
                ),
                acted(
                    "user.mfa.factor.update",
                    "SYSTEM@okta.com",
                    user_target("a@example.com"),
                ),
                acted(
                    "user.mfa.attempt_bypass",
                    SUPPORT,
                    user_target("a@example.com"),
                ),
            ],
            vec![
                acted(
                    "user.account.reset_password",
                    "helpdesk@example.com",
                    user_target("a@example.com"),
                ),
                acted(
                    "user.mfa.factor.update",
                    "a@example.com",
                    user_target("a@example.com"),
                ),
                acted(
                    "user.account.update_password",
                    SUPPORT,
                    user_target("a@example.com"),
                ),
            ],
        ),
        (
            "okta_mfa_bypass_attempt",
            vec![acted(
                "user.mfa.attempt_bypass",
                "helpdesk@example.com",
                user_target("a@example.com"),
            )],
            vec![acted(
                "user.mfa.factor.update",
                "helpdesk@example.com",
                user_target("a@example.com"),
            )],
        ),
        (
            "okta_idp_changed",
            vec![
                typed("system.idp.lifecycle.update"),
                typed("system.idp.lifecycle.activate"),
                typed("system.idp.lifecycle.deactivate"),
                typed("system.idp.lifecycle.delete"),
            ],
            vec![
                typed("system.idp.lifecycle.create"),
                typed("user.authentication.auth_via_IDP"),
            ],
        ),
        (
            "okta_admin_console_new_device_and_ip",
            vec![
                admin_console(Some(both), None, "Okta Admin Console"),
                admin_console(None, Some(json_both), "Okta Admin Console"),
            ],
            vec![
                admin_console(Some(device_only), None, "Okta Admin Console"),
                admin_console(None, Some(json_ip_only), "Okta Admin Console"),
                admin_console(Some(both), None, "Okta Dashboard"),
                sample("09_policy.evaluate_sign_on"),
                set(
                    admin_console(Some(both), None, "Okta Admin Console"),
                    "eventType",
                    json!("user.session.start"),
                ),
            ],
        ),
        (
            "okta_oauth_token_reuse",
            vec![
                typed("app.oauth2.as.token.detect_reuse"),
                typed("app.oauth2.token.detect_reuse"),
            ],
            vec![
                typed("app.oauth2.as.token.grant.refresh_token"),
                typed("app.oauth2.token.revoke"),
            ],
        ),
        (
            "okta_app_pushes_cleartext_passwords",
            vec![app(
                "application.lifecycle.update",
                Some("Pushing user passwords: enabled"),
            )],
            vec![
                app("application.lifecycle.update", None),
                app("application.lifecycle.update", Some("Profile updated")),
                app(
                    "application.lifecycle.create",
                    Some("Pushing user passwords: enabled"),
                ),
            ],
        ),
        (
            "okta_app_password_revealed",
            vec![show_password("admin@example.com", "victim@example.com")],
            vec![
                show_password("victim@example.com", "VICTIM@example.com"),
                acted(
                    "application.user_membership.show_password",
                    "admin@example.com",
                    json!([{"id": "0oa1", "type": "AppInstance", "alternateId": "Payroll"}]),
                ),
                acted(
                    "application.user_membership.add",
                    "admin@example.com",
                    user_target("victim@example.com"),
                ),
            ],
        ),
        (
            "okta_app_modified_or_deleted",
            vec![
                app("application.lifecycle.update", None),
                app("application.lifecycle.deactivate", None),
                app("application.lifecycle.delete", None),
            ],
            vec![
                app("application.lifecycle.create", None),
                app("application.lifecycle.activate", None),
            ],
        ),
        (
            "okta_mfa_factor_suspended",
            vec![acted(
                "user.mfa.factor.suspend",
                "admin@example.com",
                user_target("a@example.com"),
            )],
            vec![acted(
                "user.mfa.factor.unsuspend",
                "admin@example.com",
                user_target("a@example.com"),
            )],
        ),
        (
            "okta_account_lock_limit",
            vec![typed("user.account.lock.limit")],
            vec![sample("14_user.account.lock"), typed("user.account.unlock")],
        ),
        (
            "okta_rate_limit_violation",
            vec![
                sample("02_system.operation.rate_limit.violation"),
                sample("05_core.concurrency.org.limit.violation"),
                typed("system.org.rate_limit.violation"),
                typed("system.client.rate_limit.violation"),
                typed("system.client.concurrency_rate_limit.violation"),
                typed("application.integration.rate_limit_exceeded"),
            ],
            vec![
                typed("system.org.rate_limit.warning"),
                typed("system.operation.rate_limit.notification"),
            ],
        ),
        (
            "okta_mfa_via_anonymizing_proxy",
            vec![
                mfa.clone(),
                set(
                    set(
                        sample("13_user.authentication.verify"),
                        "securityContext.isProxy",
                        json!("True"),
                    ),
                    "outcome.result",
                    json!("SUCCESS"),
                ),
            ],
            vec![
                sample("16_user.authentication.auth_via_mfa"),
                set(mfa.clone(), "outcome.result", json!("FAILURE")),
                set(mfa.clone(), "securityContext.isProxy", json!(false)),
                set(mfa.clone(), "eventType", json!("user.authentication.sso")),
            ],
        ),
    ];
    for (rule, firing, quiet) in cases {
        for (i, e) in firing.into_iter().enumerate() {
            let ev = one(e).await;
            assert!(fired(&ev, rule), "{rule}: firing case {i}: {ev:?}");
        }
        for (i, e) in quiet.into_iter().enumerate() {
            let ev = one(e).await;
            assert!(!matched(&ev, rule), "{rule}: quiet case {i}: {ev:?}");
        }
    }
    // Severities the issue asks for: IdP creation high, other IdP changes medium.
    let set_ = rules();
    assert_eq!(
        set_.get("okta_idp_created").unwrap().severity,
        Severity::High
    );
    assert_eq!(
        set_.get("okta_idp_changed").unwrap().severity,
        Severity::Medium
    );
}

#[tokio::test]
async fn unauthorized_app_access_fires_on_the_fifth_attempt_within_thirty_minutes() {
    let attempt = acted(
        "app.generic.unauth_app_access_attempt",
        "eve@example.com",
        json!([{"id": "0oa1", "type": "AppInstance", "alternateId": "Payroll"}]),
    );
    // Five within 30 minutes: fires on the fifth.
    let evs = run(&series(5, "ua", |_| attempt.clone(), |i| i as i64 * 420)).await;
    assert!(never(&evs[..4], "okta_unauthorized_app_access"));
    let f = firing(&evs[4], "okta_unauthorized_app_access");
    assert_eq!((f.count, f.group_key.as_str()), (5, "eve@example.com"));
    // Five over 40 minutes: the first has left the window when the fifth comes.
    let evs = run(&series(5, "ub", |_| attempt.clone(), |i| i as i64 * 600)).await;
    assert!(never(&evs, "okta_unauthorized_app_access"));
    // Five by five different users: nobody tried five times.
    let evs = run(&series(
        5,
        "uc",
        |i| {
            set(
                attempt.clone(),
                "actor.alternateId",
                json!(format!("u{i}@example.com")),
            )
        },
        |i| i as i64,
    ))
    .await;
    assert!(never(&evs, "okta_unauthorized_app_access"));
}

#[tokio::test]
async fn a_user_created_then_made_admin_within_a_day_is_a_new_admin() {
    let created = acted(
        "user.lifecycle.create",
        "admin@example.com",
        user_target("new@example.com"),
    );
    let granted = acted(
        "user.account.privilege.grant",
        "admin@example.com",
        user_target("new@example.com"),
    );
    let other = acted(
        "user.account.privilege.grant",
        "admin@example.com",
        user_target("old@example.com"),
    );
    let evs = run(&[
        at(&created, "c1", 0),
        at(&other, "g0", 60),
        at(&granted, "g1", 3600),
    ])
    .await;
    assert!(fired(&evs[0], "okta_user_created"));
    assert_eq!(firing(&evs[0], "okta_user_created").severity, Severity::Low);
    assert!(
        !fired(&evs[1], "okta_new_admin_created"),
        "old@ was not just created"
    );
    assert!(fired(&evs[1], "okta_admin_role_granted"));
    let f = firing(&evs[2], "okta_new_admin_created");
    assert_eq!(
        (f.severity, f.group_key.as_str()),
        (Severity::High, "00u-new@example.com")
    );
    // More than a day later, the grant is an ordinary one.
    let evs = run(&[at(&created, "c2", 0), at(&granted, "g2", 86_400 + 60)]).await;
    assert!(!fired(&evs[1], "okta_new_admin_created") && fired(&evs[1], "okta_admin_role_granted"));
}

#[tokio::test]
async fn blocked_countries_come_from_config() {
    let signin = sample("06_user.session.start"); // Canada
    let load = |countries: &[&str]| {
        RuleSet::load(&RulesSettings {
            blocked_countries: countries.iter().map(|c| (*c).to_owned()).collect(),
            ..Default::default()
        })
        .unwrap()
    };
    assert!(
        rules().get("okta_blocked_country").is_none(),
        "off without a list"
    );
    let set_ = load(&["North Korea", "canada"]);
    let w = MemoryWindows::default();
    let ev = set_.evaluate(&signin, &w).await.unwrap();
    assert!(fired(&ev, "okta_blocked_country"), "{ev:?}");
    let ev = set_
        .evaluate(&sample("13_user.authentication.verify"), &w)
        .await
        .unwrap();
    assert!(!fired(&ev, "okta_blocked_country"), "{ev:?}");
    let ev = set_
        .evaluate(
            &set(
                typed("user.account.lock"),
                "client.geographicalContext.country",
                json!("Canada"),
            ),
            &w,
        )
        .await
        .unwrap();
    assert!(!matched(&ev, "okta_blocked_country"), "not a sign-in");
    let ev = load(&["North Korea"]).evaluate(&signin, &w).await.unwrap();
    assert!(!fired(&ev, "okta_blocked_country"));
}

#[tokio::test]
async fn the_ip_deny_list_matches_client_ips_and_is_reloaded_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("deny.txt");
    std::fs::write(&list, "# threat intel\n203.0.113.0/24\n").unwrap();
    let set_ = RuleSet::load(&RulesSettings {
        ip_denylist: Some(list.clone()),
        ..Default::default()
    })
    .unwrap();
    let w = MemoryWindows::default();
    let from = |ip: &str| {
        set(
            sample("14_user.account.lock"),
            "client.ipAddress",
            json!(ip),
        )
    };
    let ev = set_.evaluate(&from("203.0.113.77"), &w).await.unwrap();
    let f = firing(&ev, "okta_denylisted_ip");
    assert_eq!(
        (f.severity, f.group_key.as_str()),
        (Severity::High, "203.0.113.77")
    );
    assert!(!fired(
        &set_.evaluate(&from("198.51.100.1"), &w).await.unwrap(),
        "okta_denylisted_ip"
    ));
    // The feed changes: the new network matches within a few seconds, without a restart.
    std::fs::write(&list, "203.0.113.0/24\n198.51.100.0/24 # added\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if fired(
            &set_.evaluate(&from("198.51.100.1"), &w).await.unwrap(),
            "okta_denylisted_ip",
        ) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the changed list was not re-read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A missing file is a config error naming the key.
    let err = RuleSet::load(&RulesSettings {
        ip_denylist: Some(dir.path().join("nope.txt")),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("rules.ip_denylist: `") && err.contains("nope.txt`: cannot read it"),
        "{err}"
    );
}

#[tokio::test]
async fn a_session_replayed_from_another_network_and_client_is_critical() {
    // The real SSO sample, then the same session from elsewhere (memory state; the Redis
    // state has its own test in redis_windows.rs).
    let owner = at(&sample("13_user.authentication.verify"), "own", 0);
    let mut thief = at(&owner, "thief", 600);
    thief = set(thief, "securityContext.asNumber", json!(9009));
    thief = set(
        thief,
        "client.geographicalContext.country",
        json!("Romania"),
    );
    thief = set(
        thief,
        "client.userAgent.rawUserAgent",
        json!("python-requests/2.32.3"),
    );
    let same_browser_elsewhere = set(
        set(
            at(&owner, "trip", 300),
            "securityContext.asNumber",
            json!(9009),
        ),
        "client.geographicalContext.country",
        json!("Romania"),
    );
    let evs = run(&[owner.clone(), same_browser_elsewhere, thief]).await;
    assert!(matched(&evs[0], "okta_stolen_session") && !fired(&evs[0], "okta_stolen_session"));
    assert!(
        !fired(&evs[1], "okta_stolen_session"),
        "same client: travel, not theft"
    );
    let f = firing(&evs[2], "okta_stolen_session");
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.window_uuids, ["own", "thief"]);
    assert_eq!(f.first_seen, evs[0].published);
    // Okta's `unknown` (sample 17) and no session or device id at all: nothing is tracked.
    assert!(!matched(
        &one(sample("17_user.authentication.sso")).await,
        "okta_stolen_session"
    ));
    let mut bare = owner;
    bare["authenticationContext"] = json!({});
    bare["debugContext"] = json!({});
    assert!(!matched(&one(bare).await, "okta_stolen_session"));
}
