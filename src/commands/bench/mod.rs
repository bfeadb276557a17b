//! `vigil bench`: measures the job engine against a Redis server, through the same path
//! `vigil worker` runs (supervised queue actor, apalis worker with timeout, concurrency and
//! panic layers, leases, renewals, batched acks, reaper), and prints JSON lines:
//!
//! 1. `{"system":"vigil","n":..,"enqueue_jobs_per_s":..,"process_jobs_per_s":..,"p50_ms":..,"p99_ms":..}`
//!    where process = drain of an N-job backlog at concurrency C, and p50/p99 = per-job time
//!    from start to outcome recorded in Redis;
//! 2. the baselines: raw pipelined LPUSH ops/s on the same single connection, the bytes a plain
//!    one-hash-per-job layout holds for the same jobs, and the ratios;
//! 3. with `--rate R`: a paced stream of R jobs/s, enqueue-to-start p50/p99.
//!
//! The first line also carries Redis's CPU time per job (`INFO cpu` before the enqueue and
//! after the drain, divided by N: the whole life cycle). `--workload audit` and
//! `--workload email` measure real work instead ([`audit`], [`email`]).
//!
//! Keys live under a fresh `vigil-bench:<id>` prefix, deleted at the end.

mod audit;
mod email;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use serde_json::json;
use vigil_queue::backend::{AttemptOutcome, JobObserver};
use vigil_queue::{
    Engine, EngineSettings, LeasedJob, Queue, QueuesSettings, RedisSettings, SchedulesSettings,
    bench,
};
use vigil_store::db::Db;
use vigil_workers::runtime::{Handler, Runtime, RuntimeBuilder};

use crate::cli::{BenchArgs, Workload};
use vigil_jobs::{AuditJob, Job as _};

const Q: Queue = AuditJob::QUEUE;
/// `--concurrency` of the no-op drain when not given.
const NOOP_CONCURRENCY: usize = 64;

/// Collects per-job timings.
#[derive(Default)]
pub(crate) struct Timings {
    held: Mutex<Vec<Duration>>,
    pickup: Mutex<Vec<Duration>>,
    done: AtomicU64,
}

