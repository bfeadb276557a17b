//! The audit chain on both engines: appends across batches stay one verified chain, event ids
//! are stored once, UPDATE/DELETE are rejected, tampering is found with its sequence number,
//! concurrent writers on separate pools keep one gap-free chain, and the list query filters
//! and pages newest first.

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use vigil_store::audit::{self, AuditFilter, ChainFault, NewAuditRecord, Verification};
use vigil_store::{Db, DbKind};
use vigil_testkit::db::TestDb;

fn rec(event_id: &str, actor: &str, action: &str, target_id: &str, minute: i64) -> NewAuditRecord {
    NewAuditRecord {
        event_id: event_id.to_owned(),
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
            + Duration::minutes(minute),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target_type: "job".to_owned(),
        target_id: target_id.to_owned(),
        details: json!({"queue": "email", "n": minute, "nested": {"b": 1, "a": [1, 2]}}),
        request_id: Some(format!("req-{event_id}")),
        job_id: None,
    }
}

fn batch(prefix: &str, n: usize) -> Vec<NewAuditRecord> {
    (0..n)
        .map(|i| {
            rec(
                &format!("{prefix}-{i}"),
                "system",
                "job.enqueue",
                &i.to_string(),
                i as i64,
            )
        })
        .collect()
}

#[tokio::test]
async fn batches_form_one_verified_chain_and_event_ids_are_stored_once() {
    for t in TestDb::both().await {
        let kind = t.kind();
        assert_eq!(
            audit::verify(&t.db).await.unwrap(),
            Verification::Ok { count: 0 },
            "{kind:?}: an empty chain is intact"
        );
        let first = audit::append(&t.db, &batch("a", 3)).await.unwrap();
        assert_eq!(
            (first.written, first.duplicates, first.head_seq),
            (3, 0, 3),
            "{kind:?}"
        );
        let second = audit::append(&t.db, &batch("b", 1200)).await.unwrap();
        assert_eq!((second.written, second.head_seq), (1200, 1203), "{kind:?}");

        // A re-delivered batch adds nothing; repeats inside one batch are stored once.
        let again = audit::append(&t.db, &batch("a", 3)).await.unwrap();
        assert_eq!((again.written, again.duplicates), (0, 3), "{kind:?}");
        let mixed = vec![
            rec("c-1", "system", "x.y", "1", 0),
            rec("c-1", "system", "x.y", "1", 0),
            rec("b-5", "system", "x.y", "1", 0),
        ];
        let out = audit::append(&t.db, &mixed).await.unwrap();
        assert_eq!(
            (out.written, out.duplicates, out.head_seq),
            (1, 2, 1204),
            "{kind:?}"
        );

        let v = audit::verify(&t.db).await.unwrap();
        assert_eq!(v, Verification::Ok { count: 1204 }, "{kind:?}");
        assert_eq!(v.to_string(), "OK 1204 records");

        let r1 = audit::get(&t.db, 1).await.unwrap().unwrap();
        assert_eq!(r1.prev_hash, audit::GENESIS_HASH, "{kind:?}");
        let r2 = audit::get(&t.db, 2).await.unwrap().unwrap();
        assert_eq!(r2.prev_hash, r1.hash, "{kind:?}");
        assert_eq!(r1.details["nested"]["a"], json!([1, 2]), "{kind:?}");
        assert_eq!(r1.request_id.as_deref(), Some("req-a-0"), "{kind:?}");
    }
}

async fn raw(db: &Db, sql: &str) -> Result<u64, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db.pool())
        .await
        .map(|d| d.rows_affected())
}

