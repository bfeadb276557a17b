//! The apalis-core [`Backend`] that vigil's apalis workers run on, and the [`AckLayer`] that
//! reports each attempt's outcome to the engine.
//!
//! A [`VigilBackend`] runs a background *leaser* per worker: it leases only as many jobs as
//! the worker has free slots (so a leased job never waits for a slot while its lease runs),
//! in batches (`LIMIT n` inside the lease script, so any backlog drains), and sleeps on a
//! blocking wake-up key when the queue is empty (pickup does not wait for a heartbeat). A
//! *renewer* extends the leases of running jobs every `lease/3`, and an *acker* completes
//! successful jobs in batches. Every Redis error in these loops is logged and retried with
//! backoff: a Redis stall or restart never ends the worker.
//!
//! Retries are rescheduled in Redis by the fail script: a retry never sleeps in a worker slot.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::backend::{Backend, BackendConfig, finalize::Ephemeral};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::worker::context::WorkerContext;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::Instrument;
use vigil_jobs::Queue;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::lease::{FailOutcome, LeasedJob};

/// Returned by a handler (boxed) to say "no retry can fix this": the job goes dead at once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PermanentFailure(pub String);

/// Returned by a handler (boxed) to run the job again after `after`. With `count_attempt`
/// it is a failed attempt whose retry waits `after` instead of the queue's backoff (a
/// server's `Retry-After`); without, a snooze: the attempt is given back and no error is
/// recorded (the job waited for something outside it, e.g. a mail server that is down).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Later {
    pub after: Duration,
    pub count_attempt: bool,
    pub reason: String,
}

/// The outcome of one attempt, as the engine recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    /// Failed; another attempt is scheduled.
    Retried,
    /// Failed for good.
    Dead,
    /// Put back to wait without counting the attempt ([`Later`] without `count_attempt`).
    Snoozed,
    /// The lease had been taken over; the result was discarded (fencing).
    Fenced,
    /// The engine could not record the outcome (Redis down past the lease); the lease will expire.
    Unrecorded,
}

/// Told about every attempt (the runtime's metrics implement it).
pub trait JobObserver: Send + Sync {
    fn started(&self, job: &LeasedJob);
    /// `elapsed` is the handler's time; `held` is start to outcome recorded in Redis.
    fn finished(&self, job: &LeasedJob, outcome: AttemptOutcome, elapsed: Duration, held: Duration);
}

/// State shared by a worker's backend, leaser, renewer, acker and ack layer.
struct Shared {
    engine: Engine,
    queue: Queue,
    worker_id: String,
    slots: Semaphore,
    /// Leased, not yet reported: id -> (job, started).
    inflight: Mutex<HashMap<String, (LeasedJob, bool)>>,
    /// Set once when the worker stops leasing; never cleared.
    stopping: watch::Sender<bool>,
    /// True while the leaser loop runs; a lease it has in flight ends up in `inflight`
    /// before this turns false.
    leasing: watch::Sender<bool>,
    observer: Option<Arc<dyn JobObserver>>,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn lock_inflight(&self) -> std::sync::MutexGuard<'_, HashMap<String, (LeasedJob, bool)>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once leasing has been stopped (at once if it already has, so a stop
    /// between a check and this wait is never missed).
    async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Forgets a finished job and frees its slot.
    fn finish(&self, id: &str) {
        if self.lock_inflight().remove(id).is_some() {
            self.slots.add_permits(1);
        }
    }
}

struct AckMsg {
    id: String,
    token: String,
    reply: oneshot::Sender<Result<bool, EngineError>>,
}

/// A control handle on one worker's backend (shutdown and health).
#[derive(Clone)]
pub struct WorkerControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerControl")
            .field("worker_id", &self.shared.worker_id)
            .finish_non_exhaustive()
    }
}

impl WorkerControl {
    /// Stops leasing; jobs already leased still run.
    pub fn stop_leasing(&self) {
        self.shared.stopping.send_replace(true);
    }

    /// Waits until the leaser has stopped, so that every job it leased is counted by
    /// [`WorkerControl::inflight`] (a lease still on its way back from Redis when leasing
    /// stopped would otherwise be missed).
    pub async fn leasing_stopped(&self) {
        let mut rx = self.shared.leasing.subscribe();
        let _ = rx.wait_for(|running| !*running).await;
    }

    /// Jobs leased and not yet reported.
    pub fn inflight(&self) -> usize {
        self.shared.lock_inflight().len()
    }

