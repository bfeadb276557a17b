//! `vigil bench --workload audit --database URL`: real audit records, drained from the
//! `audit` queue into the database's hash chain through the same runtime path the daemon
//! runs, twice in one run:
//!
//! 1. the baseline: one record per transaction (`batch_size = 1`) with 8 jobs in flight, as
//!    the audit queue ran before it had a batch handler, on N/10 jobs (at least 1,000);
//! 2. the audit queue's own settings (`batch_size`, `batch_linger_ms`, `concurrency`: the
//!    kind's defaults, or `--concurrency` when given), on N jobs.
//!
//! It prints one JSON line per run and the ratio, then verifies the chain. Audit records are
//! append-only, so the database must be a scratch one; its schema is migrated first.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use vigil_jobs::{AuditActor, AuditJob, Job as _, QueueSettings};
use vigil_queue::{NewJob, QueuesSettings, RedisSettings};
use vigil_store::Db;
use vigil_workers::audit::AuditWriter;

use super::{Timings, clean_up, connect, emit, round3, runtime, scratch_db};
use crate::cli::BenchArgs;

/// One measured drain.
struct Drain {
    n: usize,
    jobs_per_s: f64,
    settings: QueueSettings,
}

pub async fn run(args: &BenchArgs, config: &RedisSettings) -> anyhow::Result<()> {
    let db = scratch_db(
        args,
        "--workload audit needs --database URL (a scratch database: audit records cannot be deleted)",
    )
    .await?;
    let n = args.n.max(1) as usize;
    let tag = vigil_queue::lease::new_ulid();

    let mut one_by_one = AuditJob::settings();
    one_by_one.batch_size = 1;
    one_by_one.concurrency = 8;
    let baseline = drain(
        args,
        config,
        &db,
        (n / 10).max(1_000).min(n),
        &format!("{tag}-b"),
        one_by_one,
    )
    .await?;
    let mut batched = AuditJob::settings();
    if let Some(c) = args.concurrency {
        batched.concurrency = c.max(1);
    }
    let measured = drain(args, config, &db, n, &format!("{tag}-m"), batched).await?;

    let verified = vigil_store::audit::verify(&db).await?;
    anyhow::ensure!(
        verified.is_ok(),
        "the audit chain does not verify: {verified}"
    );
    emit(json!({
        "system": "vigil",
        "workload": "audit",
        "database": format!("{:?}", db.kind()).to_lowercase(),
        "n": measured.n,
        "process_jobs_per_s": f64::round(measured.jobs_per_s),
        "batch_size": measured.settings.batch_size,
        "batch_linger_ms": measured.settings.batch_linger_ms,
        "concurrency": measured.settings.concurrency,
        "chain_verified": true,
    }))?;
    emit(json!({
        "baseline": "audit jobs one record per transaction, 8 in flight (before batch handlers)",
        "n": baseline.n,
        "process_jobs_per_s": f64::round(baseline.jobs_per_s),
        "batched_vs_baseline": round3(measured.jobs_per_s / baseline.jobs_per_s.max(1e-9)),
    }))?;
    db.close().await;
    Ok(())
}

/// Enqueues `n` audit jobs under a fresh prefix and drains them with `settings`.
async fn drain(
    args: &BenchArgs,
    config: &RedisSettings,
    db: &Db,
    n: usize,
    tag: &str,
    settings: QueueSettings,
) -> anyhow::Result<Drain> {
    let prefix = format!("vigil-bench:{tag}");
    let mut queues = QueuesSettings::default();
    *queues.get_mut(AuditJob::QUEUE) = settings.clone();
    let engine = connect(args, config, &prefix, queues).await?;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| {
            let job = AuditJob {
                event_id: format!("bench-{tag}-{i}"),
                occurred_at: Utc::now(),
                actor: AuditActor::System,
                action: "bench.record".to_owned(),
                target_type: "bench".to_owned(),
                target_id: i.to_string(),
                details: json!({ "i": i }),
                request_id: None,
                job_id: None,
            };
            NewJob::new(
                AuditJob::QUEUE,
                serde_json::to_value(job).unwrap_or_default(),
            )
        })
        .collect();
    // The engine sends them in slices of its own, one script call each.
    engine.enqueue_many(jobs).await?;
    let timings = Arc::new(Timings::default());
    let rt = runtime(&engine, &timings)
        .batch_job::<AuditJob>(AuditWriter::new(db.clone(), None).start_writer())
        .start()?;
    let outcome = timings
        .wait_done(n as u64, Duration::from_secs(900), "the audit drain")
        .await;
    rt.shutdown().await;
    clean_up(&engine, &prefix).await;
    let took = outcome?;
    Ok(Drain {
        n,
        jobs_per_s: n as f64 / took.as_secs_f64().max(1e-9),
        settings,
    })
}
