//! The `okta_fetch` queue's handler: decode and validate the payload (a bad one is
//! permanent), then run one polling or bounded fetch on the long-lived [`OktaPoller`].

use std::sync::Arc;

use futures::future::BoxFuture;
use vigil_jobs::{JobPayload, Queue};

use super::OktaPoller;
use crate::JobError;
use crate::runtime::{Handler, JobContext};

/// Wraps `poller` (token cache, DPoP key, cursor) as the `okta_fetch` handler.
pub fn okta_handler(poller: OktaPoller) -> Handler {
    let poller = Arc::new(poller);
    Arc::new(move |ctx: JobContext, payload: serde_json::Value| {
        let poller = poller.clone();
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
            let summary = poller.fetch(&ctx.job_id, &job).await?;
            tracing::info!(?summary, "okta fetch finished");
            Ok(())
        }) as BoxFuture<'static, Result<(), JobError>>
    })
}
