//! The audit writer actor: batches `AuditJob`s into hash-chained inserts.
//!
//! Jobs arrive through [`AuditWriterHandle::write`], called by the `audit` queue's handler.
//! The actor collects them and appends a batch when it holds `max_batch` records or
//! `max_delay` after the first one arrived, whichever comes first; while a batch commits,
//! new jobs gather for the next one, so under load batches grow by themselves. Each `write`
//! returns only after its batch is committed: an acknowledged job is durably in the chain.
//!
//! A failed batch is retried record by record, so one record the database refuses fails
//! alone ([`JobError::Retryable`]: the engine retries it; its `event_id` makes any
//! re-delivery harmless). Invalid jobs fail at once ([`JobError::Permanent`]).

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use vigil_jobs::{AuditJob, Validate};
use vigil_store::Db;
use vigil_store::audit::{self, AppendOutcome, NewAuditRecord};

use super::metrics::AuditMetrics;
use crate::JobError;

/// How the writer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditWriterSettings {
    /// Records per batch at most.
    pub max_batch: usize,
    /// How long the first record of a batch waits for company.
    pub max_delay: Duration,
}

impl Default for AuditWriterSettings {
    fn default() -> Self {
        Self {
            max_batch: 500,
            max_delay: Duration::from_millis(5),
        }
    }
}

type Reply = oneshot::Sender<Result<(), JobError>>;

/// One job to write and where to answer.
struct Write {
    job: AuditJob,
    reply: Reply,
}

impl Message for Write {
    type Result = ();
}

/// The actor. Start it with [`AuditWriter::start_writer`] inside an actix system.
pub struct AuditWriter {
    db: Db,
    settings: AuditWriterSettings,
    metrics: Option<AuditMetrics>,
    pending: Vec<Write>,
    flushing: bool,
    timer: Option<SpawnHandle>,
}

impl AuditWriter {
    /// A writer appending to `db`'s chain.
    pub fn new(db: Db, settings: AuditWriterSettings, metrics: Option<AuditMetrics>) -> Self {
        AuditWriter {
            db,
            settings: AuditWriterSettings {
                max_batch: settings.max_batch.max(1),
                max_delay: settings.max_delay,
            },
            metrics,
            pending: Vec::new(),
            flushing: false,
            timer: None,
        }
    }

    /// Starts the actor on the current arbiter and returns its handle.
    pub fn start_writer(self) -> AuditWriterHandle {
        AuditWriterHandle { addr: self.start() }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            // The running batch flushes what gathered when it completes.
            return;
        }
        if self.pending.len() >= self.settings.max_batch {
            self.flush(ctx);
        } else if self.timer.is_none() {
            self.timer = Some(ctx.run_later(self.settings.max_delay, |act, ctx| {
                act.timer = None;
                act.flush(ctx);
            }));
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.pending.is_empty() {
            return;
        }
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let n = self.pending.len().min(self.settings.max_batch);
        let batch: Vec<Write> = self.pending.drain(..n).collect();
        let records: Vec<NewAuditRecord> = batch.iter().map(|w| (&w.job).into()).collect();
        self.flushing = true;
        let db = self.db.clone();
        let fut = async move { append_or_one_by_one(&db, records).await };
        ctx.spawn(fut.into_actor(self).map(move |results, act, ctx| {
            act.flushing = false;
            let mut written = 0u64;
            let mut duplicates = 0u64;
            let mut failed = false;
            for (w, result) in batch.into_iter().zip(results) {
                let reply = match result {
                    Ok(o) => {
                        written += o.written;
                        duplicates += o.duplicates;
                        Ok(())
                    }
                    Err(e) => {
                        failed = true;
                        tracing::error!(event_id = %w.job.event_id, error = %e, "audit record not written");
                        Err(JobError::Retryable(format!(
                            "audit record not written: {e}"
                        )))
                    }
                };
                // The caller may have gone away (timeout); the record stands either way.
                let _ = w.reply.send(reply);
            }
            if let Some(m) = &act.metrics {
                m.written.inc_by(written);
                m.duplicates.inc_by(duplicates);
                m.batch_size.observe(n as f64);
                if failed {
                    m.batch_failures.inc();
                }
            }
            // What gathered meanwhile has waited long enough.
            act.flush(ctx);
        }));
    }
}

/// Appends `records` as one batch; when the batch fails, appends them one by one so a single
/// bad record fails alone. One result per record, in order.
async fn append_or_one_by_one(
    db: &Db,
    records: Vec<NewAuditRecord>,
) -> Vec<Result<AppendOutcome, String>> {
    match audit::append(db, &records).await {
        Ok(outcome) => {
            // Spread the batch's totals over its records: one result per record.
            let mut results = Vec::with_capacity(records.len());
            let mut written = outcome.written;
            for _ in &records {
                let o = if written > 0 {
                    written -= 1;
                    AppendOutcome {
                        written: 1,
                        duplicates: 0,
                        head_seq: outcome.head_seq,
                    }
                } else {
                    AppendOutcome {
                        written: 0,
                        duplicates: 1,
                        head_seq: outcome.head_seq,
                    }
                };
                results.push(Ok(o));
            }
            results
        }
        Err(e) if records.len() == 1 => vec![Err(e.to_string())],
        Err(e) => {
            tracing::warn!(error = %e, records = records.len(), "audit batch failed; writing its records one by one");
            let mut results = Vec::with_capacity(records.len());
            for r in records {
                results.push(
                    audit::append(db, std::slice::from_ref(&r))
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            results
        }
    }
}

impl Actor for AuditWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Callers wait for their batch anyway; a roomy mailbox lets batches fill up.
        ctx.set_mailbox_capacity(100_000);
    }
}

impl Supervised for AuditWriter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Pending callers see their reply channel closed (retryable) and are re-delivered.
        self.pending.clear();
        self.flushing = false;
        self.timer = None;
    }
}

impl Handler<Write> for AuditWriter {
    type Result = ();

    fn handle(&mut self, msg: Write, ctx: &mut Context<Self>) {
        if let Err(e) = msg.job.validate() {
            let _ = msg.reply.send(Err(JobError::Permanent(format!(
                "invalid audit record: {e}"
            ))));
            return;
        }
        self.pending.push(msg);
        self.schedule(ctx);
    }
}

/// The address of a running [`AuditWriter`]. Cheap to clone; `Send`, so handlers on any
/// thread can use it.
#[derive(Clone, Debug)]
pub struct AuditWriterHandle {
    addr: Addr<AuditWriter>,
}

impl AuditWriterHandle {
    /// A handle to an actor started some other way (e.g. under a supervisor).
    pub fn from_addr(addr: Addr<AuditWriter>) -> Self {
        AuditWriterHandle { addr }
    }

    /// Writes one record; returns once its batch is committed. A record whose `event_id` is
    /// already stored succeeds without adding anything.
    pub async fn write(&self, job: AuditJob) -> Result<(), JobError> {
        let (tx, rx) = oneshot::channel();
        self.addr
            .send(Write { job, reply: tx })
            .await
            .map_err(|e| JobError::Retryable(format!("audit writer unavailable: {e}")))?;
        rx.await
            .map_err(|_| JobError::Retryable("audit writer restarted before the write".into()))?
    }
}
