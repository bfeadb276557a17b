//! The root supervisor and the per-queue actors.
//!
//! [`RootSupervisor`] starts one [`QueueActor`] per queue that has a handler, each under an
//! actix `Supervisor`. A queue actor runs its queue's apalis worker (over vigil's backend,
//! with timeout, concurrency and panic-catching layers). When the worker ends unexpectedly
//! (an error, a panic) the actor stops; the supervisor restarts it, and the actor waits an
//! exponential backoff before starting a new worker. Restarts are counted (metric + health)
//! and logged. Each queue has its own actor, so one failing queue never stops the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use apalis::layers::catch_panic::{CatchPanicLayer, PanicError};
use apalis::prelude::WorkerBuilderExt;
use apalis_core::worker::builder::WorkerBuilder;
use vigil_jobs::Queue;
use vigil_queue::backend::{JobObserver, WorkerControl};
use vigil_queue::{ActorLoad, Engine, VigilBackend, new_worker_id};

use super::health::HealthBoard;
use super::metrics::Metrics;
use super::schedule_audit::ScheduleFailureAudit;
use super::{Handler, HandlerData, run_job};

/// What the handle needs to stop a queue's current worker.
pub(crate) struct RunningWorker {
    pub control: WorkerControl,
    pub task: tokio::task::JoinHandle<()>,
}

/// Shared between the actors and the runtime handle.
#[derive(Clone)]
pub(crate) struct Shared {
    pub engine: Engine,
    pub metrics: Metrics,
    pub health: HealthBoard,
    pub instance: String,
    pub shutting_down: Arc<AtomicBool>,
    pub workers: Arc<Mutex<HashMap<Queue, RunningWorker>>>,
    pub extra_observer: Option<Arc<dyn JobObserver>>,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// Starts and holds the queue actors.
pub struct RootSupervisor {
    shared: Shared,
    handlers: Vec<(Queue, Handler)>,
    queues: Vec<Addr<QueueActor>>,
}

impl RootSupervisor {
    pub(crate) fn new(shared: Shared, handlers: Vec<(Queue, Handler)>) -> Self {
        Self {
            shared,
            handlers,
            queues: Vec::new(),
        }
    }
}

impl Actor for RootSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.shared.health.set("supervisor", true, None);
        for (queue, handler) in self.handlers.drain(..) {
            let shared = self.shared.clone();
            let addr = Supervisor::start(move |_| QueueActor::new(queue, handler, shared));
            self.queues.push(addr);
        }
        tracing::info!(
            queues = self.queues.len(),
            "root supervisor started the queue actors"
        );
    }
}

/// Runs one queue's apalis worker; restarted by its supervisor when the worker ends.
pub struct QueueActor {
    queue: Queue,
    handler: Handler,
    shared: Shared,
    name: String,
    restarts: u32,
}

impl QueueActor {
    fn new(queue: Queue, handler: Handler, shared: Shared) -> Self {
        let name = format!("queue:{queue}");
        // Export the series at 0 from the start, so dashboards show "no restarts", not "no data".
        shared
            .metrics
            .actor_restarts
            .with_label_values(&[name.as_str()]);
        Self {
            queue,
            handler,
            shared,
            name,
            restarts: 0,
        }
    }

