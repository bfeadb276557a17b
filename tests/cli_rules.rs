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
[rules.behavioural.okta_swa_app_burst]
distinct_apps = 8
window_seconds = 300
[rules.behavioural.okta_unusual_signin_hour]
enabled = false

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
    assert!(
        t.contains("disabled in config: okta_idp_signin, okta_unusual_signin_hour"),
        "{t}"
    );
    // Behavioural rules (SQL over stored events) are listed with their own source.
    let swa = row("okta_swa_app_burst");
    assert!(swa.contains("8 SWA apps in 5m by user"), "{swa}");
    assert!(swa.contains("behavioural"), "{swa}");
    assert!(t.contains("(1 behavioural)"), "{t}");
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
    // bombing before it, one country, its session's first event: no alert).
    assert_eq!(
        got[20]["matches"],
        json!([
            "okta_mfa_push_bombing_accepted",
            "okta_impossible_travel",
            "okta_stolen_session"
        ])
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

/// The Sigma rules written for the rules crate's tests (good ones and refused ones).
fn sigma_fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/tests/sigma/okta")
}

#[test]
fn sigma_rules_from_config_and_the_command_line_are_listed_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    // From config (relative to the config file's folder): one file.
    std::fs::create_dir(dir.path().join("sigma")).unwrap();
    std::fs::copy(
        sigma_fixtures().join("admin_console_via_anonymizer.yml"),
        dir.path().join("sigma/admin.yml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[rules]\nsigma = [\"sigma\"]\n[rules.sigma_override.\"bd527844-d2d9-43b7-b986-904003e58d5b\"]\ngroup_by = [\"client.ipAddress\"]\nthreshold = { window_seconds = 600, count = 2 }\n",
    )
    .unwrap();
    let out = vigil(dir.path(), &["rules", "list"], NO_ENV);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let row = |t: &str, id: &str| {
        t.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} missing: {t}"))
            .to_owned()
    };
    let admin = row(&t, "bd527844-d2d9-43b7-b986-904003e58d5b");
    assert!(admin.contains("2 in 10m by client.ipAddress"), "{admin}");
    assert!(admin.contains("sigma/admin.yml"), "{admin}");
    assert!(
        admin.contains("Okta admin console opened through an anonymizer"),
        "{admin}"
    );
    assert!(row(&t, "okta_brute_force_ip").contains("built-in"), "{t}");
    assert!(
        t.contains("rules active (1 from Sigma files, 2 behavioural)"),
        "{t}"
    );

    // Plus a folder on the command line: its good rules are listed, the bad ones reported.
    let folder = sigma_fixtures();
    let out = vigil(
        dir.path(),
        &["rules", "list", "--sigma", folder.to_str().unwrap()],
        NO_ENV,
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        row(&t, "7491e581-e3b6-4a5d-b808-f84913df3e8b").contains("scripted_clients.yml"),
        "{t}"
    );
    assert!(t.contains("(4 from Sigma files, 2 behavioural)"), "{t}");
    // The same rule id from config and from the folder: the second is reported.
    assert!(
        t.contains("admin_console_via_anonymizer.yml: rule `bd527844-d2d9-43b7-b986-904003e58d5b`: id: another rule already has this id"),
        "{t}"
    );
    assert!(
        t.contains("warning: Sigma rule not loaded:")
            && t.contains("windash.yml: rule `91ecc755-3212-4f9b-a9d0-1c5c0f6f1ccb`"),
        "{t}"
    );
    assert!(t.contains("correlation.yml: rule `95500df6-2457-446c-bde2-173ba8ed6e63`: correlation: not supported"), "{t}");

    // `rules test --sigma`: a Sigma rule matches and fires on a file of events.
    let event = sample("06_user.session.start", "s1", 0, |v| {
        v["eventType"] = json!("system.push.send_factor_verify_push");
        v["debugContext"]["debugData"]["behaviors"] = json!("{New Device=POSITIVE}");
    });
    std::fs::write(dir.path().join("e.jsonl"), format!("{event}\n")).unwrap();
    let file = folder.join("scripted_clients.yml");
    let out = vigil(
        dir.path(),
        &[
            "rules",
            "test",
            "e.jsonl",
            "--sigma",
            file.to_str().unwrap(),
        ],
        NO_ENV,
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = lines(&out);
    assert_eq!(
        got[0]["alerts"],
        json!(["1bba3aec-3ca1-491b-afde-d79ff7043b8b"]),
        "{got:?}"
    );

    // A path that does not exist is an error naming it.
    let out = vigil(dir.path(), &["rules", "list", "--sigma", "nope"], NO_ENV);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`nope`: cannot read it"),
        "{}",
        text(&out)
    );
}

#[test]
fn data_lake_exports_with_lowercase_keys_and_other_time_formats_match() {
    let dir = tempfile::tempdir().unwrap();
    // Twenty failed sign-ins from one IP, re-exported by a data lake: lower-case top-level
    // keys, and `published` as SQL-style UTC text or epoch milliseconds, alternately.
    let events: Vec<Value> = (0..20)
        .map(|i| {
            let v = sample("06_user.session.start", &format!("f{i}"), i, |v| {
                v["outcome"] = json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"});
                v["client"]["ipAddress"] = json!("203.0.113.9");
            });
            let mut lower: serde_json::Map<String, Value> = v
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, x)| (k.to_ascii_lowercase(), x.clone()))
                .collect();
            lower["published"] = if i % 2 == 0 {
                json!(format!("2026-11-22 10:{i:02}:00.000000000"))
            } else {
                json!(1_795_341_600_000_i64 + i64::from(i) * 60_000)
            };
            Value::Object(lower)
        })
        .collect();
    std::fs::write(
        dir.path().join("lake.json"),
        serde_json::to_string(&events).unwrap(),
    )
    .unwrap();
    let out = vigil(dir.path(), &["rules", "test", "lake.json"], NO_ENV);
    assert!(out.status.success(), "{}", text(&out));
    let got = lines(&out);
    assert_eq!(got.len(), 20);
    assert!(
        got[0]["matches"]
            .as_array()
            .unwrap()
            .contains(&json!("okta_brute_force_ip")),
        "{got:?}"
    );
    assert_eq!(got[18]["alerts"], json!([]), "{got:?}");
    assert!(
        got[19]["alerts"]
            .as_array()
            .unwrap()
            .contains(&json!("okta_brute_force_ip")),
        "{got:?}"
    );
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
        text(&out).contains("noclock.jsonl event 2: `published` is missing or unreadable (got \"yesterday\"); rules test uses it as the clock: write it as RFC 3339"),
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
