//! The Redis key layout. Every key starts with the configured prefix `P`, and every key of one
//! queue carries the queue's hash tag `{q}`, so all of them live in one Cluster slot and each
//! Lua transition touches one slot only. The same layout runs on standalone and Sentinel.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{q}:job:<id>` | hash | a job until it is done (payload, status, attempts, errors, times, lease token) |
//! | `P:{q}:fin` | hash | done jobs, one compact field each (id -> see `scripts::COMPLETE`), until pruned |
//! | `P:{q}:fin:workers` | hash | the workers of done records: the last 12 characters of a worker id -> the id (one field per worker started) |
//! | `P:{q}:pending` | list | ids due now (stale ids of cancelled jobs are skipped) |
//! | `P:{q}:scheduled` | zset | delayed and retrying ids by due time (ms) |
//! | `P:{q}:leases` | zset | running ids by lease expiry (ms) |
//! | `P:{q}:s:<status>` | zset | the ledger: ids in that status by entry time (ms); running ids are the `leases` set (by lease expiry) |
//! | `P:{q}:paused` | string | present while the queue is paused |
//! | `P:{q}:notify` | list | at most one wake-up token for idle workers |
//! | `P:{q}:stat:<done\|failed>:<10 s bucket>` | string | counters, expire after 130 s |
//! | `P:{q}:stat:m:<minute>` | hash | the minute's series: counts (`e`, `d`, `f`, `x`) and wait/run histograms (`w<i>`, `r<i>`), expires after 25 h |
//! | `P:{q}:idem:<key>` | string | first job id for an idempotency key, expires after the window |
//! | `P:{q}:outbox` | hash | companion jobs (the enqueue's audit record) written with a job, by its id, until relayed |
//! | `P:{q}:lease:<request id>` | string | what one lease call handed out, so a retried call after a lost reply gets the same jobs (expires after the lease) |
//! | `P:tick:<schedule>:<tick ms>` | string | the instance that claimed a schedule tick, expires after a day |
//! | `P:schedule_runs` | hash | last run per schedule (JSON) |
//! | `P:schedule_history:<schedule>` | list | the schedule's last 50 runs, newest first (JSON) |
//! | `P:schedules_off` | hash | schedules switched off at run time: name -> who and when (JSON) |
//! | `P:{fleet}:actors:<instance>` | string | actor health of one instance (JSON), expires after its TTL |
//! | `P:{fleet}:instances` | zset | live instances by report expiry (trimmed on every report) |
//!
//! Job ids are `<queue>-<ULID>`, so a read by id finds the job's slot without a lookup.
//! A done job leaves its hash: one field of `fin` holds it in a compact form (a hash key per
//! job costs more than the job), so a finished job holds a few hundred bytes of Redis. Finished
//! jobs are deleted by the pruner after their queue's retention (`retain_done`, `retain_dead`,
//! `retain_cancelled`); dead and cancelled hashes also carry an expiry one hour later as a
//! safety net. Times in scripts are Redis server time (`TIME`).

use vigil_jobs::{JobStatus, Queue};

/// The fixed keys of one queue, in the order every script receives them as `KEYS`.
pub(crate) const SCRIPT_KEYS: [&str; 11] = [
    "pending",
    "scheduled",
    "leases",
    "notify",
    "paused",
    "job:",
    "idem:",
    "stat:",
    "outbox",
    "lease:",
    "fin",
];

