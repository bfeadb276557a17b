//! # vigil-jobs: the shared vocabulary
//!
//! Everything that the API (producer) and the workers (consumer) must agree on, and nothing
//! else. No database, HTTP, SMTP or actor code lives here, so both sides can depend on it
//! without pulling in each other's world.
//!
//! # Layout
//! - [`job`]: the [`Job`] trait (a job kind: payload type, queue name, default settings,
//!   default schedules, example) and [`Kind`].
//! - [`registry`]: the process-wide registry of kinds ([`register`], [`registry::kinds`]).
//! - [`kinds`]: vigil's own kinds, one file each ([`OktaFetchJob`], [`EmailJob`],
//!   [`AuditJob`], [`AlertEscalationJob`]).
//! - [`queue`]: queue names ([`Queue`]), parsed against the registry.
//! - [`settings`]: a queue's settings ([`QueueSettings`], [`Retention`]).
//! - [`status`]: the job-state model ([`JobStatus`], [`JobRecord`], [`QueueCounts`]).
//! - [`escalation`]: escalation policies, read by the workers and the API.
//! - [`validate`]: the [`Validate`] trait and its field-level [`ValidationError`].
//!
//! # Rules for payloads
//! - Payloads are JSON on the wire and in Redis; adding an optional field is compatible,
//!   renaming or removing one is not.
//! - Unknown fields are rejected (`deny_unknown_fields`), so a typo is an error, not a no-op.
//! - Handlers must be idempotent: a job can be delivered more than once (at-least-once).

pub mod escalation;
pub mod job;
pub mod kinds;
pub mod queue;
pub mod registry;
pub mod settings;
pub mod status;
pub mod validate;

pub use escalation::EscalationSettings;
pub use job::{DefaultSchedule, Job, Kind};
pub use kinds::{
    AlertEscalationJob, AuditActor, AuditJob, EmailBody, EmailJob, MAX_ORG_NAME_LEN,
    NotificationJob, OktaFetchJob, WebhookDelivery, check_org_name,
};
pub use queue::{Queue, UnknownQueue};
pub use registry::register;
pub use settings::{QueueSettings, Retention};
pub use status::{AttemptError, JobRecord, JobStatus, QueueCounts, UnknownStatus};
pub use validate::{Validate, ValidationError};
