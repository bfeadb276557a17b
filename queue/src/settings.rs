//! Config sections the engine reads: `[redis]`, `[engine]`, `[queues.<queue>]` and
//! `[schedules.<name>]`. Each struct has defaults, so an empty config file runs vigil.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_jobs::Queue;

/// `[redis]`: where the job engine keeps its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://HOST:PORT/DB` (a password in the URL is never logged).
    pub url: String,
    /// Prefix of every key vigil writes, so one Redis can host several deployments.
    pub prefix: String,
    /// A command that takes longer than this fails (and is retried by workers).
    pub response_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            prefix: "vigil".to_owned(),
            response_timeout_ms: 5_000,
        }
    }
}

/// `[engine]`: behaviour shared by every queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// How long a worker holds a job before another worker may take it over (renewed while
    /// the job runs, so it only matters when the worker dies).
    pub lease_seconds: u64,
    /// Finished jobs (done, dead, cancelled) are deleted this long after they finished.
    pub retention_hours: u64,
    /// The same idempotency key within this window returns the first job.
    pub idempotency_window_seconds: u64,
    /// On shutdown, running jobs get this long to finish; the rest go back to the queue.
    pub shutdown_deadline_seconds: u64,
    /// An idle worker checks for due delayed jobs at least this often (new jobs wake it at once).
    pub poll_interval_ms: u64,
    /// Expired leases are looked for this often.
    pub reaper_interval_ms: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            lease_seconds: 60,
            retention_hours: 168,
            idempotency_window_seconds: 86_400,
            shutdown_deadline_seconds: 30,
            poll_interval_ms: 1_000,
            reaper_interval_ms: 5_000,
        }
    }
}

/// `[queues.<queue>]`: one queue's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Attempts before a job goes dead (the first run counts).
    pub max_attempts: u32,
    /// One attempt fails (and may retry) after this long.
    pub timeout_seconds: u64,
    /// Jobs of this queue one worker process runs at the same time.
    pub concurrency: usize,
    /// Retry n waits a random time in [0, min(backoff_max_ms, backoff_base_ms * 2^(n-1))].
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            timeout_seconds: 60,
            concurrency: 8,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
        }
    }
}

/// `[queues]`: every queue's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuesSettings {
    pub okta_fetch: QueueSettings,
    pub email: QueueSettings,
    pub audit: QueueSettings,
    pub alert_escalation: QueueSettings,
}

impl Default for QueuesSettings {
    fn default() -> Self {
        Self {
            okta_fetch: QueueSettings {
                max_attempts: 3,
                timeout_seconds: 300,
                concurrency: 1,
                ..QueueSettings::default()
            },
            email: QueueSettings {
                max_attempts: 8,
                concurrency: 4,
                ..QueueSettings::default()
            },
            audit: QueueSettings {
                max_attempts: 10,
                concurrency: 8,
                backoff_base_ms: 500,
                backoff_max_ms: 60_000,
                ..QueueSettings::default()
            },
            alert_escalation: QueueSettings {
                max_attempts: 5,
                timeout_seconds: 120,
                concurrency: 2,
                ..QueueSettings::default()
            },
        }
    }
}

impl QueuesSettings {
    /// The settings of `queue`.
    pub fn get(&self, queue: Queue) -> &QueueSettings {
        match queue {
            Queue::OktaFetch => &self.okta_fetch,
            Queue::Email => &self.email,
            Queue::Audit => &self.audit,
            Queue::AlertEscalation => &self.alert_escalation,
        }
    }

    /// Mutable settings of `queue` (tests and the bench tune them).
    pub fn get_mut(&mut self, queue: Queue) -> &mut QueueSettings {
        match queue {
            Queue::OktaFetch => &mut self.okta_fetch,
            Queue::Email => &mut self.email,
            Queue::Audit => &mut self.audit,
            Queue::AlertEscalation => &mut self.alert_escalation,
        }
    }
}

/// `[schedules.<name>]`: enqueue a job on a cron schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Six fields, seconds first: `0 * * * * *` is every minute (UTC).
    pub cron: String,
    /// The queue the job goes to.
    pub queue: Queue,
    /// A disabled schedule is listed but never fires.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// The job's payload (validated like any enqueue); `{}` when omitted.
    #[serde(default = "payload_default")]
    pub payload: serde_json::Value,
}

fn enabled_default() -> bool {
    true
}

fn payload_default() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// `[schedules]`: every schedule by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchedulesSettings(pub BTreeMap<String, ScheduleSettings>);

impl Default for SchedulesSettings {
    fn default() -> Self {
        let mut map = BTreeMap::new();
        map.insert(
            "okta_fetch".to_owned(),
            ScheduleSettings {
                cron: "0 * * * * *".to_owned(),
                queue: Queue::OktaFetch,
                enabled: true,
                payload: payload_default(),
            },
        );
        map.insert(
            "alert_escalation".to_owned(),
            ScheduleSettings {
                cron: "30 * * * * *".to_owned(),
                queue: Queue::AlertEscalation,
                enabled: true,
                payload: payload_default(),
            },
        );
        Self(map)
    }
}
