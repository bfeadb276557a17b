//! The audit writer actor on real databases: concurrent writes are batched into one verified
//! chain, an acknowledged write is stored, re-delivered events add nothing, two writers on
//! separate pools (two vigil instances) keep one gap-free chain, and invalid jobs fail for
//! good.

mod common;

use std::time::Duration;

use common::system;

use chrono::Utc;
use prometheus::Registry;
use serde_json::json;
use vigil_jobs::{AuditActor, AuditJob};
use vigil_store::Db;
use vigil_store::audit::{self, Verification};
use vigil_testkit::db::TestDb;
use vigil_workers::JobError;
use vigil_workers::audit::{AuditMetrics, AuditWriter, AuditWriterHandle, AuditWriterSettings};

fn job(event_id: &str, i: usize) -> AuditJob {
    AuditJob {
        event_id: event_id.to_owned(),
        occurred_at: Utc::now(),
        actor: if i.is_multiple_of(2) {
            AuditActor::User("alice".into())
        } else {
            AuditActor::System
        },
        action: "job.enqueue".into(),
        target_type: "job".into(),
        target_id: format!("01J{i:05}"),
        details: json!({"queue": "email", "i": i}),
        request_id: Some(format!("req-{i}")),
        job_id: None,
    }
}

fn writer(db: &Db, max_batch: usize, metrics: Option<AuditMetrics>) -> AuditWriterHandle {
    AuditWriter::new(
        db.clone(),
        AuditWriterSettings {
            max_batch,
            max_delay: Duration::from_millis(5),
        },
        metrics,
    )
    .start_writer()
}

/// Writes `n` events `prefix-0..n` through `w`, all at once; every write must succeed.
async fn write_all(w: &AuditWriterHandle, prefix: &str, n: usize) {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let w = w.clone();
        let j = job(&format!("{prefix}-{i}"), i);
        tasks.push(tokio::spawn(async move { w.write(j).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("write acknowledged");
    }
}

#[test]
fn concurrent_writes_are_batched_into_one_verified_chain() {
    system(async {
        for t in TestDb::both().await {
            let kind = t.kind();
            let registry = Registry::new();
            let metrics = AuditMetrics::register(&registry).unwrap();
            let w = writer(&t.db, 100, Some(metrics.clone()));
            write_all(&w, "a", 1000).await;
            assert_eq!(
                audit::verify(&t.db).await.unwrap(),
                Verification::Ok { count: 1000 },
                "{kind:?}"
            );
            assert_eq!(metrics.written.get(), 1000, "{kind:?}");
            let batches = metrics.batch_size.get_sample_count();
            assert!(
                (10..1000).contains(&batches),
                "{kind:?}: 1000 records in {batches} batches"
            );

            // An acknowledged write is readable at once.
            w.write(job("after", 1)).await.unwrap();
            let page = audit::list(&t.db, &Default::default(), 1, 1).await.unwrap();
            assert_eq!(page.items[0].event_id, "after", "{kind:?}");
            assert_eq!(page.items[0].seq, 1001, "{kind:?}");
        }
    });
}

#[test]
fn redelivered_events_add_nothing() {
    system(async {
        for t in TestDb::both().await {
            let kind = t.kind();
            let w = writer(&t.db, 50, None);
            write_all(&w, "e", 20).await;
            // The same 20 again, concurrently (some land in the same batch as each other).
            write_all(&w, "e", 20).await;
            let j = job("e-3", 3);
            let (a, b) = tokio::join!(w.write(j.clone()), w.write(j));
            a.unwrap();
            b.unwrap();
            assert_eq!(
                audit::verify(&t.db).await.unwrap(),
                Verification::Ok { count: 20 },
                "{kind:?}"
            );
        }
    });
}

#[test]
fn two_instances_writing_at_once_keep_one_gap_free_chain() {
    system(async {
        for t in TestDb::both().await {
            let kind = t.kind();
            // Two "vigil instances": separate pools, separate writer actors, same database.
            let db_a = Db::connect(&t.url, 4).await.unwrap();
            let db_b = Db::connect(&t.url, 4).await.unwrap();
            let wa = writer(&db_a, 64, None);
            let wb = writer(&db_b, 64, None);
            let (ra, rb) = tokio::join!(
                async {
                    for round in 0..5 {
                        write_all(&wa, &format!("a{round}"), 200).await;
                    }
                },
                async {
                    for round in 0..5 {
                        write_all(&wb, &format!("b{round}"), 200).await;
                    }
                },
            );
            let ((), ()) = (ra, rb);
            // Both instances also receive the same re-delivered events.
            let (x, y) = tokio::join!(write_all(&wa, "shared", 50), write_all(&wb, "shared", 50));
            let ((), ()) = (x, y);
            assert_eq!(
                audit::verify(&t.db).await.unwrap(),
                Verification::Ok { count: 2050 },
                "{kind:?}"
            );
            // Both instances' records are interleaved in the one chain.
            let actors_a = audit::list(
                &t.db,
                &audit::AuditFilter {
                    actor: Some("user:alice".into()),
                    ..Default::default()
                },
                1,
                1,
            )
            .await
            .unwrap();
            assert_eq!(actors_a.total, 1025, "{kind:?}");
            db_a.close().await;
            db_b.close().await;
        }
    });
}

#[test]
fn an_invalid_job_fails_for_good_and_others_in_its_batch_are_written() {
    system(async {
        let t = TestDb::sqlite().await;
        let w = writer(&t.db, 10, None);
        let mut bad = job("bad", 0);
        bad.action = "Not Dotted".into();
        let (bad, good) = tokio::join!(w.write(bad), w.write(job("good", 1)));
        assert!(matches!(bad, Err(JobError::Permanent(_))), "{bad:?}");
        good.unwrap();
        assert_eq!(
            audit::verify(&t.db).await.unwrap(),
            Verification::Ok { count: 1 }
        );
    });
}

/// Benchmark (figures, not a test): `cargo test -p vigil-workers --release --test
/// audit_writer -- --ignored --nocapture`. Prints one JSON line.
#[test]
#[ignore]
fn bench_audit_records_per_second_on_postgres() {
    system(async {
        let t = TestDb::postgres().await;
        let n: usize = std::env::var("VIGIL_BENCH_AUDIT_RECORDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50_000);
        let w = writer(&t.db, 1000, None);
        // Warm-up (connections, statement cache).
        write_all(&w, "warm", 1000).await;
        let start = std::time::Instant::now();
        // Producers keep 4,000 writes in flight, like a busy audit queue.
        let in_flight = 4000usize;
        let mut done = 0;
        while done < n {
            let k = in_flight.min(n - done);
            write_all(&w, &format!("bench{done}"), k).await;
            done += k;
        }
        let secs = start.elapsed().as_secs_f64();
        let v = audit::verify(&t.db).await.unwrap();
        assert!(v.is_ok(), "{v}");
        let verify_secs = start.elapsed().as_secs_f64() - secs;
        println!(
            "{}",
            json!({
                "bench": "audit_write_batched",
                "engine": "postgres",
                "records": n,
                "seconds": (secs * 1000.0).round() / 1000.0,
                "records_per_second": (n as f64 / secs).round(),
                "max_batch": 1000,
                "verify_seconds": (verify_secs * 1000.0).round() / 1000.0,
            })
        );
    });
}
