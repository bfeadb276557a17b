//! Reads: one job by id, lists newest first, exact counts, and per-queue stats. Every
//! pipeline stays within one queue (one Cluster slot).

use std::collections::HashMap;

use vigil_jobs::{JobRecord, JobStatus, Queue, QueueCounts};

use super::{Engine, ms_to_time, with_keys};
use crate::error::EngineError;
use crate::keys::queue_of_id;
use crate::lease::worker_of;
use crate::model::{JobFilter, JobPage, QueueStats};
use crate::scripts;

/// Merged listings across indexes are capped at this depth.
const MERGE_DEPTH: u64 = 20_000;

impl Engine {
    /// One job by id (`None` for an unknown id or one vigil did not make).
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, EngineError> {
        Ok(self.get_many(&[id.to_owned()]).await?.pop())
    }

    /// Jobs by id, in the order given (missing ones left out); one pipeline per queue, asking
    /// for each id's hash and its done record (`fin`) at once.
    pub(crate) async fn get_many(&self, ids: &[String]) -> Result<Vec<JobRecord>, EngineError> {
        let mut found: HashMap<&str, JobRecord> = HashMap::with_capacity(ids.len());
        for queue in self.queues.queues() {
            let mine: Vec<&String> = ids
                .iter()
                .filter(|id| queue_of_id(id) == Some(queue))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            let fin = self.keys.fin(queue);
            for id in &mine {
                if let Some(k) = self.keys.job(id) {
                    pipe.hgetall(k).hget(&fin, id.as_str());
                }
            }
            let mut c = self.conn.clone();
            let answers: Vec<(HashMap<String, String>, Option<String>)> =
                pipe.query_async(&mut c).await?;
            let mut short_named: Vec<&str> = Vec::new();
            for (id, (map, done)) in mine.into_iter().zip(answers) {
                let record = match record_from_hash(id, queue, &map) {
                    Some(r) => Some(r),
                    None => done
                        .and_then(|v| record_from_fin(id, queue, &v))
                        .inspect(|r| {
                            if r.worker.is_some() {
                                short_named.push(id.as_str());
                            }
                        }),
                };
                if let Some(r) = record {
                    found.insert(id.as_str(), r);
                }
            }
            self.name_workers(queue, &short_named, &mut found).await?;
        }
        Ok(ids
            .iter()
            .filter_map(|id| found.remove(id.as_str()))
            .collect())
    }

    /// Replaces the short worker names of done records (`ids`) with the whole worker ids.
    async fn name_workers<'a>(
        &self,
        queue: Queue,
        ids: &[&'a str],
        found: &mut HashMap<&'a str, JobRecord>,
    ) -> Result<(), EngineError> {
        let shorts: Vec<String> = ids
            .iter()
            .filter_map(|id| found.get(id).and_then(|r| r.worker.clone()))
            .collect();
        if shorts.is_empty() {
            return Ok(());
        }
        let mut c = self.conn.clone();
        let names: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.fin_workers(queue))
            .arg(&shorts)
            .query_async(&mut c)
            .await?;
        let names: HashMap<&String, String> = shorts
            .iter()
            .zip(names)
            .filter_map(|(s, n)| n.map(|n| (s, n)))
            .collect();
        for id in ids {
            if let Some(r) = found.get_mut(id)
                && let Some(name) = r.worker.as_ref().and_then(|w| names.get(w))
            {
                r.worker = Some(name.clone());
            }
        }
        Ok(())
    }

    /// Jobs matching `filter`, newest first (by the time they entered their status).
    pub async fn list(&self, filter: &JobFilter) -> Result<JobPage, EngineError> {
        let page = filter.page.max(1) as u64;
        let size = filter.page_size.clamp(1, 500) as u64;
        let queues: Vec<Queue> = filter
            .queue
            .map(|q| vec![q])
            .unwrap_or_else(|| self.queues.queues());
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
        let all = futures::future::join_all(
            self.queues
                .queues()
                .into_iter()
                .map(|q| self.queue_stats(q)),
        )
        .await;
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
        worker: get("token").and_then(worker_of),
    })
}

