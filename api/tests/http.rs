//! The pipeline around every route: error shape, request ids, security headers, body limit,
//! CORS, docs and spec, health, readiness and metrics.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::TestApp;
use poem::http::Method;
use serde_json::json;
use vigil_queue::ActorHealth;

#[tokio::test]
async fn every_error_has_the_one_shape_and_a_request_id() {
    let app = TestApp::new().await;
    let token = app.admin().await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::GET, "/api/v1/nothing"),
        (Method::DELETE, "/api/v1/queues"),
        (Method::GET, "/api/v1/queues"),
    ] {
        let a = app.call(method.clone(), path, None, None).await;
        assert!(a.status.is_client_error(), "{method} {path}: {}", a.status);
        let code = a.code().to_owned();
        assert_eq!(a.header("x-request-id"), a.body["request_id"].as_str());
        assert_eq!(
            a.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{path}"
        );
        assert!(
            ["not_found", "method_not_allowed", "unauthorized"].contains(&code.as_str()),
            "{code}"
        );
    }
    // A sane incoming request id is echoed; an insane one is replaced.
    let resp = app
        .client
        .get("/api/v1/jobs/01JUNKNOWN")
        .header("Authorization", format!("Bearer {token}"))
        .header("X-Request-Id", "trace-abc-123")
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    a.expect(404);
    assert_eq!(a.body["request_id"], "trace-abc-123");
    assert_eq!(a.header("x-request-id"), Some("trace-abc-123"));
    let resp = app
        .client
        .get("/health")
        .header("X-Request-Id", "bad id <script>")
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    let id = a.header("x-request-id").unwrap();
    assert!(!id.contains("script") && id.len() >= 16, "{id}");
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let app = TestApp::new().await;
    for path in ["/health", "/nope", "/openapi.json", "/docs"] {
        let a = app.get(path, None).await;
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{path}");
        let csp = a.header("content-security-policy").unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        if path == "/docs" {
            assert!(
                csp.contains("script-src 'unsafe-inline'"),
                "Swagger UI runs: {csp}"
            );
        } else {
            assert_eq!(a.header("cache-control"), Some("no-store"), "{path}");
        }
        // CORS is off unless configured.
        assert!(a.header("access-control-allow-origin").is_none());
    }
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let app = TestApp::with(|s| s.http.cors_origins = vec!["https://soc.example.com".into()]).await;
    let resp = app
        .client
        .request(Method::OPTIONS, "/api/v1/queues")
        .header("Origin", "https://soc.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://soc.example.com")
    );
    // A cross-origin client may acknowledge an alert: PATCH with a token and a JSON body.
    let resp = app
        .client
        .request(Method::OPTIONS, "/api/v1/alerts/1")
        .header("Origin", "https://soc.example.com")
        .header("Access-Control-Request-Method", "PATCH")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, idempotency-key",
        )
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    assert!(a.status.is_success(), "{} {}", a.status, a.text);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://soc.example.com")
    );
    let methods = a
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_ascii_uppercase();
    for m in ["GET", "POST", "PATCH", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{m} in {methods}");
    }
    let headers = a
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type", "idempotency-key"] {
        assert!(headers.contains(h), "{h} in {headers}");
    }
    // A method outside the list is refused in preflight.
    let resp = app
        .client
        .request(Method::OPTIONS, "/api/v1/alerts/1")
        .header("Origin", "https://soc.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    assert_ne!(
        a.header("access-control-allow-origin"),
        Some("https://soc.example.com"),
        "PUT is not allowed: {} {}",
        a.status,
        a.text
    );
    let resp = app
        .client
        .get("/health")
        .header("Origin", "https://evil.example")
        .send()
        .await;
    let a = TestApp::answer(resp).await;
    assert_ne!(
        a.header("access-control-allow-origin"),
        Some("https://evil.example")
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let app = TestApp::new().await;
    let token = app.admin().await;
    let big = "x".repeat(70 * 1024);
    let a = app
        .post(
            "/api/v1/jobs/email",
            Some(&token),
            json!({"payload": {"to": ["a@b.c"], "subject": "s", "body": {"text": big}}}),
        )
        .await;
    a.expect(413);
    assert_eq!(a.code(), "payload_too_large");
    // Chunked (no Content-Length) is limited too.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes_of(70 * 1024))]);
    let resp = app
        .client
        .post("/api/v1/auth/token")
        .content_type("application/json")
        .body(poem::Body::from_bytes_stream(stream))
        .send()
        .await;
    TestApp::answer(resp).await.expect(413);
}

