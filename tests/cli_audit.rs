//! `vigil audit verify` as an operator runs it: the real binary against a real database,
//! intact (OK + count, exit 0) and tampered (FAILED at the sequence, exit non-zero); and the
//! SMTP password given through `smtp.password_file` is never printed by check-config.

mod support;

use std::process::Output;

use support::vigil;

use chrono::Utc;
use serde_json::json;
use vigil_store::audit::{self, NewAuditRecord};
use vigil_testkit::db::TestDb;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn audit_verify_reports_ok_then_the_first_tampered_record() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let records: Vec<NewAuditRecord> = (0..25)
            .map(|i| NewAuditRecord {
                event_id: format!("e{i}"),
                occurred_at: Utc::now(),
                actor: "user:alice".into(),
                action: "job.enqueue".into(),
                target_type: "job".into(),
                target_id: i.to_string(),
                details: json!({"i": i}),
                request_id: None,
                job_id: None,
            })
            .collect();
        audit::append(&t.db, &records).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let env = [("VIGIL_DATABASE__URL", t.url.as_str())];

        let out = vigil(dir.path(), &["audit", "verify"], &env);
        assert!(out.status.success(), "{kind:?}: {out:?}");
        assert_eq!(stdout(&out).trim(), "OK 25 records", "{kind:?}");

        let drop = match kind {
            vigil_store::DbKind::Postgres => "DROP TRIGGER audit_log_no_update_delete ON audit_log",
            vigil_store::DbKind::Sqlite => "DROP TRIGGER audit_log_no_update",
        };
        sqlx::query(drop).execute(t.db.pool()).await.unwrap();
        sqlx::query("UPDATE audit_log SET target_id = 'forged' WHERE seq = 17")
            .execute(t.db.pool())
            .await
            .unwrap();
        let out = vigil(dir.path(), &["audit", "verify"], &env);
        assert!(!out.status.success(), "{kind:?}: {out:?}");
        let s = stdout(&out);
        assert!(
            s.starts_with("FAILED at sequence 17: hash mismatch"),
            "{kind:?}: {s}"
        );
    }
}

#[test]
fn the_smtp_password_file_is_read_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("smtp_pw"), "s3cret-smtp-pass\n").unwrap();
    std::fs::write(
        dir.path().join("vigil.toml"),
        "[smtp]\nhost = \"mail.example.com\"\nport = 587\ntls = \"starttls\"\nusername = \"vigil\"\npassword_file = \"smtp_pw\"\n",
    )
    .unwrap();
    let out = vigil(
        dir.path(),
        &["--config", "vigil.toml", "check-config"],
        support::WITH_SECRET,
    );
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(all.contains("mail.example.com"), "{all}");
    assert!(!all.contains("s3cret"), "{all}");
}