    /// Gives every unreported job back to the queue (after the shutdown deadline). Jobs that
    /// never started keep their attempt uncounted. Returns how many were given back.
    pub async fn release_all(&self) -> usize {
        let jobs: Vec<(LeasedJob, bool)> = self
            .shared
            .lock_inflight()
            .drain()
            .map(|(_, v)| v)
            .collect();
        let mut released = 0;
        for (job, started) in jobs {
            match self.shared.engine.release(&job, !started).await {
                Ok(true) => released += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(job_id = %job.id, queue = %job.queue, error = %e,
                    "could not give the job back; its lease will expire and the reaper re-queues it"),
            }
        }
        released
    }

    /// The last Redis error the worker's loops hit, cleared on the next success.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }
}

/// An apalis backend over one vigil queue.
pub struct VigilBackend {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<LeasedJob>,
    ack_tx: mpsc::UnboundedSender<AckMsg>,
}

impl std::fmt::Debug for VigilBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VigilBackend")
            .field("queue", &self.shared.queue)
            .field("worker_id", &self.shared.worker_id)
            .finish_non_exhaustive()
    }
}

impl VigilBackend {
    /// Starts the leaser, renewer and acker of a new worker on `queue` with `concurrency`
    /// slots. Must be called inside a tokio runtime. The loops end when the backend is
    /// stopped (see [`WorkerControl::stop_leasing`]).
    pub fn start(
        engine: Engine,
        queue: Queue,
        worker_id: String,
        concurrency: usize,
        observer: Option<Arc<dyn JobObserver>>,
    ) -> (VigilBackend, WorkerControl) {
        let shared = Arc::new(Shared {
            engine,
            queue,
            worker_id,
            slots: Semaphore::new(concurrency.max(1)),
            inflight: Mutex::new(HashMap::new()),
            stopping: watch::Sender::new(false),
            leasing: watch::Sender::new(true),
            observer,
            last_error: Mutex::new(None),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        tokio::spawn(leaser(shared.clone(), tx));
        tokio::spawn(renewer(shared.clone()));
        tokio::spawn(acker(shared.clone(), ack_rx));
        let control = WorkerControl {
            shared: shared.clone(),
        };
        (VigilBackend { shared, rx, ack_tx }, control)
    }
}

fn backoff(step: u32) -> Duration {
    Duration::from_millis((50u64 << step.min(7)).min(5_000))
}

/// Leases jobs for free slots and hands them to the worker.
async fn leaser(shared: Arc<Shared>, tx: mpsc::UnboundedSender<LeasedJob>) {
    /// Marks the leaser stopped however it ends (return, panic or abort).
    struct Stopped<'a>(&'a Shared);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.leasing.send_replace(false);
        }
    }
    let _stopped = Stopped(&shared);
    let settings = shared.engine.engine_settings().clone();
    let poll = Duration::from_millis(settings.poll_interval_ms.max(10));
    let mut waiter = shared.engine.waiter();
    let mut errors = 0u32;
    loop {
        if shared.is_stopping() {
            break;
        }
        // One free slot at least, then every other free slot.
        let permit = tokio::select! {
            p = shared.slots.acquire() => p,
            _ = shared.stopped() => break,
        };
        let Ok(permit) = permit else { break };
        if shared.is_stopping() {
            break;
        }
        permit.forget();
        let mut n = 1usize;
        let extra = shared.slots.available_permits();
        if extra > 0
            && let Ok(p) = shared.slots.try_acquire_many(extra as u32)
        {
            p.forget();
            n += extra;
        }
        let leased = shared
            .engine
            .lease(shared.queue, &shared.worker_id, n)
            .await;
        match leased {
            Ok(batch) => {
                if errors > 0 {
                    tracing::info!(queue = %shared.queue, "Redis reachable again, leasing resumed");
                    shared.set_error(None);
                }
                errors = 0;
                let got = batch.jobs.len();
                shared.slots.add_permits(n - got);
                {
                    let mut inflight = shared.lock_inflight();
                    for job in &batch.jobs {
                        inflight.insert(job.id.clone(), (job.clone(), false));
                    }
                }
                for job in batch.jobs {
                    if tx.send(job.clone()).is_err() {
                        // The worker is gone: give it back untouched.
                        let _ = shared.engine.release(&job, true).await;
                        shared.finish(&job.id);
                    }
                }
                if got == 0 || (!batch.more && got < n) {
                    let wait = if batch.paused {
                        poll
                    } else {
                        batch
                            .next_due
                            .and_then(|due| (due - chrono::Utc::now()).to_std().ok())
                            .map(|d| d.min(poll))
                            .unwrap_or(poll)
                    };
                    if got == 0 && !wait.is_zero() {
                        tokio::select! {
                            r = shared.engine.wait_for_work(&mut waiter, shared.queue, wait) => {
                                if let Err(e) = r {
                                    tracing::debug!(queue = %shared.queue, error = %e, "wake-up wait failed");
                                    tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
                                }
                            }
                            _ = shared.stopped() => break,
                        }
                    }
                }
            }
            Err(e) => {
                shared.slots.add_permits(n);
                errors += 1;
                let msg = e.to_string();
                if errors == 1 || errors.is_multiple_of(20) {
                    tracing::warn!(queue = %shared.queue, error = %msg, attempt = errors,
                        "leasing failed; retrying with backoff");
                }
                shared.set_error(Some(msg));
                tokio::select! {
                    _ = tokio::time::sleep(backoff(errors)) => {}
                    _ = shared.stopped() => break,
                }
            }
        }
    }
    tracing::debug!(queue = %shared.queue, worker = %shared.worker_id, "leaser stopped");
}