fn bytes_of(n: usize) -> Vec<u8> {
    vec![b' '; n]
}

#[tokio::test]
async fn docs_and_spec_are_served() {
    let app = TestApp::new().await;
    let a = app.get("/openapi.json", None).await;
    a.expect(200);
    let paths = a.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/jobs/email",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs",
        "/api/v1/queues/{queue}/pause",
        "/api/v1/schedules",
        "/api/v1/instances",
        "/api/v1/auth/token",
        "/ready",
    ] {
        assert!(paths.contains_key(p), "{p} in spec");
    }
    assert!(
        a.body["components"]["securitySchemes"]["BearerAuth"].is_object(),
        "{}",
        a.body["components"]["securitySchemes"]
    );
    let docs = app.get("/docs", None).await;
    docs.expect(200);
    assert!(docs.text.contains("swagger"), "Swagger UI");
}

fn actor(healthy: bool) -> ActorHealth {
    ActorHealth {
        instance: "worker@w1".into(),
        name: "queue:email".into(),
        healthy,
        restarts: u64::from(!healthy),
        last_error: (!healthy).then(|| "SMTP pool lost".into()),
        updated_at: Utc::now(),
        reported_at: Some(Utc::now()),
        load: None,
    }
}

#[tokio::test]
async fn instances_list_every_live_instance_for_any_role() {
    let app = TestApp::new().await;
    let analyst = app.analyst().await;
    let empty = app.get("/api/v1/instances", Some(&analyst)).await;
    empty.expect(200);
    assert_eq!(
        empty.body,
        serde_json::json!({"count": 0, "next": null, "previous": null, "results": []})
    );
    app.engine
        .report_actors("worker@w1", &[actor(false)], Duration::from_secs(30))
        .await
        .unwrap();
    let a = app.get("/api/v1/instances", Some(&analyst)).await;
    a.expect(200);
    let i = &a.body["results"][0];
    assert_eq!(i["instance"], "worker@w1", "{}", a.text);
    assert_eq!(i["role"], "worker");
    assert_eq!(i["queues"], serde_json::json!(["email"]));
    assert_eq!(i["healthy"], false);
    assert_eq!(i["restarts"], 1);
    assert_eq!(i["last_error"], "SMTP pool lost");
    assert!(i["heartbeat"].is_string());
    app.get("/api/v1/instances", None).await.expect(401);
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = TestApp::new().await;
    app.get("/health", None).await.expect(200);
    // An API-only process is ready with Redis and the database, whether or not workers run.
    let a = app.get("/ready", None).await;
    a.expect(200);
    let checks = a.body["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["redis", "database"], "{}", a.text);
    // A process that also runs workers (`vigil run`) needs its own actors healthy.
    let local = Arc::new(Mutex::new(vec![actor(true)]));
    let board = local.clone();
    app.state
        .set_local_actors(Arc::new(move || board.lock().unwrap().clone()));
    app.get("/ready", None).await.expect(200);
    *local.lock().unwrap() = vec![actor(false)];
    let a = app.get("/ready", None).await;
    a.expect(503);
    assert_eq!(a.code(), "not_ready");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("queue:email (SMTP pool lost)"),
        "{}",
        a.text
    );

    let token = app.admin().await;
    app.get("/api/v1/jobs/01JUNKNOWN", Some(&token))
        .await
        .expect(404);
    let m = app.get("/metrics", None).await;
    m.expect(200);
    assert!(
        m.text.contains(
            "vigil_http_requests_total{method=\"GET\",route=\"/api/v1/jobs/{id}\",status=\"404\"} 1"
        ),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("vigil_http_request_duration_seconds_bucket")
    );
}

#[tokio::test]
async fn serves_over_tcp_on_port_0_and_stops_on_shutdown() {
    let app = TestApp::new().await;
    let listening = vigil_api::bind("127.0.0.1:0").await.unwrap();
    let addr = listening.local_addr();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listening.run(app.state.clone(), async {
        let _ = stopped.await;
    }));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resp = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
