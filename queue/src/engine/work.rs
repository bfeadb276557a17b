//! The worker side: lease (retried with its request id after a lost reply, so the same jobs
//! come back instead of waiting for their lease to expire), complete, fail, renew, release,
//! reap expired leases, prune finished jobs, and the blocking wake-up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vigil_jobs::{AttemptError, Queue};

use super::{Engine, ms_to_time, with_keys};
use crate::conn::RedisConn;
use crate::error::EngineError;
use crate::lease::{FailOutcome, LeaseBatch, LeasedJob, new_ulid, retry_delay, worker_of};
use crate::scripts;

const REAP_LIMIT: u64 = 500;
const PRUNE_LIMIT: u64 = 1_000;

impl Engine {
    /// Leases up to `n` due jobs of `queue` for `worker` (none while paused). Counts the attempt.
    /// A call whose reply is lost is repeated with the same request id for up to one lease
    /// (after that the jobs would be reaped anyway), and gets the jobs it had leased back.
    pub async fn lease(
        &self,
        queue: Queue,
        worker: &str,
        n: usize,
    ) -> Result<LeaseBatch, EngineError> {
        let request = new_ulid();
        let lease_ms = self.engine.lease_seconds.max(1) * 1000;
        let give_up = Instant::now() + Duration::from_millis(lease_ms);
        let mut pause = Duration::from_millis(50);
        let slot = (queue, worker.to_owned());
        let previous = self.answered_leases.take(&slot);
        loop {
            let answer = self
                .lease_once(queue, worker, n, &request, &previous, lease_ms)
                .await;
            if let Ok(batch) = &answer
                && !batch.jobs.is_empty()
            {
                self.answered_leases.put(slot.clone(), request.clone());
            }
            match answer {
                Err(EngineError::OutcomeUnknown(why)) if Instant::now() < give_up => {
                    tracing::warn!(queue = %queue, error = %why,
                        "lease reply lost; asking again with the same request id");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    async fn lease_once(
        &self,
        queue: Queue,
        worker: &str,
        n: usize,
        request: &str,
        previous: &str,
        lease_ms: u64,
    ) -> Result<LeaseBatch, EngineError> {
        type Row = (String, u32, u32, String, String, i64, i64, i64);
        let mut inv = scripts::LEASE.prepare_invoke();
        with_keys(&mut inv, &self.keys, queue);
        inv.arg(n.max(1))
            .arg(worker)
            .arg(lease_ms)
            .arg(request)
            .arg(previous);
        let mut c = self.conn.clone();
        let (more, next_due, paused, rows): (i64, i64, i64, Vec<Row>) = inv
            .invoke_async(&mut c)
            .await
            .map_err(EngineError::from_write)?;
        let jobs = rows
            .into_iter()
            .map(
                |(id, attempt, max_attempts, token, payload, created, run_at, started)| LeasedJob {
                    id,
                    queue,
                    attempt,
                    max_attempts,
                    token,
                    payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                    created_at: ms_to_time(created),
                    run_at: ms_to_time(run_at),
                    started_at: ms_to_time(started),
                },
            )
            .collect();
        Ok(LeaseBatch {
            jobs,
            paused: paused == 1,
            next_due: (next_due >= 0).then(|| ms_to_time(next_due)),
            more: more == 1,
        })
    }

    /// Marks leased jobs done; `false` for a job whose lease was taken over (fenced).
    pub async fn complete_many(
        &self,
        queue: Queue,
        jobs: &[(String, String)],
    ) -> Result<Vec<bool>, EngineError> {
        self.per_job(&scripts::COMPLETE, queue, None, jobs).await
    }

    /// Marks one leased job done; `false` when fenced.
    pub async fn complete(&self, job: &LeasedJob) -> Result<bool, EngineError> {
        let out = self
            .complete_many(job.queue, &[(job.id.clone(), job.token.clone())])
            .await?;
        Ok(out.first().copied().unwrap_or(false))
    }

    /// Records a failed attempt: retry after a backoff (exponential, full jitter), or dead
    /// (permanent error, or the last attempt).
    pub async fn fail(
        &self,
        job: &LeasedJob,
        error: &str,
        permanent: bool,
    ) -> Result<FailOutcome, EngineError> {
        self.fail_after(job, error, permanent, None).await
    }

    /// Puts a running job back in `scheduled` for `delay` without counting its attempt (see
    /// [`crate::backend::Later`]). `None` when fenced; else when it runs again.
    pub async fn snooze(
        &self,
        job: &LeasedJob,
        delay: std::time::Duration,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, EngineError> {
        let mut inv = scripts::SNOOZE.prepare_invoke();
        with_keys(&mut inv, &self.keys, job.queue);
        inv.arg(&job.id)
            .arg(&job.token)
            .arg(delay.as_millis() as u64);
        let mut c = self.conn.clone();
        let out: Vec<i64> = inv.invoke_async(&mut c).await?;
        Ok(match out.as_slice() {
            [1, run_at, ..] => Some(ms_to_time(*run_at)),
            _ => None,
        })
    }

    /// [`Engine::fail`] with the retry's delay chosen by the caller (a server's
    /// `Retry-After`) instead of the queue's backoff.
    pub async fn fail_after(
        &self,
        job: &LeasedJob,
        error: &str,
        permanent: bool,
        delay: Option<std::time::Duration>,
    ) -> Result<FailOutcome, EngineError> {
        let entry = AttemptError {
            attempt: job.attempt,
            at: self.now(),
            error: error.chars().take(2_000).collect(),
            started_at: Some(job.started_at),
            worker: worker_of(&job.token),
        };
        let entry = serde_json::to_string(&entry).map_err(EngineError::Encode)?;
        let delay = delay.unwrap_or_else(|| retry_delay(self.queues.get(job.queue), job.attempt));
        let mut inv = scripts::FAIL.prepare_invoke();
        with_keys(&mut inv, &self.keys, job.queue);
        inv.arg(self.ttl_ms(job.queue, |q| q.retain_dead.as_millis()))
            .arg(&job.id)
            .arg(&job.token)
            .arg(entry)
            .arg(if permanent { 1 } else { 0 })
            .arg(delay.as_millis() as u64);
        let mut c = self.conn.clone();
        let out: Vec<i64> = inv.invoke_async(&mut c).await?;
        Ok(match out.as_slice() {
            [1, run_at, ..] => FailOutcome::Retry {
                run_at: ms_to_time(*run_at),
            },
            [2, ..] => FailOutcome::Dead,
            _ => FailOutcome::Stale,
        })
    }

    /// Extends the leases of running jobs; `false` for a lease that was lost.
    pub async fn renew(
        &self,
        queue: Queue,
        jobs: &[(String, String)],
    ) -> Result<Vec<bool>, EngineError> {
        let lease_ms = self.engine.lease_seconds.max(1) * 1000;
        self.per_job(&scripts::RENEW, queue, Some(lease_ms), jobs)
            .await
    }

    /// Runs a script that takes ([`first`], count, then id/token pairs) and answers 1 or 0 per
    /// job (complete, renew).
    async fn per_job(
        &self,
        script: &redis::Script,
        queue: Queue,
        first: Option<u64>,
        jobs: &[(String, String)],
    ) -> Result<Vec<bool>, EngineError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = script.prepare_invoke();
        with_keys(&mut inv, &self.keys, queue);
        if let Some(first) = first {
            inv.arg(first);
        }
        inv.arg(jobs.len());
        for (id, token) in jobs {
            inv.arg(id).arg(token);
        }
        let mut c = self.conn.clone();
        let out: Vec<i64> = inv.invoke_async(&mut c).await?;
        Ok(out.into_iter().map(|v| v == 1).collect())
    }

    /// Gives a leased job back (shutdown). With `uncount`, the attempt is not counted (it never started).
    pub async fn release(&self, job: &LeasedJob, uncount: bool) -> Result<bool, EngineError> {
        let mut inv = scripts::RELEASE.prepare_invoke();
        with_keys(&mut inv, &self.keys, job.queue);
        inv.arg(&job.id)
            .arg(&job.token)
            .arg(if uncount { 1 } else { 0 });
        let mut c = self.conn.clone();
        let out: i64 = inv.invoke_async(&mut c).await?;
        Ok(out == 1)
    }

    /// Re-queues (or kills, at max attempts) jobs whose lease expired by Redis server time.
    /// Returns (requeued, dead).
    pub async fn reap(&self, queue: Queue) -> Result<(u64, u64), EngineError> {
        let (mut requeued, mut dead) = (0, 0);
        loop {
            let mut inv = scripts::REAP.prepare_invoke();
            with_keys(&mut inv, &self.keys, queue);
            inv.arg(REAP_LIMIT)
                .arg(self.ttl_ms(queue, |q| q.retain_dead.as_millis()))
                .arg(
                    self.now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                );
            let mut c = self.conn.clone();
            let (r, d): (u64, u64) = inv.invoke_async(&mut c).await?;
            requeued += r;
            dead += d;
            if r + d < REAP_LIMIT {
                return Ok((requeued, dead));
            }
        }
    }

    /// Deletes finished jobs older than their queue's retention. Returns how many.
    pub async fn prune(&self) -> Result<u64, EngineError> {
        let mut total = 0;
        for q in self.queues.queues() {
            let s = self.queues.get(q);
            total += self
                .prune_queue(
                    q,
                    [
                        s.retain_done.as_millis(),
                        s.retain_dead.as_millis(),
                        s.retain_cancelled.as_millis(),
                    ],
                )
                .await?;
        }
        Ok(total)
    }

    /// Deletes every finished job older than `age` on every queue (tests, operators).
    pub async fn prune_older_than(&self, age: Duration) -> Result<u64, EngineError> {
        let ms = age.as_millis() as u64;
        let mut total = 0;
        for q in self.queues.queues() {
            total += self.prune_queue(q, [ms, ms, ms]).await?;
        }
        Ok(total)
    }

    async fn prune_queue(&self, queue: Queue, retain_ms: [u64; 3]) -> Result<u64, EngineError> {
        let mut total = 0;
        loop {
            let mut inv = scripts::PRUNE.prepare_invoke();
            with_keys(&mut inv, &self.keys, queue);
            for ms in retain_ms {
                inv.arg(ms);
            }
            inv.arg(PRUNE_LIMIT);
            let mut c = self.conn.clone();
            let n: u64 = inv.invoke_async(&mut c).await?;
            total += n;
            if n < PRUNE_LIMIT {
                return Ok(total);
            }
        }
    }

    /// Waits until `queue` may have new work or `timeout` passes, on the waiter's own
    /// connection (a blocking pop would stall the shared one). True when woken.
    pub async fn wait_for_work(
        &self,
        waiter: &mut Waiter,
        queue: Queue,
        timeout: Duration,
    ) -> Result<bool, EngineError> {
        if waiter.conn.is_none() {
            let longest = timeout.max(Duration::from_millis(self.engine.poll_interval_ms.max(10)));
            let conn = self
                .connector
                .dedicated(longest + self.response_timeout)
                .await?;
            waiter.conn = Some(conn);
        }
        let Some(conn) = waiter.conn.as_mut() else {
            return Ok(false);
        };
        let secs = (timeout.as_secs_f64()).max(0.01);
        let woke: Result<Option<(String, String)>, redis::RedisError> = redis::cmd("BLPOP")
            .arg(self.keys.notify(queue))
            .arg(format!("{secs:.3}"))
            .query_async(conn)
            .await;
        match woke {
            Ok(v) => Ok(v.is_some()),
            Err(e) => {
                waiter.conn = None;
                Err(e.into())
            }
        }
    }

    /// A dedicated blocking connection for [`Engine::wait_for_work`] (opened lazily).
    pub fn waiter(&self) -> Waiter {
        Waiter { conn: None }
    }
}

/// Per (queue, worker): the last lease request whose reply arrived. The next lease call of that
/// worker drops its replay record, so each worker keeps at most one in Redis.
#[derive(Debug, Default)]
pub(crate) struct AnsweredLeases(std::sync::Mutex<HashMap<(Queue, String), String>>);

impl AnsweredLeases {
    fn take(&self, slot: &(Queue, String)) -> String {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(slot).unwrap_or_default()
    }

    fn put(&self, slot: (Queue, String), request: String) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(slot, request);
    }
}

/// A dedicated connection for blocking wake-ups (one per worker).
pub struct Waiter {
    conn: Option<RedisConn>,
}