/// Extends the leases of running jobs every lease/3.
async fn renewer(shared: Arc<Shared>) {
    let lease = Duration::from_secs(shared.engine.engine_settings().lease_seconds.max(1));
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        if shared.is_stopping() && shared.lock_inflight().is_empty() {
            break;
        }
        if Arc::strong_count(&shared) <= 2 && shared.lock_inflight().is_empty() {
            // Backend and control dropped: nothing left to renew.
            break;
        }
        let jobs: Vec<(String, String)> = shared
            .lock_inflight()
            .values()
            .map(|(j, _)| (j.id.clone(), j.token.clone()))
            .collect();
        if jobs.is_empty() {
            continue;
        }
        match shared.engine.renew(shared.queue, &jobs).await {
            Ok(kept) => {
                for ((id, _), ok) in jobs.iter().zip(kept) {
                    if !ok {
                        tracing::warn!(job_id = %id, queue = %shared.queue,
                            "lease lost (taken over after expiry); this attempt's result will be discarded");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(queue = %shared.queue, error = %e, "lease renewal failed; retrying")
            }
        }
    }
}

/// Completes successful jobs in batches.
async fn acker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<AckMsg>) {
    let mut batch: Vec<AckMsg> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let pairs: Vec<(String, String)> = batch
            .iter()
            .map(|m| (m.id.clone(), m.token.clone()))
            .collect();
        let mut step = 0u32;
        let result = loop {
            match shared.engine.complete_many(shared.queue, &pairs).await {
                Ok(r) => break Ok(r),
                Err(e) => {
                    step += 1;
                    if step == 1 || step.is_multiple_of(20) {
                        tracing::warn!(queue = %shared.queue, error = %e, "recording completions failed; retrying");
                    }
                    if step > 60 {
                        break Err(e);
                    }
                    tokio::time::sleep(backoff(step)).await;
                }
            }
        };
        match result {
            Ok(oks) => {
                for (m, ok) in batch.drain(..).zip(oks) {
                    let _ = m.reply.send(Ok(ok));
                }
            }
            Err(e) => {
                for m in batch.drain(..) {
                    let _ = m.reply.send(Err(e.share()));
                }
            }
        }
    }
}

impl Backend for VigilBackend {
    type Task = Task<LeasedJob>;
    type Error = EngineError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _w: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _w: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(job)) => {
                let id = apalis_core::task::task_id::TaskId::from_string(job.id.clone());
                Poll::Ready(Some(Ok(TaskBuilder::new(job).task_id(id).build())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(
        &mut self,
        _cx: &mut Context<'_>,
        _w: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

impl BackendConfig for VigilBackend {
    type Args = LeasedJob;
    type Id = String;
    // apalis' `Durable` kind means "decode a wire format first"; vigil's backend already
    // yields typed jobs (durability is in the Lua transitions), so no finalizing wrapper.
    type Kind = Ephemeral;
    type Config = Queue;
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        &self.shared.queue
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        AckLayer {
            shared: self.shared.clone(),
            ack_tx: self.ack_tx.clone(),
        }
    }
}

/// Wraps the worker's service (timeout, panic catching and the handler): opens a span per
/// attempt and records the attempt's outcome in the engine.
#[derive(Clone)]
pub struct AckLayer {
    shared: Arc<Shared>,
    ack_tx: mpsc::UnboundedSender<AckMsg>,
}

impl<S> tower_layer::Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            shared: self.shared.clone(),
            ack_tx: self.ack_tx.clone(),
        }
    }
}

/// See [`AckLayer`].
#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    shared: Arc<Shared>,
    ack_tx: mpsc::UnboundedSender<AckMsg>,
}

