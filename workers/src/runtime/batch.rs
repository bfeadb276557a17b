//! Batch handlers: a job kind whose work is cheaper many at a time (one database transaction
//! for a whole batch) implements [`PerformBatch`] and is registered with
//! [`crate::runtime::Registrar::batch_job`].
//!
//! Each job still goes through the worker on its own: leased, timed out, acknowledged,
//! retried or dead by itself. Its handler decodes it (a bad payload fails alone, at once) and
//! hands it to the queue's batcher, which gathers up to the queue's `batch_size` jobs, or
//! what arrived within `batch_linger_ms` of the first, runs them in one
//! [`PerformBatch::perform_batch`] call and answers each job with its own result. While a
//! batch runs, the next one gathers, so under load batches fill up; jobs that waited through
//! a running batch do not wait again. The queue's `concurrency` bounds the jobs in flight:
//! give it at least `batch_size` (twice lets one batch gather while another runs).
//!
//! A batch that panics answers each of its jobs with a retryable error, and a batcher that
//! stopped is started again by the next job.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use vigil_jobs::Job;

use crate::JobError;
use crate::runtime::{Handler, JobContext};

/// How a batch job kind runs.
pub trait PerformBatch: Job {
    /// What the handler needs, shared by every batch.
    type Deps: Send + Sync + 'static;

    /// Runs one attempt of each job of `jobs` (1 to `batch_size` of them) and returns one
    /// result per job, in order. Must be idempotent per job: a job can run more than once.
    fn perform_batch(
        jobs: Vec<(JobContext, Self)>,
        deps: Arc<Self::Deps>,
    ) -> impl Future<Output = Vec<Result<(), JobError>>> + Send;
}

/// One job waiting for its batch.
struct Item<J> {
    ctx: JobContext,
    job: J,
    arrived: Instant,
    reply: oneshot::Sender<Result<(), JobError>>,
}

/// The per-job [`Handler`] of the batch kind `J`: decodes and validates the payload, then
/// waits for the result of the batch the job joined.
pub fn handler<J: PerformBatch>(deps: Arc<J::Deps>) -> Handler {
    let batcher: Arc<Mutex<Option<mpsc::UnboundedSender<Item<J>>>>> = Arc::new(Mutex::new(None));
    Arc::new(move |ctx: JobContext, payload: serde_json::Value| {
        let (deps, batcher) = (deps.clone(), batcher.clone());
        Box::pin(async move {
            let job = J::decode(payload)
                .map_err(|e| JobError::Permanent(format!("invalid {} job: {e}", J::QUEUE)))?;
            let (reply, answer) = oneshot::channel();
            let item = Item {
                ctx,
                job,
                arrived: Instant::now(),
                reply,
            };
            {
                let mut slot = batcher.lock().unwrap_or_else(|e| e.into_inner());
                let item = match slot.as_ref() {
                    Some(tx) => tx.send(item).err().map(|mpsc::error::SendError(item)| item),
                    None => Some(item),
                };
                if let Some(item) = item {
                    // First job, or the batcher stopped: start one.
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(run::<J>(rx, deps));
                    let _ = tx.send(item);
                    *slot = Some(tx);
                }
            }
            answer.await.unwrap_or_else(|_| {
                Err(JobError::Retryable(format!(
                    "the {} batch stopped before answering",
                    J::QUEUE
                )))
            })
        })
    })
}

/// The batcher: gathers jobs into batches and answers each job.
async fn run<J: PerformBatch>(mut rx: mpsc::UnboundedReceiver<Item<J>>, deps: Arc<J::Deps>) {
    while let Some(first) = rx.recv().await {
        let size = first.ctx.batch_size.max(1);
        let deadline = first.arrived + first.ctx.batch_linger;
        let mut items = vec![first];
        while items.len() < size {
            // What is already waiting joins at once; then wait for company until the first
            // job's linger is up.
            match rx.try_recv() {
                Ok(item) => items.push(item),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        let n = items.len();
        let mut replies = Vec::with_capacity(n);
        let mut jobs = Vec::with_capacity(n);
        for item in items {
            replies.push(item.reply);
            jobs.push((item.ctx, item.job));
        }
        let outcome = std::panic::AssertUnwindSafe(J::perform_batch(jobs, deps.clone()))
            .catch_unwind()
            .await;
        let mut results = match outcome {
            Ok(results) => results.into_iter(),
            Err(_) => {
                tracing::error!(queue = %J::QUEUE, jobs = n, "a batch handler panicked");
                Vec::new().into_iter()
            }
        };
        for reply in replies {
            let result = results.next().unwrap_or_else(|| {
                Err(JobError::Retryable(format!(
                    "the {} batch handler gave no result for this job",
                    J::QUEUE
                )))
            });
            // The job may have timed out meanwhile; its result stands either way.
            let _ = reply.send(result);
        }
    }
}