    /// Backoff before restart n: 0.5 s doubling to 30 s.
    fn backoff(&self) -> Duration {
        if self.restarts == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis((500u64 << (self.restarts - 1).min(6)).min(30_000))
        }
    }

    fn start_worker(&mut self, ctx: &mut Context<Self>) {
        if self.shared.stopping() {
            return;
        }
        let settings = self.shared.engine.queue_settings(self.queue).clone();
        let worker_id = new_worker_id(&format!("{}-{}", self.shared.instance, self.queue));
        let mut observers: Vec<Arc<dyn JobObserver>> = vec![
            Arc::new(self.shared.metrics.clone()),
            Arc::new(ScheduleFailureAudit::new(self.shared.engine.clone())),
        ];
        observers.extend(self.shared.extra_observer.clone());
        let observer: Arc<dyn JobObserver> = Arc::new(Observers(observers));
        let (backend, control) = VigilBackend::start(
            self.shared.engine.clone(),
            self.queue,
            worker_id.clone(),
            settings.concurrency,
            Some(observer),
        );
        let data = HandlerData {
            handler: self.handler.clone(),
            batch_size: settings.batch_size.max(1),
            batch_linger: Duration::from_millis(settings.batch_linger_ms),
        };
        let worker = WorkerBuilder::new(worker_id.clone())
            .backend(backend)
            // Concurrency outside timeout: the timeout counts a job's run, not its wait.
            .concurrency(settings.concurrency.max(1))
            .timeout(Duration::from_secs(settings.timeout_seconds.max(1)))
            .layer(CatchPanicLayer::with_panic_handler(panic_message))
            .data(data)
            .build(run_job);
        let queue = self.queue;
        let concurrency = settings.concurrency.max(1) as u64;
        let task = tokio::spawn(async move {
            if let Err(e) = worker.run().await {
                tracing::error!(%queue, error = %e, "worker stopped with an error");
            }
        });
        tracing::info!(%queue, worker = %worker_id, concurrency = settings.concurrency, "queue worker started");
        self.shared.health.set(&self.name, true, None);
        let load = move |in_flight: usize, worker: &str| ActorLoad {
            in_flight: in_flight as u64,
            concurrency,
            worker: worker.to_owned(),
        };
        self.shared
            .health
            .set_load(&self.name, Some(load(0, &worker_id)));
        self.shared
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue, RunningWorker { control, task });
        // Check the worker's liveness every 200 ms; stop (and be restarted) when it ended.
        ctx.run_interval(Duration::from_millis(200), move |act, ctx| {
            if act.shared.stopping() {
                return;
            }
            let (finished, last_error, in_flight) = {
                let workers = act.shared.workers.lock().unwrap_or_else(|e| e.into_inner());
                match workers.get(&act.queue) {
                    Some(w) => (w.task.is_finished(), w.control.last_error(), w.control.inflight()),
                    None => (true, None, 0),
                }
            };
            act.shared.health.set_load(&act.name, (!finished).then(|| load(in_flight, &worker_id)));
            if finished {
                let count = act.shared.health.restarted(&act.name, "worker stopped unexpectedly");
                act.shared.metrics.actor_restarts.with_label_values(&[act.name.as_str()]).inc();
                tracing::error!(queue = %act.queue, restarts = count, "queue worker stopped; restarting the actor");
                ctx.stop();
            } else {
                // Redis trouble makes the actor unhealthy without restarting it: the worker
                // retries by itself and recovers when Redis does.
                act.shared.health.set(&act.name, last_error.is_none(), last_error);
            }
        });
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let delay = self.backoff();
        if delay.is_zero() {
            self.start_worker(ctx);
        } else {
            tracing::warn!(queue = %self.queue, delay_ms = delay.as_millis() as u64, "restarting the queue worker after a backoff");
            ctx.run_later(delay, |act, ctx| act.start_worker(ctx));
        }
    }
}

impl Supervised for QueueActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.restarts += 1;
        // Stop what is left of the old worker (its leases expire or are released).
        let old = self
            .shared
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.queue);
        if let Some(old) = old {
            old.control.stop_leasing();
            old.task.abort();
            tokio::spawn(async move {
                old.control.release_all().await;
            });
        }
    }
}

/// For tests: kills a queue's worker task as a crash would.
#[doc(hidden)]
pub(crate) fn crash_worker(shared: &Shared, queue: Queue) -> bool {
    let workers = shared.workers.lock().unwrap_or_else(|e| e.into_inner());
    match workers.get(&queue) {
        Some(w) => {
            w.task.abort();
            true
        }
        None => false,
    }
}

/// Several observers as one.
struct Observers(Vec<Arc<dyn JobObserver>>);

impl JobObserver for Observers {
    fn started(&self, job: &vigil_queue::LeasedJob) {
        self.0.iter().for_each(|o| o.started(job));
    }

    fn finished(
        &self,
        job: &vigil_queue::LeasedJob,
        outcome: vigil_queue::backend::AttemptOutcome,
        elapsed: Duration,
        held: Duration,
    ) {
        self.0
            .iter()
            .for_each(|o| o.finished(job, outcome, elapsed, held));
    }
}

/// Turns a handler's panic into a retryable attempt error.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> PanicError {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    PanicError(format!("handler panicked: {msg}"))
}
