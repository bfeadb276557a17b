//! Per-minute series of one queue, behind the dashboard's charts: jobs enqueued, done, failed
//! (and retrying) and dead per minute, and the enqueue-to-start wait and run duration (p50,
//! p95) from per-minute histograms.
//!
//! The transitions write them (`scripts`: `series_add`, `hist_add`) into one hash per queue
//! and minute, `P:{q}:stat:m:<minute>`, that expires after 25 hours: the series is bounded
//! whatever the traffic. Reads group the minutes into steps (1 minute for the last hour,
//! 15 minutes for the last day) in one pipeline within the queue's slot.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_jobs::Queue;

use super::{Engine, ms_to_time};
use crate::error::EngineError;
use crate::scripts::SERIES_BOUNDS_MS;

/// One step of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// The step's start (server time).
    pub at: DateTime<Utc>,
    pub enqueued: u64,
    pub done: u64,
    /// Attempts that failed and will be retried.
    pub failed: u64,
    /// Jobs that died (last attempt failed, permanent error, or lease expired at the last attempt).
    pub dead: u64,
    /// Enqueue-to-start wait of the attempts started in this step (ms; none without any).
    pub wait_p50_ms: Option<f64>,
    pub wait_p95_ms: Option<f64>,
    /// Run duration of the attempts that ended in this step (ms; none without any).
    pub run_p50_ms: Option<f64>,
    pub run_p95_ms: Option<f64>,
}

/// A queue's series over a window, oldest step first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub queue: Queue,
    pub step_seconds: u32,
    pub points: Vec<SeriesPoint>,
}

/// The longest window kept (the hashes expire after 25 hours).
pub const SERIES_MAX_MINUTES: u32 = 24 * 60;

impl Engine {
    /// The last `minutes` (up to a day) of `queue`, in steps of `step_minutes`, ending with
    /// the current (partial) minute.
    pub async fn series(
        &self,
        queue: Queue,
        minutes: u32,
        step_minutes: u32,
    ) -> Result<Series, EngineError> {
        let minutes = minutes.clamp(1, SERIES_MAX_MINUTES);
        let step = step_minutes.clamp(1, minutes);
        let steps = minutes.div_ceil(step);
        let now = self.server_time().await?.timestamp_millis() / 60_000;
        let first = now - i64::from(steps * step) + 1;
        let mut pipe = redis::pipe();
        for m in first..=now {
            pipe.hgetall(self.keys.stat(queue, "m", m));
        }
        let mut c = self.conn.clone();
        let minutes: Vec<HashMap<String, u64>> = pipe.query_async(&mut c).await?;
        let points = minutes
            .chunks(step as usize)
            .enumerate()
            .map(|(i, chunk)| {
                let at = ms_to_time((first + i as i64 * i64::from(step)) * 60_000);
                point(at, chunk)
            })
            .collect();
        Ok(Series {
            queue,
            step_seconds: step * 60,
            points,
        })
    }
}

/// Sums the minutes of one step.
fn point(at: DateTime<Utc>, minutes: &[HashMap<String, u64>]) -> SeriesPoint {
    let sum = |f: &str| minutes.iter().filter_map(|m| m.get(f)).sum::<u64>();
    let hist = |prefix: &str| -> Vec<u64> {
        (1..=SERIES_BOUNDS_MS.len() + 1)
            .map(|i| sum(&format!("{prefix}{i}")))
            .collect()
    };
    let (wait, run) = (hist("w"), hist("r"));
    SeriesPoint {
        at,
        enqueued: sum("e"),
        done: sum("d"),
        failed: sum("f"),
        dead: sum("x"),
        wait_p50_ms: percentile(&wait, 0.50),
        wait_p95_ms: percentile(&wait, 0.95),
        run_p50_ms: percentile(&run, 0.50),
        run_p95_ms: percentile(&run, 0.95),
    }
}

/// The `p` quantile of a histogram over [`SERIES_BOUNDS_MS`] (one count per bucket, then the
/// overflow), interpolated within its bucket; the overflow reads as the last bound.
pub fn percentile(counts: &[u64], p: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = p.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let last = *SERIES_BOUNDS_MS.last()? as f64;
            let upper = SERIES_BOUNDS_MS.get(i).map_or(last, |b| *b as f64);
            let lower = match i {
                0 => 0.0,
                _ => SERIES_BOUNDS_MS.get(i - 1).map_or(last, |b| *b as f64),
            };
            let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lower + within * (upper - lower));
        }
        below += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(entries: &[(usize, u64)]) -> Vec<u64> {
        let mut h = vec![0; SERIES_BOUNDS_MS.len() + 1];
        for (i, n) in entries {
            h[*i] = *n;
        }
        h
    }

    #[test]
    fn an_empty_histogram_has_no_percentile() {
        assert_eq!(percentile(&hist(&[]), 0.5), None);
    }

    #[test]
    fn percentiles_fall_in_the_right_bucket() {
        // 90 attempts of at most 1 ms, 10 between 250 and 500 ms.
        let h = hist(&[(0, 90), (8, 10)]);
        let p50 = percentile(&h, 0.5).unwrap();
        assert!((0.0..=1.0).contains(&p50), "{p50}");
        let p95 = percentile(&h, 0.95).unwrap();
        assert!((250.0..=500.0).contains(&p95), "{p95}");
        assert_eq!(percentile(&h, 1.0), Some(500.0));
    }

    #[test]
    fn the_overflow_reads_as_the_last_bound() {
        let h = hist(&[(SERIES_BOUNDS_MS.len(), 3)]);
        assert_eq!(percentile(&h, 0.5), Some(300_000.0));
    }

    #[test]
    fn a_step_sums_its_minutes() {
        let m = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let p = point(
            Utc::now(),
            &[
                m(&[("e", 3), ("d", 2), ("r1", 2), ("w3", 1)]),
                m(&[("e", 1), ("f", 1), ("x", 1)]),
            ],
        );
        assert_eq!((p.enqueued, p.done, p.failed, p.dead), (4, 2, 1, 1));
        assert!(p.run_p50_ms.unwrap() <= 1.0);
        assert!((2.0..=5.0).contains(&p.wait_p95_ms.unwrap()));
    }
}
