//! Jobs, queues and schedules routes, per route: success, validation, auth, roles, 404s.

mod common;

use common::TestApp;
use poem::http::Method;
use serde_json::json;
use vigil_jobs::Job as _;
use vigil_store::users::UserRole;

fn email() -> serde_json::Value {
    json!({"payload": {"to": ["soc@example.com"], "subject": "hi", "body": {"text": "hello"}}})
}

#[tokio::test]
async fn enqueue_on_each_queue_returns_202_with_links_and_is_audited() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let bodies = [
        (
            "okta_fetch",
            json!({"payload": {"since": since, "limit": 10}}),
        ),
        ("email", email()),
        (
            "audit",
            json!({"payload": {"event_id": "e-1", "occurred_at": "2026-11-22T10:00:00Z",
            "actor": {"kind": "system"}, "action": "test.event", "target_type": "x", "target_id": "1"}}),
        ),
        (
            "alert_escalation",
            json!({"payload": {"alert_id": 7}, "delay_seconds": 3600}),
        ),
    ];
    for (queue, body) in bodies {
        let a = app
            .post(&format!("/api/v1/jobs/{queue}"), Some(&admin), body)
            .await;
        a.expect(202);
        assert_eq!(a.body["queue"], queue);
        let id = a.body["id"].as_str().unwrap();
        assert_eq!(a.body["links"]["self"], format!("/api/v1/jobs/{id}"));
        let expected = if queue == "alert_escalation" {
            "scheduled"
        } else {
            "pending"
        };
        assert_eq!(a.body["status"], expected, "{queue}");
        let got = app.get(&format!("/api/v1/jobs/{id}"), Some(&admin)).await;
        got.expect(200);
        assert_eq!(got.body["queue"], queue);
        assert_eq!(got.body["status"], expected);
    }
    // Each enqueue (and the sign-in) left an audit job naming the admin.
    let audit = app.audited().await;
    let actions: Vec<String> = audit
        .iter()
        .filter_map(|p| p["action"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "job.enqueue").count(),
        4,
        "{actions:?}"
    );
    assert!(actions.contains(&"auth.login".to_owned()), "{actions:?}");
    let enq = audit.iter().find(|p| p["action"] == "job.enqueue").unwrap();
    assert_eq!(enq["actor"], json!({"kind": "user", "id": "admin"}));
    assert!(enq["request_id"].is_string());
}

#[tokio::test]
async fn enqueue_validates_bodies() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    // Unknown field in the payload, and at the top level: 400 naming it.
    let mut body = email();
    body["payload"]["bcc"] = json!(["x@y.z"]);
    let a = app.post("/api/v1/jobs/email", Some(&admin), body).await;
    a.expect(400);
    assert_eq!(a.code(), "bad_request");
    assert!(
        a.body["message"].as_str().unwrap().contains("bcc"),
        "{}",
        a.text
    );
    let mut body = email();
    body["priority"] = json!(1);
    app.post("/api/v1/jobs/email", Some(&admin), body)
        .await
        .expect(400);
    // Broken JSON: 400, never 500.
    let resp = app
        .client
        .post("/api/v1/jobs/email")
        .header("Authorization", format!("Bearer {admin}"))
        .content_type("application/json")
        .body("{\"payload\": ")
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    a.expect(400);
    assert_eq!(a.code(), "bad_request");
    // A rule of vigil-jobs: 422 naming the field.
    let a = app
        .post(
            "/api/v1/jobs/email",
            Some(&admin),
            json!({"payload": {"to": ["not-an-address"], "subject": "x", "body": {"text": "y"}}}),
        )
        .await;
    a.expect(422);
    assert_eq!(a.code(), "validation_failed");
    assert!(
        a.body["message"].as_str().unwrap().contains("to[0]"),
        "{}",
        a.text
    );
    // run_at and delay_seconds together: 422.
    let mut body = email();
    body["run_at"] = json!("2030-01-01T00:00:00Z");
    body["delay_seconds"] = json!(5);
    app.post("/api/v1/jobs/email", Some(&admin), body)
        .await
        .expect(422);
    // Missing required field: 400.
    app.post(
        "/api/v1/jobs/email",
        Some(&admin),
        json!({"payload": {"subject": "x"}}),
    )
    .await
    .expect(400);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_job() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let send = || async {
        let resp = app
            .client
            .post("/api/v1/jobs/email")
            .header("Authorization", format!("Bearer {admin}"))
            .header("Idempotency-Key", "weekly-report-47")
            .body_json(&email())
            .send()
            .await;
        TestApp::answer(resp).await
    };
    let first = send().await;
    first.expect(202);
    assert_eq!(first.body["duplicate"], false);
    let second = send().await;
    second.expect(202);
    assert_eq!(second.body["duplicate"], true);
    assert_eq!(first.body["id"], second.body["id"]);
}

