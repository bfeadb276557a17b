//! Sigma rules loaded natively: every modifier and condition form on Okta events, field
//! names as Sigma writes them, refusals that name file, rule and construct, a folder with
//! bad rules, and Sigma rules firing (and counting, with a config threshold) like built-in
//! ones. Every rule here was written for these tests (`tests/sigma/okta/`).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vigil_rules::settings::SigmaOverride;
use vigil_rules::sigma::{self, SigmaRule};
use vigil_rules::{MemoryWindows, RuleSet, RuleSource, RulesSettings, Severity};
use vigil_testkit::fake_okta::FakeOkta;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigma/okta")
}

fn sample(prefix: &str) -> Value {
    let (_, text) = FakeOkta::sample_events()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix}"));
    serde_json::from_str(&text).unwrap()
}

/// A Sigma rule for Okta around `detection` (YAML, indented by two spaces).
fn rule(detection: &str) -> Result<SigmaRule, vigil_rules::SigmaProblem> {
    let text = format!(
        "title: Test rule\nid: c2c32007-e8b8-4091-bfa0-b72d2ad4bfd7\nlogsource:\n  product: okta\n  service: okta\ndetection:\n{detection}\nlevel: medium\n"
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    sigma::parse_rule(Path::new("inline.yml"), "document 1", &doc)
}

/// Whether the rule with `detection` matches `event`.
#[track_caller]
fn hits(detection: &str, event: &Value) -> bool {
    let r = rule(detection).unwrap_or_else(|p| panic!("{p}"));
    r.expr.eval(event)
}

// ------------------------------------------------------------------- modifiers ------------

#[test]
fn every_modifier_matches_what_it_should_and_nothing_else() {
    let signin = sample("06_user.session.start");
    let verify = sample("13_user.authentication.verify");
    let amazon = sample("12_user.session.start"); // securityContext.asNumber 14618
    let with = |mut e: Value, path: &[&str], v: Value| {
        let mut at = &mut e;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = v;
        e
    };
    // (detection, events it matches, events it does not)
    let cases: Vec<(&str, Vec<Value>, Vec<Value>)> = vec![
        // plain value: whole text, ignoring case
        (
            "  s:\n    eventtype: USER.SESSION.START\n  condition: s",
            vec![signin.clone()],
            vec![
                verify.clone(),
                with(
                    signin.clone(),
                    &["eventType"],
                    json!("user.session.start.x"),
                ),
            ],
        ),
        // wildcards in a plain value
        (
            "  s:\n    eventType: 'user.*.st?rt'\n  condition: s",
            vec![signin.clone()],
            vec![verify.clone()],
        ),
        // contains / startswith / endswith
        (
            "  s:\n    displayMessage|contains: 'LOGIN TO'\n  condition: s",
            vec![signin.clone()],
            vec![verify.clone()],
        ),
        (
            "  s:\n    eventType|startswith: 'user.authentication.'\n  condition: s",
            vec![verify.clone()],
            vec![signin.clone()],
        ),
        (
            "  s:\n    debugContext.debugData.requestUri|endswith: '/verify'\n  condition: s",
            vec![verify.clone()],
            vec![signin.clone()],
        ),
        // a list is any of its values; `all` needs every one
        (
            "  s:\n    debugContext.debugData.behaviors|contains:\n      - 'New IP=POSITIVE'\n      - 'New City=NEGATIVE'\n  condition: s",
            vec![verify.clone()],
            vec![signin.clone()],
        ),
        (
            "  s:\n    debugContext.debugData.behaviors|contains|all:\n      - 'New IP=NEGATIVE'\n      - 'New City=NEGATIVE'\n  condition: s",
            vec![verify.clone()],
            vec![with(
                verify.clone(),
                &["debugContext", "debugData", "behaviors"],
                json!("{New IP=NEGATIVE, New City=POSITIVE}"),
            )],
        ),
        // re: case matters unless `i`
        (
            "  s:\n    client.userAgent.rawUserAgent|re: '^curl/[0-9.]+$'\n  condition: s",
            vec![with(
                signin.clone(),
                &["client", "userAgent", "rawUserAgent"],
                json!("curl/8.4.0"),
            )],
            vec![
                signin.clone(),
                with(
                    signin.clone(),
                    &["client", "userAgent", "rawUserAgent"],
                    json!("CURL/8.4.0"),
                ),
            ],
        ),
        (
            "  s:\n    client.userAgent.rawUserAgent|re|i: '^curl/'\n  condition: s",
            vec![with(
                signin.clone(),
                &["client", "userAgent", "rawUserAgent"],
                json!("CURL/8.4.0"),
            )],
            vec![signin.clone()],
        ),
        // cidr, v4 and v6
        (
            "  s:\n    client.ipAddress|cidr:\n      - 198.51.100.0/24\n      - 2001:db8::/32\n  condition: s",
            vec![
                with(
                    signin.clone(),
                    &["client", "ipAddress"],
                    json!("198.51.100.77"),
                ),
                with(
                    signin.clone(),
                    &["client", "ipAddress"],
                    json!("2001:db8::5"),
                ),
            ],
            vec![
                with(
                    signin.clone(),
                    &["client", "ipAddress"],
                    json!("198.51.101.1"),
                ),
                with(signin.clone(), &["client", "ipAddress"], json!("not an ip")),
            ],
        ),
        // exists, and `null` for absent
        (
            "  s:\n    authenticationContext.externalSessionId|exists: true\n  condition: s",
            vec![verify.clone()],
            vec![with(
                verify.clone(),
                &["authenticationContext", "externalSessionId"],
                Value::Null,
            )],
        ),
        (
            "  s:\n    debugContext.debugData.behaviors|exists: false\n  condition: s",
            vec![signin.clone()],
            vec![verify.clone()],
        ),
        (
            "  s:\n    outcome.reason: null\n  condition: s",
            vec![signin.clone()],
            vec![with(
                signin.clone(),
                &["outcome", "reason"],
                json!("INVALID_CREDENTIALS"),
            )],
        ),
        // base64: the value as it appears encoded ("admin" → YWRtaW4=)
        (
            "  s:\n    debugContext.debugData.url|base64|contains: 'admin'\n  condition: s",
            vec![with(
                signin.clone(),
                &["debugContext", "debugData", "url"],
                json!("/x?state=YWRtaW4=&y"),
            )],
            vec![with(
                signin.clone(),
                &["debugContext", "debugData", "url"],
                json!("/x?state=admin"),
            )],
        ),
        // base64offset: at any of the three offsets inside a longer encoded text
        (
            "  s:\n    debugContext.debugData.url|base64offset|contains: 'admin'\n  condition: s",
            ["admin", "xadmin", "xxadmin", "xxxadmin=1"]
                .iter()
                .map(|plain| {
                    use base64::Engine as _;
                    let enc = base64::engine::general_purpose::STANDARD.encode(plain);
                    with(
                        signin.clone(),
                        &["debugContext", "debugData", "url"],
                        json!(format!("/x?s={enc}")),
                    )
                })
                .collect(),
            vec![with(
                signin.clone(),
                &["debugContext", "debugData", "url"],
                json!("/x?s=YWRtMW4="),
            )], // "adm1n"
        ),
        // cased
        (
            "  s:\n    outcome.result|cased: SUCCESS\n  condition: s",
            vec![signin.clone()],
            vec![with(
                signin.clone(),
                &["outcome", "result"],
                json!("success"),
            )],
        ),
        // numbers
        (
            "  s:\n    securityContext.asNumber|gte: 14618\n  condition: s",
            vec![amazon.clone()],
            vec![
                with(amazon.clone(), &["securityContext", "asNumber"], json!(100)),
                signin.clone(),
            ],
        ),
        (
            "  s:\n    securityContext.asNumber|lt: 14618\n  condition: s",
            vec![with(
                amazon.clone(),
                &["securityContext", "asNumber"],
                json!(100),
            )],
            vec![amazon.clone(), signin.clone()],
        ),
        // keywords: anywhere in the event
        (
            "  keywords:\n    - 'amazon data'\n    - 'nothing-like-this'\n  condition: keywords",
            vec![sample("12_user.session.start")],
            vec![verify.clone()],
        ),
        // a list of maps: any of them
        (
            "  s:\n    - eventtype: user.authentication.verify\n    - eventtype: user.session.start\n      outcome.result: FAILURE\n  condition: s",
            vec![
                verify.clone(),
                with(signin.clone(), &["outcome", "result"], json!("FAILURE")),
            ],
            vec![signin.clone()],
        ),
    ];
    for (detection, yes, no) in cases {
        for e in &yes {
            assert!(hits(detection, e), "should match:\n{detection}\n{e}");
        }
        for e in &no {
            assert!(!hits(detection, e), "should not match:\n{detection}\n{e}");
        }
    }
}

#[test]
fn field_names_resolve_ignoring_case_and_through_arrays() {
    let signin = sample("06_user.session.start");
    // As Sigma's Okta rules spell them: all lower-case, or camelCase.
    assert!(hits(
        "  s:\n    eventtype: user.session.start\n    displaymessage: 'User login to Okta'\n    debugcontext.debugdata.requesturi|contains: '/'\n  condition: s",
        &signin
    ));
    // `target` is an array: any element's value counts.
    let grant = json!({"eventType": "user.account.privilege.grant", "target": [
        {"type": "User", "alternateId": "victim@example.com"},
        {"type": "Role", "alternateId": "SUPER_ADMIN", "displayName": "Super administrator"}]});
    assert!(hits(
        "  s:\n    target.alternateId: victim@example.com\n  condition: s",
        &grant
    ));
    assert!(hits(
        "  s:\n    target.displayname|contains: 'super admin'\n  condition: s",
        &grant
    ));
    assert!(!hits(
        "  s:\n    target.alternateId: other@example.com\n  condition: s",
        &grant
    ));
    // A data-lake export with lower-case top-level keys reads the same.
    let lower: serde_json::Map<String, Value> = signin
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    assert!(hits(
        "  s:\n    eventType: user.session.start\n    debugContext.debugData.requestUri|exists: true\n  condition: s",
        &Value::Object(lower)
    ));
}

// ------------------------------------------------------------------ conditions ------------

#[test]
fn every_condition_form() {
    let sels = "  sel_user:\n    actor.alternateId|endswith: '@example.com'\n  sel_fail:\n    outcome.result: FAILURE\n  sel_type:\n    eventType: user.session.start\n  _helper:\n    client.zone: Office\n  filter:\n    client.ipAddress|cidr: 10.0.0.0/8\n";
    let event = |user: &str, result: &str, ip: &str| {
        json!({"eventType": "user.session.start", "actor": {"alternateId": user},
               "outcome": {"result": result}, "client": {"ipAddress": ip, "zone": "null"}})
    };
    let bad = event("eve@example.com", "FAILURE", "203.0.113.5");
    let ok = event("eve@example.com", "SUCCESS", "203.0.113.5");
    let internal = event("eve@example.com", "FAILURE", "10.1.2.3");
    let other = event("eve@other.org", "SUCCESS", "203.0.113.5");
    let cases: Vec<(&str, Vec<&Value>, Vec<&Value>)> = vec![
        (
            "sel_user and sel_fail",
            vec![&bad, &internal],
            vec![&ok, &other],
        ),
        ("sel_fail or sel_user", vec![&bad, &ok], vec![&other]),
        ("sel_fail and not filter", vec![&bad], vec![&internal, &ok]),
        (
            "not (sel_fail or filter)",
            vec![&ok, &other],
            vec![&bad, &internal],
        ),
        (
            "(sel_user or sel_fail) and not filter",
            vec![&bad, &ok],
            vec![&internal, &other],
        ),
        ("1 of sel_*", vec![&bad, &ok, &other], vec![]),
        (
            "all of sel_* and not filter",
            vec![&bad],
            vec![&ok, &internal],
        ),
        ("all of sel_*", vec![&bad, &internal], vec![&ok]),
        ("1 of them", vec![&other], vec![]),
        // `them` leaves out `_helper` (no event is in zone Office, so `all of them` would fail)
        ("all of them", vec![&internal], vec![&bad]),
        ("any of *_fail", vec![&bad], vec![&ok]),
        ("all of sel_u* and all of sel_f*", vec![&bad], vec![&other]),
    ];
    for (condition, yes, no) in cases {
        let detection = format!("{sels}  condition: {condition}");
        for e in yes {
            assert!(hits(&detection, e), "`{condition}` should match {e}");
        }
        for e in no {
            assert!(!hits(&detection, e), "`{condition}` should not match {e}");
        }
    }
    // A list of conditions: any of them.
    let detection = format!("{sels}  condition:\n    - sel_fail and filter\n    - not sel_user");
    assert!(hits(&detection, &internal) && hits(&detection, &other) && !hits(&detection, &bad));
}

// ------------------------------------------------------------------- refusals -------------

#[test]
fn unsupported_and_invalid_constructs_are_refused_by_name() {
    let refused = |detection: &str| rule(detection).unwrap_err().to_string();
    let id = "c2c32007-e8b8-4091-bfa0-b72d2ad4bfd7";
    let msg = refused("  s:\n    eventtype|windash: x\n  condition: s");
    assert!(msg.starts_with(&format!("inline.yml: rule `{id}`: detection.s.eventtype|windash: not supported: modifier `windash`")), "{msg}");
    let msg = refused("  s:\n    eventtype: x\n  condition: s | count() by actor.id > 3");
    assert!(
        msg.contains(
            "detection.condition: `s | count() by actor.id > 3`: not supported: aggregation"
        ),
        "{msg}"
    );
    let msg = refused("  s:\n    eventtype: x\n  timeframe: 5m\n  condition: s");
    assert!(msg.contains("detection.timeframe: not supported"), "{msg}");
    assert!(refused("  s:\n    eventtype: x\n  condition: t").contains("`t` is not a selection"));
    assert!(refused("  s:\n    eventtype: x").contains("detection.condition: is missing"));
    assert!(refused("  s:\n    ip|cidr: 10.0.0.0/40\n  condition: s").contains("prefix length"));
    assert!(refused("  s:\n    ua|re: '(unclosed'\n  condition: s").contains("not a valid regex"));
    assert!(
        refused("  s:\n    ua|re|contains: 'x'\n  condition: s").contains("cannot go together")
    );
    assert!(
        refused("  s:\n    ua|exists: maybe\n  condition: s")
            .contains("`exists` takes true or false")
    );
    assert!(refused("  s:\n    n|gt: many\n  condition: s").contains("is not a number"));
    assert!(
        refused("  s:\n    x|base64offset: a\n  condition: s")
            .contains("`base64offset` needs `contains`")
    );
    assert!(refused("  s: []\n  condition: s").contains("empty list"));
    assert!(
        refused("  s:\n    - a: 1\n    - kw\n  condition: s").contains("mixes maps and values")
    );
}

#[test]
fn a_folder_with_bad_rules_loads_the_good_ones_and_reports_the_rest() {
    let (rules, problems) = sigma::load_paths(&[fixtures()]).unwrap();
    let mut ids: Vec<&str> = rules.iter().map(|r| r.def.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "08157657-fba7-4285-9351-d65206860c37",
            "1bba3aec-3ca1-491b-afde-d79ff7043b8b",
            "7491e581-e3b6-4a5d-b808-f84913df3e8b",
            "bd527844-d2d9-43b7-b986-904003e58d5b",
        ]
    );
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let find = |file: &str| {
        text.iter()
            .find(|t| t.contains(file))
            .unwrap_or_else(|| panic!("no problem for {file}: {text:#?}"))
            .clone()
    };
    assert_eq!(problems.len(), 5, "{text:#?}");
    assert!(
        find("correlation.yml")
            .contains("rule `95500df6-2457-446c-bde2-173ba8ed6e63`: correlation: not supported")
    );
    assert!(
        find("aggregation.yml")
            .contains("rule `d662ce10-691c-4ade-b9f8-c1678ba0487f`: detection.condition:")
    );
    assert!(find("aggregation.yml").contains("aggregation"));
    assert!(find("windash.yml").contains("rule `91ecc755-3212-4f9b-a9d0-1c5c0f6f1ccb`: detection.selection.displaymessage|windash: not supported: modifier `windash`"));
    assert!(find("windows.yml").contains("logsource: not supported: product `windows`"));
    assert!(find("broken.yaml").contains("rule `document 1`: yaml: not valid YAML"));
    // A path that does not exist is a config mistake, not a skipped rule.
    let err = sigma::load_paths(&[fixtures().join("nope")]).unwrap_err();
    assert!(
        err.contains("nope") && err.contains("cannot read it"),
        "{err}"
    );
}

