//! The job page's reads and the charts' series: a job's timeline (enqueued by whom, each
//! attempt's start, worker and end, retried by whom), its worker and duration, the
//! `/dashboard/jobs/{id}` deep link, and a queue's per-minute series.

mod common;

use common::TestApp;
use serde_json::{Value, json};
use vigil_jobs::{EmailJob, Job as _};
use vigil_store::audit::{self, NewAuditRecord};

fn email() -> Value {
    json!({"payload": {"to": ["soc@example.com"], "subject": "hi", "body": {"text": "hello"}}})
}

/// What the audit writer would store for `action` on job `id` by the admin.
async fn audit_as_written(app: &TestApp, action: &str, id: &str, details: Value) {
    let record = NewAuditRecord {
        event_id: format!("{action}-{id}"),
        occurred_at: chrono::Utc::now(),
        actor: "user:admin".to_owned(),
        action: action.to_owned(),
        target_type: "job".to_owned(),
        target_id: id.to_owned(),
        details,
        request_id: None,
        job_id: Some(id.to_owned()),
    };
    audit::append(&app.db.db, &[record]).await.unwrap();
}

fn events(timeline: &Value) -> Vec<(String, Value, Value)> {
    timeline["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["worker"].clone(),
                e["by"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_jobs_timeline_shows_who_enqueued_each_attempt_and_who_retried_it() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    let a = app.post("/api/v1/jobs/email", Some(&admin), email()).await;
    a.expect(202);
    let id = a.body["id"].as_str().unwrap().to_owned();
    audit_as_written(&app, "job.enqueue", &id, json!({})).await;

    let q = EmailJob::QUEUE;
    let first = app.engine.lease(q, "inst-a-email-1", 1).await.unwrap().jobs;
    assert_eq!(first.len(), 1);
    app.engine
        .fail(&first[0], "550 mailbox unavailable", true)
        .await
        .unwrap();
    app.post(&format!("/api/v1/jobs/{id}/retry"), Some(&admin), json!({}))
        .await
        .expect(200);
    // As the retry route records it (with the attempts made so far).
    let retried = app
        .audited()
        .await
        .into_iter()
        .find(|p| p["action"] == "job.retry")
        .expect("the retry is audited");
    assert_eq!(retried["details"]["attempts"], 1);
    audit_as_written(&app, "job.retry", &id, retried["details"].clone()).await;
    let second = app.engine.lease(q, "inst-b-email-2", 1).await.unwrap().jobs;
    assert_eq!(second.len(), 1);
    assert!(app.engine.complete(&second[0]).await.unwrap());

    let t = app
        .get(&format!("/api/v1/jobs/{id}/timeline"), Some(&analyst))
        .await;
    t.expect(200);
    assert_eq!(t.body["status"], "done");
    assert_eq!(
        events(&t.body),
        [
            ("enqueued".into(), Value::Null, json!("user:admin")),
            ("started".into(), json!("inst-a-email-1"), Value::Null),
            ("failed".into(), json!("inst-a-email-1"), Value::Null),
            ("retried".into(), Value::Null, json!("user:admin")),
            ("started".into(), json!("inst-b-email-2"), Value::Null),
            ("done".into(), json!("inst-b-email-2"), Value::Null),
        ]
    );
    assert_eq!(t.body["entries"][2]["error"], "550 mailbox unavailable");
    assert_eq!(t.body["entries"][2]["attempt"], 1);

    let job = app.get(&format!("/api/v1/jobs/{id}"), Some(&analyst)).await;
    job.expect(200);
    assert_eq!(job.body["worker"], "inst-b-email-2");
    assert!(job.body["duration_ms"].as_i64().unwrap() >= 0);
    assert_eq!(job.body["errors"][0]["worker"], "inst-a-email-1");
    assert!(job.body["errors"][0]["started_at"].is_string());

    app.get(&format!("/api/v1/jobs/{id}/timeline"), None)
        .await
        .expect(401);
    let missing = app
        .get(
            "/api/v1/jobs/email-01JAAAAAAAAAAAAAAAAAAAAAAA/timeline",
            Some(&admin),
        )
        .await;
    missing.expect(404);
    assert_eq!(missing.code(), "not_found");

    // A deleted job still shows what the audit trail knows.
    let b = app.post("/api/v1/jobs/email", Some(&admin), email()).await;
    let gone = b.body["id"].as_str().unwrap().to_owned();
    audit_as_written(&app, "job.enqueue", &gone, json!({})).await;
    app.call(
        poem::http::Method::DELETE,
        &format!("/api/v1/jobs/{gone}"),
        Some(&admin),
        None,
    )
    .await
    .expect(204);
    audit_as_written(&app, "job.delete", &gone, json!({})).await;
    let t = app
        .get(&format!("/api/v1/jobs/{gone}/timeline"), Some(&admin))
        .await;
    t.expect(200);
    assert_eq!(t.body["status"], "deleted");
    let names: Vec<String> = events(&t.body).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["enqueued", "deleted"]);
}

#[tokio::test]
async fn the_job_page_link_opens_the_dashboard_on_that_job() {
    let app = TestApp::new().await;
    let r = app
        .client
        .get("/dashboard/jobs/email-01JABCDEFGHJKMNPQRSTVWXYZ0")
        .send()
        .await;
    r.assert_status(poem::http::StatusCode::SEE_OTHER);
    r.assert_header(
        "location",
        "/dashboard/#/jobs/email-01JABCDEFGHJKMNPQRSTVWXYZ0",
    );
    let r = app.client.get("/dashboard/jobs/%3Cscript%3E").send().await;
    r.assert_status(poem::http::StatusCode::SEE_OTHER);
    r.assert_header("location", "/dashboard/");
    app.client
        .get("/dashboard/charts.js")
        .send()
        .await
        .assert_status_is_ok();
}

#[tokio::test]
async fn a_queues_series_counts_each_transition_per_minute_and_per_quarter_hour() {
    let app = TestApp::new().await;
    let analyst = app.analyst().await;
    let admin = app.admin().await;
    for _ in 0..3 {
        app.post("/api/v1/jobs/email", Some(&admin), email())
            .await
            .expect(202);
    }
    let q = EmailJob::QUEUE;
    let jobs = app.engine.lease(q, "w", 3).await.unwrap().jobs;
    assert_eq!(jobs.len(), 3);
    assert!(app.engine.complete(&jobs[0]).await.unwrap());
    app.engine.fail(&jobs[1], "later", false).await.unwrap();
    app.engine.fail(&jobs[2], "never", true).await.unwrap();

    let sum = |body: &Value, k: &str| -> u64 {
        body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[k].as_u64().unwrap())
            .sum()
    };
    let hour = app.get("/api/v1/queues/email/series", Some(&analyst)).await;
    hour.expect(200);
    assert_eq!(hour.body["range"], "1h");
    assert_eq!(hour.body["step_seconds"], 60);
    assert_eq!(hour.body["points"].as_array().unwrap().len(), 60);
    assert_eq!(
        [
            sum(&hour.body, "enqueued"),
            sum(&hour.body, "done"),
            sum(&hour.body, "failed"),
            sum(&hour.body, "dead"),
        ],
        [3, 1, 1, 1]
    );
    let busy = hour.body["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["done"].as_u64().unwrap() > 0)
        .count();
    assert!(busy >= 1);
    assert!(
        hour.body["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["wait_p95_ms"].is_number() && p["run_p50_ms"].is_number())
    );

    let day = app
        .get("/api/v1/queues/email/series?range=24h", Some(&analyst))
        .await;
    day.expect(200);
    assert_eq!(day.body["step_seconds"], 900);
    assert_eq!(day.body["points"].as_array().unwrap().len(), 96);
    assert_eq!(sum(&day.body, "enqueued"), 3);

    let bad = app
        .get("/api/v1/queues/email/series?range=7d", Some(&analyst))
        .await;
    assert!(bad.status.is_client_error(), "{}", bad.text);
    bad.code();
    let unknown = app.get("/api/v1/queues/nope/series", Some(&analyst)).await;
    assert!(unknown.status.is_client_error(), "{}", unknown.text);
    // The error names the path parameter and lists the queues (no Rust type names).
    let message = unknown.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("queue:") && message.contains("email"),
        "{}",
        unknown.text
    );
    app.get("/api/v1/queues/email/series", None)
        .await
        .expect(401);
}
