//! # vigil-jobs: the shared vocabulary
//!
//! Everything that the API (producer) and the workers (consumer) must agree on, and nothing
//! else. No database, HTTP, SMTP or actor code lives here, so both sides can depend on it
//! without pulling in each other's world.
//!
//! # Layout
//! - [`queue`]: the four queues vigil runs ([`Queue`]).
//! - [`status`]: the job-state model ([`JobStatus`], [`JobRecord`], [`QueueCounts`]).
//! - [`payload`]: one typed payload per queue, each with its validation
//!   ([`OktaFetchJob`], [`EmailJob`], [`AuditJob`], [`AlertEscalationJob`]).
//! - [`escalation`]: escalation policies, read by the workers and the API.
//! - [`validate`]: the [`Validate`] trait and its field-level [`ValidationError`].
//!
//! # Rules for payloads
//! - Payloads are JSON on the wire and in Redis; adding an optional field is compatible,
//!   renaming or removing one is not.
//! - Unknown fields are rejected (`deny_unknown_fields`), so a typo is an error, not a no-op.
//! - Handlers must be idempotent: a job can be delivered more than once (at-least-once).

pub mod escalation;
pub mod payload;
pub mod queue;
pub mod status;
pub mod validate;

pub use escalation::EscalationSettings;
pub use payload::{
    AlertEscalationJob, AuditActor, AuditJob, EmailBody, EmailJob, JobPayload, MAX_ORG_NAME_LEN,
    OktaFetchJob, WebhookDelivery, check_org_name,
};
pub use queue::{Queue, UnknownQueue};
pub use status::{AttemptError, JobRecord, JobStatus, QueueCounts, UnknownStatus};
pub use validate::{Validate, ValidationError};
