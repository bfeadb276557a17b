//! Wiring for the runtime: the `audit` queue's [`Handler`] over the writer actor.

use std::sync::Arc;

use futures::future::BoxFuture;
use vigil_jobs::{JobPayload, Queue};

use super::writer::AuditWriterHandle;
use crate::JobError;
use crate::runtime::{Handler, JobContext};

/// The `audit` queue's handler: decodes and validates the payload (a bad one is permanent)
/// and returns once the writer has committed the record's batch.
pub fn audit_handler(writer: AuditWriterHandle) -> Handler {
    Arc::new(move |_ctx: JobContext, payload: serde_json::Value| {
        let writer = writer.clone();
        Box::pin(async move {
            match JobPayload::parse(Queue::Audit, payload) {
                Ok(JobPayload::Audit(job)) => writer.write(job).await,
                Ok(other) => Err(JobError::Permanent(format!(
                    "an {:?} payload on the audit queue",
                    other.queue()
                ))),
                Err(e) => Err(JobError::Permanent(format!("invalid audit job: {e}"))),
            }
        }) as BoxFuture<'static, Result<(), JobError>>
    })
}
