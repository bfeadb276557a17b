//! The Redis key layout. Every key starts with the configured prefix `P`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:job:<id>` | hash | the job (queue, payload, status, attempts, errors, times, lease token) |
//! | `P:q:<queue>:pending` | list | ids due now, FIFO (stale ids of cancelled jobs are skipped) |
//! | `P:q:<queue>:scheduled` | zset | delayed and retrying ids by due time (ms) |
//! | `P:q:<queue>:leases` | zset | running ids by lease expiry (ms) |
//! | `P:q:<queue>:s:<status>` | zset | the ledger: ids in that status by entry time (ms) |
//! | `P:q:<queue>:paused` | string | present while the queue is paused |
//! | `P:q:<queue>:notify` | list | at most one wake-up token for idle workers |
//! | `P:q:<queue>:stat:<done\|failed>:<10s bucket>` | string | counters, expire after 130 s |
//! | `P:idem:<queue>:<key>` | string | first job id for an idempotency key, expires after the window |
//! | `P:tick:<schedule>:<tick ms>` | string | the instance that claimed a schedule tick, expires after a day |
//! | `P:schedule_runs` | hash | last run per schedule (JSON) |
//! | `P:actors:<instance>` | string | actor health of one instance (JSON), expires after its TTL |
//! | `P:instances` | zset | live instances by report expiry (trimmed on every report) |
//!
//! Finished jobs are deleted by the pruner after `retention_hours` (their hash also carries
//! an expiry one hour later as a safety net), so no key grows without bound.

use vigil_jobs::{JobStatus, Queue};

/// Key builder for one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    pub fn pending(&self, q: Queue) -> String {
        format!("{}:q:{q}:pending", self.prefix)
    }

    pub fn scheduled(&self, q: Queue) -> String {
        format!("{}:q:{q}:scheduled", self.prefix)
    }

    pub fn leases(&self, q: Queue) -> String {
        format!("{}:q:{q}:leases", self.prefix)
    }

    pub fn status(&self, q: Queue, s: JobStatus) -> String {
        format!("{}:q:{q}:s:{s}", self.prefix)
    }

    pub fn paused(&self, q: Queue) -> String {
        format!("{}:q:{q}:paused", self.prefix)
    }

    pub fn notify(&self, q: Queue) -> String {
        format!("{}:q:{q}:notify", self.prefix)
    }

    pub fn stat(&self, q: Queue, what: &str, bucket: i64) -> String {
        format!("{}:q:{q}:stat:{what}:{bucket}", self.prefix)
    }

    pub fn tick(&self, schedule: &str, tick_ms: i64) -> String {
        format!("{}:tick:{schedule}:{tick_ms}", self.prefix)
    }

    pub fn schedule_runs(&self) -> String {
        format!("{}:schedule_runs", self.prefix)
    }

    pub fn actors(&self, instance: &str) -> String {
        format!("{}:actors:{instance}", self.prefix)
    }

    pub fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }
}
