//! How an `okta_fetch` job runs: one polling or bounded fetch on the org it names, or on
//! every org ([`OktaOrgs`]: the long-lived pollers with their token caches, DPoP keys and
//! cursors).

use std::sync::Arc;

use vigil_jobs::OktaFetchJob;

use super::OktaOrgs;
use crate::JobError;
use crate::runtime::{JobContext, Perform};

impl Perform for OktaFetchJob {
    type Deps = OktaOrgs;

    async fn perform(self, ctx: JobContext, orgs: Arc<OktaOrgs>) -> Result<(), JobError> {
        let summaries = orgs.fetch(&ctx, &self).await?;
        tracing::info!(?summaries, "okta fetch finished");
        Ok(())
    }
}