/// Key builder for one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// Per registered queue: the script keys then the ledger keys.
    script_keys: std::collections::BTreeMap<Queue, Vec<String>>,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        let mut keys = Self {
            prefix: prefix.to_owned(),
            script_keys: Default::default(),
        };
        keys.script_keys = Queue::all()
            .into_iter()
            .map(|q| (q, keys.build_script_keys(q)))
            .collect();
        keys
    }

    fn build_script_keys(&self, q: Queue) -> Vec<String> {
        let base = self.base(q);
        SCRIPT_KEYS
            .iter()
            .map(|k| format!("{base}{k}"))
            .chain(JobStatus::ALL.iter().map(|s| self.status(q, *s)))
            .collect()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `KEYS` of every script on `q`: [`SCRIPT_KEYS`], then `s:<status>` per `JobStatus::ALL`.
    pub(crate) fn script_keys(&self, q: Queue) -> std::borrow::Cow<'_, [String]> {
        match self.script_keys.get(&q) {
            Some(keys) => std::borrow::Cow::Borrowed(keys),
            // A queue registered after the engine connected.
            None => std::borrow::Cow::Owned(self.build_script_keys(q)),
        }
    }

    /// Every fixed key of `q` (not the job hashes, idempotency or lease-request keys).
    pub fn queue_keys(&self, q: Queue) -> Vec<String> {
        self.script_keys(q).to_vec()
    }

    fn base(&self, q: Queue) -> String {
        format!("{}:{{{q}}}:", self.prefix)
    }

    /// The hash of job `id` (its queue is read from the id).
    pub fn job(&self, id: &str) -> Option<String> {
        queue_of_id(id).map(|q| format!("{}job:{id}", self.base(q)))
    }

    pub fn pending(&self, q: Queue) -> String {
        format!("{}pending", self.base(q))
    }

    pub fn scheduled(&self, q: Queue) -> String {
        format!("{}scheduled", self.base(q))
    }

    pub fn leases(&self, q: Queue) -> String {
        format!("{}leases", self.base(q))
    }

    /// The ledger of status `s`: ids by the time they entered it. Running jobs are the lease
    /// set (ids by lease expiry): one set per running job instead of two.
    pub fn status(&self, q: Queue, s: JobStatus) -> String {
        match s {
            JobStatus::Running => self.leases(q),
            _ => format!("{}s:{s}", self.base(q)),
        }
    }

    pub fn paused(&self, q: Queue) -> String {
        format!("{}paused", self.base(q))
    }

    pub fn notify(&self, q: Queue) -> String {
        format!("{}notify", self.base(q))
    }

    pub fn stat(&self, q: Queue, what: &str, bucket: i64) -> String {
        format!("{}stat:{what}:{bucket}", self.base(q))
    }

    /// Done jobs of `q`, one compact field per job.
    pub fn fin(&self, q: Queue) -> String {
        format!("{}fin", self.base(q))
    }

    /// The workers named in `fin` records: short name -> whole worker id.
    pub fn fin_workers(&self, q: Queue) -> String {
        format!("{}fin:workers", self.base(q))
    }

    pub fn outbox(&self, q: Queue) -> String {
        format!("{}outbox", self.base(q))
    }

    pub fn tick(&self, schedule: &str, tick_ms: i64) -> String {
        format!("{}:tick:{schedule}:{tick_ms}", self.prefix)
    }

    pub fn schedule_runs(&self) -> String {
        format!("{}:schedule_runs", self.prefix)
    }

    pub fn schedule_history(&self, schedule: &str) -> String {
        format!("{}:schedule_history:{schedule}", self.prefix)
    }

    pub fn schedules_off(&self) -> String {
        format!("{}:schedules_off", self.prefix)
    }

    pub fn actors(&self, instance: &str) -> String {
        format!("{}:{{fleet}}:actors:{instance}", self.prefix)
    }

    pub fn instances(&self) -> String {
        format!("{}:{{fleet}}:instances", self.prefix)
    }

    /// The prefix of actor keys (`actors()` builds the rest inside its script).
    pub(crate) fn actors_base(&self) -> String {
        format!("{}:{{fleet}}:actors:", self.prefix)
    }
}

/// A new job id for `queue`: `<queue>-<ULID>`.
pub fn new_job_id(queue: Queue) -> String {
    format!("{queue}-{}", crate::lease::new_ulid())
}

/// The queue a job id belongs to (`None` for an id vigil did not make).
pub fn queue_of_id(id: &str) -> Option<Queue> {
    let (queue, ulid) = id.rsplit_once('-')?;
    if ulid.len() != 26 || !ulid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    queue.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_shares_its_hash_tag() {
        let keys = Keys::new("vigil");
        for q in Queue::all() {
            let tag = format!("{{{q}}}");
            for k in keys.script_keys(q).iter() {
                assert!(k.starts_with(&format!("vigil:{tag}:")), "{k}");
            }
            let id = new_job_id(q);
            assert!(keys.job(&id).unwrap().contains(&tag));
            assert!(keys.stat(q, "done", 1).contains(&tag));
            assert!(keys.paused(q).contains(&tag));
        }
        assert!(keys.actors("i1").contains("{fleet}"));
        assert!(keys.instances().contains("{fleet}"));
    }

    #[test]
    fn a_job_id_names_its_queue() {
        for q in Queue::all() {
            let id = new_job_id(q);
            assert_eq!(queue_of_id(&id), Some(q), "{id}");
        }
        assert_eq!(queue_of_id("01JABCDEFGHJKMNPQRSTVWXYZ0"), None);
        assert_eq!(queue_of_id("nope-01JABCDEFGHJKMNPQRSTVWXYZ0"), None);
        assert_eq!(queue_of_id("email-short"), None);
        assert_eq!(Keys::new("p").job("garbage"), None);
    }
}
