//! # vigil-workers: everything that executes jobs
//!
//! # Layout
//! - [`error`]: [`JobError`], the retryable-or-permanent outcome every handler returns.
//! - [`runtime`]: the actix root supervisor, one supervised actor per queue running that
//!   queue's apalis worker, the scheduler, actor health and the engine's metrics.
//! - [`okta`]: the Okta System Log client (OAuth 2.0 + DPoP, or SSWS) and the poller.
//! - [`email`]: the mailer (lettre SMTP pool), templates and delivery records.
//! - [`audit`]: the audit writer (batched, hash-chained inserts).
//! - [`alerts`]: the detector (rules → alerts), escalation runs and signed webhooks.
//!
//! Handlers are plain async functions over plain structs, testable without actix; the
//! runtime wraps the long-lived ones in actors.

pub mod alerts;
pub mod audit;
pub mod email;
pub mod error;
pub mod okta;
pub mod runtime;

pub use error::JobError;
