//! The job runtime: actix actors supervising apalis workers over vigil's Redis engine.
//!
//! ```text
//!  RootSupervisor ──┬─ QueueActor(okta_fetch) ── apalis worker ── VigilBackend (lease/ack)
//!   (actix)         ├─ QueueActor(email)       ...  one per queue that has a handler
//!                   └─ ...
//!  Scheduler (cron ticks, claimed once across instances)
//!  maintenance task: reaper, pruner, depth gauges, health report to Redis
//! ```
//!
//! A job kind runs through [`Perform`] (typed: the payload is decoded once, in
//! [`perform::handler`]); underneath, a [`Handler`] is payload-agnostic: it gets a
//! [`JobContext`] and the JSON payload and returns `Result<(), JobError>`. Retryable errors are rescheduled in Redis with
//! exponential backoff and full jitter (never slept in a worker slot); permanent errors and
//! the last attempt make the job dead. Each attempt runs inside a tracing span carrying
//! `job_id`, `queue` and `attempt`.
//!
//! Must be started inside an actix `System` running on a multi-threaded tokio runtime.

pub mod batch;
pub mod health;
pub mod maintenance;
pub mod metrics;
pub mod perform;
mod schedule_audit;
pub mod scheduler;
pub mod supervisor;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, ActorContext, Addr, Message};
use apalis_core::error::BoxDynError;
use apalis_core::task::data::Data;
use chrono::Utc;
use futures::future::BoxFuture;
use prometheus::Registry;
use vigil_jobs::Queue;
use vigil_queue::backend::{JobObserver, Later, PermanentFailure};
use vigil_queue::{ActorHealth, Engine, LeasedJob, ScheduleInfo, SchedulesSettings};

use crate::error::JobError;
pub use batch::PerformBatch;
pub use health::HealthBoard;
pub use metrics::Metrics;
pub use perform::{Perform, Registrar};
use supervisor::{RootSupervisor, Shared};

/// What a handler knows about the job it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub job_id: String,
    pub queue: Queue,
    /// This attempt (1-based).
    pub attempt: u32,
    pub max_attempts: u32,
    /// The attempt's fencing token (for [`vigil_queue::Engine::set_progress`]).
    pub token: String,
    /// The queue's `batch_size` (used by batch handlers: [`PerformBatch`]).
    pub batch_size: usize,
    /// The queue's `batch_linger_ms` (used by batch handlers).
    pub batch_linger: Duration,
}

/// A queue's handler: payload-agnostic, decodes its own payload.
pub type Handler = Arc<
    dyn Fn(JobContext, serde_json::Value) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync,
>;

/// The handler as apalis worker data (a named type: a bare `dyn` inside `Data<..>` trips
/// rustc's higher-ranked lifetime check when the worker is spawned).
#[derive(Clone)]
pub(crate) struct HandlerData {
    pub handler: Handler,
    pub batch_size: usize,
    pub batch_linger: Duration,
}

/// The apalis task function: runs the queue's handler and maps its error for the engine.
pub(crate) fn run_job(
    job: LeasedJob,
    data: Data<HandlerData>,
) -> BoxFuture<'static, Result<(), BoxDynError>> {
    let data: &HandlerData = &data;
    let ctx = JobContext {
        job_id: job.id.clone(),
        queue: job.queue,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        token: job.token.clone(),
        batch_size: data.batch_size,
        batch_linger: data.batch_linger,
    };
    let fut = (data.handler)(ctx, job.payload);
    Box::pin(async move {
        match fut.await {
            Ok(()) => Ok(()),
            Err(JobError::Permanent(msg)) => Err(Box::new(PermanentFailure(msg)) as BoxDynError),
            Err(JobError::Retryable(msg)) => Err(msg.into()),
            Err(JobError::RetryAfter(after, reason)) => Err(Box::new(Later {
                after,
                count_attempt: true,
                reason,
            }) as BoxDynError),
            Err(JobError::Snooze(after, reason)) => Err(Box::new(Later {
                after,
                count_attempt: false,
                reason,
            }) as BoxDynError),
        }
    })
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Schedule(#[from] vigil_queue::ScheduleError),
}

/// Entry point: `Runtime::builder(engine, schedules, &registry).handler(..).start()`.
pub struct Runtime;