#[tokio::test]
async fn update_and_delete_are_rejected_by_the_database() {
    for t in TestDb::both().await {
        let kind = t.kind();
        audit::append(&t.db, &batch("a", 2)).await.unwrap();
        let upd = raw(
            &t.db,
            "UPDATE audit_log SET action = 'forged' WHERE seq = 1",
        )
        .await;
        let err = upd.expect_err("UPDATE must fail").to_string();
        assert!(err.contains("append-only"), "{kind:?}: {err}");
        let del = raw(&t.db, "DELETE FROM audit_log WHERE seq = 2").await;
        let err = del.expect_err("DELETE must fail").to_string();
        assert!(err.contains("append-only"), "{kind:?}: {err}");
        if kind == DbKind::Postgres {
            let err = raw(&t.db, "TRUNCATE audit_log")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("append-only"), "{kind:?}: {err}");
        }
        assert_eq!(audit::count(&t.db).await.unwrap(), 2, "{kind:?}");
        assert!(audit::verify(&t.db).await.unwrap().is_ok(), "{kind:?}");
    }
}

/// Removes the append-only triggers, as someone with owner rights on the database could.
async fn drop_triggers(db: &Db) {
    match db.kind() {
        DbKind::Postgres => {
            raw(db, "DROP TRIGGER audit_log_no_update_delete ON audit_log")
                .await
                .unwrap();
        }
        DbKind::Sqlite => {
            raw(db, "DROP TRIGGER audit_log_no_update").await.unwrap();
            raw(db, "DROP TRIGGER audit_log_no_delete").await.unwrap();
        }
    }
}