#[test]
fn level_metadata_and_source_are_kept() {
    let settings = RulesSettings {
        sigma: vec![
            fixtures().join("scripted_clients.yml"),
            fixtures().join("admin_console_via_anonymizer.yml"),
        ],
        ..Default::default()
    };
    let set = RuleSet::load(&settings).unwrap();
    assert!(set.problems().is_empty(), "{:?}", set.problems());
    let admin = set.get("bd527844-d2d9-43b7-b986-904003e58d5b").unwrap();
    assert_eq!(admin.severity, Severity::High);
    assert_eq!(
        admin.title,
        "Okta admin console opened through an anonymizer"
    );
    let RuleSource::Sigma(info) = &admin.source else {
        panic!("{:?}", admin.source)
    };
    assert!(info.file.ends_with("admin_console_via_anonymizer.yml"));
    assert_eq!(info.tags, ["attack.initial-access", "attack.t1078.004"]);
    assert_eq!(
        info.falsepositives,
        ["Administrators behind a corporate egress that Okta classifies as a proxy"]
    );
    assert_eq!(info.status.as_deref(), Some("experimental"));
    // informational → low; both documents of a two-rule file load.
    assert_eq!(
        set.get("1bba3aec-3ca1-491b-afde-d79ff7043b8b")
            .unwrap()
            .severity,
        Severity::Low
    );
    assert_eq!(
        set.get("7491e581-e3b6-4a5d-b808-f84913df3e8b")
            .unwrap()
            .severity,
        Severity::Low
    );
    assert_eq!(
        set.get("okta_brute_force_ip").unwrap().source,
        RuleSource::Builtin
    );
}