impl Runtime {
    pub fn builder(
        engine: Engine,
        schedules: SchedulesSettings,
        registry: &Registry,
    ) -> RuntimeBuilder {
        RuntimeBuilder {
            engine,
            schedules,
            registry: registry.clone(),
            handlers: Vec::new(),
            name: "worker".to_owned(),
            run_schedules: true,
            observer: None,
            metrics: None,
        }
    }
}

/// Collects handlers, then starts the actors.
pub struct RuntimeBuilder {
    engine: Engine,
    schedules: SchedulesSettings,
    registry: Registry,
    handlers: Vec<(Queue, Handler)>,
    name: String,
    run_schedules: bool,
    observer: Option<Arc<dyn JobObserver>>,
    metrics: Option<Metrics>,
}

impl RuntimeBuilder {
    /// Runs `queue` with `handler` (a queue without a handler is not consumed here).
    pub fn handler(mut self, queue: Queue, handler: Handler) -> Self {
        self.handlers.retain(|(q, _)| *q != queue);
        self.handlers.push((queue, handler));
        self
    }

    /// Runs `J`'s queue with its typed handler over `deps` (tests and small programs; the
    /// application registers its kinds through a [`Registrar`]).
    pub fn job<J: Perform>(self, deps: J::Deps) -> Self {
        vigil_jobs::register::<J>();
        self.handler(J::QUEUE, perform::handler::<J>(Arc::new(deps)))
    }

    /// Runs `J`'s queue with its batch handler over `deps` (see [`batch`]).
    pub fn batch_job<J: PerformBatch>(self, deps: J::Deps) -> Self {
        vigil_jobs::register::<J>();
        self.handler(J::QUEUE, batch::handler::<J>(Arc::new(deps)))
    }

    /// A name for this instance's worker ids and health (default `worker`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Whether this instance runs the scheduler (default true; ticks are claimed once anyway).
    pub fn schedules(mut self, on: bool) -> Self {
        self.run_schedules = on;
        self
    }

