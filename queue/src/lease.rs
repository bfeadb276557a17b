//! The worker side of a job: a leased job with its fencing token, the outcome of a failure,
//! and the retry backoff (exponential with full jitter).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_jobs::Queue;

use crate::settings::QueueSettings;

/// A job a worker holds under a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeasedJob {
    pub id: String,
    pub queue: Queue,
    /// This attempt's number (1-based; counted when the lease was taken).
    pub attempt: u32,
    pub max_attempts: u32,
    /// The fencing token `<worker id>:<attempt>`: complete/fail succeed only with it.
    pub token: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// When the job was due (enqueue-to-start latency = `started_at - run_at`).
    pub run_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
}

/// What one lease call returned.
#[derive(Debug, Clone, Default)]
pub struct LeaseBatch {
    pub jobs: Vec<LeasedJob>,
    /// The queue is paused: nothing was leased.
    pub paused: bool,
    /// When the earliest delayed or retrying job is due, if any.
    pub next_due: Option<DateTime<Utc>>,
    /// More jobs are due right now.
    pub more: bool,
}

/// What a failed attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Another attempt is scheduled at this time.
    Retry { run_at: DateTime<Utc> },
    /// Attempts exhausted or permanent error: the job is dead.
    Dead,
    /// The lease had been taken over (fencing): nothing was changed.
    Stale,
}

/// A new worker id, unique per process start: `<host>-<pid>-<ulid>`.
pub fn new_worker_id(name: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{name}@{host}-{}-{}", std::process::id(), new_ulid())
}

/// A new ULID: time-sortable, and increasing within this process even inside one
/// millisecond (so "newest first" is exact for jobs enqueued by one producer).
pub fn new_ulid() -> String {
    static LAST: std::sync::Mutex<(u64, u128)> = std::sync::Mutex::new((0, 0));
    let ms = Utc::now().timestamp_millis().max(0) as u64;
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let (ms, random) = if ms <= last.0 {
        (last.0, last.1.wrapping_add(1) & ((1u128 << 80) - 1))
    } else {
        // Leave headroom so increments within the millisecond never overflow.
        (ms, rand::random::<u128>() & ((1u128 << 79) - 1))
    };
    *last = (ms, random);
    ulid::Ulid::from_parts(ms, random).to_string()
}

/// The longest wait before retry `n` (the wait after failed attempt `n`):
/// `min(backoff_max_ms, backoff_base_ms * 2^(n-1))`.
pub fn backoff_ceiling(settings: &QueueSettings, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(62);
    let ceiling = settings
        .backoff_base_ms
        .saturating_mul(1u64 << exp)
        .min(settings.backoff_max_ms);
    Duration::from_millis(ceiling)
}

/// A random wait in `[0, backoff_ceiling(attempt)]` (full jitter).
pub fn retry_delay(settings: &QueueSettings, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(settings, attempt).as_millis() as u64;
    Duration::from_millis(rand::random_range(0..=ceiling))
}

/// The worker named in a fencing token (`worker:attempt`); none for an empty or odd token.
pub fn worker_of(token: &str) -> Option<String> {
    token
        .rsplit_once(':')
        .filter(|(w, attempt)| !w.is_empty() && attempt.parse::<u32>().is_ok())
        .map(|(w, _)| w.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let s = QueueSettings {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..QueueSettings::default()
        };
        let c: Vec<u64> = (1..=6)
            .map(|n| backoff_ceiling(&s, n).as_millis() as u64)
            .collect();
        assert_eq!(c, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff_ceiling(&s, 200).as_millis(), 1_000);
        for n in 1..10 {
            assert!(retry_delay(&s, n) <= backoff_ceiling(&s, n));
        }
    }
}