// ------------------------------------------------------- through the rule set ------------

#[tokio::test]
async fn sigma_rules_fire_like_builtin_ones_and_take_a_threshold_from_config() {
    let admin_id = "bd527844-d2d9-43b7-b986-904003e58d5b";
    let push_id = "1bba3aec-3ca1-491b-afde-d79ff7043b8b";
    let override_push = SigmaOverride {
        group_by: Some(vec!["client.ipAddress".to_owned()]),
        threshold: Some(toml::from_str("window_seconds = 600\ncount = 3").unwrap()),
        severity: Some(Severity::High),
        ..Default::default()
    };
    let settings = RulesSettings {
        sigma: vec![fixtures()],
        sigma_override: [(push_id.to_owned(), override_push)].into(),
        ..Default::default()
    };
    let set = RuleSet::load(&settings).unwrap();
    assert_eq!(set.problems().len(), 5);
    let windows = MemoryWindows::default();

    // No threshold: each match fires, grouped by actor.alternateId.
    let mut admin = sample("06_user.session.start");
    admin["eventType"] = json!("user.session.access_admin_app");
    admin["securityContext"]["isProxy"] = json!("true");
    let ev = set.evaluate(&admin, &windows).await.unwrap();
    let f = ev
        .firings
        .iter()
        .find(|f| f.rule_id == admin_id)
        .expect("fires");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.title, "Okta admin console opened through an anonymizer");
    assert_eq!(f.group_key, admin["actor"]["alternateId"].as_str().unwrap());
    admin["securityContext"]["isProxy"] = json!(false);
    let ev = set.evaluate(&admin, &windows).await.unwrap();
    assert!(!ev.matches.iter().any(|m| m == admin_id));

    // With the threshold from config: the third push within 10 minutes from one IP fires.
    let push = |i: i64, minute: i64| {
        let mut e = sample("21_system.push.send_factor_verify_push");
        e["uuid"] = json!(format!("push-{i}"));
        e["published"] = json!(format!("2026-12-07T10:{minute:02}:00Z"));
        e["debugContext"] =
            json!({"debugData": {"behaviors": "{New Geo-Location=POSITIVE, New Device=NEGATIVE}"}});
        e
    };
    let mut fired = Vec::new();
    for (i, minute) in [(0, 0), (1, 4), (2, 11), (3, 12), (4, 13)] {
        let ev = set.evaluate(&push(i, minute), &windows).await.unwrap();
        assert!(ev.matches.iter().any(|m| m == push_id));
        fired.push(ev.firings.iter().find(|f| f.rule_id == push_id).cloned());
    }
    // 10:00, 10:04, 10:11 (10:00 left the window), 10:12 (3 in 10:02-10:12), 10:13.
    assert!(fired[..3].iter().all(Option::is_none), "{fired:?}");
    let third = fired[3]
        .as_ref()
        .expect("the third within ten minutes fires");
    assert_eq!((third.count, third.severity), (3, Severity::High));
    assert_eq!(third.group_key, "1.2.3.4");
    assert_eq!(third.window_uuids.len(), 3);
}

