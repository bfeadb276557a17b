//! `vigil rules list` and `vigil rules test FILE` as an operator runs them: the real binary,
//! a config.toml with tuned and custom rules, files of real sample events in both formats.

mod support;

use serde_json::{Value, json};
use support::{NO_ENV, text, vigil};

/// A real sample event with its uuid, time and given fields replaced.
fn sample(prefix: &str, uuid: &str, minute: u32, edit: impl FnOnce(&mut Value)) -> Value {
    let (_, raw) = vigil_testkit::fake_okta::FakeOkta::sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix))
        .expect("sample");
    let mut v: Value = serde_json::from_str(&raw).unwrap();
    v["uuid"] = json!(uuid);
    v["published"] = json!(format!("2026-11-22T10:{minute:02}:00.000Z"));
    edit(&mut v);
    v
}

fn lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[test]
fn list_shows_builtin_rules_with_config_changes_and_custom_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        r#"
[rules.builtin.okta_idp_signin]
enabled = false
[rules.builtin.okta_brute_force_ip]
threshold = { count = 30 }

[[rules.custom]]
id = "acme_admin_from_vpn"
title = "Admin console from the VPN range"
severity = "medium"
match = [{ event_types = ["user.session.access_admin_app"], conditions = [{ field = "client.ipAddress", starts_with = "10.8." }] }]
"#,
    )
    .unwrap();
    let out = vigil(dir.path(), &["rules", "list"], NO_ENV);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let row = |id: &str| {
        t.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} missing: {t}"))
            .to_owned()
    };
    assert!(
        row("okta_brute_force_ip").contains("30 in 1h by client.ipAddress"),
        "{t}"
    );
    assert!(row("okta_mfa_push_bombing").contains("5 in 10m by actor.id"));
    assert!(row("acme_admin_from_vpn").contains("medium"));
    assert!(!t.lines().any(|l| l.starts_with("okta_idp_signin ")), "{t}");
    assert!(t.contains("disabled in config: okta_idp_signin"), "{t}");
}

#[test]
fn test_prints_one_line_per_event_and_threshold_rules_fire_on_the_twentieth_failure() {
    let dir = tempfile::tempdir().unwrap();
    // 20 failed sign-ins from one IP (a real session.start sample, outcome flipped), one
    // minute apart, then a success; JSON lines.
    let mut events: Vec<Value> = (0..20)
        .map(|i| {
            sample("06_user.session.start", &format!("fail-{i}"), i, |v| {
                v["outcome"] = json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"});
                v["client"]["ipAddress"] = json!("203.0.113.7");
            })
        })
        .collect();
    events.push(sample("06_user.session.start", "ok-1", 21, |v| {
        v["client"]["ipAddress"] = json!("203.0.113.7");
    }));
    let jsonl: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(dir.path().join("events.jsonl"), jsonl).unwrap();

    let out = vigil(dir.path(), &["rules", "test", "events.jsonl"], NO_ENV);
    assert!(out.status.success(), "{}", text(&out));
    let got = lines(&out);
    assert_eq!(got.len(), 21);
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    for (i, (line, text)) in got.iter().zip(raw.lines()).enumerate() {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3, "{text}");
        let (u, m, a) = (
            text.find("\"uuid\"").unwrap(),
            text.find("\"matches\"").unwrap(),
            text.find("\"alerts\"").unwrap(),
        );
        assert!(u < m && m < a, "the documented field order: {text}");
        assert_eq!(line["uuid"], events[i]["uuid"]);
    }
    assert!(
        got[0]["matches"]
            .as_array()
            .unwrap()
            .contains(&json!("okta_brute_force_ip"))
    );
    assert!(
        !got[18]["alerts"]
            .as_array()
            .unwrap()
            .contains(&json!("okta_brute_force_ip")),
        "19 is below the threshold"
    );
    assert!(
        got[19]["alerts"]
            .as_array()
            .unwrap()
            .contains(&json!("okta_brute_force_ip")),
        "the 20th fires: {}",
        got[19]
    );
    // A success is no failure (it passes the match of the rules about successes: no push
    // bombing before it, one country: no alert).
    assert_eq!(
        got[20]["matches"],
        json!(["okta_mfa_push_bombing_accepted", "okta_impossible_travel"])
    );
    assert_eq!(got[20]["alerts"], json!([]));

    // The same events as a JSON array: the same answers (fresh state each run).
    std::fs::write(
        dir.path().join("events.json"),
        serde_json::to_string_pretty(&events).unwrap(),
    )
    .unwrap();
    let again = vigil(dir.path(), &["rules", "test", "events.json"], NO_ENV);
    assert_eq!(lines(&again), got);
}

