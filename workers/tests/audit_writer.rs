//! The audit writer actor on real databases: concurrent batches are each stored in one
//! transaction and form one verified chain, an acknowledged write is stored, re-delivered
//! events add nothing, two writers on separate pools (two vigil instances) keep one gap-free
//! chain, and invalid jobs fail for good while the rest of their batch is written.

mod common;

use common::system;

use chrono::Utc;
use prometheus::Registry;
use serde_json::json;
use vigil_jobs::{AuditActor, AuditJob};
use vigil_store::Db;
use vigil_store::audit::{self, Verification};
use vigil_testkit::db::TestDb;
use vigil_workers::JobError;
use vigil_workers::audit::{AuditMetrics, AuditWriter, AuditWriterHandle};

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

fn writer(db: &Db, metrics: Option<AuditMetrics>) -> AuditWriterHandle {
    AuditWriter::new(db.clone(), metrics).start_writer()
}

/// Writes `n` events `prefix-0..n` through `w` in batches of `batch`, all batches at once;
/// every write must succeed.
async fn write_all(w: &AuditWriterHandle, prefix: &str, n: usize, batch: usize) {
    let jobs: Vec<AuditJob> = (0..n).map(|i| job(&format!("{prefix}-{i}"), i)).collect();
    let mut tasks = Vec::new();
    for chunk in jobs.chunks(batch) {
        let (w, chunk) = (w.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move { w.write_batch(chunk).await }));
    }
    for t in tasks {
        for r in t.await.expect("task") {
            r.expect("write acknowledged");
        }
    }
}

#[test]
fn concurrent_batches_are_stored_whole_in_one_verified_chain() {
    system(async {
        for t in TestDb::both().await {
            let kind = t.kind();
            let registry = Registry::new();
            let metrics = AuditMetrics::register(&registry).unwrap();
            let w = writer(&t.db, Some(metrics.clone()));
            write_all(&w, "a", 1000, 100).await;
            assert_eq!(
                audit::verify(&t.db).await.unwrap(),
                Verification::Ok { count: 1000 },
                "{kind:?}"
            );
            assert_eq!(metrics.written.get(), 1000, "{kind:?}");
            // One transaction per batch handed over.
            assert_eq!(metrics.batch_size.get_sample_count(), 10, "{kind:?}");
            assert_eq!(metrics.batch_size.get_sample_sum(), 1000.0, "{kind:?}");

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
            let w = writer(&t.db, None);
            write_all(&w, "e", 20, 5).await;
            // The same 20 again, concurrently, in other batches.
            write_all(&w, "e", 20, 3).await;
            // Twice in one batch, and once more alone at the same time.
            let j = job("e-3", 3);
            let (both, alone) = tokio::join!(w.write_batch(vec![j.clone(), j.clone()]), w.write(j));
            for r in both {
                r.unwrap();
            }
            alone.unwrap();
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
            let wa = writer(&db_a, None);
            let wb = writer(&db_b, None);
            let (ra, rb) = tokio::join!(
                async {
                    for round in 0..5 {
                        write_all(&wa, &format!("a{round}"), 200, 64).await;
                    }
                },
                async {
                    for round in 0..5 {
                        write_all(&wb, &format!("b{round}"), 200, 64).await;
                    }
                },
            );
            let ((), ()) = (ra, rb);
            // Both instances also receive the same re-delivered events.
            let (x, y) = tokio::join!(
                write_all(&wa, "shared", 50, 7),
                write_all(&wb, "shared", 50, 9)
            );
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
        let w = writer(&t.db, None);
        let mut bad = job("bad", 0);
        bad.action = "Not Dotted".into();
        let results = w
            .write_batch(vec![job("good-1", 1), bad, job("good-2", 2)])
            .await;
        assert_eq!(results.len(), 3);
        assert!(
            matches!(&results[1], Err(JobError::Permanent(_))),
            "{results:?}"
        );
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert_eq!(
            audit::verify(&t.db).await.unwrap(),
            Verification::Ok { count: 2 }
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
        let w = writer(&t.db, None);
        // Warm-up (connections, statement cache).
        write_all(&w, "warm", 1000, 1000).await;
        let start = std::time::Instant::now();
        // Producers keep 4,000 writes in flight, like a busy audit queue.
        let in_flight = 4000usize;
        let mut done = 0;
        while done < n {
            let k = in_flight.min(n - done);
            write_all(&w, &format!("bench{done}"), k, 1000).await;
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