#[test]
fn config_mistakes_about_sigma_rules_name_the_key() {
    let with = |o: SigmaOverride| RulesSettings {
        sigma: vec![fixtures()],
        sigma_override: [("bd527844-d2d9-43b7-b986-904003e58d5b".to_owned(), o)].into(),
        ..Default::default()
    };
    let err = RuleSet::load(&with(SigmaOverride {
        threshold: Some(toml::from_str("window_seconds = 0").unwrap()),
        ..Default::default()
    }))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("rules.sigma_override.\"bd527844-d2d9-43b7-b986-904003e58d5b\" (threshold.window_seconds): must be between"),
        "{err}"
    );
    // Turned off in config: listed as disabled.
    let set = RuleSet::load(&with(SigmaOverride {
        enabled: Some(false),
        ..Default::default()
    }))
    .unwrap();
    assert!(set.get("bd527844-d2d9-43b7-b986-904003e58d5b").is_none());
    assert_eq!(set.disabled(), ["bd527844-d2d9-43b7-b986-904003e58d5b"]);
    // An override for a rule that is not loaded is reported, not fatal.
    let set = RuleSet::load(&RulesSettings {
        sigma_override: [("nope".to_owned(), SigmaOverride::default())].into(),
        ..Default::default()
    })
    .unwrap();
    assert!(
        set.problems()[0]
            .to_string()
            .contains("rules.sigma_override.\"nope\": no Sigma rule with this id was loaded")
    );
    // A path that does not exist stops the load.
    let err = RuleSet::load(&RulesSettings {
        sigma: vec![PathBuf::from("/nonexistent/sigma")],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("rules.sigma[0]: `/nonexistent/sigma`: cannot read it"),
        "{err}"
    );
    // Two rules with one id: the second is reported.
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(fixtures().join("admin_console_via_anonymizer.yml")).unwrap();
    std::fs::write(dir.path().join("a.yml"), &text).unwrap();
    std::fs::write(dir.path().join("b.yml"), &text).unwrap();
    let set = RuleSet::load(&RulesSettings {
        sigma: vec![dir.path().to_path_buf()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(set.problems().len(), 1);
    assert!(set.problems()[0].to_string().contains(
        "b.yml: rule `bd527844-d2d9-43b7-b986-904003e58d5b`: id: another rule already has this id"
    ));
}
