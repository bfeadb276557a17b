//! How an `okta_fetch` job runs: one polling or bounded fetch on the long-lived
//! [`OktaPoller`] (token cache, DPoP key, cursor).

use std::sync::Arc;

use vigil_jobs::OktaFetchJob;

use super::OktaPoller;
use crate::JobError;
use crate::runtime::{JobContext, Perform};

impl Perform for OktaFetchJob {
    type Deps = OktaPoller;

    async fn perform(self, ctx: JobContext, poller: Arc<OktaPoller>) -> Result<(), JobError> {
        let summary = poller.fetch(&ctx.job_id, &self).await?;
        tracing::info!(?summary, "okta fetch finished");
        Ok(())
    }
}