#[tokio::test]
async fn verify_names_the_first_tampered_record() {
    for t in TestDb::both().await {
        let kind = t.kind();
        audit::append(&t.db, &batch("a", 10)).await.unwrap();
        drop_triggers(&t.db).await;

        // A changed field: the record's own hash no longer matches.
        raw(
            &t.db,
            "UPDATE audit_log SET details = '{\"queue\":\"okta_fetch\"}' WHERE seq = 7",
        )
        .await
        .unwrap();
        raw(
            &t.db,
            "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 4",
        )
        .await
        .unwrap();
        match audit::verify(&t.db).await.unwrap() {
            Verification::Failed {
                seq,
                verified,
                fault,
            } => {
                assert_eq!((seq, verified), (4, 3), "{kind:?}");
                assert!(
                    matches!(fault, ChainFault::HashMismatch { .. }),
                    "{kind:?}: {fault}"
                );
            }
            ok => panic!("{kind:?}: tampering not detected: {ok}"),
        }
    }
    for t in TestDb::both().await {
        let kind = t.kind();
        audit::append(&t.db, &batch("a", 10)).await.unwrap();
        drop_triggers(&t.db).await;
        // A removed record: a gap.
        raw(&t.db, "DELETE FROM audit_log WHERE seq = 5")
            .await
            .unwrap();
        let v = audit::verify(&t.db).await.unwrap();
        assert_eq!(
            v,
            Verification::Failed {
                seq: 5,
                verified: 4,
                fault: ChainFault::Gap { found: 6 }
            },
            "{kind:?}"
        );
        assert!(
            v.to_string().starts_with("FAILED at sequence 5: gap"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn a_record_rewritten_with_a_consistent_hash_breaks_the_next_link() {
    for t in TestDb::both().await {
        let kind = t.kind();
        audit::append(&t.db, &batch("a", 5)).await.unwrap();
        drop_triggers(&t.db).await;
        // The attacker rewrites record 3 and gives it a hash that matches its new content.
        let mut r3 = audit::get(&t.db, 3).await.unwrap().unwrap();
        assert_eq!(audit::compute_hash(&r3), r3.hash, "{kind:?}");
        r3.actor = "user:mallory".to_owned();
        let forged = audit::compute_hash(&r3);
        sqlx::query("UPDATE audit_log SET actor = $1, hash = $2 WHERE seq = 3")
            .bind(r3.actor.as_str())
            .bind(forged.as_str())
            .execute(t.db.pool())
            .await
            .unwrap();
        match audit::verify(&t.db).await.unwrap() {
            Verification::Failed {
                seq: 4,
                verified: 3,
                fault: ChainFault::BrokenLink { found, expected },
            } => {
                // Record 4 still links to the original hash of record 3.
                assert_eq!(expected, forged, "{kind:?}");
                assert_ne!(found, forged, "{kind:?}");
            }
            other => panic!("{kind:?}: {other}"),
        }
    }
}

#[tokio::test]
async fn concurrent_writers_on_separate_pools_keep_one_gap_free_chain() {
    for t in TestDb::both().await {
        let kind = t.kind();
        // Two "instances": two pools on the same database, each with several writers.
        let a = Db::connect(&t.url, 4).await.unwrap();
        let b = Db::connect(&t.url, 4).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..8 {
            let db = if w % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                for round in 0..10 {
                    let recs = batch(&format!("w{w}-r{round}"), 25);
                    audit::append(&db, &recs).await.unwrap();
                    // Half the writers re-deliver a batch another writer may also send.
                    audit::append(&db, &batch(&format!("shared-{round}"), 5))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let expected = 8 * 10 * 25 + 10 * 5;
        assert_eq!(
            audit::verify(&t.db).await.unwrap(),
            Verification::Ok { count: expected },
            "{kind:?}"
        );
        assert_eq!(audit::count(&t.db).await.unwrap(), expected, "{kind:?}");
        a.close().await;
        b.close().await;
    }
}

#[tokio::test]
async fn list_filters_and_pages_newest_first() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let mut recs = Vec::new();
        for i in 0..30i64 {
            let actor = if i % 3 == 0 { "user:alice" } else { "system" };
            let action = if i % 2 == 0 {
                "job.enqueue"
            } else {
                "job.cancel"
            };
            recs.push(rec(
                &format!("e{i}"),
                actor,
                action,
                &format!("t{}", i % 5),
                i,
            ));
        }
        audit::append(&t.db, &recs).await.unwrap();

        let all = audit::list(&t.db, &AuditFilter::default(), 1, 7)
            .await
            .unwrap();
        assert_eq!(all.total, 30, "{kind:?}");
        let seqs: Vec<i64> = all.items.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [30, 29, 28, 27, 26, 25, 24], "{kind:?}");
        let last = audit::list(&t.db, &AuditFilter::default(), 5, 7)
            .await
            .unwrap();
        assert_eq!(
            last.items.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 1],
            "{kind:?}"
        );
        let beyond = audit::list(&t.db, &AuditFilter::default(), 6, 7)
            .await
            .unwrap();
        assert!(beyond.items.is_empty(), "{kind:?}");

        let f = AuditFilter {
            actor: Some("user:alice".into()),
            ..Default::default()
        };
        let page = audit::list(&t.db, &f, 1, 100).await.unwrap();
        assert_eq!(page.total, 10, "{kind:?}");
        assert!(
            page.items.iter().all(|r| r.actor == "user:alice"),
            "{kind:?}"
        );

        let f = AuditFilter {
            actor: Some("user:alice".into()),
            action: Some("job.enqueue".into()),
            ..Default::default()
        };
        let page = audit::list(&t.db, &f, 1, 100).await.unwrap();
        // i in 0..30 with i % 6 == 0: 0, 6, 12, 18, 24.
        assert_eq!(page.total, 5, "{kind:?}");

        let f = AuditFilter {
            target_type: Some("job".into()),
            target_id: Some("t2".into()),
            ..Default::default()
        };
        assert_eq!(
            audit::list(&t.db, &f, 1, 100).await.unwrap().total,
            6,
            "{kind:?}"
        );

        let start = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let f = AuditFilter {
            from: Some(start + Duration::minutes(10)),
            to: Some(start + Duration::minutes(20)),
            ..Default::default()
        };
        let page = audit::list(&t.db, &f, 1, 100).await.unwrap();
        assert_eq!(page.total, 10, "{kind:?}: from inclusive, to exclusive");
        assert_eq!(
            page.items.first().map(|r| r.event_id.as_str()),
            Some("e19"),
            "{kind:?}"
        );
        assert_eq!(
            page.items.last().map(|r| r.event_id.as_str()),
            Some("e10"),
            "{kind:?}"
        );

        let f = AuditFilter {
            action: Some("nothing.here".into()),
            ..Default::default()
        };
        let empty = audit::list(&t.db, &f, 1, 10).await.unwrap();
        assert_eq!((empty.total, empty.items.len()), (0, 0), "{kind:?}");
    }
}
