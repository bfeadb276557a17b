//! Alerts and security events through the API: filters and pages, detail with events and
//! history, transitions with 409 for the invalid ones, roles, audit records, and security
//! events that open alerts (with escalation queued when a policy applies).

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::TestApp;
use poem::http::Method;
use serde_json::{Value, json};
use vigil_jobs::Job as _;
use vigil_jobs::escalation::{EscalationLevel, EscalationPolicy, Since};
use vigil_store::alerts::{self, AlertHit};

fn hit(rule: &str, severity: &str, key: &str, uuid: &str, minute: i64) -> AlertHit {
    AlertHit {
        rule_id: rule.to_owned(),
        title: format!("title of {rule}"),
        description: "what it means".to_owned(),
        severity: severity.to_owned(),
        group_key: key.to_owned(),
        event_uuid: uuid.to_owned(),
        seen_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + Duration::minutes(minute),
        window_uuids: vec![uuid.to_owned()],
        window_count: 1,
        first_seen: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
            + Duration::minutes(minute),
        dedup_window_ms: 3_600_000,
        details: json!({"count": 1}).to_string(),
        escalation: None,
    }
}

/// 3 brute-force alerts (high) and 2 token alerts (medium), each on its own key.
async fn seed(app: &TestApp) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..5 {
        let (rule, sev) = if i < 3 {
            ("okta_brute_force_ip", "high")
        } else {
            ("okta_api_token_created", "medium")
        };
        let h = hit(rule, sev, &format!("10.0.0.{i}"), &format!("ev-{i}"), i);
        ids.push(
            alerts::raise(&app.db.db, &h, Utc::now())
                .await
                .unwrap()
                .alert_id,
        );
    }
    ids
}

#[tokio::test]
async fn analysts_list_alerts_with_filters_and_pages() {
    let app = TestApp::new().await;
    let ids = seed(&app).await;
    let analyst = app.analyst().await;

    app.get("/api/v1/alerts", None).await.expect(401);

    let a = app.get("/api/v1/alerts?page_size=2", Some(&analyst)).await;
    a.expect(200);
    assert_eq!(a.body["count"], 5);
    let got: Vec<i64> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[4], ids[3]], "newest first");
    assert_eq!(a.body["next"], "/api/v1/alerts?page=2&page_size=2");
    assert!(a.body["previous"].is_null());

    let last = app
        .get("/api/v1/alerts?page=3&page_size=2", Some(&analyst))
        .await;
    last.expect(200);
    assert_eq!(last.body["results"].as_array().unwrap().len(), 1);
    assert!(last.body["next"].is_null());
    assert_eq!(last.body["previous"], "/api/v1/alerts?page=2&page_size=2");

    let high = app
        .get("/api/v1/alerts?severity=high", Some(&analyst))
        .await;
    assert_eq!(high.body["count"], 3);
    let by_rule = app
        .get(
            "/api/v1/alerts?rule=okta_api_token_created&status=open",
            Some(&analyst),
        )
        .await;
    assert_eq!(by_rule.body["count"], 2);
    let first = &by_rule.body["results"][0];
    assert_eq!(first["rule_id"], "okta_api_token_created");
    assert_eq!(first["status"], "open");
    assert_eq!(first["severity"], "medium");
    assert_eq!(first["count"], 1);
    assert_eq!(first["group_key"], "10.0.0.4");
    assert_eq!(first["details"], json!({"count": 1}));

    let none = app
        .get("/api/v1/alerts?status=resolved", Some(&analyst))
        .await;
    assert_eq!(none.body["count"], 0);

    // Bad filters are 400 with the error shape, not 500.
    for bad in [
        "/api/v1/alerts?status=closed",
        "/api/v1/alerts?severity=urgent",
        "/api/v1/alerts?page=0",
        "/api/v1/alerts?page_size=501",
    ] {
        let a = app.get(bad, Some(&analyst)).await;
        a.expect(400);
        a.code();
    }
}

