//! [`Engine`]: the job engine's one interface. Producers enqueue, workers lease and report,
//! the API and dashboard read job state and act on jobs, the runtime claims schedule ticks
//! and publishes actor health. Cheap to clone (shares one Redis connection manager).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use vigil_jobs::{JobRecord, Queue, QueueCounts};

use crate::error::EngineError;
use crate::keys::Keys;
use crate::lease::{FailOutcome, LeaseBatch, LeasedJob};
use crate::model::{ActorHealth, Enqueued, JobFilter, JobPage, NewJob, QueueStats, ScheduleRun};
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
        todo!()
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

    pub fn engine_settings(&self) -> &EngineSettings {
        &self.engine
    }

    pub fn queue_settings(&self, queue: Queue) -> &QueueSettings {
        self.queues.get(queue)
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        todo!()
    }

    /// Validates the payload and enqueues one job.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, EngineError> {
        todo!()
    }

    /// Validates every payload, then enqueues all jobs in few round trips (bulk producers,
    /// the bench). Nothing is enqueued if one payload is invalid.
    pub async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EngineError> {
        todo!()
    }

    /// Enqueues without payload validation (test handlers and the bench only).
    #[doc(hidden)]
    pub async fn enqueue_raw(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, EngineError> {
        todo!()
    }

    /// One job by id.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, EngineError> {
        todo!()
    }

    /// Jobs matching `filter`, newest first.
    pub async fn list(&self, filter: &JobFilter) -> Result<JobPage, EngineError> {
        todo!()
    }

    /// Jobs of `queue` per status.
    pub async fn counts(&self, queue: Queue) -> Result<QueueCounts, EngineError> {
        todo!()
    }

    /// Every queue's counts, pause flag and last-minute throughput.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, EngineError> {
        todo!()
    }

    /// A dead or failed job back to pending (with a fresh set of attempts).
    pub async fn retry(&self, id: &str) -> Result<JobRecord, EngineError> {
        todo!()
    }

    /// A pending, scheduled or failed job to cancelled.
    pub async fn cancel(&self, id: &str) -> Result<JobRecord, EngineError> {
        todo!()
    }

    /// Stops every instance from leasing jobs of `queue` (running jobs finish).
    pub async fn pause(&self, queue: Queue) -> Result<(), EngineError> {
        todo!()
    }

    pub async fn resume(&self, queue: Queue) -> Result<(), EngineError> {
        todo!()
    }

    pub async fn is_paused(&self, queue: Queue) -> Result<bool, EngineError> {
        todo!()
    }

    /// Claims one tick of a schedule; true for exactly one caller across all instances.
    pub async fn claim_tick(
        &self,
        schedule: &str,
        tick: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        todo!()
    }

    pub async fn record_schedule_run(&self, run: &ScheduleRun) -> Result<(), EngineError> {
        todo!()
    }

    /// The last run of every schedule that ever ran.
    pub async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, EngineError> {
        todo!()
    }

    /// Publishes the health of one instance's actors for `ttl`.
    pub async fn report_actors(
        &self,
        instance: &str,
        actors: &[ActorHealth],
        ttl: Duration,
    ) -> Result<(), EngineError> {
        todo!()
    }

    /// The actors of every live instance.
    pub async fn actors(&self) -> Result<Vec<ActorHealth>, EngineError> {
        todo!()
    }

    // ----- worker side -----

    /// Leases up to `n` due jobs of `queue` for `worker` (none while paused). Counts the attempt.
    pub async fn lease(
        &self,
        queue: Queue,
        worker: &str,
        n: usize,
    ) -> Result<LeaseBatch, EngineError> {
        todo!()
    }

    /// Marks leased jobs done; `false` for a job whose lease was taken over (fenced).
    pub async fn complete_many(
        &self,
        queue: Queue,
        jobs: &[(String, String)],
    ) -> Result<Vec<bool>, EngineError> {
        todo!()
    }

    /// Marks one leased job done; `false` when fenced.
    pub async fn complete(&self, job: &LeasedJob) -> Result<bool, EngineError> {
        todo!()
    }

    /// Records a failed attempt: retry after a backoff, or dead.
    pub async fn fail(
        &self,
        job: &LeasedJob,
        error: &str,
        permanent: bool,
    ) -> Result<FailOutcome, EngineError> {
        todo!()
    }

    /// Extends the leases of running jobs; `false` for a lease that was lost.
    pub async fn renew(
        &self,
        queue: Queue,
        jobs: &[(String, String)],
    ) -> Result<Vec<bool>, EngineError> {
        todo!()
    }

    /// Gives a leased job back (shutdown). With `uncount`, the attempt is not counted (it never started).
    pub async fn release(&self, job: &LeasedJob, uncount: bool) -> Result<bool, EngineError> {
        todo!()
    }

    /// Re-queues (or kills, at max attempts) jobs whose lease expired. Returns (requeued, dead).
    pub async fn reap(&self, queue: Queue) -> Result<(u64, u64), EngineError> {
        todo!()
    }

    /// Deletes finished jobs older than the retention. Returns how many.
    pub async fn prune(&self) -> Result<u64, EngineError> {
        todo!()
    }

    /// Waits until `queue` may have new work or `timeout` passes, on a dedicated connection.
    pub async fn wait_for_work(
        &self,
        waiter: &mut Waiter,
        queue: Queue,
        timeout: Duration,
    ) -> Result<bool, EngineError> {
        todo!()
    }

    /// A dedicated blocking connection for [`Engine::wait_for_work`].
    pub fn waiter(&self) -> Waiter {
        todo!()
    }
}

/// A dedicated connection for blocking wake-ups (one per worker).
pub struct Waiter {
    conn: Option<redis::aio::MultiplexedConnection>,
}
