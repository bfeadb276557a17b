//! The API's contract for OpenAPI clients: one list envelope on every list route, a working
//! example for every request body, errors that list valid values and never name Rust types,
//! severities by name or number, the docs' Authorize (OAuth2 password flow) and what the
//! spec states (`additionalProperties: false`, formats, exclusive fields).

mod common;

use std::collections::BTreeSet;

use common::{PASSWORD, TestApp};
use poem::http::Method;
use serde_json::{Value, json};
use vigil_store::users::UserRole;

/// Every list route, with its path parameters filled in.
const LIST_ROUTES: [&str; 13] = [
    "/api/v1/jobs",
    "/api/v1/emails",
    "/api/v1/events",
    "/api/v1/audit-logs",
    "/api/v1/alerts",
    "/api/v1/queues",
    "/api/v1/users",
    "/api/v1/api-keys",
    "/api/v1/schedules",
    "/api/v1/schedules/okta_fetch/runs",
    "/api/v1/users/admin/sessions",
    "/api/v1/auth/lockouts",
    "/api/v1/instances",
];

async fn spec(app: &TestApp) -> Value {
    let a = app.get("/openapi.json", None).await;
    a.expect(200);
    a.body.clone()
}

/// The schema a `$ref` names.
fn schema<'a>(spec: &'a Value, r: &Value) -> &'a Value {
    let name = r["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_default();
    &spec["components"]["schemas"][name]
}

/// The JSON entry of a `content` map (poem-openapi writes `application/json; charset=utf-8`).
fn json_of(content: &Value) -> Option<&Value> {
    content
        .as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("application/json"))
        .map(|(_, v)| v)
}

/// `/api/v1/users/{username}/sessions` as a concrete path.
fn fill(path: &str, alert: i64) -> String {
    path.replace("{queue}", "email")
        .replace("{username}", "bob")
        .replace("{name}", "okta_fetch")
        .replace("{id}", &alert.to_string())
}

#[tokio::test]
async fn every_list_route_answers_with_count_next_previous_results() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    for path in LIST_ROUTES {
        let a = app.get(path, Some(&admin)).await;
        a.expect(200);
        let b = &a.body;
        let results = b["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {b}"));
        let count = b["count"].as_u64().unwrap_or_else(|| panic!("{path}: {b}"));
        assert!(count >= results.len() as u64, "{path}: {b}");
        for link in ["next", "previous"] {
            assert!(
                b.get(link).is_some_and(|v| v.is_null() || v.is_string()),
                "{path}: `{link}` must be present (a URL or null): {b}"
            );
        }
    }
    // A route with more than one page links its neighbours, filters kept.
    for i in 0..3 {
        app.post(
            "/api/v1/jobs/email",
            Some(&admin),
            json!({"payload": {"to": [format!("u{i}@example.com")], "subject": "s", "body": {"text": "x"}}}),
        )
        .await
        .expect(202);
    }
    let first = app
        .get("/api/v1/jobs?queue=email&page_size=2", Some(&admin))
        .await;
    assert_eq!(first.body["count"], 3);
    let next = first.body["next"].as_str().unwrap().to_owned();
    assert!(
        next.contains("queue=email") && next.contains("page=2"),
        "{next}"
    );
    let second = app.get(&next, Some(&admin)).await;
    assert_eq!(second.body["results"].as_array().unwrap().len(), 1);
    assert!(second.body["next"].is_null());
    assert!(second.body["previous"].as_str().unwrap().contains("page=1"));

    // The spec agrees: no GET answers a bare array, and every enveloped GET is listed above.
    let spec = spec(&app).await;
    let mut enveloped = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        let Some(get) = ops.get("get") else { continue };
        let Some(ok) = json_of(&get["responses"]["200"]["content"]).map(|c| &c["schema"]) else {
            continue;
        };
        assert_ne!(ok["type"], "array", "GET {path} answers a bare array");
        if schema(&spec, ok)["properties"].get("results").is_some() {
            let props = schema(&spec, ok)["properties"].as_object().unwrap();
            for f in ["count", "next", "previous", "results"] {
                assert!(props.contains_key(f), "GET {path} lacks `{f}`");
            }
            assert_eq!(
                props["next"]["nullable"], true,
                "GET {path}: next is a URL or null"
            );
            enveloped.insert(fill(path, 0).replace("{username}", "admin"));
        }
    }
    let listed: BTreeSet<String> = LIST_ROUTES
        .iter()
        .map(|p| p.replace("/users/admin/", "/users/bob/"))
        .collect();
    assert_eq!(enveloped, listed);
}