#[tokio::test]
async fn list_filters_and_pages() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    for _ in 0..3 {
        app.post("/api/v1/jobs/email", Some(&admin), email())
            .await
            .expect(202);
    }
    app.post(
        "/api/v1/jobs/alert_escalation",
        Some(&admin),
        json!({"payload": {}}),
    )
    .await
    .expect(202);
    let analyst = app.analyst().await;
    let a = app
        .get("/api/v1/jobs?queue=email&page_size=2", Some(&analyst))
        .await;
    a.expect(200);
    assert_eq!(a.body["count"], 3);
    assert_eq!(a.body["results"].as_array().unwrap().len(), 2);
    assert!(a.body["next"].as_str().unwrap().contains("page=2"));
    assert!(a.body["previous"].is_null());
    let a = app
        .get(
            "/api/v1/jobs?queue=email&page_size=2&page=2",
            Some(&analyst),
        )
        .await;
    assert_eq!(a.body["results"].as_array().unwrap().len(), 1);
    assert!(a.body["next"].is_null());
    let a = app
        .get(
            "/api/v1/jobs?queue=alert_escalation&status=pending",
            Some(&analyst),
        )
        .await;
    assert_eq!(a.body["count"], 1);
    // Bad parameters: 400 with the error shape.
    for bad in [
        "/api/v1/jobs?queue=emails",
        "/api/v1/jobs?status=complete",
        "/api/v1/jobs?page=0",
        "/api/v1/jobs?page_size=501",
        "/api/v1/jobs?page=x",
    ] {
        let a = app.get(bad, Some(&analyst)).await;
        a.expect(400);
        assert_eq!(a.code(), "bad_request", "{bad}");
    }
}

#[tokio::test]
async fn retry_and_cancel_follow_the_job_state() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let a = app.post("/api/v1/jobs/email", Some(&admin), email()).await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    // A pending job cannot be retried: 409.
    let a = app
        .call(
            Method::POST,
            &format!("/api/v1/jobs/{id}/retry"),
            Some(&admin),
            None,
        )
        .await;
    a.expect(409);
    assert_eq!(a.code(), "conflict");
    // It can be cancelled, once.
    let a = app
        .call(
            Method::POST,
            &format!("/api/v1/jobs/{id}/cancel"),
            Some(&admin),
            None,
        )
        .await;
    a.expect(200);
    assert_eq!(a.body["status"], "cancelled");
    app.call(
        Method::POST,
        &format!("/api/v1/jobs/{id}/cancel"),
        Some(&admin),
        None,
    )
    .await
    .expect(409);
    // Unknown jobs: 404 on every job route.
    for (m, p) in [
        (Method::GET, "/api/v1/jobs/01JUNKNOWN"),
        (Method::POST, "/api/v1/jobs/01JUNKNOWN/retry"),
        (Method::POST, "/api/v1/jobs/01JUNKNOWN/cancel"),
    ] {
        let a = app.call(m, p, Some(&admin), None).await;
        a.expect(404);
        assert_eq!(a.code(), "not_found");
    }
    assert!(
        app.audited()
            .await
            .iter()
            .any(|p| p["action"] == "job.cancel" && p["target_id"] == id.as_str())
    );
}

#[tokio::test]
async fn queues_list_pause_and_resume() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    let a = app
        .call(
            Method::POST,
            "/api/v1/queues/email/pause",
            Some(&admin),
            None,
        )
        .await;
    a.expect(200);
    assert_eq!(a.body, json!({"queue": "email", "paused": true}));
    let a = app.get("/api/v1/queues", Some(&analyst)).await;
    a.expect(200);
    let queues = a.body["results"].as_array().unwrap();
    let names: Vec<&str> = queues
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "alert_escalation",
            "audit",
            "email",
            "notification",
            "okta_fetch"
        ],
        "every registered queue, by name"
    );
    let email = queues.iter().find(|q| q["queue"] == "email").unwrap();
    assert_eq!(email["paused"], true);
    assert!(email["counts"]["pending"].is_u64());
    app.call(
        Method::POST,
        "/api/v1/queues/email/resume",
        Some(&admin),
        None,
    )
    .await
    .expect(200);
    assert!(
        !app.engine
            .is_paused(vigil_jobs::EmailJob::QUEUE)
            .await
            .unwrap()
    );
    app.call(
        Method::POST,
        "/api/v1/queues/nope/pause",
        Some(&admin),
        None,
    )
    .await
    .expect(400);
}

#[tokio::test]
async fn schedules_list_next_runs() {
    let app = TestApp::new().await;
    let analyst = app.analyst().await;
    let a = app.get("/api/v1/schedules", Some(&analyst)).await;
    a.expect(200);
    let list = a.body["results"].as_array().unwrap();
    let okta = list.iter().find(|s| s["name"] == "okta_fetch").unwrap();
    assert_eq!(okta["queue"], "okta_fetch");
    assert_eq!(okta["cron"], "0 * * * * *");
    assert!(okta["next_run"].is_string());
    assert!(okta["last_run"].is_null());
}

