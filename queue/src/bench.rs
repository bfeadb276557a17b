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
        for q in Queue::ALL {
            keys.extend(engine.keys().queue_keys(q));
        }
        for key in keys {
            let n: u64 = redis::cmd("UNLINK").arg(&key).query_async(&mut c).await?;
            deleted += n;
        }
        return Ok(deleted);
    }
    let pattern = format!("{}:*", engine.prefix());
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
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
