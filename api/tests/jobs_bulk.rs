//! `DELETE /api/v1/jobs/{id}`, `POST /api/v1/jobs/bulk` and job search through the API:
//! admin only, audited, bounded and resumable, clear errors for bad requests.

mod common;

use common::TestApp;
use poem::http::Method;
use serde_json::{Value, json};
use vigil_jobs::{EmailJob, Job as _};
use vigil_queue::NewJob;

fn email(to: &str) -> Value {
    json!({"to": [to], "subject": "hi", "body": {"text": "x"}})
}

/// `n` dead email jobs to `to`, their error `error`.
async fn dead_emails(app: &TestApp, n: usize, to: &str, error: &str) -> Vec<String> {
    let e = &app.engine;
    let ids: Vec<String> = e
        .enqueue_raw(
            (0..n)
                .map(|_| NewJob::new(EmailJob::QUEUE, email(to)))
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.job.id)
        .collect();
    let mut left = n;
    while left > 0 {
        let jobs = e.lease(EmailJob::QUEUE, "w", 100).await.unwrap().jobs;
        assert!(!jobs.is_empty());
        for job in jobs {
            e.fail(&job, error, true).await.unwrap();
            left -= 1;
        }
    }
    ids
}

async fn dead_count(app: &TestApp) -> u64 {
    app.engine.counts(EmailJob::QUEUE).await.unwrap().dead
}

fn audited_actions(audit: &[Value], action: &str) -> Vec<Value> {
    audit
        .iter()
        .filter(|p| p["action"] == action)
        .cloned()
        .collect()
}

#[tokio::test]
async fn delete_a_job_as_admin_audited() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    let id = app
        .post(
            "/api/v1/jobs/email",
            Some(&admin),
            json!({"payload": email("soc@example.com"), "delay_seconds": 600}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/jobs/{id}");
    app.call(Method::DELETE, &path, Some(&analyst), None)
        .await
        .expect(403);
    app.call(Method::DELETE, &path, Some(&admin), None)
        .await
        .expect(204);
    app.get(&path, Some(&admin)).await.expect(404);
    let again = app.call(Method::DELETE, &path, Some(&admin), None).await;
    again.expect(404);
    assert_eq!(again.code(), "not_found");
    assert_eq!(
        app.engine.counts(EmailJob::QUEUE).await.unwrap().scheduled,
        0
    );
    // A running job cannot be deleted.
    let running = app
        .post(
            "/api/v1/jobs/email",
            Some(&admin),
            json!({"payload": email("a@example.com")}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let leased = app
        .engine
        .lease(EmailJob::QUEUE, "w", 10)
        .await
        .unwrap()
        .jobs;
    assert_eq!(leased[0].id, running);
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/jobs/{running}"),
            Some(&admin),
            None,
        )
        .await;
    r.expect(409);
    assert!(
        r.body["message"].as_str().unwrap().contains("running"),
        "{}",
        r.text
    );
    let audit = app.audited().await;
    let deleted = audited_actions(&audit, "job.delete");
    assert_eq!(deleted.len(), 1, "{audit:?}");
    assert_eq!(deleted[0]["target_id"], id.as_str());
    assert_eq!(deleted[0]["actor"]["id"], "admin");
}

#[tokio::test]
async fn bulk_retry_by_filter_is_bounded_resumable_and_audited() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    dead_emails(&app, 30, "soc@example.com", "554 refused").await;
    assert_eq!(dead_count(&app).await, 30);
    let body = |cursor: Option<&str>| {
        let mut b = json!({"action": "retry", "filter": {"queue": "email", "status": "dead"},
                           "limit": 20});
        if let Some(c) = cursor {
            b["cursor"] = c.into();
        }
        b
    };
    let first = app
        .post("/api/v1/jobs/bulk", Some(&admin), body(None))
        .await;
    first.expect(200);
    assert_eq!(first.body["count"], 20, "{}", first.text);
    assert_eq!(first.body["action"], "retry");
    let cursor = first.body["cursor"]
        .as_str()
        .expect("more to do")
        .to_owned();
    assert_eq!(dead_count(&app).await, 10);
    let second = app
        .post("/api/v1/jobs/bulk", Some(&admin), body(Some(&cursor)))
        .await;
    second.expect(200);
    assert_eq!(second.body["count"], 10, "{}", second.text);
    assert!(second.body.get("cursor").is_none(), "{}", second.text);
    assert_eq!(dead_count(&app).await, 0);
    assert_eq!(
        app.engine.counts(EmailJob::QUEUE).await.unwrap().pending,
        30
    );
    let audit = app.audited().await;
    let bulk = audited_actions(&audit, "job.bulk");
    assert_eq!(bulk.len(), 2, "{audit:?}");
    let counts: Vec<&Value> = bulk.iter().map(|b| &b["details"]["count"]).collect();
    assert!(
        counts.contains(&&json!(20)) && counts.contains(&&json!(10)),
        "{bulk:?}"
    );
    assert_eq!(bulk[0]["details"]["action"], "retry");
}

#[tokio::test]
async fn bulk_by_ids_and_by_error_text() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let timeouts = dead_emails(&app, 3, "alice@example.com", "connection timeout").await;
    let refused = dead_emails(&app, 2, "bob@example.com", "554 refused").await;
    // Delete every dead email job whose error says timeout.
    let r = app
        .post(
            "/api/v1/jobs/bulk",
            Some(&admin),
            json!({"action": "delete", "filter": {"queue": "email", "q": "timeout"}}),
        )
        .await;
    r.expect(200);
    assert_eq!(
        (r.body["count"].clone(), r.body["skipped"].clone()),
        (json!(3), json!(2))
    );
    for id in &timeouts {
        app.get(&format!("/api/v1/jobs/{id}"), Some(&admin))
            .await
            .expect(404);
    }
    // Cancel by ids: dead jobs are not cancellable, so both are skipped; retry takes them.
    let r = app
        .post(
            "/api/v1/jobs/bulk",
            Some(&admin),
            json!({"action": "cancel", "ids": refused}),
        )
        .await;
    r.expect(200);
    assert_eq!(
        (r.body["count"].clone(), r.body["skipped"].clone()),
        (json!(0), json!(2))
    );
    let r = app
        .post(
            "/api/v1/jobs/bulk",
            Some(&admin),
            json!({"action": "retry", "ids": refused}),
        )
        .await;
    assert_eq!(r.body["count"], 2, "{}", r.text);
}

