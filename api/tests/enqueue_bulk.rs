//! `POST /api/v1/jobs/{queue}/bulk`: up to 1,000 jobs per call, validated per item, answered
//! per item in order; admin only, audited once per call.

mod common;

use common::TestApp;
use serde_json::{Value, json};
use vigil_jobs::{EmailJob, Job as _};

fn email(to: &str) -> Value {
    json!({"to": [to], "subject": "hi", "body": {"text": "x"}})
}

/// An app whose body limit fits 1,000 jobs (the default is 1 MiB; the tests' is 64 KiB).
async fn app() -> TestApp {
    TestApp::with(|s| s.http.max_body_bytes = 1024 * 1024).await
}

#[tokio::test]
async fn a_thousand_jobs_in_one_call_are_all_queued_in_order() {
    let app = app().await;
    let admin = app.admin().await;
    let jobs: Vec<Value> = (0..1000)
        .map(|i| json!({"payload": email(&format!("u{i}@example.com"))}))
        .collect();
    let a = app
        .post(
            "/api/v1/jobs/email/bulk",
            Some(&admin),
            json!({"jobs": jobs}),
        )
        .await;
    a.expect(202);
    assert_eq!(a.body["count"], 1000);
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["duplicate"], false);
        assert!(r.get("error").is_none(), "{r}");
    }
    assert_eq!(
        app.engine.counts(EmailJob::QUEUE).await.unwrap().pending,
        1000
    );
    // Each result names the job made from its item.
    let id = results[417]["id"].as_str().unwrap();
    let job = app.get(&format!("/api/v1/jobs/{id}"), Some(&admin)).await;
    job.expect(200);
    assert_eq!(job.body["payload"]["to"][0], "u417@example.com");
    // One audit record for the call, naming the count and the jobs.
    let audit = app.audited().await;
    let bulk: Vec<&Value> = audit
        .iter()
        .filter(|p| p["action"] == "job.bulk_enqueue")
        .collect();
    assert_eq!(bulk.len(), 1);
    assert_eq!(bulk[0]["details"]["count"], 1000);
    assert_eq!(bulk[0]["details"]["ids"].as_array().unwrap().len(), 1000);
    assert_eq!(bulk[0]["actor"]["id"], "admin");
}

#[tokio::test]
async fn invalid_items_are_refused_one_by_one_and_do_not_block_the_others() {
    let app = app().await;
    let admin = app.admin().await;
    let body = json!({"jobs": [
        {"payload": email("a@example.com")},
        {"payload": {"to": ["not an address"], "subject": "hi", "body": {"text": "x"}}},
        {"payload": email("b@example.com"), "delay_seconds": 600},
        {"payload": email("c@example.com"), "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5},
        {"payload": "not an object"},
        {"payload": email("d@example.com"), "idempotency_key": "k-1"},
        {"payload": email("e@example.com"), "idempotency_key": "k-1"},
        {"payload": {"to": ["f@example.com"], "subject": "hi", "template": "no_such_template"}},
        // 150 characters but 300 bytes: over the engine's 200-byte limit, refused alone.
        {"payload": email("g@example.com"), "idempotency_key": "é".repeat(150)},
        {"payload": email("h@example.com"), "delay_seconds": 2_592_001},
    ]});
    let a = app
        .post("/api/v1/jobs/email/bulk", Some(&admin), body)
        .await;
    a.expect(202);
    let r = a.body["results"].as_array().unwrap();
    assert_eq!(r.len(), 10);
    assert_eq!(a.body["count"], 4, "{}", a.text);
    for ok in [0, 2, 5] {
        assert!(r[ok]["id"].is_string(), "{}", r[ok]);
        assert_eq!(r[ok]["duplicate"], false);
    }
    // A repeated key answers the first job.
    assert_eq!(r[6]["duplicate"], true);
    assert_eq!(r[6]["id"], r[5]["id"]);
    let err = |i: usize| r[i]["error"].as_str().unwrap_or_default().to_owned();
    assert!(err(1).starts_with("payload.to[0]"), "{}", err(1));
    assert!(err(3).contains("not both"), "{}", err(3));
    assert!(err(4).contains("JSON object"), "{}", err(4));
    assert!(err(7).contains("no_such_template"), "{}", err(7));
    assert!(err(8).starts_with("idempotency_key:"), "{}", err(8));
    assert!(err(9).starts_with("delay_seconds:"), "{}", err(9));
    for bad in [1, 3, 4, 7, 8, 9] {
        assert!(r[bad].get("id").is_none(), "{}", r[bad]);
        assert_eq!(r[bad]["index"], bad);
    }
    let counts = app.engine.counts(EmailJob::QUEUE).await.unwrap();
    assert_eq!((counts.pending, counts.scheduled), (2, 1));
    let job = app
        .get(
            &format!("/api/v1/jobs/{}", r[2]["id"].as_str().unwrap()),
            Some(&admin),
        )
        .await;
    assert_eq!(job.body["status"], "scheduled");
}

#[tokio::test]
async fn more_than_a_thousand_jobs_is_422_naming_the_limit() {
    let app = app().await;
    let admin = app.admin().await;
    let jobs: Vec<Value> = (0..1001)
        .map(|_| json!({"payload": email("a@example.com")}))
        .collect();
    let a = app
        .post(
            "/api/v1/jobs/email/bulk",
            Some(&admin),
            json!({"jobs": jobs}),
        )
        .await;
    a.expect(422);
    assert_eq!(a.code(), "validation_failed");
    assert!(
        a.body["message"].as_str().unwrap().contains("1000"),
        "{}",
        a.text
    );
    assert_eq!(app.engine.counts(EmailJob::QUEUE).await.unwrap().pending, 0);
}

#[tokio::test]
async fn an_unknown_queue_is_404_and_analysts_get_403() {
    let app = app().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    let body = json!({"jobs": [{"payload": email("a@example.com")}]});
    let a = app
        .post(
            "/api/v1/jobs/no_such_queue/bulk",
            Some(&admin),
            body.clone(),
        )
        .await;
    a.expect(404);
    assert_eq!(a.code(), "not_found");
    assert!(
        a.body["message"].as_str().unwrap().contains("email"),
        "{}",
        a.text
    );
    let a = app
        .post("/api/v1/jobs/email/bulk", Some(&analyst), body.clone())
        .await;
    a.expect(403);
    assert_eq!(a.code(), "forbidden");
    app.post("/api/v1/jobs/email/bulk", None, body)
        .await
        .expect(401);
    assert_eq!(app.engine.counts(EmailJob::QUEUE).await.unwrap().pending, 0);
    // The other routes under /api/v1/jobs/ still answer as before.
    let bulk_action = app
        .post(
            "/api/v1/jobs/bulk",
            Some(&admin),
            json!({"action": "retry", "ids": ["email-01JAAAAAAAAAAAAAAAAAAAAAAA"]}),
        )
        .await;
    bulk_action.expect(200);
    assert_eq!(bulk_action.body["skipped"], 1);
}