#[test]
fn test_uses_each_events_time_so_a_window_can_run_out() {
    let dir = tempfile::tempdir().unwrap();
    // Sign-ins of one user from two countries: 20 minutes apart fires, 40 does not.
    let signin = |uuid: &str, minute: u32, country: &str| {
        sample("06_user.session.start", uuid, minute, |v| {
            v["client"]["geographicalContext"]["country"] = json!(country);
        })
    };
    let near = [
        signin("a1", 0, "United States"),
        signin("a2", 20, "Romania"),
    ];
    let far = [
        signin("b1", 0, "United States"),
        signin("b2", 40, "Romania"),
    ];
    for (events, fires) in [(&near, true), (&far, false)] {
        std::fs::write(
            dir.path().join("e.json"),
            serde_json::to_string(events).unwrap(),
        )
        .unwrap();
        let out = vigil(dir.path(), &["rules", "test", "e.json"], NO_ENV);
        let got = lines(&out);
        assert_eq!(
            got[1]["alerts"]
                .as_array()
                .unwrap()
                .contains(&json!("okta_impossible_travel")),
            fires,
            "{got:?}"
        );
    }
}

#[test]
fn bad_rules_and_bad_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[[rules.custom]]\nid = \"acme_x\"\ntitle = \"X\"\nseverity = \"low\"\nmatch = [{ conditions = [{ field = \"outcome.result\" }] }]\n",
    )
    .unwrap();
    let out = vigil(dir.path(), &["rules", "list"], NO_ENV);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("config.toml"), "names the file: {t}");
    assert!(
        t.contains("rule `acme_x`: match[0].conditions[0]: needs one operator"),
        "{t}"
    );

    let ok = tempfile::tempdir().unwrap();
    std::fs::write(ok.path().join("bad.jsonl"), "{\"uuid\": \"a\"}\nnot json\n").unwrap();
    let out = vigil(ok.path(), &["rules", "test", "bad.jsonl"], NO_ENV);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("bad.jsonl line 2: not a JSON event"),
        "{}",
        text(&out)
    );
    std::fs::write(
        ok.path().join("noclock.jsonl"),
        "{\"uuid\": \"a\", \"published\": \"2026-11-22T10:00:00.000Z\"}\n{\"uuid\": \"b\", \"published\": \"yesterday\"}\n",
    )
    .unwrap();
    let out = vigil(ok.path(), &["rules", "test", "noclock.jsonl"], NO_ENV);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("noclock.jsonl event 2: `published` is missing or not an RFC 3339 time (got \"yesterday\")"),
        "{}",
        text(&out)
    );
    let out = vigil(ok.path(), &["rules", "test", "missing.json"], NO_ENV);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("cannot read missing.json"),
        "{}",
        text(&out)
    );
}

#[test]
fn escalation_policies_are_checked_at_start_and_the_webhook_secret_never_prints() {
    let dir = tempfile::tempdir().unwrap();
    let policy = |email: &str| {
        format!(
            "[escalation]\nwebhook_secret = \"hunter2-webhook\"\n[[escalation.policies]]\nname = \"soc\"\nseverities = [\"high\"]\nlevels = [{{ after_seconds = 0, emails = [\"{email}\"], webhooks = [\"https://hooks.example.com/x\"] }}]\n"
        )
    };
    std::fs::write(dir.path().join("config.toml"), policy("not-an-address")).unwrap();
    let out = vigil(dir.path(), &["check-config"], NO_ENV);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("`escalation` (file config.toml): policies[0].levels[0].emails[0]"),
        "{}",
        text(&out)
    );

    let unknown_rule = policy("soc@example.com").replace(
        "severities = [\"high\"]",
        "severities = [\"high\"]\nrules = [\"okta_brute_force_ipp\"]",
    );
    std::fs::write(dir.path().join("config.toml"), unknown_rule).unwrap();
    let out = vigil(dir.path(), &["check-config"], NO_ENV);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("`escalation.policies[0].rules` (file config.toml): `okta_brute_force_ipp` is not a rule"),
        "{}",
        text(&out)
    );

    std::fs::write(dir.path().join("config.toml"), policy("soc@example.com")).unwrap();
    let out = vigil(dir.path(), &["check-config"], support::WITH_SECRET);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("hunter2-webhook"), "the secret leaked: {t}");
    assert!(t.contains("webhook_secret = \"[redacted]\""), "{t}");
}

#[test]
fn rules_and_keygen_need_only_their_own_sections() {
    let dir = tempfile::tempdir().unwrap();
    // A broken section the commands below do not use.
    std::fs::write(
        dir.path().join("config.toml"),
        "[database]\nmax_connections = \"ten\"\n[rules.builtin.okta_brute_force_ip]\nenabled = false\n",
    )
    .unwrap();
    let out = vigil(dir.path(), &["rules", "list"], NO_ENV);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("disabled in config: okta_brute_force_ip"),
        "{}",
        text(&out)
    );
    let out = vigil(dir.path(), &["okta", "keygen", "--out", "k.pem"], NO_ENV);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("k.pem").exists());
    // Commands that need the whole configuration still refuse it, naming the key.
    let out = vigil(dir.path(), &["migrate"], NO_ENV);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("database.max_connections"),
        "{}",
        text(&out)
    );
}
