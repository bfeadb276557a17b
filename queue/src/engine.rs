//! [`Engine`]: the job engine's one interface. Producers enqueue, workers lease and report,
//! the API and dashboard read job state and act on jobs, the runtime claims schedule ticks
//! and publishes actor health. Cheap to clone (shares one Redis connection manager).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use vigil_jobs::{JobRecord, Queue, QueueCounts};

use std::collections::HashMap;

use redis::AsyncCommands;
use vigil_jobs::{AttemptError, JobPayload, JobStatus, ValidationError};

use crate::error::EngineError;
use crate::keys::Keys;
use crate::lease::{FailOutcome, LeaseBatch, LeasedJob, new_ulid, retry_delay};
use crate::model::{ActorHealth, Enqueued, JobFilter, JobPage, NewJob, QueueStats, ScheduleRun};
use crate::scripts;
use crate::settings::{EngineSettings, QueueSettings, QueuesSettings, RedisSettings};

/// Called with (queue, number of new jobs) after every successful enqueue (metrics).
pub type EnqueueHook = Arc<dyn Fn(Queue, u64) + Send + Sync>;

/// The job engine.
#[derive(Clone)]
pub struct Engine {
    conn: ConnectionManager,
    client: redis::Client,
    keys: Keys,
    engine: Arc<EngineSettings>,
    queues: Arc<QueuesSettings>,
    hook: Option<EnqueueHook>,
    response_timeout: Duration,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Connects to Redis (fails with `Unavailable` when it cannot be reached).
    pub async fn connect(
        redis: &RedisSettings,
        engine: EngineSettings,
        queues: QueuesSettings,
    ) -> Result<Engine, EngineError> {
        let client = redis::Client::open(redis.url.as_str())
            .map_err(|e| EngineError::Unavailable(format!("invalid redis.url ({:?})", e.kind())))?;
        let timeout = Duration::from_millis(redis.response_timeout_ms.max(1));
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            timeout + Duration::from_secs(1),
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| EngineError::Unavailable("timed out connecting to Redis".into()))??;
        Ok(Engine {
            conn,
            client,
            keys: Keys::new(&redis.prefix),
            engine: Arc::new(engine),
            queues: Arc::new(queues),
            hook: None,
            response_timeout: timeout,
        })
    }

    /// The same engine, calling `hook` after every enqueue.
    pub fn with_enqueue_hook(mut self, hook: EnqueueHook) -> Engine {
        self.hook = Some(hook);
        self
    }

    /// The shared connection (the API's rate limiter uses it).
    pub fn redis(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn engine_settings(&self) -> &EngineSettings {
        &self.engine
    }

    pub fn queue_settings(&self, queue: Queue) -> &QueueSettings {
        self.queues.get(queue)
    }

    pub fn queues_settings(&self) -> &QueuesSettings {
        &self.queues
    }

    fn finished_ttl_ms(&self) -> u64 {
        self.engine.retention_hours.saturating_mul(3_600_000) + 3_600_000
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Validates the payload and enqueues one job.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EngineError> {
        let mut out = self.enqueue_many(vec![job]).await?;
        out.pop()
            .ok_or_else(|| EngineError::Unavailable("empty answer from Redis".into()))
    }

    /// Validates every payload, then enqueues all jobs in few round trips (bulk producers,
    /// the bench). Nothing is enqueued if one payload is invalid.
    pub async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EngineError> {
        for job in &jobs {
            JobPayload::parse(job.queue, job.payload.clone())?;
            if let Some(key) = &job.idempotency_key
                && (key.is_empty() || key.len() > 200)
            {
                return Err(EngineError::Invalid(ValidationError::new(
                    "idempotency_key",
                    "must be 1 to 200 characters",
                )));
            }
        }
        self.enqueue_raw(jobs).await
    }

    /// Enqueues without payload validation (test handlers and the bench only).
    #[doc(hidden)]
    pub async fn enqueue_raw(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EngineError> {
        let mut out = Vec::with_capacity(jobs.len());
        // One script call per queue and slice of 500 jobs.
        let mut i = 0;
        while i < jobs.len() {
            let queue = jobs[i].queue;
            let mut j = i;
            while j < jobs.len() && j - i < 500 && jobs[j].queue == queue {
                j += 1;
            }
            out.extend(self.enqueue_slice(queue, &jobs[i..j]).await?);
            i = j;
        }
        Ok(out)
    }

    async fn enqueue_slice(
        &self,
        queue: Queue,
        jobs: &[NewJob],
    ) -> Result<Vec<Enqueued>, EngineError> {
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let max_attempts = self.queues.get(queue).max_attempts.max(1);
        let mut inv = scripts::ENQUEUE.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue.as_str())
            .arg(now_ms)
            .arg(
                self.engine
                    .idempotency_window_seconds
                    .max(1)
                    .saturating_mul(1000),
            )
            .arg(jobs.len());
        let mut records = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = new_ulid();
            let run_at = job.run_at.filter(|t| *t > now).unwrap_or(now);
            let payload = serde_json::to_string(&job.payload).map_err(|e| {
                EngineError::Invalid(ValidationError::new("payload", e.to_string()))
            })?;
            inv.arg(&id)
                .arg(payload)
                .arg(run_at.timestamp_millis())
                .arg(max_attempts)
                .arg(job.idempotency_key.as_deref().unwrap_or(""));
            records.push(JobRecord {
                id,
                queue,
                payload: job.payload.clone(),
                status: if run_at > now {
                    JobStatus::Scheduled
                } else {
                    JobStatus::Pending
                },
                attempts: 0,
                max_attempts,
                errors: Vec::new(),
                idempotency_key: job.idempotency_key.clone(),
                created_at: ms_to_time(now_ms),
                run_at: ms_to_time(run_at.timestamp_millis()),
                started_at: None,
                finished_at: None,
            });
        }
        let mut c = self.conn.clone();
        let answer: Vec<(String, i64)> = inv.invoke_async(&mut c).await?;
        let mut out = Vec::with_capacity(records.len());
        let mut fresh = 0u64;
        for (record, (id, dup)) in records.into_iter().zip(answer) {
            if dup == 1 {
                let first = self.get(&id).await?.unwrap_or(record);
                out.push(Enqueued {
                    job: first,
                    duplicate: true,
                });
            } else {
                fresh += 1;
                out.push(Enqueued {
                    job: record,
                    duplicate: false,
                });
            }
        }
        if fresh > 0
            && let Some(hook) = &self.hook
        {
            hook(queue, fresh);
        }
        Ok(out)
    }

    /// One job by id.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, EngineError> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> = c.hgetall(self.keys.job(id)).await?;
        Ok(record_from_hash(&map))
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<JobRecord>, EngineError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.job(id));
        }
        let mut c = self.conn.clone();
        let maps: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
        Ok(maps.iter().filter_map(record_from_hash).collect())
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
        let keys: Vec<String> = queues
            .iter()
            .flat_map(|q| statuses.iter().map(|s| self.keys.status(*q, *s)))
            .collect();
        let start = (page - 1) * size;
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.zcard(k);
        }
        if keys.len() == 1 {
            pipe.cmd("ZRANGE")
                .arg(&keys[0])
                .arg(start)
                .arg(start + size - 1)
                .arg("REV")
                .arg("WITHSCORES");
        } else {
            // Merge the newest (start + size) of every index; deep pages are capped.
            let upto = (start + size).min(20_000);
            for k in &keys {
                pipe.cmd("ZRANGE")
                    .arg(k)
                    .arg(0)
                    .arg(upto.saturating_sub(1))
                    .arg("REV")
                    .arg("WITHSCORES");
            }
        }
        let mut answer: Vec<redis::Value> = pipe.query_async(&mut c).await?;
        let ranges = answer.split_off(keys.len());
        let mut total = 0u64;
        for v in answer {
            total += redis::from_redis_value::<u64>(v).unwrap_or(0);
        }
        let mut entries: Vec<(String, f64)> = Vec::new();
        for v in ranges {
            let part: Vec<(String, f64)> = redis::from_redis_value(v).unwrap_or_default();
            entries.extend(part);
        }
        let ids: Vec<String> = if keys.len() == 1 {
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
        let mut pipe = redis::pipe();
        for s in JobStatus::ALL {
            pipe.zcard(self.keys.status(queue, s));
        }
        let mut c = self.conn.clone();
        let n: Vec<u64> = pipe.query_async(&mut c).await?;
        let mut counts = QueueCounts::default();
        for (s, v) in JobStatus::ALL.into_iter().zip(n) {
            counts.set(s, v);
        }
        Ok(counts)
    }

    /// Every queue's counts, pause flag and last-minute throughput.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, EngineError> {
        let bucket = Utc::now().timestamp_millis() / 10_000;
        let mut pipe = redis::pipe();
        for q in Queue::ALL {
            for s in JobStatus::ALL {
                pipe.zcard(self.keys.status(q, s));
            }
            pipe.exists(self.keys.paused(q));
            for what in ["done", "failed"] {
                let keys: Vec<String> = (bucket - 5..=bucket)
                    .map(|b| self.keys.stat(q, what, b))
                    .collect();
                pipe.mget(keys);
            }
        }
        let mut c = self.conn.clone();
        let vals: Vec<redis::Value> = pipe.query_async(&mut c).await?;
        let mut it = vals.into_iter();
        let mut out = Vec::new();
        for q in Queue::ALL {
            let mut counts = QueueCounts::default();
            for s in JobStatus::ALL {
                let v = it
                    .next()
                    .map(|v| redis::from_redis_value::<u64>(v).unwrap_or(0))
                    .unwrap_or(0);
                counts.set(s, v);
            }
            let paused = it
                .next()
                .map(|v| redis::from_redis_value::<bool>(v).unwrap_or(false))
                .unwrap_or(false);
            let mut sums = [0u64; 2];
            for sum in &mut sums {
                if let Some(v) = it.next() {
                    let parts: Vec<Option<u64>> = redis::from_redis_value(v).unwrap_or_default();
                    *sum = parts.into_iter().flatten().sum();
                }
            }
            out.push(QueueStats {
                queue: q,
                counts,
                paused,
                processed_last_minute: sums[0],
                failed_last_minute: sums[1],
            });
        }
        Ok(out)
    }

    async fn queue_of(&self, id: &str) -> Result<Queue, EngineError> {
        let mut c = self.conn.clone();
        let q: Option<String> = c.hget(self.keys.job(id), "queue").await?;
        q.and_then(|q| q.parse().ok())
            .ok_or_else(|| EngineError::NotFound(id.to_owned()))
    }

    async fn id_action(
        &self,
        script: &redis::Script,
        id: &str,
        action: &'static str,
        extra: u64,
    ) -> Result<JobRecord, EngineError> {
        let queue = self.queue_of(id).await?;
        let mut c = self.conn.clone();
        let answer: Vec<String> = script
            .arg(self.keys.prefix())
            .arg(queue.as_str())
            .arg(Utc::now().timestamp_millis())
            .arg(id)
            .arg(extra)
            .invoke_async(&mut c)
            .await?;
        match answer.first().map(String::as_str) {
            Some("ok") => self
                .get(id)
                .await?
                .ok_or_else(|| EngineError::NotFound(id.to_owned())),
            Some("invalid") => Err(EngineError::InvalidState {
                id: id.to_owned(),
                status: answer
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(JobStatus::Running),
                action,
            }),
            _ => Err(EngineError::NotFound(id.to_owned())),
        }
    }

    /// A dead or failed job back to pending (with a fresh set of attempts).
    pub async fn retry(&self, id: &str) -> Result<JobRecord, EngineError> {
        let queue = self.queue_of(id).await?;
        let max = self.queues.get(queue).max_attempts.max(1) as u64;
        self.id_action(&scripts::RETRY, id, "retry", max).await
    }

    /// A pending, scheduled or failed job to cancelled.
    pub async fn cancel(&self, id: &str) -> Result<JobRecord, EngineError> {
        self.id_action(&scripts::CANCEL, id, "cancel", self.finished_ttl_ms())
            .await
    }

    /// Stops every instance from leasing jobs of `queue` (running jobs finish).
    pub async fn pause(&self, queue: Queue) -> Result<(), EngineError> {
        let mut c = self.conn.clone();
        let _: () = c
            .set(self.keys.paused(queue), Utc::now().to_rfc3339())
            .await?;
        Ok(())
    }

    pub async fn resume(&self, queue: Queue) -> Result<(), EngineError> {
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.del(self.keys.paused(queue)).ignore();
        pipe.rpush(self.keys.notify(queue), "1").ignore();
        pipe.ltrim(self.keys.notify(queue), 0, 0).ignore();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    pub async fn is_paused(&self, queue: Queue) -> Result<bool, EngineError> {
        let mut c = self.conn.clone();
        Ok(c.exists(self.keys.paused(queue)).await?)
    }

    /// Claims one tick of a schedule; true for exactly one caller across all instances.
    pub async fn claim_tick(
        &self,
        schedule: &str,
        tick: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        let mut c = self.conn.clone();
        let claimed: Option<String> = redis::cmd("SET")
            .arg(self.keys.tick(schedule, tick.timestamp_millis()))
            .arg(Utc::now().to_rfc3339())
            .arg("NX")
            .arg("EX")
            .arg(86_400)
            .query_async(&mut c)
            .await?;
        Ok(claimed.is_some())
    }

    pub async fn record_schedule_run(&self, run: &ScheduleRun) -> Result<(), EngineError> {
        let json =
            serde_json::to_string(run).map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let mut c = self.conn.clone();
        let _: () = c
            .hset(self.keys.schedule_runs(), &run.schedule, json)
            .await?;
        Ok(())
    }

    /// The last run of every schedule that ever ran.
    pub async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, EngineError> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> = c.hgetall(self.keys.schedule_runs()).await?;
        let mut runs: Vec<ScheduleRun> = map
            .values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect();
        runs.sort_by(|a, b| a.schedule.cmp(&b.schedule));
        Ok(runs)
    }

    /// Publishes the health of one instance's actors for `ttl`.
    pub async fn report_actors(
        &self,
        instance: &str,
        actors: &[ActorHealth],
        ttl: Duration,
    ) -> Result<(), EngineError> {
        let json =
            serde_json::to_string(actors).map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let now = Utc::now().timestamp_millis();
        let ttl_ms = ttl.as_millis().max(1) as i64;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.actors(instance))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        pipe.zadd(self.keys.instances(), instance, now + ttl_ms)
            .ignore();
        pipe.zrembyscore(self.keys.instances(), "-inf", now)
            .ignore();
        let mut c = self.conn.clone();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// Removes an instance's health report (clean shutdown).
    pub async fn forget_instance(&self, instance: &str) -> Result<(), EngineError> {
        let mut pipe = redis::pipe();
        pipe.del(self.keys.actors(instance)).ignore();
        pipe.zrem(self.keys.instances(), instance).ignore();
        let mut c = self.conn.clone();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// The actors of every live instance.
    pub async fn actors(&self) -> Result<Vec<ActorHealth>, EngineError> {
        let mut c = self.conn.clone();
        let now = Utc::now().timestamp_millis();
        let instances: Vec<String> = c.zrangebyscore(self.keys.instances(), now, "+inf").await?;
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = instances.iter().map(|i| self.keys.actors(i)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(&mut c).await?;
        Ok(values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str::<Vec<ActorHealth>>(&v).ok())
            .flatten()
            .collect())
    }

    // ----- worker side -----

    /// Leases up to `n` due jobs of `queue` for `worker` (none while paused). Counts the attempt.
    pub async fn lease(
        &self,
        queue: Queue,
        worker: &str,
        n: usize,
    ) -> Result<LeaseBatch, EngineError> {
        type Row = (String, u32, u32, String, String, i64, i64);
        let mut c = self.conn.clone();
        let (more, next_due, paused, rows): (i64, i64, i64, Vec<Row>) = scripts::LEASE
            .arg(self.keys.prefix())
            .arg(queue.as_str())
            .arg(Utc::now().timestamp_millis())
            .arg(n.max(1))
            .arg(worker)
            .arg(self.engine.lease_seconds.max(1) * 1000)
            .invoke_async(&mut c)
            .await?;
        let started_at = Utc::now();
        let jobs = rows
            .into_iter()
            .map(
                |(id, attempt, max_attempts, token, payload, created, run_at)| LeasedJob {
                    id,
                    queue,
                    attempt,
                    max_attempts,
                    token,
                    payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                    created_at: ms_to_time(created),
                    run_at: ms_to_time(run_at),
                    started_at,
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
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now().timestamp_millis();
        let mut inv = scripts::COMPLETE.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue.as_str())
            .arg(now)
            .arg(self.finished_ttl_ms())
            .arg(self.keys.stat(queue, "done", now / 10_000))
            .arg(jobs.len());
        for (id, token) in jobs {
            inv.arg(id).arg(token);
        }
        let mut c = self.conn.clone();
        let out: Vec<i64> = inv.invoke_async(&mut c).await?;
        Ok(out.into_iter().map(|v| v == 1).collect())
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
        let now = Utc::now();
        let entry = AttemptError {
            attempt: job.attempt,
            at: now,
            error: error.chars().take(2_000).collect(),
        };
        let entry =
            serde_json::to_string(&entry).map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let delay = retry_delay(self.queues.get(job.queue), job.attempt);
        let now_ms = now.timestamp_millis();
        let mut c = self.conn.clone();
        let out: Vec<i64> = scripts::FAIL
            .arg(self.keys.prefix())
            .arg(job.queue.as_str())
            .arg(now_ms)
            .arg(self.finished_ttl_ms())
            .arg(self.keys.stat(job.queue, "failed", now_ms / 10_000))
            .arg(&job.id)
            .arg(&job.token)
            .arg(entry)
            .arg(if permanent { 1 } else { 0 })
            .arg(delay.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
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
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = scripts::RENEW.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(queue.as_str())
            .arg(Utc::now().timestamp_millis())
            .arg(self.engine.lease_seconds.max(1) * 1000)
            .arg(jobs.len());
        for (id, token) in jobs {
            inv.arg(id).arg(token);
        }
        let mut c = self.conn.clone();
        let out: Vec<i64> = inv.invoke_async(&mut c).await?;
        Ok(out.into_iter().map(|v| v == 1).collect())
    }

    /// Gives a leased job back (shutdown). With `uncount`, the attempt is not counted (it never started).
    pub async fn release(&self, job: &LeasedJob, uncount: bool) -> Result<bool, EngineError> {
        let mut c = self.conn.clone();
        let out: i64 = scripts::RELEASE
            .arg(self.keys.prefix())
            .arg(job.queue.as_str())
            .arg(Utc::now().timestamp_millis())
            .arg(&job.id)
            .arg(&job.token)
            .arg(if uncount { 1 } else { 0 })
            .invoke_async(&mut c)
            .await?;
        Ok(out == 1)
    }

    /// Re-queues (or kills, at max attempts) jobs whose lease expired. Returns (requeued, dead).
    pub async fn reap(&self, queue: Queue) -> Result<(u64, u64), EngineError> {
        let (mut requeued, mut dead) = (0, 0);
        loop {
            let now = Utc::now();
            let now_ms = now.timestamp_millis();
            let mut c = self.conn.clone();
            let (r, d): (u64, u64) = scripts::REAP
                .arg(self.keys.prefix())
                .arg(queue.as_str())
                .arg(now_ms)
                .arg(REAP_LIMIT)
                .arg(self.finished_ttl_ms())
                .arg(self.keys.stat(queue, "failed", now_ms / 10_000))
                .arg(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .invoke_async(&mut c)
                .await?;
            requeued += r;
            dead += d;
            if r + d < REAP_LIMIT {
                return Ok((requeued, dead));
            }
        }
    }

    /// Deletes finished jobs older than the retention. Returns how many.
    pub async fn prune(&self) -> Result<u64, EngineError> {
        let cutoff =
            Utc::now().timestamp_millis() - (self.engine.retention_hours as i64) * 3_600_000;
        self.prune_before(ms_to_time(cutoff)).await
    }

    /// Deletes finished jobs that finished before `cutoff` (tests use a cutoff in the future).
    pub async fn prune_before(&self, cutoff: DateTime<Utc>) -> Result<u64, EngineError> {
        let mut total = 0;
        for q in Queue::ALL {
            loop {
                let mut c = self.conn.clone();
                let n: u64 = scripts::PRUNE
                    .arg(self.keys.prefix())
                    .arg(q.as_str())
                    .arg(Utc::now().timestamp_millis())
                    .arg(cutoff.timestamp_millis())
                    .arg(PRUNE_LIMIT)
                    .invoke_async(&mut c)
                    .await?;
                total += n;
                if n < PRUNE_LIMIT {
                    break;
                }
            }
        }
        Ok(total)
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
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.response_timeout))
                .set_response_timeout(Some(timeout + self.response_timeout));
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
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

const REAP_LIMIT: u64 = 500;
const PRUNE_LIMIT: u64 = 1_000;

/// Epoch millis to a UTC time.
pub(crate) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A job hash to a record (None when the hash is missing or damaged).
fn record_from_hash(map: &HashMap<String, String>) -> Option<JobRecord> {
    let get = |k: &str| map.get(k).map(String::as_str);
    let ms = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok()).map(ms_to_time);
    Some(JobRecord {
        id: get("id")?.to_owned(),
        queue: get("queue")?.parse().ok()?,
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

/// A dedicated connection for blocking wake-ups (one per worker).
pub struct Waiter {
    conn: Option<redis::aio::MultiplexedConnection>,
}
