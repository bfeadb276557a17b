//! # Okta System Log ingestion
//!
//! Fetches Okta System Log events and stores each exactly once (by `uuid`), following Okta's
//! wire format precisely (README's Okta section; the test kit's fake Okta speaks it):
//! - [`settings`]: the `[okta]` section.
//! - [`keys`]: the client-assertion key (PEM), the per-process DPoP key, `okta keygen`.
//! - `auth`: SSWS, or OAuth 2.0 client credentials with `private_key_jwt` and DPoP
//!   (nonce challenges, `ath`, cached tokens renewed before expiry).
//! - [`budget`]: the org's rate-limit budget per endpoint, shared through Redis.
//! - [`http`]: what every Okta request shares: error classes, rate-limit headers, metrics.
//! - [`client`]: one `GET /api/v1/logs` with its links and page.
//! - event parsing is `vigil_store::okta_event` (shared with the API's Event Hook route).
//! - [`poller`]: polling from the persisted cursor and bounded backfills, pacing by the
//!   rate-limit headers, retries; hands new events to a [`NewEventsSink`].
//! - [`run_guard`]: one polling run per org at a time; overlapping ticks are skipped.
//! - [`orgs`]: many orgs (`[[okta.orgs]]`): the job dispatched to one org or all of them,
//!   a backfill's progress written on its job.
//! - [`metrics`]: Prometheus series.
//!
//! Tokens, assertions and keys never reach a log line, an error or a `Debug` output.

mod auth;
pub mod budget;
pub mod client;
pub mod handler;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod orgs;
pub mod poller;
pub mod run_guard;
pub mod settings;

pub use budget::Budget;
pub use client::{FetchError, OktaClient};

pub use keys::{GeneratedKey, KeyKind, SigningKey, generate};
pub use metrics::{OktaMetrics, OrgMetrics};
pub use orgs::OktaOrgs;
pub use poller::{FetchMode, FetchSummary, NewEventsSink, NoopSink, OktaPoller};
pub use settings::{DEFAULT_ORG, OktaAuthMode, OktaOrgSettings, OktaSettings, ResolvedOrg};

/// Configuration and key errors (at startup; never contain a secret).
#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    #[error("okta configuration: {0}")]
    Config(String),
    #[error("okta key: {0}")]
    Key(String),
}