    /// Another observer of every attempt, next to the metrics (the bench measures with it).
    #[doc(hidden)]
    pub fn observer(mut self, observer: Arc<dyn JobObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Metrics registered beforehand (e.g. so an API in the same process counts its
    /// enqueues in them before the runtime starts); by default the runtime registers its own.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Registers the metrics and starts the supervisor, queue actors, scheduler and upkeep.
    pub fn start(self) -> Result<RuntimeHandle, RuntimeError> {
        vigil_queue::schedule::validate(&self.schedules)?;
        let metrics = match self.metrics {
            Some(m) => m,
            None => Metrics::register(&self.registry)?,
        };
        let engine = self
            .engine
            .clone()
            .with_enqueue_hook(metrics.enqueue_hook());
        let instance = vigil_queue::new_worker_id(&self.name);
        let health = HealthBoard::new(&instance);
        let shared = Shared {
            engine: engine.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            instance: instance.clone(),
            shutting_down: Arc::new(AtomicBool::new(false)),
            workers: Arc::new(Mutex::new(HashMap::new())),
            extra_observer: self.observer,
        };
        let queues: Vec<Queue> = self.handlers.iter().map(|(q, _)| *q).collect();
        // Every queue actor is on the board from the start, so readiness waits for all.
        for q in &queues {
            health.set(&format!("queue:{q}"), false, Some("starting".to_owned()));
        }
        let supervisor = RootSupervisor::new(shared.clone(), self.handlers).start();
        let scheduler = self.run_schedules.then(|| {
            scheduler::Scheduler::new(
                engine.clone(),
                self.schedules.clone(),
                health.clone(),
                metrics.clone(),
            )
            .start()
        });
        let upkeep = tokio::spawn(maintenance::run(shared.clone()));
        let names: Vec<&str> = queues.iter().map(|q| q.as_str()).collect();
        tracing::info!(%instance, queues = %names.join(","), "job runtime started");
        Ok(RuntimeHandle {
            shared,
            queues,
            schedules: self.schedules,
            supervisor,
            scheduler,
            upkeep,
        })
    }
}

/// The running runtime.
pub struct RuntimeHandle {
    shared: Shared,
    queues: Vec<Queue>,
    schedules: SchedulesSettings,
    supervisor: Addr<RootSupervisor>,
    scheduler: Option<Addr<scheduler::Scheduler>>,
    upkeep: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

impl RuntimeHandle {
    /// This instance's id (unique per process start).
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// The engine the runtime uses (counts enqueues in the metrics).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The queues this instance consumes.
    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    /// The names of the schedules this instance runs.
    pub fn schedule_names(&self) -> Vec<String> {
        self.schedules.0.keys().cloned().collect()
    }

    /// Jobs running on this instance now.
    pub fn running_jobs(&self) -> usize {
        self.shared
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|w| w.control.inflight())
            .sum()
    }

    /// The live health board of this instance's actors (cheap to clone).
    pub fn health_board(&self) -> HealthBoard {
        self.shared.health.clone()
    }

    /// This instance's actors.
    pub fn health(&self) -> Vec<ActorHealth> {
        self.shared.health.snapshot()
    }

    /// Every schedule with its next run and last run.
    pub async fn schedules(&self) -> Vec<ScheduleInfo> {
        let runs = self.shared.engine.schedule_runs().await.unwrap_or_default();
        vigil_queue::schedules(&self.schedules, &runs, Utc::now())
    }

    /// Test hook: aborts a queue's worker as a crash would (its actor restarts it).
    #[doc(hidden)]
    pub fn crash_worker(&self, queue: Queue) -> bool {
        supervisor::crash_worker(&self.shared, queue)
    }

    /// Graceful stop: stop leasing everywhere, let running jobs finish until
    /// `shutdown_deadline_seconds`, give the rest back to their queue, then return.
    pub async fn shutdown(self) {
        let deadline = Duration::from_secs(
            self.shared
                .engine
                .engine_settings()
                .shutdown_deadline_seconds,
        );
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        if let Some(s) = &self.scheduler {
            s.do_send(StopActor);
        }
        let workers: Vec<(Queue, supervisor::RunningWorker)> = self
            .shared
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, w) in &workers {
            w.control.stop_leasing();
        }
        let until = tokio::time::Instant::now() + deadline;
        for (_, w) in &workers {
            let _ = tokio::time::timeout_at(until, w.control.leasing_stopped()).await;
        }
        let running: usize = workers.iter().map(|(_, w)| w.control.inflight()).sum();
        tracing::info!(
            running,
            deadline_seconds = deadline.as_secs(),
            "shutting down: leasing stopped, waiting for running jobs"
        );
        for (queue, w) in workers {
            let supervisor::RunningWorker { control, mut task } = w;
            // The apalis worker loop does not end by itself when its backend stops, so wait
            // for the jobs this worker holds to finish (or the deadline), then end the loop.
            let drained = async {
                let mut said = tokio::time::Instant::now();
                while control.inflight() > 0 && !task.is_finished() {
                    if said.elapsed() >= DRAIN_REPORT_EVERY {
                        said = tokio::time::Instant::now();
                        let left = until.saturating_duration_since(said);
                        tracing::info!(%queue, running = control.inflight(),
                            deadline_in_seconds = left.as_secs(),
                            "shutting down: still waiting for running jobs");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            if tokio::time::timeout_at(until, drained).await.is_err() {
                task.abort();
                let released = control.release_all().await;
                tracing::warn!(%queue, released, "shutdown deadline passed; unfinished jobs returned to the queue");
            } else if !task.is_finished() {
                task.abort();
            }
            let _ = (&mut task).await;
            // Jobs leased but never handed to the worker.
            let released = control.release_all().await;
            if released > 0 {
                tracing::info!(%queue, released, "unstarted jobs returned to the queue");
            }
        }
        self.upkeep.abort();
        self.supervisor.do_send(StopActor);
        // Let the supervisor stop (dropping the handlers and their services, e.g. the SMTP
        // pool) while the runtime is still there to run their clean-up.
        let stopped = async {
            while self.supervisor.connected() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), stopped).await;
        if let Err(e) = self
            .shared
            .engine
            .forget_instance(&self.shared.instance)
            .await
        {
            tracing::debug!(error = %e, "could not remove the health report");
        }
        tracing::info!("job runtime stopped");
    }
}

/// How often a drain that is still waiting says so.
const DRAIN_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Stops an actor.
#[derive(Message)]
#[rtype(result = "()")]
struct StopActor;

impl actix::Handler<StopActor> for RootSupervisor {
    type Result = ();
    fn handle(&mut self, _: StopActor, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl actix::Handler<StopActor> for scheduler::Scheduler {
    type Result = ();
    fn handle(&mut self, _: StopActor, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