#[tokio::test]
async fn every_request_body_example_posted_as_is_succeeds() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    // Fixtures: the user of the sign-in example, a user to change, an alert to act on.
    app.add_user("alice", UserRole::Admin).await;
    app.add_user("bob", UserRole::Admin).await;
    let event = app
        .post(
            "/api/v1/events/security",
            Some(&admin),
            json!({"source": "edr", "event_type": "x", "severity": 4, "description": "d"}),
        )
        .await;
    event.expect(201);
    let alert = event.body["alert_id"]
        .as_i64()
        .expect("a critical event opens an alert");

    let spec = spec(&app).await;
    // Bodies that need a secret from an earlier exchange: posted in their own tests.
    let skipped = ["refresh_token", "sso_exchange", "deliver_okta_event_hook"];
    let mut posted = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let content = &op["requestBody"]["content"];
            if content.is_null() {
                continue;
            }
            let id = op["operationId"].as_str().unwrap().to_owned();
            if skipped.contains(&id.as_str()) {
                continue;
            }
            let Some(json_body) = json_of(content) else {
                panic!("{method} {path}: no JSON body");
            };
            let example = schema(&spec, &json_body["schema"])["example"].clone();
            assert!(!example.is_null(), "{method} {path} ({id}) has no example");
            let m: Method = method.to_uppercase().parse().unwrap();
            let a = app
                .call(m, &fill(path, alert), Some(&admin), Some(example.clone()))
                .await;
            assert!(
                a.status.is_success(),
                "{method} {path} ({id}) with its example {example}: {} {}",
                a.status,
                a.text
            );
            // A bulk answer is 2xx even when items are refused: its example's items must all
            // be taken.
            if let Some(results) = a.body["results"].as_array() {
                assert!(
                    results.iter().all(|r| r.get("error").is_none()),
                    "{id}: its example has refused items: {}",
                    a.text
                );
            }
            if id == "bulk_jobs" {
                assert_eq!(a.body["skipped"], 0, "{id}: {}", a.text);
            }
            posted.push(id);
        }
    }
    for id in [
        "create_token",
        "enqueue_email",
        "enqueue_bulk",
        "bulk_jobs",
        "create_security_event",
        "update_alert",
    ] {
        assert!(
            posted.iter().any(|p| p == id),
            "{id} not posted: {posted:?}"
        );
    }
}

#[tokio::test]
async fn swagger_authorize_signs_in_with_a_username_and_password() {
    let app = TestApp::new().await;
    app.add_user("alice", UserRole::Analyst).await;
    let spec = spec(&app).await;
    assert_eq!(spec["tags"][0]["name"], "Auth", "Auth is the first tag");
    let oauth = &spec["components"]["securitySchemes"]["OAuth2Password"];
    assert_eq!(oauth["type"], "oauth2");
    assert_eq!(oauth["flows"]["password"]["tokenUrl"], "/api/v1/auth/token");
    let docs = app.get("/docs", None).await;
    docs.expect(200);
    assert!(docs.text.contains("persistAuthorization: true"));
    assert!(
        docs.text.contains("\"OAuth2Password\""),
        "the docs carry the spec"
    );
    // ... the served one, with what vigil adds to poem's (the bulk limit, closed bodies).
    assert!(
        docs.text.contains("\"maxItems\": 1000"),
        "the docs carry vigil's spec"
    );
    assert!(docs.text.contains("\"additionalProperties\": false"));

    // What Swagger's Authorize sends.
    let form = format!(
        "grant_type=password&username=alice&password={}&scope=",
        PASSWORD.replace(' ', "+")
    );
    let resp = app
        .client
        .post("/api/v1/auth/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    a.expect(200);
    let token = a.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(a.body["token_type"], "Bearer");
    app.get("/api/v1/queues", Some(&token)).await.expect(200);
    // Another grant type, or a wrong password, is refused with the usual error shape.
    let resp = app
        .client
        .post("/api/v1/auth/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&username=alice&password=x")
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    a.expect(400);
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("valid: password")
    );
    let resp = app
        .client
        .post("/api/v1/auth/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=alice&password=wrong")
        .send()
        .await;
    assert_eq!(
        TestApp::answer(resp).await.expect(401).code(),
        "unauthorized"
    );
}

