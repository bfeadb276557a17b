//! The application's job kinds: the one place that lists them. A kind is a payload type
//! implementing `vigil_jobs::Job` (queue name, defaults, example) and
//! `vigil_workers::runtime::Perform` (its handler and what the handler needs; or
//! `PerformBatch`, a handler that takes many jobs at once, registered with `batch_job`); one line here
//! registers it: its queue, `[queues.<name>]` config section, default schedule, API enqueue
//! route, metrics labels and dashboard rows follow. ARCHITECTURE.md walks through adding one.

use vigil_jobs::{AlertEscalationJob, AuditJob, EmailJob, NotificationJob, OktaFetchJob};
use vigil_workers::runtime::Registrar;

/// Registers every job kind; a kind whose dependencies `r` was given is consumed here.
pub fn register(r: &mut Registrar) {
    r.job::<OktaFetchJob>();
    r.job::<EmailJob>();
    r.batch_job::<AuditJob>();
    r.job::<AlertEscalationJob>();
    r.job::<NotificationJob>();
}

/// Registers every job kind without consuming any (processes that only enqueue or read:
/// the API role, CLI commands).
pub fn register_kinds() {
    register(&mut Registrar::new());
}
