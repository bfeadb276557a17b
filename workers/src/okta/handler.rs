//! The `okta_fetch` queue's handler: decode and validate the payload (a bad one is
//! permanent), then run one polling or bounded fetch on the org it names, or on every org
//! ([`OktaOrgs`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use vigil_jobs::{JobPayload, Queue};

use super::OktaOrgs;
use crate::JobError;
use crate::runtime::{Handler, JobContext};

/// Wraps the long-lived pollers (token caches, DPoP keys, cursors) as the `okta_fetch`
/// handler.
pub fn okta_handler(orgs: impl Into<OktaOrgs>) -> Handler {
    let orgs = Arc::new(orgs.into());
    Arc::new(move |ctx: JobContext, payload: serde_json::Value| {
        let orgs = orgs.clone();
        Box::pin(async move {
            let job = match JobPayload::parse(Queue::OktaFetch, payload) {
                Ok(JobPayload::OktaFetch(job)) => job,
                Ok(other) => {
                    return Err(JobError::Permanent(format!(
                        "a {:?} payload on the okta_fetch queue",
                        other.queue()
                    )));
                }
                Err(e) => return Err(JobError::Permanent(format!("invalid okta_fetch job: {e}"))),
            };
            let summaries = orgs.fetch(&ctx, &job).await?;
            tracing::info!(?summaries, "okta fetch finished");
            Ok(())
        }) as BoxFuture<'static, Result<(), JobError>>
    })
}