impl Timings {
    /// Waits until `n` jobs succeeded in all (up to `limit`); how long that took.
    pub(crate) async fn wait_done(
        &self,
        n: u64,
        limit: Duration,
        what: &str,
    ) -> anyhow::Result<Duration> {
        let began = Instant::now();
        while self.done.load(Ordering::Relaxed) < n {
            anyhow::ensure!(
                began.elapsed() < limit,
                "{what} did not finish in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(began.elapsed())
    }
}

impl JobObserver for Timings {
    fn started(&self, job: &LeasedJob) {
        if let Some(t) = job.payload["t"].as_i64() {
            let us = (bench::now_us() - t).max(0) as u64;
            self.pickup
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Duration::from_micros(us));
        }
    }

    fn finished(
        &self,
        _job: &LeasedJob,
        outcome: AttemptOutcome,
        _elapsed: Duration,
        held: Duration,
    ) {
        if outcome == AttemptOutcome::Succeeded {
            self.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(held);
            self.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn noop() -> Handler {
    Arc::new(|_ctx, _payload| async { Ok(()) }.boxed())
}

async fn engine(args: &BenchArgs, config: &RedisSettings, prefix: &str) -> anyhow::Result<Engine> {
    let mut queues = QueuesSettings::default();
    for q in queues_of(args) {
        queues.get_mut(q).concurrency = noop_concurrency(args);
        queues.get_mut(q).timeout_seconds = 60;
    }
    connect(args, config, prefix, queues).await
}

/// An engine on `--redis` (or the configured Redis) under `prefix` with `queues`.
pub(crate) async fn connect(
    args: &BenchArgs,
    config: &RedisSettings,
    prefix: &str,
    queues: QueuesSettings,
) -> anyhow::Result<Engine> {
    let mut redis = match &args.redis {
        Some(url) => RedisSettings {
            url: url.clone(),
            ..RedisSettings::default()
        },
        None => config.clone(),
    };
    redis.prefix = prefix.to_owned();
    Engine::connect(&redis, EngineSettings::default(), queues)
        .await
        .context("while connecting to Redis")
}

fn noop_concurrency(args: &BenchArgs) -> usize {
    args.concurrency.unwrap_or(NOOP_CONCURRENCY).max(1)
}

/// The queues the bench uses: the audit queue, or every registered queue with `--spread`.
fn queues_of(args: &BenchArgs) -> Vec<Queue> {
    if args.spread { Queue::all() } else { vec![Q] }
}

/// Runs the benchmark.
pub async fn run(args: &BenchArgs, config: &RedisSettings) -> anyhow::Result<()> {
    if args.workload != Workload::Noop {
        anyhow::ensure!(
            !args.spread && args.rate.is_none(),
            "--spread and --rate measure no-op jobs: leave them out of --workload {}",
            format!("{:?}", args.workload).to_lowercase()
        );
    }
    match args.workload {
        Workload::Audit => {
            anyhow::ensure!(
                args.smtp.is_none(),
                "--smtp is for --workload email (audit jobs send no email)"
            );
            return audit::run(args, config).await;
        }
        Workload::Email => return email::run(args, config).await,
        Workload::Noop => {
            anyhow::ensure!(
                args.database.is_none(),
                "--database is for --workload audit or email (no-op jobs touch no database)"
            );
            anyhow::ensure!(
                args.smtp.is_none(),
                "--smtp is for --workload email (no-op jobs send no email)"
            );
        }
    }
    let prefix = format!("vigil-bench:{}", vigil_queue::lease::new_ulid());
    let engine = engine(args, config, &prefix).await?;
    let outcome = measure(args, &engine).await;
    clean_up(&engine, &prefix).await;
    outcome
}

async fn measure(args: &BenchArgs, engine: &Engine) -> anyhow::Result<()> {
    let n = args.n.max(1) as usize;
    let queues = queues_of(args);
    let baseline = bench::baseline_lpush(engine, n).await?;
    let memory_before = bench::used_memory(engine).await;
    let cpu_before = bench::used_cpu_seconds(engine).await;
    let began = Instant::now();
    let share = n.div_ceil(queues.len());
    let mut enqueued = 0;
    for q in &queues {
        let k = share.min(n - enqueued);
        bench::enqueue_noop(engine, *q, k).await?;
        enqueued += k;
    }
    let enqueue = n as f64 / began.elapsed().as_secs_f64().max(1e-9);

    let timings = Arc::new(Timings::default());
    let rt = queues
        .iter()
        .fold(runtime(engine, &timings), |rt, q| rt.handler(*q, noop()))
        .start()?;
    let drain = timings
        .wait_done(n as u64, Duration::from_secs(600), "drain")
        .await?;
    let process = n as f64 / drain.as_secs_f64();
    let cpu_per_job_us = cpu_us_per_job(cpu_before, bench::used_cpu_seconds(engine).await, n);
    // Finished jobs stay until their retention: what each one holds, payload included.
    let per_job = match (memory_before, bench::used_memory(engine).await) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a)) as f64 / n as f64),
        _ => None,
    };
    // The same-run baseline: the plain one-hash-per-job layout's bytes for the same jobs.
    let hash_per_job = bench::baseline_hash_bytes(engine, AuditJob::QUEUE, n.min(20_000)).await?;
    let mut held = std::mem::take(&mut *timings.held.lock().unwrap_or_else(|e| e.into_inner()));
    let line = json!({
        "system": "vigil",
        "redis": engine.connector().describe(),
        "queues": queues.len(),
        "n": n,
        "redis_bytes_per_finished_job": per_job.map(f64::round),
        "enqueue_jobs_per_s": f64::round(enqueue),
        "process_jobs_per_s": f64::round(process),
        "p50_ms": round3(bench::percentile_ms(&mut held, 50.0)),
        "p99_ms": round3(bench::percentile_ms(&mut held, 99.0)),
        "redis_cpu_us_per_job": cpu_per_job_us,
    });
    emit(line)?;
    emit(json!({
            "baseline": "redis LPUSH, pipelined, same single connection",
            "n": n,
            "concurrency": noop_concurrency(args),
            "lpush_ops_per_s": f64::round(baseline),
            "enqueue_vs_lpush": round3(enqueue / baseline),
            "process_vs_lpush": round3(process / baseline),
            "hash_per_job_bytes": hash_per_job.map(f64::round),
            "finished_job_bytes_vs_hash_per_job": per_job
                .zip(hash_per_job)
                .map(|(v, h)| round3(v / h.max(1.0))),
            "p50_p99_meaning": "per job, from start to outcome recorded in Redis",
    }))?;

