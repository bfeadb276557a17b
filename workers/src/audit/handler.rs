//! How `audit` jobs run: a batch handler over the writer actor, which stores each batch the
//! runtime gathers in one transaction.

use std::sync::Arc;

use vigil_jobs::AuditJob;

use super::writer::AuditWriterHandle;
use crate::JobError;
use crate::runtime::{JobContext, PerformBatch};

/// Returns once the writer has committed the batch: one result per job.
impl PerformBatch for AuditJob {
    type Deps = AuditWriterHandle;

    async fn perform_batch(
        jobs: Vec<(JobContext, AuditJob)>,
        writer: Arc<AuditWriterHandle>,
    ) -> Vec<Result<(), JobError>> {
        writer
            .write_batch(jobs.into_iter().map(|(_, job)| job).collect())
            .await
    }
}
