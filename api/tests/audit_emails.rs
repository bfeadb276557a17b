//! Audit-log and email routes: analysts read the audit trail with filters and pages, admins
//! verify its chain (tampering is reported with its sequence number), emails are admin-only.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::TestApp;
use serde_json::json;
use vigil_store::audit::{self, NewAuditRecord};
use vigil_store::emails::{self, EmailStatus, NewEmail};

async fn seed_audit(app: &TestApp, n: i64) {
    let start = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let records: Vec<NewAuditRecord> = (0..n)
        .map(|i| NewAuditRecord {
            event_id: format!("e{i}"),
            occurred_at: start + Duration::minutes(i),
            actor: if i % 2 == 0 { "user:alice" } else { "system" }.to_owned(),
            action: if i % 3 == 0 {
                "job.cancel"
            } else {
                "job.enqueue"
            }
            .to_owned(),
            target_type: "job".into(),
            target_id: format!("J{}", i % 4),
            details: json!({"i": i}),
            request_id: Some(format!("req-{i}")),
            job_id: None,
        })
        .collect();
    audit::append(&app.db.db, &records).await.unwrap();
}

#[tokio::test]
async fn analysts_list_audit_logs_newest_first_with_filters_and_pages() {
    let app = TestApp::new().await;
    seed_audit(&app, 12).await;
    let analyst = app.analyst().await;

    app.get("/api/v1/audit-logs", None).await.expect(401);

    let a = app
        .get("/api/v1/audit-logs?page_size=5", Some(&analyst))
        .await;
    a.expect(200);
    assert_eq!(a.body["count"], 12);
    let seqs: Vec<i64> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [12, 11, 10, 9, 8]);
    assert_eq!(a.body["next"], "/api/v1/audit-logs?page=2&page_size=5");
    assert!(a.body["previous"].is_null());
    let first = &a.body["results"][0];
    assert_eq!(first["event_id"], "e11");
    assert_eq!(first["details"], json!({"i": 11}));
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);

    let a = app
        .get(
            "/api/v1/audit-logs?actor=user:alice&action=job.enqueue",
            Some(&analyst),
        )
        .await;
    a.expect(200);
    // Even i, not a multiple of 3: 2, 4, 8, 10.
    assert_eq!(a.body["count"], 4, "{}", a.text);

    let a = app
        .get(
            "/api/v1/audit-logs?target=job:J1&page_size=2",
            Some(&analyst),
        )
        .await;
    a.expect(200);
    assert_eq!(a.body["count"], 3);
    assert_eq!(
        a.body["next"],
        "/api/v1/audit-logs?page=2&page_size=2&target=job:J1"
    );

    let a = app
        .get(
            "/api/v1/audit-logs?from=2026-11-22T10:03:00Z&to=2026-11-22T10:06:00Z",
            Some(&analyst),
        )
        .await;
    a.expect(200);
    assert_eq!(a.body["count"], 3, "{}", a.text);

    let a = app
        .get(
            "/api/v1/audit-logs?from=2026-11-22T10:06:00Z&to=2026-11-22T10:03:00Z",
            Some(&analyst),
        )
        .await;
    a.expect(422);
    app.get("/api/v1/audit-logs?page_size=501", Some(&analyst))
        .await
        .expect(400);
}

#[tokio::test]
async fn admins_verify_the_chain_and_see_the_first_tampered_record() {
    let app = TestApp::new().await;
    seed_audit(&app, 9).await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;

    let a = app.get("/api/v1/audit-logs/verify", Some(&analyst)).await;
    assert_eq!(a.expect(403).code(), "forbidden");

    let a = app.get("/api/v1/audit-logs/verify", Some(&admin)).await;
    a.expect(200);
    assert_eq!(a.body, json!({"status": "ok", "verified": 9}));

    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(app.db.db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET details = '{\"i\":99}' WHERE seq = 6")
        .execute(app.db.db.pool())
        .await
        .unwrap();
    let a = app.get("/api/v1/audit-logs/verify", Some(&admin)).await;
    a.expect(200);
    assert_eq!(a.body["status"], "failed");
    assert_eq!(a.body["sequence"], 6);
    assert_eq!(a.body["verified"], 5);
    assert_eq!(a.body["fault"], "hash_mismatch");
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .starts_with("FAILED at sequence 6")
    );
}

#[tokio::test]
async fn emails_are_listed_and_read_by_admins_only() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let analyst = app.analyst().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let e = emails::record(
            &app.db.db,
            &NewEmail {
                dedup_key: emails::dedup_key(&format!("J{i}"), None),
                job_id: format!("J{i}"),
                idempotency_key: None,
                message_id: format!("<m{i}@example.com>"),
                recipients: vec!["soc@example.com".into()],
                subject: format!("alert {i}"),
                template: Some("alert_notification".into()),
            },
        )
        .await
        .unwrap();
        ids.push(e.id);
    }
    emails::start_attempt(&app.db.db, ids[1], 60_000)
        .await
        .unwrap();
    emails::mark_failed(
        &app.db.db,
        ids[1],
        EmailStatus::Dead,
        "permanent error (550): no such user",
        Some("550 5.1.1 no such user"),
    )
    .await
    .unwrap();

    let a = app.get("/api/v1/emails", Some(&analyst)).await;
    assert_eq!(a.expect(403).code(), "forbidden");
    app.get("/api/v1/emails", None).await.expect(401);

    let a = app.get("/api/v1/emails?page_size=2", Some(&admin)).await;
    a.expect(200);
    assert_eq!(a.body["count"], 3);
    assert_eq!(a.body["results"][0]["id"], ids[2]);
    assert_eq!(a.body["next"], "/api/v1/emails?page=2&page_size=2");

    let a = app.get("/api/v1/emails?status=dead", Some(&admin)).await;
    a.expect(200);
    assert_eq!(a.body["count"], 1);
    let dead = &a.body["results"][0];
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["smtp_reply"], "550 5.1.1 no such user");
    assert_eq!(dead["attempts"], 1);

    let a = app
        .get(&format!("/api/v1/emails/{}", ids[0]), Some(&admin))
        .await;
    a.expect(200);
    assert_eq!(a.body["status"], "queued");
    assert_eq!(a.body["message_id"], "<m0@example.com>");
    assert_eq!(a.body["recipients"], json!(["soc@example.com"]));

    let a = app.get("/api/v1/emails/999999", Some(&admin)).await;
    assert_eq!(a.expect(404).code(), "not_found");
    let a = app
        .get(&format!("/api/v1/emails/{}", ids[0]), Some(&analyst))
        .await;
    a.expect(403);
    app.get("/api/v1/emails?status=bounced", Some(&admin))
        .await
        .expect(400);
}
