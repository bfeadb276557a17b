//! # Audit: the `audit` queue's handler
//!
//! - [`writer`]: the audit writer, ONE actix actor per process that appends batches of
//!   `AuditJob`s as hash-chained inserts ([`vigil_store::audit::append`]), one transaction per
//!   batch, and answers each job only once its batch is committed. Several processes may each
//!   run one: the database serialises their batches into a single gap-free chain.
//! - [`metrics`]: records written, duplicates, batch sizes.
//! - [`handler`]: how `audit` jobs run (a `PerformBatch` handler over the writer: the runtime
//!   gathers the batches).
//! - [`sink`]: how other workers hand records to the `audit` queue.
//!
//! Verification (`vigil audit verify`, `GET /api/v1/audit-logs/verify`) is
//! [`vigil_store::audit::verify`].

pub mod handler;
pub mod metrics;
pub mod sink;
pub mod writer;

pub use metrics::AuditMetrics;
pub use sink::{AuditSink, EngineAuditSink, system_record};
pub use writer::{AuditWriter, AuditWriterHandle};