    if let Some(rate) = args.rate {
        timings
            .pickup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let count = (rate * 5).max(200);
        let before = timings.done.load(Ordering::Relaxed);
        let every = Duration::from_secs_f64(1.0 / rate as f64);
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..count {
            ticker.tick().await;
            engine.enqueue_raw(vec![bench::noop_job(Q)]).await?;
        }
        timings
            .wait_done(before + count, Duration::from_secs(60), "latency run")
            .await?;
        let mut pickup =
            std::mem::take(&mut *timings.pickup.lock().unwrap_or_else(|e| e.into_inner()));
        emit(json!({
                "system": "vigil",
                "mode": "latency",
                "rate_jobs_per_s": rate,
                "n": count,
                "enqueue_to_start_p50_ms": round3(bench::percentile_ms(&mut pickup, 50.0)),
                "enqueue_to_start_p99_ms": round3(bench::percentile_ms(&mut pickup, 99.0)),
        }))?;
    }
    rt.shutdown().await;
    Ok(())
}

/// Prints one JSON result line. A closed stdout (`vigil bench | head -1`) is an error the
/// caller returns after cleaning up, not a panic.
pub(crate) fn emit(line: serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}").context("while writing the results to stdout")
}

/// The bench's runtime: named `bench`, no schedules, its own metrics, `timings` seeing every job.
pub(crate) fn runtime(engine: &Engine, timings: &Arc<Timings>) -> RuntimeBuilder {
    Runtime::builder(
        engine.clone(),
        SchedulesSettings(BTreeMap::new()),
        &prometheus::Registry::new(),
    )
    .name("bench")
    .schedules(false)
    .observer(timings.clone())
}

/// Deletes the bench's keys under `prefix`; what it could not delete is said, not fatal.
pub(crate) async fn clean_up(engine: &Engine, prefix: &str) {
    if let Err(e) = bench::cleanup(engine).await {
        eprintln!("vigil bench: could not delete keys under {prefix}: {e}");
    }
}

/// Redis CPU per job in µs, one decimal, from `INFO cpu` seconds before and after `n` jobs.
pub(crate) fn cpu_us_per_job(before: Option<f64>, after: Option<f64>, n: usize) -> Option<f64> {
    let us = (after? - before?).max(0.0) * 1e6 / n.max(1) as f64;
    Some((us * 10.0).round() / 10.0)
}

/// The scratch database of `--workload audit|email`, migrated; `missing` says why it is needed.
pub(crate) async fn scratch_db(args: &BenchArgs, missing: &'static str) -> anyhow::Result<Db> {
    let url = args.database.as_deref().context(missing)?;
    let db = Db::connect(url, 8)
        .await
        .with_context(|| format!("while connecting to {}", vigil_store::db::redact_url(url)))?;
    db.migrate().await.context("while applying migrations")?;
    Ok(db)
}

pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
