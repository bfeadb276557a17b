//! Reads: one job by id, lists newest first, exact counts, and per-queue stats. Every
//! pipeline stays within one queue (one Cluster slot).

use std::collections::HashMap;

use redis::AsyncCommands;
use vigil_jobs::{JobRecord, JobStatus, Queue, QueueCounts};

use super::{Engine, ms_to_time, with_keys};
use crate::error::EngineError;
use crate::keys::queue_of_id;
use crate::model::{JobFilter, JobPage, QueueStats};
use crate::scripts;

/// Merged listings across indexes are capped at this depth.
const MERGE_DEPTH: u64 = 20_000;

impl Engine {
    /// One job by id (`None` for an unknown id or one vigil did not make).
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, EngineError> {
        let (Some(queue), Some(key)) = (queue_of_id(id), self.keys.job(id)) else {
            return Ok(None);
        };
        let mut c = self.conn.clone();
        let map: HashMap<String, String> = c.hgetall(key).await?;
        Ok(record_from_hash(id, queue, &map))
    }

    /// Jobs by id, in the order given (missing ones left out); one pipeline per queue.
    pub(crate) async fn get_many(&self, ids: &[String]) -> Result<Vec<JobRecord>, EngineError> {
        let mut found: HashMap<&str, JobRecord> = HashMap::with_capacity(ids.len());
        for queue in Queue::ALL {
            let mine: Vec<&String> = ids
                .iter()
                .filter(|id| queue_of_id(id) == Some(queue))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for id in &mine {
                if let Some(k) = self.keys.job(id) {
                    pipe.hgetall(k);
                }
            }
            let mut c = self.conn.clone();
            let maps: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
            for (id, map) in mine.into_iter().zip(maps) {
                if let Some(r) = record_from_hash(id, queue, &map) {
                    found.insert(id.as_str(), r);
                }
            }
        }
        Ok(ids
            .iter()
            .filter_map(|id| found.remove(id.as_str()))
            .collect())
    }

    /// Jobs matching `filter`, newest first (by the time they entered their status).
    pub async fn list(&self, filter: &JobFilter) -> Result<JobPage, EngineError> {
        let page = filter.page.max(1) as u64;
        let size = filter.page_size.clamp(1, 500) as u64;
        let queues: Vec<Queue> = filter.queue.map(|q| vec![q]).unwrap_or(Queue::ALL.to_vec());
        let statuses: Vec<JobStatus> = filter
            .status
            .map(|s| vec![s])
            .unwrap_or(JobStatus::ALL.to_vec());
        let start = (page - 1) * size;
        let single = queues.len() == 1 && statuses.len() == 1;
        let upto = (start + size).min(MERGE_DEPTH);
        let mut total = 0u64;
        let mut entries: Vec<(String, f64)> = Vec::new();
        for q in &queues {
            let keys: Vec<String> = statuses.iter().map(|s| self.keys.status(*q, *s)).collect();
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.zcard(k);
            }
            for k in &keys {
                let (from, to) = if single {
                    (start, start + size - 1)
                } else {
                    (0, upto.saturating_sub(1))
                };
                pipe.cmd("ZRANGE")
                    .arg(k)
                    .arg(from)
                    .arg(to)
                    .arg("REV")
                    .arg("WITHSCORES");
            }
            let mut c = self.conn.clone();
            let mut answer: Vec<redis::Value> = pipe.query_async(&mut c).await?;
            let ranges = answer.split_off(keys.len());
            for v in answer {
                total += redis::from_redis_value::<u64>(v).unwrap_or(0);
            }
            for v in ranges {
                let part: Vec<(String, f64)> = redis::from_redis_value(v).unwrap_or_default();
                entries.extend(part);
            }
        }
        let ids: Vec<String> = if single {
            entries.into_iter().map(|(id, _)| id).collect()
        } else {
            entries.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
            entries
                .into_iter()
                .skip(start as usize)
                .take(size as usize)
                .map(|(id, _)| id)
                .collect()
        };
        let jobs = self.get_many(&ids).await?;
        Ok(JobPage { total, jobs })
    }

    /// Jobs of `queue` per status (exact: every transition updates these indexes atomically).
    pub async fn counts(&self, queue: Queue) -> Result<QueueCounts, EngineError> {
        Ok(self.queue_stats(queue).await?.counts)
    }

    /// One queue's counts, pause flag and last-minute throughput, in one script call.
    pub async fn queue_stats(&self, queue: Queue) -> Result<QueueStats, EngineError> {
        let mut inv = scripts::STATS.prepare_invoke();
        with_keys(&mut inv, &self.keys, queue);
        let mut c = self.conn.clone();
        let v: Vec<u64> = inv.invoke_async(&mut c).await?;
        let mut counts = QueueCounts::default();
        for (s, n) in JobStatus::ALL.into_iter().zip(v.iter()) {
            counts.set(s, *n);
        }
        let at = |i: usize| v.get(JobStatus::ALL.len() + i).copied().unwrap_or(0);
        Ok(QueueStats {
            queue,
            counts,
            paused: at(0) == 1,
            processed_last_minute: at(1),
            failed_last_minute: at(2),
        })
    }

    /// Every queue's counts, pause flag and last-minute throughput.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, EngineError> {
        let all = futures::future::join_all(Queue::ALL.map(|q| self.queue_stats(q))).await;
        all.into_iter().collect()
    }
}

/// A job hash to a record (None when the hash is missing or damaged).
pub(crate) fn record_from_hash(
    id: &str,
    queue: Queue,
    map: &HashMap<String, String>,
) -> Option<JobRecord> {
    let get = |k: &str| map.get(k).map(String::as_str);
    let ms = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok()).map(ms_to_time);
    Some(JobRecord {
        id: id.to_owned(),
        queue,
        payload: serde_json::from_str(get("payload")?).unwrap_or(serde_json::Value::Null),
        status: get("status")?.parse().ok()?,
        attempts: get("attempts").and_then(|v| v.parse().ok()).unwrap_or(0),
        max_attempts: get("max_attempts")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        errors: get("errors")
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default(),
        idempotency_key: get("idem").filter(|v| !v.is_empty()).map(str::to_owned),
        created_at: ms("created_at")?,
        run_at: ms("run_at")?,
        started_at: ms("started_at"),
        finished_at: ms("finished_at"),
    })
}