#[tokio::test]
async fn every_route_needs_a_token_and_mutations_need_admin() {
    let app = TestApp::new().await;
    let analyst = app.analyst().await;
    let reads = [
        "/api/v1/jobs",
        "/api/v1/jobs/01JX",
        "/api/v1/queues",
        "/api/v1/schedules",
    ];
    let writes: Vec<(&str, serde_json::Value)> = vec![
        ("/api/v1/jobs/okta_fetch", json!({"payload": {}})),
        ("/api/v1/jobs/email", email()),
        (
            "/api/v1/jobs/audit",
            json!({"payload": {"event_id": "e", "occurred_at": "2026-11-22T10:00:00Z", "actor": {"kind": "system"}, "action": "a", "target_type": "t", "target_id": "1"}}),
        ),
        ("/api/v1/jobs/alert_escalation", json!({"payload": {}})),
        ("/api/v1/jobs/01JX/retry", json!({})),
        ("/api/v1/jobs/01JX/cancel", json!({})),
        ("/api/v1/queues/email/pause", json!({})),
        ("/api/v1/queues/email/resume", json!({})),
    ];
    for path in reads {
        let a = app.get(path, None).await;
        a.expect(401);
        assert_eq!(a.code(), "unauthorized", "{path}");
        app.get(path, Some("not.a.token")).await.expect(401);
    }
    for (path, body) in &writes {
        let a = app.post(path, None, body.clone()).await;
        a.expect(401);
        assert_eq!(a.code(), "unauthorized", "{path}");
        let a = app.post(path, Some(&analyst), body.clone()).await;
        a.expect(403);
        assert_eq!(a.code(), "forbidden", "{path}");
    }
    let _ = UserRole::Admin;
}

#[tokio::test]
async fn retrying_a_dead_job_and_pausing_and_resuming_a_queue_are_audited() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let a = app.post("/api/v1/jobs/email", Some(&admin), email()).await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    // A worker takes the job and fails it for good.
    let batch = app
        .engine
        .lease(vigil_jobs::EmailJob::QUEUE, "test-worker", 1)
        .await
        .unwrap();
    let leased = batch.jobs.into_iter().next().expect("the job is leased");
    assert_eq!(leased.id, id);
    app.engine
        .fail(&leased, "550 no such user", true)
        .await
        .unwrap();

    let retried = app
        .call(
            Method::POST,
            &format!("/api/v1/jobs/{id}/retry"),
            Some(&admin),
            None,
        )
        .await;
    retried.expect(200);
    assert_eq!(retried.body["status"], "pending");
    for verb in ["pause", "resume"] {
        app.call(
            Method::POST,
            &format!("/api/v1/queues/email/{verb}"),
            Some(&admin),
            None,
        )
        .await
        .expect(200);
    }

    let audit = app.audited().await;
    let find = |action: &str| {
        audit
            .iter()
            .find(|p| p["action"] == action)
            .unwrap_or_else(|| panic!("no {action} record"))
            .clone()
    };
    let retry = find("job.retry");
    assert_eq!(retry["target_id"], id.as_str());
    assert_eq!(retry["actor"], json!({"kind": "user", "id": "admin"}));
    assert_eq!(retry["details"]["status"], "pending");
    for action in ["queue.pause", "queue.resume"] {
        let r = find(action);
        assert_eq!(r["target_type"], "queue");
        assert_eq!(r["target_id"], "email");
        assert!(r["request_id"].is_string());
    }
}

#[tokio::test]
async fn a_disabled_queue_is_reported_and_refuses_jobs() {
    let app = TestApp::with(|s| {
        s.disabled_queues.insert(
            vigil_jobs::OktaFetchJob::QUEUE,
            "okta.enabled is false".to_owned(),
        );
    })
    .await;
    let token = app.admin().await;
    let a = app
        .post(
            "/api/v1/jobs/okta_fetch",
            Some(&token),
            serde_json::json!({"payload": {}}),
        )
        .await;
    a.expect(409);
    assert_eq!(a.code(), "conflict");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("okta.enabled is false"),
        "{}",
        a.text
    );
    assert!(
        a.body["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{}",
        a.text
    );
    let queues = app.get("/api/v1/queues", Some(&token)).await;
    queues.expect(200);
    for q in queues.body["results"].as_array().unwrap() {
        let off = q["queue"] == "okta_fetch";
        assert_eq!(q["enabled"], !off, "{q}");
        assert_eq!(q["disabled_reason"].is_string(), off, "{q}");
    }
    let schedules = app.get("/api/v1/schedules", Some(&token)).await;
    schedules.expect(200);
    let okta = schedules.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["queue"] == "okta_fetch")
        .expect("the okta_fetch schedule");
    assert_eq!(okta["enabled"], false, "{okta}");
    assert!(okta["next_run"].is_null(), "{okta}");
    assert!(
        okta["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("okta.enabled is false"),
        "{okta}"
    );
}
