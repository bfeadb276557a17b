//! Measurement helpers behind `vigil bench`: the raw Redis baseline (pipelined LPUSH on the
//! same single multiplexed connection the engine uses), bulk enqueue of no-op jobs,
//! percentiles, and cleanup of the bench's own key prefix (nothing else is touched).

use std::time::{Duration, Instant};

use serde_json::json;
use vigil_jobs::Queue;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::model::NewJob;

/// Jobs per enqueue round trip and round trips in flight (one connection, pipelined).
pub const BATCH: usize = 500;
pub const IN_FLIGHT: usize = 4;

/// Pushes `n` items with pipelined LPUSH (batches of [`BATCH`], [`IN_FLIGHT`] in flight on
/// the engine's connection). Returns ops/s.
pub async fn baseline_lpush(engine: &Engine, n: usize) -> Result<f64, EngineError> {
    let key = format!("{}:bench:baseline", engine.prefix());
    let began = Instant::now();
    let batches: Vec<usize> = chunk_sizes(n);
    let mut iter = batches.into_iter();
    loop {
        let mut set = Vec::new();
        for size in iter.by_ref().take(IN_FLIGHT) {
            let mut c = engine.redis();
            let key = key.clone();
            set.push(async move {
                let mut pipe = redis::pipe();
                for i in 0..size {
                    pipe.lpush(&key, i).ignore();
                }
                pipe.query_async::<()>(&mut c).await
            });
        }
        if set.is_empty() {
            break;
        }
        for r in futures::future::join_all(set).await {
            r?;
        }
    }
    let secs = began.elapsed().as_secs_f64();
    let mut c = engine.redis();
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut c).await?;
    Ok(n as f64 / secs.max(1e-9))
}

/// Enqueues `n` no-op jobs on `queue` ([`BATCH`] per script call, [`IN_FLIGHT`] in flight).
/// Each payload carries its enqueue time in µs (`t`). Returns jobs/s.
pub async fn enqueue_noop(engine: &Engine, queue: Queue, n: usize) -> Result<f64, EngineError> {
    let began = Instant::now();
    let mut iter = chunk_sizes(n).into_iter();
    loop {
        let mut set = Vec::new();
        for size in iter.by_ref().take(IN_FLIGHT) {
            let jobs: Vec<NewJob> = (0..size).map(|_| noop_job(queue)).collect();
            set.push(engine.enqueue_raw(jobs));
        }
        if set.is_empty() {
            break;
        }
        for r in futures::future::join_all(set).await {
            r?;
        }
    }
    Ok(n as f64 / began.elapsed().as_secs_f64().max(1e-9))
}

/// One `INFO <section>` of the server (None on a Cluster, where each node has its own).
async fn info(engine: &Engine, section: &str) -> Option<String> {
    if engine.redis().is_cluster() {
        return None;
    }
    let mut c = engine.redis();
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut c)
        .await
        .ok()
}

/// The value of `field` (e.g. `used_memory`) in an `INFO` answer.
fn info_field<T: std::str::FromStr>(info: &str, field: &str) -> Option<T> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// Redis `used_memory` in bytes (None on a Cluster, where it is per node).
pub async fn used_memory(engine: &Engine) -> Option<u64> {
    info_field(&info(engine, "memory").await?, "used_memory")
}

/// Redis's CPU time so far (`used_cpu_sys` + `used_cpu_user` of `INFO cpu`), in seconds;
/// `None` on a Cluster (several servers).
pub async fn used_cpu_seconds(engine: &Engine) -> Option<f64> {
    let info = info(engine, "cpu").await?;
    Some(info_field::<f64>(&info, "used_cpu_sys")? + info_field::<f64>(&info, "used_cpu_user")?)
}

/// The plain layout's bytes per finished job, as a same-run baseline: `n` no-op jobs kept
/// the way a job hash per job plus a status index keeps them (one hash key per job with
/// payload, status, attempts and times, and a sorted-set entry), measured by `used_memory`
/// and deleted again. `None` on a Cluster.
pub async fn baseline_hash_bytes(
    engine: &Engine,
    queue: Queue,
    n: usize,
) -> Result<Option<f64>, EngineError> {
    let Some(before) = used_memory(engine).await else {
        return Ok(None);
    };
    let base = format!("{}:bench:{{hash}}:", engine.prefix());
    let index = format!("{base}done");
    let now = chrono::Utc::now().timestamp_millis();
    let mut c = engine.redis();
    for start in (0..n).step_by(BATCH) {
        let mut pipe = redis::pipe();
        for i in start..(start + BATCH).min(n) {
            let id = crate::keys::new_job_id(queue);
            let payload = serde_json::to_string(&noop_job(queue).payload).unwrap_or_default();
            pipe.hset_multiple(
                format!("{base}job:{id}"),
                &[
                    ("payload", payload),
                    ("status", "done".to_owned()),
                    ("attempts", "1".to_owned()),
                    ("max_attempts", "8".to_owned()),
                    ("created_at", (now + i as i64).to_string()),
                    ("run_at", (now + i as i64).to_string()),
                    ("started_at", (now + i as i64 + 1).to_string()),
                    ("finished_at", (now + i as i64 + 2).to_string()),
                ],
            )
            .ignore()
            .zadd(&index, &id, now + i as i64)
            .ignore();
        }
        pipe.query_async::<()>(&mut c).await?;
    }
    let after = used_memory(engine).await;
    let deleted = cleanup_pattern(engine, &format!("{base}*")).await;
    deleted?;
    Ok(after.map(|a| a.saturating_sub(before) as f64 / n.max(1) as f64))
}

/// A no-op job stamped with the current wall clock (µs since the epoch).
pub fn noop_job(queue: Queue) -> NewJob {
    NewJob::new(queue, json!({ "t": now_us() }))
}

/// Wall clock in µs since the epoch.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn chunk_sizes(n: usize) -> Vec<usize> {
    let mut out = vec![BATCH; n / BATCH];
    if !n.is_multiple_of(BATCH) {
        out.push(n % BATCH);
    }
    out
}

/// The p-th percentile (0..=100) of `samples` (sorted in place), in ms.
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

/// Deletes every key under the engine's prefix (the bench's own prefix only). On a Cluster,
/// where a scan sees one node, finished jobs are pruned and each queue's keys deleted one by
/// one (the bench leaves no unfinished job).
pub async fn cleanup(engine: &Engine) -> Result<u64, EngineError> {
    let mut c = engine.redis();
    if c.is_cluster() {
        let mut deleted = engine.prune_older_than(Duration::ZERO).await?;
        let mut keys = vec![
            format!("{}:bench:baseline", engine.prefix()),
            engine.keys().instances(),
        ];
        for q in engine.queues_settings().queues() {
            keys.extend(engine.keys().queue_keys(q));
        }
        for key in keys {
            let n: u64 = redis::cmd("UNLINK").arg(&key).query_async(&mut c).await?;
            deleted += n;
        }
        return Ok(deleted);
    }
    cleanup_pattern(engine, &format!("{}:*", engine.prefix())).await
}

/// Deletes the keys matching `pattern` (standalone and Sentinel: one SCAN walk).
async fn cleanup_pattern(engine: &Engine, pattern: &str) -> Result<u64, EngineError> {
    let mut c = engine.redis();
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(5_000)
            .query_async(&mut c)
            .await?;
        if !keys.is_empty() {
            deleted += keys.len() as u64;
            let _: () = redis::cmd("UNLINK").arg(keys).query_async(&mut c).await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
