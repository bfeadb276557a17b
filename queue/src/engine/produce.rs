//! Enqueue: validation, one script call per queue and slice of jobs, optional replica
//! acknowledgement (`WAIT`), and companion jobs written in the same step and relayed from the
//! queue's outbox to their own queue.

use std::time::Duration;

use vigil_jobs::{JobRecord, JobStatus, Queue, ValidationError};

use super::{Engine, ms_to_time, with_keys};
use crate::error::EngineError;
use crate::keys::{new_job_id, queue_of_id};
use crate::model::{Enqueued, NewJob};
use crate::scripts;

/// Jobs per enqueue script call (the API's bulk enqueue takes up to 1,000 jobs: one call).
const SLICE: usize = 1000;
/// Outbox entries younger than this are left to the producer that wrote them.
const RELAY_AFTER_MS: i64 = 5_000;

impl Engine {
    /// Validates the payload and enqueues one job.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EngineError> {
        let mut out = self.enqueue_many(vec![job]).await?;
        out.pop()
            .ok_or_else(|| EngineError::Unavailable("empty answer from Redis".into()))
    }

    /// Enqueues one typed job (validated like any payload), with an optional idempotency key.
    pub async fn enqueue_job<J: vigil_jobs::Job>(
        &self,
        job: &J,
        idempotency_key: Option<String>,
    ) -> Result<Enqueued, EngineError> {
        // A typed job that does not serialize is a bug, not the caller's input.
        let mut new = NewJob::of(job).map_err(EngineError::Encode)?;
        new.idempotency_key = idempotency_key;
        self.enqueue(new).await
    }

    /// Validates every payload, then enqueues all jobs in few round trips (bulk producers,
    /// the bench). Nothing is enqueued if one payload is invalid.
    pub async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EngineError> {
        for job in &jobs {
            vigil_jobs::registry::validate(job.queue, &job.payload)?;
            if let Some(key) = &job.idempotency_key
                && (key.is_empty() || key.len() > 200)
            {
                return Err(EngineError::Invalid(ValidationError::new(
                    "idempotency_key",
                    "must be 1 to 200 characters",
                )));
            }
            if let Some(id) = &job.id
                && queue_of_id(id) != Some(job.queue)
            {
                return Err(EngineError::Invalid(ValidationError::new(
                    "id",
                    format!("must be a {} job id (<queue>-<ULID>)", job.queue),
                )));
            }
            if let Some(c) = &job.companion {
                vigil_jobs::registry::validate(c.queue, &c.payload)?;
            }
        }
        self.enqueue_raw(jobs).await
    }

    /// Enqueues without payload validation (test handlers and the bench only).
    #[doc(hidden)]
    pub async fn enqueue_raw(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EngineError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut i = 0;
        while i < jobs.len() {
            let queue = jobs[i].queue;
            let mut j = i;
            while j < jobs.len() && j - i < SLICE && jobs[j].queue == queue {
                j += 1;
            }
            out.extend(self.enqueue_slice(queue, &jobs[i..j]).await?);
            i = j;
        }
        Ok(out)
    }

    /// A fresh id for a job of `queue` (for producers that need the id before enqueueing,
    /// e.g. to name it in a companion job).
    pub fn next_id(&self, queue: Queue) -> String {
        new_job_id(queue)
    }

    async fn enqueue_slice(
        &self,
        queue: Queue,
        jobs: &[NewJob],
    ) -> Result<Vec<Enqueued>, EngineError> {
        let (out, relay) = self.write_slice(queue, jobs).await?;
        // The companions are safe in the outbox already; hand them on now (a failure here is
        // repaired by the next relay run).
        for (id, entry) in relay {
            if let Err(e) = self.relay_one(queue, &id, entry).await {
                tracing::warn!(queue = %queue, job = %id, error = %e,
                    "companion job left in the outbox; the relay will enqueue it");
            }
        }
        Ok(out)
    }

    /// One script call: the jobs, and the companions to relay (of the jobs that are new).
    async fn write_slice(
        &self,
        queue: Queue,
        jobs: &[NewJob],
    ) -> Result<(Vec<Enqueued>, Vec<(String, OutboxEntry)>), EngineError> {
        let now = self.now();
        let max_attempts = self.queues.get(queue).max_attempts.max(1);
        let mut inv = scripts::ENQUEUE.prepare_invoke();
        with_keys(&mut inv, &self.keys, queue);
        inv.arg(
            self.engine
                .idempotency_window_seconds
                .max(1)
                .saturating_mul(1000),
        )
        .arg(jobs.len());
        let mut entries: Vec<Option<OutboxEntry>> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (id, explicit) = match &job.id {
                Some(id) => (id.clone(), "1"),
                None => (new_job_id(queue), "0"),
            };
            // Delays travel relative to now, so the server's clock decides when a job is due.
            let delay_ms = job
                .run_at
                .map(|t| (t - now).num_milliseconds().max(0))
                .unwrap_or(0);
            let payload = serde_json::to_string(&job.payload).map_err(|e| {
                EngineError::Invalid(ValidationError::new("payload", e.to_string()))
            })?;
            let entry = job.companion.as_ref().map(|c| OutboxEntry {
                id: new_job_id(c.queue),
                queue: c.queue,
                payload: c.payload.clone(),
                at: now.timestamp_millis(),
            });
            let companion = match &entry {
                Some(e) => serde_json::to_string(e).map_err(|e| {
                    EngineError::Invalid(ValidationError::new("companion", e.to_string()))
                })?,
                None => String::new(),
            };
            inv.arg(&id)
                .arg(payload)
                .arg(delay_ms)
                .arg(max_attempts)
                .arg(job.idempotency_key.as_deref().unwrap_or(""))
                .arg(explicit)
                .arg(&companion);
            entries.push(entry);
        }
        let answer: Vec<(String, i64, i64, i64)> = self.invoke_acked(&inv).await?;
        let mut out = Vec::with_capacity(jobs.len());
        let mut fresh = 0u64;
        let mut relay = Vec::new();
        // The first jobs of the duplicates, read in one pipeline.
        let dup_ids: Vec<String> = answer
            .iter()
            .filter(|a| a.1 == 1)
            .map(|a| a.0.clone())
            .collect();
        let firsts: std::collections::HashMap<String, JobRecord> = self
            .get_many(&dup_ids)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        for ((job, (id, dup, created, run_at)), entry) in jobs.iter().zip(answer).zip(entries) {
            if dup == 1 {
                // Cloned: one batch may repeat a key.
                let record = firsts
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| record_of(&id, queue, job, created, run_at, max_attempts));
                out.push(Enqueued {
                    job: record,
                    duplicate: true,
                });
            } else {
                fresh += 1;
                if let Some(entry) = entry {
                    relay.push((id.clone(), entry));
                }
                out.push(Enqueued {
                    job: record_of(&id, queue, job, created, run_at, max_attempts),
                    duplicate: false,
                });
            }
        }
        if fresh > 0
            && let Some(hook) = &self.hook
        {
            hook(queue, fresh);
        }
        Ok((out, relay))
    }

    /// Runs one enqueue script; with `min_replicas_ack`, in the same pipeline as a `WAIT` on
    /// the same node, and answers only when enough replicas hold the write.
    async fn invoke_acked<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, EngineError> {
        let mut c = self.conn.clone();
        if self.min_replicas_ack == 0 {
            return inv
                .invoke_async(&mut c)
                .await
                .map_err(EngineError::from_write);
        }
        let timeout_ms = self.replica_ack_timeout.as_millis() as u64;
        let mut loaded = false;
        loop {
            let mut pipe = redis::pipe();
            pipe.invoke_script(inv)
                .cmd("WAIT")
                .arg(self.min_replicas_ack)
                .arg(timeout_ms);
            let reply: Result<(T, u32), redis::RedisError> = pipe.query_async(&mut c).await;
            match reply {
                Ok((value, acked)) if acked >= self.min_replicas_ack => return Ok(value),
                Ok((_, acked)) => {
                    return Err(EngineError::OutcomeUnknown(
                        format!(
                            "written on the master but confirmed by {acked} of {} replicas \
                             within {timeout_ms} ms",
                            self.min_replicas_ack
                        )
                        .into(),
                    ));
                }
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                        && !loaded =>
                {
                    loaded = true;
                    inv.load_async(&mut c).await?;
                }
                Err(e) => return Err(EngineError::from_write(e)),
            }
        }
    }

    /// Enqueues one companion under the id it was given when written (so a second relay of
    /// the same entry is a duplicate), then removes it from the outbox.
    async fn relay_one(
        &self,
        from: Queue,
        id: &str,
        entry: OutboxEntry,
    ) -> Result<(), EngineError> {
        let mut job = NewJob::new(entry.queue, entry.payload);
        job.id = Some(entry.id);
        self.write_slice(entry.queue, &[job]).await?;
        let mut c = self.conn.clone();
        let _: () = redis::cmd("HDEL")
            .arg(self.keys.outbox(from))
            .arg(id)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Enqueues the companion jobs that producers wrote but did not hand on (they stopped or
    /// lost Redis in between). Safe to run anywhere and concurrently: a companion's id is
    /// chosen when it is written, so relaying it twice enqueues it once. Returns how many moved.
    pub async fn relay_outbox(&self) -> Result<u64, EngineError> {
        let mut moved = 0;
        for queue in self.queues.queues() {
            let mut cursor: u64 = 0;
            loop {
                let mut c = self.conn.clone();
                let (next, entries): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                    .arg(self.keys.outbox(queue))
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut c)
                    .await?;
                let cutoff = self.now().timestamp_millis() - RELAY_AFTER_MS;
                for (id, raw) in entries {
                    let Ok(entry) = serde_json::from_str::<OutboxEntry>(&raw) else {
                        tracing::error!(queue = %queue, job = %id, "unreadable outbox entry dropped");
                        let _: () = redis::cmd("HDEL")
                            .arg(self.keys.outbox(queue))
                            .arg(&id)
                            .query_async(&mut c)
                            .await?;
                        continue;
                    };
                    if entry.at > cutoff {
                        continue;
                    }
                    self.relay_one(queue, &id, entry).await?;
                    moved += 1;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(moved)
    }

    /// How long an enqueue may wait for replicas (for callers' own deadlines).
    pub fn replica_ack_timeout(&self) -> Option<Duration> {
        (self.min_replicas_ack > 0).then_some(self.replica_ack_timeout)
    }
}

/// A companion waiting in an outbox.
#[derive(serde::Serialize, serde::Deserialize)]
struct OutboxEntry {
    id: String,
    #[serde(rename = "q")]
    queue: Queue,
    #[serde(rename = "p")]
    payload: serde_json::Value,
    at: i64,
}

fn record_of(
    id: &str,
    queue: Queue,
    job: &NewJob,
    created: i64,
    run_at: i64,
    max_attempts: u32,
) -> JobRecord {
    JobRecord {
        id: id.to_owned(),
        queue,
        payload: job.payload.clone(),
        status: if run_at > created {
            JobStatus::Scheduled
        } else {
            JobStatus::Pending
        },
        attempts: 0,
        max_attempts,
        errors: Vec::new(),
        idempotency_key: job.idempotency_key.clone(),
        created_at: ms_to_time(created),
        run_at: ms_to_time(run_at),
        started_at: None,
        finished_at: None,
        worker: None,
    }
}