#[tokio::test]
async fn enum_errors_list_the_valid_values_and_name_no_rust_type() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let cases: Vec<(Method, &str, Option<Value>, &str, &str)> = vec![
        (
            Method::GET,
            "/api/v1/jobs?status=bogus",
            None,
            "status",
            "pending",
        ),
        (
            Method::GET,
            "/api/v1/jobs?queue=bogus",
            None,
            "queue",
            "email",
        ),
        (
            Method::GET,
            "/api/v1/alerts?status=bogus",
            None,
            "status",
            "acknowledged",
        ),
        (
            Method::GET,
            "/api/v1/alerts?severity=urgent",
            None,
            "severity",
            "critical",
        ),
        (
            Method::GET,
            "/api/v1/emails?status=bogus",
            None,
            "status",
            "sent",
        ),
        (
            Method::POST,
            "/api/v1/queues/bogus/jobs",
            Some(json!({"payload": {}})),
            "queue",
            "email",
        ),
        (
            Method::POST,
            "/api/v1/jobs/bulk",
            Some(json!({"action": "bogus", "ids": ["x"]})),
            "action",
            "retry",
        ),
        (
            Method::POST,
            "/api/v1/jobs/bulk",
            Some(json!({"action": "retry", "filter": {"status": "bogus"}})),
            "status",
            "dead",
        ),
        (
            Method::PATCH,
            "/api/v1/alerts/1",
            Some(json!({"action": "bogus"})),
            "action",
            "acknowledge",
        ),
        (
            Method::POST,
            "/api/v1/events/security",
            Some(
                json!({"source": "edr", "event_type": "x", "severity": "urgent", "description": "d"}),
            ),
            "severity",
            "critical",
        ),
        (
            Method::POST,
            "/api/v1/jobs/email",
            Some(
                json!({"payload": {"to": ["a@example.com"], "subject": "s", "body": {"text": "x"}}, "colour": 1}),
            ),
            "colour",
            "delay_seconds",
        ),
    ];
    for (method, path, body, field, valid) in cases {
        let a = app
            .call(method.clone(), path, Some(&admin), body.clone())
            .await;
        a.expect(400);
        a.code();
        let message = a.body["message"].as_str().unwrap();
        assert!(
            message.contains(field) && message.contains(valid),
            "{method} {path} {body:?}: names `{field}` and lists `{valid}`: {message}"
        );
        for rust in [
            "Name\"",
            "StatusName",
            "QueueName",
            "Severity\"",
            "failed to parse",
        ] {
            assert!(
                !message.contains(rust),
                "{method} {path}: leaks `{rust}`: {message}"
            );
        }
    }
}

#[tokio::test]
async fn severity_is_taken_as_a_name_or_a_number() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    for severity in [json!("low"), json!(1), json!("Medium"), json!(2)] {
        let a = app
            .post(
                "/api/v1/events/security",
                Some(&admin),
                json!({"source": "edr", "event_type": "x", "severity": severity, "description": "d"}),
            )
            .await;
        a.expect(201);
        assert!(a.body.get("alert_id").is_none(), "{}", a.text);
    }
    let high = app
        .post(
            "/api/v1/events/security",
            Some(&admin),
            json!({"source": "edr", "event_type": "x", "severity": "high", "description": "d"}),
        )
        .await;
    high.expect(201);
    assert_eq!(high.body["severity"], 3);
    assert!(high.body["alert_id"].is_i64());
    for q in ["high", "3", "HIGH"] {
        let a = app
            .get(&format!("/api/v1/alerts?severity={q}"), Some(&admin))
            .await;
        a.expect(200);
        assert_eq!(a.body["count"], 1, "severity={q}: {}", a.text);
    }
    let none = app.get("/api/v1/alerts?severity=1", Some(&admin)).await;
    assert_eq!(none.expect(200).body["count"], 0);
}

#[tokio::test]
async fn unknown_templates_and_template_variables_are_refused_at_enqueue() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let email = |extra: Value| {
        let mut p = json!({"to": ["a@example.com"], "subject": "s"});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"payload": p})
    };
    for path in ["/api/v1/jobs/email", "/api/v1/queues/email/jobs"] {
        let a = app
            .post(path, Some(&admin), email(json!({"template": "nope"})))
            .await;
        a.expect(422);
        assert_eq!(a.code(), "validation_failed");
        let m = a.body["message"].as_str().unwrap();
        assert!(m.contains("nope") && m.contains("generic"), "{m}");
        let a = app
            .post(
                path,
                Some(&admin),
                email(json!({"template": "generic", "vars": {"titel": "x"}})),
            )
            .await;
        a.expect(422);
        let m = a.body["message"].as_str().unwrap();
        assert!(m.contains("vars.titel") && m.contains("title"), "{m}");
        app.post(
            path,
            Some(&admin),
            email(json!({"template": "generic", "vars": {"title": "x", "message": "y"}})),
        )
        .await
        .expect(202);
    }
}

#[tokio::test]
async fn the_spec_states_closed_objects_formats_and_exclusive_fields() {
    let app = TestApp::new().await;
    let spec = spec(&app).await;
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    // Every request body refuses unknown fields, and says so.
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(body) = json_of(&op["requestBody"]["content"]).map(|c| &c["schema"]) else {
                continue;
            };
            let s = schema(&spec, body);
            assert_eq!(
                s["additionalProperties"],
                json!(false),
                "{method} {path}: additionalProperties"
            );
        }
    }
    let email = &schemas["EnqueueEmail"];
    assert_eq!(email["properties"]["run_at"]["format"], "date-time");
    assert_eq!(
        email["not"],
        json!({"required": ["run_at", "delay_seconds"]}),
        "run_at and delay_seconds are exclusive"
    );
    let payload = &schemas["EmailPayload"];
    assert_eq!(payload["properties"]["to"]["items"]["format"], "email");
    assert_eq!(payload["additionalProperties"], json!(false));
    assert!(
        payload["oneOf"].is_array(),
        "body and template are exclusive"
    );
    let templates: Vec<&str> = payload["properties"]["template"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        templates,
        ["alert_notification", "alert_escalation", "generic"]
    );
    assert_eq!(
        schemas["BulkEnqueueIn"]["properties"]["jobs"]["maxItems"],
        1000
    );
}