type BoxError = apalis_core::error::BoxDynError;

impl<S> tower_service::Service<Task<LeasedJob>> for AckService<S>
where
    S: tower_service::Service<Task<LeasedJob>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, task: Task<LeasedJob>) -> Self::Future {
        let job = task.args.clone();
        let span =
            tracing::info_span!("job", job_id = %job.id, queue = %job.queue, attempt = job.attempt);
        if let Some((_, started)) = self.shared.lock_inflight().get_mut(&job.id) {
            *started = true;
        }
        if let Some(o) = &self.shared.observer {
            o.started(&job);
        }
        let fut = self.inner.call(task);
        let shared = self.shared.clone();
        let ack_tx = self.ack_tx.clone();
        let run = async move {
            let began = Instant::now();
            tracing::debug!("attempt started");
            let result = fut.await.map(|_| ());
            let elapsed = began.elapsed();
            let outcome = report(&shared, &ack_tx, &job, result).await;
            shared.finish(&job.id);
            if let Some(o) = &shared.observer {
                o.finished(&job, outcome, elapsed, began.elapsed());
            }
            Ok(())
        };
        run.instrument(span).boxed()
    }
}

/// Records one attempt's result; returns what the engine made of it.
async fn report(
    shared: &Shared,
    ack_tx: &mpsc::UnboundedSender<AckMsg>,
    job: &LeasedJob,
    result: Result<(), BoxError>,
) -> AttemptOutcome {
    match result {
        Ok(()) => {
            let (reply, rx) = oneshot::channel();
            let msg = AckMsg {
                id: job.id.clone(),
                token: job.token.clone(),
                reply,
            };
            let answer = if ack_tx.send(msg).is_ok() {
                rx.await
                    .unwrap_or_else(|_| Err(EngineError::Unavailable("acker stopped".into())))
            } else {
                shared.engine.complete(job).await
            };
            match answer {
                Ok(true) => {
                    tracing::debug!("job succeeded");
                    AttemptOutcome::Succeeded
                }
                Ok(false) => {
                    tracing::warn!("job finished after its lease was taken over; result discarded");
                    AttemptOutcome::Fenced
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not record success; the job will run again after its lease expires");
                    AttemptOutcome::Unrecorded
                }
            }
        }
        Err(err) => {
            let permanent = err.downcast_ref::<PermanentFailure>().is_some();
            let later = err
                .downcast_ref::<Later>()
                .map(|l| (l.after, l.count_attempt));
            let message = describe(&*err);
            let mut step = 0u32;
            if let Some((after, false)) = later {
                loop {
                    match shared.engine.snooze(job, after).await {
                        Ok(Some(run_at)) => {
                            tracing::info!(reason = %message, %run_at, "job snoozed; attempt not counted");
                            return AttemptOutcome::Snoozed;
                        }
                        Ok(None) => return AttemptOutcome::Fenced,
                        Err(e) => {
                            step += 1;
                            if step > 60 {
                                tracing::error!(error = %e, "could not snooze the job; the lease will expire");
                                return AttemptOutcome::Unrecorded;
                            }
                            tokio::time::sleep(backoff(step)).await;
                        }
                    }
                }
            }
            let delay = later.map(|(after, _)| after);
            loop {
                match shared
                    .engine
                    .fail_after(job, &message, permanent, delay)
                    .await
                {
                    Ok(FailOutcome::Retry { run_at }) => {
                        tracing::warn!(error = %message, %run_at, "attempt failed; retry scheduled");
                        return AttemptOutcome::Retried;
                    }
                    Ok(FailOutcome::Dead) => {
                        tracing::error!(error = %message, permanent, "job is dead");
                        return AttemptOutcome::Dead;
                    }
                    Ok(FailOutcome::Stale) => {
                        tracing::warn!(error = %message, "attempt failed after its lease was taken over; ignored");
                        return AttemptOutcome::Fenced;
                    }
                    Err(e) => {
                        step += 1;
                        if step > 60 {
                            tracing::error!(error = %e, "could not record the failure; the lease will expire");
                            return AttemptOutcome::Unrecorded;
                        }
                        tokio::time::sleep(backoff(step)).await;
                    }
                }
            }
        }
    }
}

/// A one-line description of a failed attempt (timeouts and panics named as such).
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let text = err.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("elapsed") || lower.contains("timed out") || lower.contains("timeout") {
        format!("timed out: {text}")
    } else {
        text
    }
}

/// A boxed handler future, for the runtime.
pub type HandlerFuture = BoxFuture<'static, Result<(), BoxError>>;