#[tokio::test]
async fn bulk_refuses_unclear_requests_with_clear_errors() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    let filter = json!({"queue": "email"});
    let cases = [
        (json!({"action": "retry"}), 422, "exactly one"),
        (
            json!({"action": "retry", "ids": ["x"], "filter": filter}),
            422,
            "exactly one",
        ),
        (
            json!({"action": "retry", "filter": {"status": "pending"}}),
            422,
            "valid: failed, dead",
        ),
        (
            json!({"action": "retry", "filter": filter, "cursor": "nope"}),
            422,
            "cursor",
        ),
        (
            json!({"action": "retry", "ids": ["x"], "limit": 5}),
            422,
            "only with filter",
        ),
    ];
    for (body, status, says) in cases {
        let r = app
            .post("/api/v1/jobs/bulk", Some(&admin), body.clone())
            .await;
        r.expect(status);
        assert!(
            r.body["message"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.text
        );
    }
    let too_many: Vec<String> = (0..1001).map(|i| format!("email-{i}")).collect();
    let r = app
        .post(
            "/api/v1/jobs/bulk",
            Some(&admin),
            json!({"action": "delete", "ids": too_many}),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text);
    let r = app
        .post(
            "/api/v1/jobs/bulk",
            Some(&admin),
            json!({"action": "explode", "ids": ["x"]}),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text);
    app.post(
        "/api/v1/jobs/bulk",
        Some(&analyst),
        json!({"action": "retry", "filter": filter}),
    )
    .await
    .expect(403);
}

#[tokio::test]
async fn jobs_are_searched_by_payload_and_error_text_newest_created_first() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let alice = dead_emails(&app, 2, "alice@example.com", "mailbox full").await;
    let bob = dead_emails(&app, 1, "bob@example.com", "554 refused").await;
    let found = app
        .get("/api/v1/jobs?queue=email&q=alice%40example", Some(&admin))
        .await;
    found.expect(200);
    let ids: Vec<&str> = found.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![alice[1].as_str(), alice[0].as_str()],
        "newest created first"
    );
    assert_eq!(found.body["count"], 2);
    let by_error = app.get("/api/v1/jobs?q=554", Some(&admin)).await;
    assert_eq!(by_error.body["count"], 1, "{}", by_error.text);
    assert_eq!(by_error.body["results"][0]["id"], bob[0].as_str());
    // Paging keeps the search in its links.
    let paged = app
        .get("/api/v1/jobs?q=alice&page_size=1", Some(&admin))
        .await;
    assert_eq!(
        paged.body["next"],
        "/api/v1/jobs?page=2&page_size=1&q=alice"
    );
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let none = app
        .get(
            &format!("/api/v1/jobs?created_after={}", future.replace('+', "%2B")),
            Some(&admin),
        )
        .await;
    none.expect(200);
    assert_eq!(none.body["count"], 0, "{}", none.text);
}
