//! API keys, the whole life: create (shown once, stored hashed), use as a bearer token and as
//! `X-API-Key`, its own rate budget, allowed queues, last use, revoke, expiry; documented as a
//! second security scheme.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use poem::http::Method;
use serde_json::{Value, json};

async fn with_key(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    header: bool,
) -> common::Answer {
    let mut req = app.client.request(method, path);
    req = if header {
        req.header("X-API-Key", key)
    } else {
        req.header("Authorization", format!("Bearer {key}"))
    };
    if path == "/api/v1/jobs/email" {
        req = req.body_json(
            &json!({"payload": {"to": ["soc@example.com"], "subject": "s",
                                                 "body": {"text": "t"}}}),
        );
    } else if path.starts_with("/api/v1/jobs/") {
        req = req.body_json(&json!({"payload": {}}));
    }
    TestApp::answer(req.send().await).await
}

async fn list(app: &TestApp, admin: &str) -> Vec<Value> {
    let a = app.get("/api/v1/api-keys", Some(admin)).await;
    a.expect(200);
    a.body["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_api_key_from_creation_to_revocation() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let created = app
        .post(
            "/api/v1/api-keys",
            Some(&admin),
            json!({"name": "ci-bot", "role": "admin", "queues": ["alert_escalation"],
                   "rate_per_minute": 4}),
        )
        .await;
    created.expect(201);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("vgk_{id}_")), "{key}");
    assert_eq!(created.body["queues"], json!(["alert_escalation"]));
    // Shown once: the list has no secret, and the database holds only its hash.
    let listed = list(&app, &admin).await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("key").is_none());
    assert!(!serde_json::to_string(&listed).unwrap().contains(&key[21..]));
    let stored: String = sqlx::query_scalar("SELECT secret_sha256 FROM api_keys WHERE id = $1")
        .bind(&id)
        .fetch_one(app.db.db.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 64);
    assert!(!key.contains(&stored));

    // Both ways of sending it work; its queues only; it cannot manage keys (or users).
    let a = with_key(&app, Method::GET, "/api/v1/queues", &key, false).await;
    a.expect(200);
    assert_eq!(a.header("x-ratelimit-limit"), Some("4"));
    with_key(
        &app,
        Method::POST,
        "/api/v1/jobs/alert_escalation",
        &key,
        true,
    )
    .await
    .expect(202);
    let a = with_key(&app, Method::POST, "/api/v1/jobs/email", &key, true).await;
    a.expect(403);
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("alert_escalation")
    );
    let a = app
        .client
        .post("/api/v1/api-keys")
        .header("X-API-Key", &key)
        .body_json(&json!({"name": "more", "role": "admin"}))
        .send()
        .await;
    let a = TestApp::answer(a).await;
    a.expect(403);
    assert_eq!(a.header("x-ratelimit-remaining"), Some("0"));
    // Its own budget of 4 a minute is spent...
    with_key(&app, Method::GET, "/api/v1/queues", &key, true)
        .await
        .expect(429);
    // ...which is not the admin's budget.
    app.get("/api/v1/queues", Some(&admin)).await.expect(200);

    // Its last use is recorded (in the background).
    let deadline = Instant::now() + Duration::from_secs(10);
    while list(&app, &admin).await[0]["last_used_at"].is_null() {
        assert!(Instant::now() < deadline, "last_used_at never set");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Revoked: refused at once, both ways.
    for (target, status) in [(id.as_str(), 204), (&id, 409), ("0123456789abcdef", 404)] {
        let path = format!("/api/v1/api-keys/{target}");
        app.call(Method::DELETE, &path, Some(&admin), None)
            .await
            .expect(status);
    }
    for header in [false, true] {
        let a = with_key(&app, Method::GET, "/api/v1/schedules", &key, header).await;
        a.expect(401);
        assert!(
            a.body["message"].as_str().unwrap().contains("revoked"),
            "{}",
            a.text
        );
    }
    assert!(!list(&app, &admin).await[0]["revoked_at"].is_null());

    let audit = app.audited().await;
    let actions: Vec<&str> = audit.iter().filter_map(|p| p["action"].as_str()).collect();
    for want in ["api_key.create", "api_key.revoke"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    assert!(
        audit
            .iter()
            .any(|p| p["action"] == "job.enqueue" && p["actor"].to_string().contains("key:ci-bot")),
        "the key's enqueue is audited under its name: {audit:?}"
    );
}

#[tokio::test]
async fn keys_expire_analyst_keys_only_read_and_bad_requests_are_refused() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let created = app
        .post(
            "/api/v1/api-keys",
            Some(&admin),
            json!({"name": "reader", "role": "analyst", "expires_at": soon}),
        )
        .await;
    created.expect(201);
    let key = created.body["key"].as_str().unwrap().to_owned();
    with_key(&app, Method::GET, "/api/v1/queues", &key, true)
        .await
        .expect(200);
    with_key(
        &app,
        Method::POST,
        "/api/v1/jobs/alert_escalation",
        &key,
        true,
    )
    .await
    .expect(403);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = with_key(&app, Method::GET, "/api/v1/queues", &key, false).await;
        if a.status.as_u16() == 401 {
            assert!(
                a.body["message"].as_str().unwrap().contains("expired"),
                "{}",
                a.text
            );
            break;
        }
        a.expect(200);
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bad input: clear errors, never a 500.
    let past = chrono::Utc::now() - chrono::Duration::seconds(5);
    for (body, status) in [
        (json!({"name": "reader", "role": "analyst"}), 409),
        (json!({"name": "two words", "role": "analyst"}), 422),
        (
            json!({"name": "late", "role": "analyst", "expires_at": past}),
            422,
        ),
        (json!({"name": "x", "role": "root"}), 400),
        (
            json!({"name": "x", "role": "admin", "queues": ["nope"]}),
            400,
        ),
        (json!({"name": "x", "role": "admin", "secret": "mine"}), 400),
        (
            json!({"name": "x", "role": "admin", "rate_per_minute": 0}),
            400,
        ),
    ] {
        let a = app
            .post("/api/v1/api-keys", Some(&admin), body.clone())
            .await;
        assert_eq!(a.status.as_u16(), status, "{body}: {}", a.text);
        a.code();
    }
    let analyst = app.analyst().await;
    app.post(
        "/api/v1/api-keys",
        Some(&analyst),
        json!({"name": "n", "role": "admin"}),
    )
    .await
    .expect(403);
    // Malformed or unknown keys are 401 with the error shape.
    for key in [
        "nope",
        "vgk_0123456789abcdef_00",
        &format!("vgk_0123456789abcdef_{}", "0".repeat(64)),
    ] {
        let a = with_key(&app, Method::GET, "/api/v1/queues", key, true).await;
        a.expect(401);
        assert_eq!(a.code(), "unauthorized");
    }
}

#[tokio::test]
async fn openapi_documents_the_api_key_scheme() {
    let app = TestApp::new().await;
    let spec = app.get("/openapi.json", None).await;
    spec.expect(200);
    let schemes = &spec.body["components"]["securitySchemes"];
    assert_eq!(schemes["ApiKeyAuth"]["type"], "apiKey", "{schemes}");
    assert_eq!(schemes["ApiKeyAuth"]["in"], "header");
    assert_eq!(schemes["ApiKeyAuth"]["name"], "X-API-Key");
    assert_eq!(schemes["BearerAuth"]["scheme"], "bearer");
    let security = &spec.body["paths"]["/api/v1/queues"]["get"]["security"];
    let names: Vec<String> = security
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_object().unwrap().keys().cloned())
        .collect();
    assert!(
        names.contains(&"BearerAuth".to_owned()) && names.contains(&"ApiKeyAuth".to_owned()),
        "{security}"
    );
}