/// A done job's compact record (see `scripts::COMPLETE`) to a record (None when damaged).
pub(crate) fn record_from_fin(id: &str, queue: Queue, value: &str) -> Option<JobRecord> {
    // Version 2 adds the worker's length after the errors' (version 1 has no worker).
    let (version, value) = value.split_once('|')?;
    let fields = match version {
        "1" => 9,
        "2" => 10,
        _ => return None,
    };
    let mut head = value.splitn(fields, '|');
    let mut n = || head.next()?.parse::<i64>().ok();
    let (attempts, max_attempts, created) = (n()?, n()?, n()?);
    let (run_after, start_after, run_for) = (n()?, n()?, n()?);
    let (idem_len, errors_len) = (usize::try_from(n()?).ok()?, usize::try_from(n()?).ok()?);
    let worker_len = if fields == 10 {
        usize::try_from(n()?).ok()?
    } else {
        0
    };
    let rest = head.next()?;
    let idem = rest.get(..idem_len)?;
    let errors = rest.get(idem_len..idem_len + errors_len)?;
    let worker = rest.get(idem_len + errors_len..idem_len + errors_len + worker_len)?;
    let payload = rest.get(idem_len + errors_len + worker_len..)?;
    let started = created + start_after;
    Some(JobRecord {
        id: id.to_owned(),
        queue,
        payload: serde_json::from_str(payload).unwrap_or(serde_json::Value::Null),
        status: JobStatus::Done,
        attempts: u32::try_from(attempts).ok()?,
        max_attempts: u32::try_from(max_attempts).ok()?,
        errors: serde_json::from_str(errors).unwrap_or_default(),
        idempotency_key: (!idem.is_empty()).then(|| idem.to_owned()),
        created_at: ms_to_time(created),
        run_at: ms_to_time(created + run_after),
        started_at: Some(ms_to_time(started)),
        finished_at: Some(ms_to_time(started + run_for)),
        worker: (!worker.is_empty()).then(|| worker.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_record_reads_back_with_every_field() {
        let errors = r#"[{"attempt":1,"at":"2026-12-07T01:00:00Z","error":"e"}]"#;
        let v = format!(
            "1|2|5|1765000000000|250|300|42|3|{}|k|1{errors}{}",
            errors.len(),
            r#"{"to":["a|b@x.org"]}"#
        );
        let r =
            record_from_fin("email-01JABCDEFGHJKMNPQRSTVWXYZ0", Queue::new("email"), &v).unwrap();
        assert_eq!(r.status, JobStatus::Done);
        assert_eq!((r.attempts, r.max_attempts), (2, 5));
        assert_eq!(r.created_at.timestamp_millis(), 1_765_000_000_000);
        assert_eq!(r.run_at.timestamp_millis(), 1_765_000_000_250);
        assert_eq!(r.started_at.unwrap().timestamp_millis(), 1_765_000_000_300);
        assert_eq!(r.finished_at.unwrap().timestamp_millis(), 1_765_000_000_342);
        assert_eq!(r.idempotency_key.as_deref(), Some("k|1"));
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.payload["to"][0], "a|b@x.org");
    }

    #[test]
    fn a_version_2_record_reads_back_its_worker() {
        let worker = "run@host-1-01JABC-email-01JDEF";
        let v = format!(
            "2|1|5|1765000000000|0|3|40|0|0|{}|{worker}{}",
            worker.len(),
            r#"{"to":["a@x.org"]}"#
        );
        let r =
            record_from_fin("email-01JABCDEFGHJKMNPQRSTVWXYZ0", Queue::new("email"), &v).unwrap();
        assert_eq!(r.worker.as_deref(), Some(worker));
        assert_eq!(r.payload["to"][0], "a@x.org");
        assert_eq!(r.finished_at.unwrap().timestamp_millis(), 1_765_000_000_043);
    }

    #[test]
    fn a_damaged_or_unknown_record_is_none() {
        let q = Queue::new("audit");
        assert!(record_from_fin("a", q, "3|1|1|1|0|0|0|0|0|0|{}").is_none());
        assert!(record_from_fin("a", q, "2|1|1|1|0|0|0|0|0|9|{}").is_none());
        assert!(record_from_fin("a", q, "1|1|1|1|0|0|0|9|0|{}").is_none());
        assert!(record_from_fin("a", q, "1|x").is_none());
    }
}
