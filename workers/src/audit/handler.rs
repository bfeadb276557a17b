//! How an `audit` job runs: through the writer actor, which stores it in a batch.

use std::sync::Arc;

use vigil_jobs::AuditJob;

use super::writer::AuditWriterHandle;
use crate::JobError;
use crate::runtime::{JobContext, Perform};

/// Returns once the writer has committed the record's batch.
impl Perform for AuditJob {
    type Deps = AuditWriterHandle;

    async fn perform(
        self,
        _ctx: JobContext,
        writer: Arc<AuditWriterHandle>,
    ) -> Result<(), JobError> {
        writer.write(self).await
    }
}