#[tokio::test]
async fn alert_detail_shows_events_escalations_and_history() {
    let app = TestApp::new().await;
    let ids = seed(&app).await;
    // A repeat within the window updates the same alert.
    let again = alerts::raise(
        &app.db.db,
        &hit("okta_brute_force_ip", "high", "10.0.0.0", "ev-9", 5),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(again.alert_id, ids[0]);
    let analyst = app.analyst().await;
    let a = app
        .get(&format!("/api/v1/alerts/{}", ids[0]), Some(&analyst))
        .await;
    a.expect(200);
    assert_eq!(a.body["count"], 2);
    let uuids: Vec<&str> = a.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(uuids, ["ev-0", "ev-9"]);
    assert_eq!(
        a.body["events"][0]["kind"], "unknown",
        "the events table has no such event"
    );
    assert_eq!(a.body["escalations"], json!([]));
    assert_eq!(a.body["transitions"], json!([]));

    let missing = app.get("/api/v1/alerts/999999", Some(&analyst)).await;
    missing.expect(404);
    assert_eq!(missing.code(), "not_found");
}

#[tokio::test]
async fn admins_acknowledge_resolve_and_reopen_and_invalid_moves_are_409() {
    let app = TestApp::new().await;
    let ids = seed(&app).await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    let path = format!("/api/v1/alerts/{}", ids[0]);
    let patch = |token: String, body: Value| {
        let path = path.clone();
        let app = &app;
        async move {
            app.call(Method::PATCH, &path, Some(&token), Some(body))
                .await
        }
    };

    let denied = patch(analyst.clone(), json!({"action": "acknowledge"})).await;
    denied.expect(403);
    assert_eq!(denied.code(), "forbidden");

    let bad = patch(admin.clone(), json!({"action": "close"})).await;
    bad.expect(400);
    bad.code();
    patch(admin.clone(), json!({"action": "acknowledge", "extra": 1}))
        .await
        .expect(400);

    let ack = patch(
        admin.clone(),
        json!({"action": "acknowledge", "comment": "on it"}),
    )
    .await;
    ack.expect(200);
    assert_eq!(ack.body["status"], "acknowledged");
    assert_eq!(ack.body["acknowledged_by"], "user:admin");
    assert!(ack.body["acknowledged_at"].is_string());

    let twice = patch(admin.clone(), json!({"action": "acknowledge"})).await;
    twice.expect(409);
    assert_eq!(twice.code(), "conflict");
    assert!(
        twice.body["message"]
            .as_str()
            .unwrap()
            .contains("is acknowledged; acknowledge applies to open alerts"),
        "{}",
        twice.text
    );

    let resolved = patch(
        admin.clone(),
        json!({"action": "resolve", "comment": "blocked the IP"}),
    )
    .await;
    resolved.expect(200);
    assert_eq!(resolved.body["status"], "resolved");
    assert_eq!(resolved.body["resolved_by"], "user:admin");
    patch(admin.clone(), json!({"action": "resolve"}))
        .await
        .expect(409);
    patch(admin.clone(), json!({"action": "acknowledge"}))
        .await
        .expect(409);

    let reopened = patch(
        admin.clone(),
        json!({"action": "reopen", "comment": "it is back"}),
    )
    .await;
    reopened.expect(200);
    assert_eq!(reopened.body["status"], "open");
    assert!(reopened.body["resolved_by"].is_null());

    let missing = app
        .call(
            Method::PATCH,
            "/api/v1/alerts/999999",
            Some(&admin),
            Some(json!({"action": "resolve"})),
        )
        .await;
    missing.expect(404);

    // The history, in order, with actors and comments.
    let detail = app.get(&path, Some(&analyst)).await;
    let history: Vec<(String, String, Value)> = detail.body["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["action"].as_str().unwrap().to_owned(),
                t["actor"].as_str().unwrap().to_owned(),
                t["comment"].clone(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("acknowledge".into(), "user:admin".into(), json!("on it")),
            (
                "resolve".into(),
                "user:admin".into(),
                json!("blocked the IP")
            ),
            ("reopen".into(), "user:admin".into(), json!("it is back")),
        ]
    );

    // /metrics counts alerts by status from the database at each scrape.
    app.call(
        Method::PATCH,
        &format!("/api/v1/alerts/{}", ids[1]),
        Some(&admin),
        Some(json!({"action": "resolve"})),
    )
    .await
    .expect(200);
    let m = app.get("/metrics", None).await;
    for line in [
        "vigil_alerts{status=\"open\"} 4",
        "vigil_alerts{status=\"acknowledged\"} 0",
        "vigil_alerts{status=\"resolved\"} 1",
    ] {
        assert!(m.text.contains(line), "{line} in {}", m.text);
    }

    // Each change is audited with who, what and the request id.
    let audited: Vec<Value> = app
        .audited()
        .await
        .into_iter()
        .filter(|p| p["target_type"] == "alert" && p["target_id"] == ids[0].to_string().as_str())
        .collect();
    let mut actions: Vec<&str> = audited
        .iter()
        .map(|p| p["action"].as_str().unwrap())
        .collect();
    actions.sort_unstable();
    assert_eq!(
        actions,
        ["alert.acknowledge", "alert.reopen", "alert.resolve"]
    );
    for p in &audited {
        assert_eq!(p["actor"], json!({"kind": "user", "id": "admin"}));
        assert_eq!(p["target_id"], ids[0].to_string());
        assert!(p["request_id"].is_string());
    }
}

#[tokio::test]
async fn security_events_are_validated_and_high_ones_open_an_alert_that_escalates() {
    let app = TestApp::with(|s| {
        s.escalation.policies = vec![EscalationPolicy {
            name: "urgent".into(),
            severities: vec!["critical".into()],
            rules: vec![],
            levels: vec![EscalationLevel {
                after_seconds: 0,
                since: Since::Opened,
                emails: vec!["soc@example.com".into()],
                webhooks: vec![],
                channels: vec![],
            }],
            reopen_level: 1,
        }];
    })
    .await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    let event = |severity: i64| {
        json!({"source": "edr", "event_type": "malware.detected", "severity": severity,
               "description": "Cobalt Strike beacon on laptop-42", "details": {"host": "laptop-42"}})
    };

    app.post("/api/v1/events/security", Some(&analyst), event(4))
        .await
        .expect(403);
    for (body, what) in [
        (
            json!({"source": "edr", "event_type": "x", "severity": 5, "description": "d"}),
            "severity",
        ),
        (
            json!({"source": "edr", "event_type": "x", "severity": 0, "description": "d"}),
            "severity",
        ),
        (
            json!({"source": "", "event_type": "x", "severity": 2, "description": "d"}),
            "source",
        ),
        // The required fields are named (never the Rust type's name).
        (
            json!({"source": "edr", "event_type": "x", "severity": 2}),
            "required: source, event_type, severity, description",
        ),
        (
            json!({"source": "edr", "event_type": "x", "severity": 2, "description": "d", "details": [1]}),
            "details",
        ),
        (
            json!({"source": "edr", "event_type": "x", "severity": 2, "description": "d", "colour": 1}),
            "colour",
        ),
    ] {
        let a = app
            .post("/api/v1/events/security", Some(&admin), body.clone())
            .await;
        assert!(
            a.status.as_u16() == 400 || a.status.as_u16() == 422,
            "{body}: {} {}",
            a.status,
            a.text
        );
        a.code();
        assert!(
            a.text.contains(what),
            "{body}: the error names `{what}`: {}",
            a.text
        );
    }

    // Low: stored, no alert.
    let low = app
        .post("/api/v1/events/security", Some(&admin), event(1))
        .await;
    low.expect(201);
    assert!(low.body["alert_id"].is_null());
    assert_eq!(low.body["created_by"], "user:admin");

    // Critical: an alert at once, linked to the event, with its escalation queued.
    let critical = app
        .post("/api/v1/events/security", Some(&admin), event(4))
        .await;
    critical.expect(201);
    let alert_id = critical.body["alert_id"].as_i64().expect("an alert");
    let alert = app
        .get(&format!("/api/v1/alerts/{alert_id}"), Some(&analyst))
        .await;
    alert.expect(200);
    assert_eq!(alert.body["rule_id"], "security_event");
    assert_eq!(alert.body["severity"], "critical");
    assert_eq!(alert.body["status"], "open");
    assert_eq!(alert.body["title"], "edr: malware.detected");
    assert_eq!(alert.body["escalation_policy"], "urgent");
    assert_eq!(alert.body["events"][0]["uuid"], critical.body["uuid"]);
    assert_eq!(alert.body["events"][0]["kind"], "security");
    assert_eq!(
        alert.body["details"]["details"],
        json!({"host": "laptop-42"})
    );

    let runs = app
        .engine
        .list(&vigil_queue::JobFilter {
            queue: Some(vigil_jobs::AlertEscalationJob::QUEUE),
            ..Default::default()
        })
        .await
        .unwrap();
    // One run for the new alert's escalation, and one per event for the detection rules.
    let payloads: Vec<&Value> = runs.jobs.iter().map(|j| &j.payload).collect();
    assert_eq!(
        payloads
            .iter()
            .filter(|p| **p == &json!({"alert_id": alert_id}))
            .count(),
        1,
        "{payloads:?}"
    );
    assert_eq!(
        payloads.iter().filter(|p| **p == &json!({})).count(),
        2,
        "{payloads:?}"
    );

    // High without a matching policy: an alert, nothing to escalate.
    let high = app
        .post("/api/v1/events/security", Some(&admin), event(3))
        .await;
    high.expect(201);
    let high_alert = app
        .get(
            &format!("/api/v1/alerts/{}", high.body["alert_id"]),
            Some(&analyst),
        )
        .await;
    assert_eq!(high_alert.body["severity"], "high");
    assert!(high_alert.body["escalation_policy"].is_null());

    let audited: Vec<String> = app
        .audited()
        .await
        .iter()
        .filter_map(|p| p["action"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        audited
            .iter()
            .filter(|a| *a == "security_event.create")
            .count(),
        3
    );
    assert_eq!(audited.iter().filter(|a| *a == "alert.open").count(), 2);
}
