//! The audit writer actor: appends batches of `AuditJob`s to the hash chain, one at a time.
//!
//! Batches come from the `audit` queue's batch handler ([`crate::runtime::PerformBatch`] in
//! `handler.rs`): the runtime gathers up to the queue's `batch_size` jobs (or what came within
//! `batch_linger_ms`) and hands them over in one [`AuditWriterHandle::write_batch`]. The actor
//! stores a batch in one transaction and answers only after the commit: an acknowledged job
//! is durably in the chain. Batches are appended one after another (the chain is serial: the
//! database's lock orders the batches of every process into one gap-free chain).
//!
//! A failed batch is retried record by record, so one record the database refuses fails
//! alone ([`JobError::Retryable`]: the engine retries it; its `event_id` makes any
//! re-delivery harmless). Invalid jobs fail at once ([`JobError::Permanent`]) and the others
//! of their batch are written.

use actix::prelude::*;
use vigil_jobs::{AuditJob, Validate};
use vigil_store::Db;
use vigil_store::audit::{self, AppendOutcome, NewAuditRecord};

use super::metrics::AuditMetrics;
use crate::JobError;

/// A batch to append; answers one result per job, in order.
struct WriteBatch {
    jobs: Vec<AuditJob>,
}

impl Message for WriteBatch {
    type Result = Vec<Result<(), JobError>>;
}

/// The actor. Start it with [`AuditWriter::start_writer`] inside an actix system.
pub struct AuditWriter {
    db: Db,
    metrics: Option<AuditMetrics>,
}

impl AuditWriter {
    /// A writer appending to `db`'s chain.
    pub fn new(db: Db, metrics: Option<AuditMetrics>) -> Self {
        AuditWriter { db, metrics }
    }

    /// Starts the actor on the current arbiter and returns its handle.
    pub fn start_writer(self) -> AuditWriterHandle {
        AuditWriterHandle { addr: self.start() }
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
        // Every process's audit batches queue here while one commits.
        ctx.set_mailbox_capacity(100_000);
    }
}

impl Supervised for AuditWriter {}

impl Handler<WriteBatch> for AuditWriter {
    // Atomic: the next batch starts after this one committed (the chain is serial).
    type Result = AtomicResponse<Self, Vec<Result<(), JobError>>>;

    fn handle(&mut self, msg: WriteBatch, _ctx: &mut Context<Self>) -> Self::Result {
        // Invalid jobs fail alone, at once; the valid ones are stored as one batch.
        let mut results: Vec<Result<(), JobError>> = Vec::with_capacity(msg.jobs.len());
        let mut valid = Vec::with_capacity(msg.jobs.len());
        for (i, job) in msg.jobs.iter().enumerate() {
            results.push(match job.validate() {
                Ok(()) => {
                    valid.push(i);
                    Ok(())
                }
                Err(e) => Err(JobError::Permanent(format!("invalid audit record: {e}"))),
            });
        }
        let records: Vec<NewAuditRecord> = valid.iter().map(|&i| (&msg.jobs[i]).into()).collect();
        let db = self.db.clone();
        AtomicResponse::new(Box::pin(
            async move {
                if records.is_empty() {
                    Vec::new()
                } else {
                    append_or_one_by_one(&db, records).await
                }
            }
            .into_actor(self)
            .map(move |outcomes, act, _ctx| {
                let (mut written, mut duplicates, mut failed) = (0u64, 0u64, false);
                let mut outcomes = outcomes.into_iter();
                for &i in &valid {
                    match outcomes.next().ok_or_else(|| "no outcome".to_owned()) {
                        Ok(Ok(o)) => {
                            written += o.written;
                            duplicates += o.duplicates;
                        }
                        Ok(Err(e)) | Err(e) => {
                            failed = true;
                            let event_id = &msg.jobs[i].event_id;
                            tracing::error!(%event_id, error = %e, "audit record not written");
                            results[i] = Err(JobError::Retryable(format!(
                                "audit record not written: {e}"
                            )));
                        }
                    }
                }
                if let Some(m) = &act.metrics
                    && !valid.is_empty()
                {
                    m.written.inc_by(written);
                    m.duplicates.inc_by(duplicates);
                    m.batch_size.observe(valid.len() as f64);
                    if failed {
                        m.batch_failures.inc();
                    }
                }
                results
            }),
        ))
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

    /// Appends `jobs` as one batch; returns once it is committed, one result per job, in
    /// order. A record whose `event_id` is already stored succeeds without adding anything.
    pub async fn write_batch(&self, jobs: Vec<AuditJob>) -> Vec<Result<(), JobError>> {
        let n = jobs.len();
        match self.addr.send(WriteBatch { jobs }).await {
            Ok(results) => results,
            Err(e) => (0..n)
                .map(|_| {
                    Err(JobError::Retryable(format!(
                        "audit writer unavailable: {e}"
                    )))
                })
                .collect(),
        }
    }

    /// Appends one record (a batch of one).
    pub async fn write(&self, job: AuditJob) -> Result<(), JobError> {
        self.write_batch(vec![job])
            .await
            .pop()
            .unwrap_or_else(|| Err(JobError::Retryable("audit writer gave no result".into())))
    }
}
