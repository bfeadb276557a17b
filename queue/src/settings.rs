//! Config sections the engine reads: `[redis]`, `[engine]`, `[queues.<queue>]` and
//! `[schedules.<name>]`. Each struct has defaults, so an empty config file runs vigil.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_jobs::Queue;

pub use crate::redis_settings::{RedisConfigError, RedisMode, RedisSettings};

/// `[engine]`: behaviour shared by every queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// How long a worker holds a job before another worker may take it over (renewed while
    /// the job runs, so it only matters when the worker dies).
    pub lease_seconds: u64,
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
    /// How long finished jobs stay listed before they are deleted, per outcome: `"90s"`,
    /// `"15m"`, `"24h"`, `"30d"` or a number of seconds.
    pub retain_done: Retention,
    pub retain_dead: Retention,
    pub retain_cancelled: Retention,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            timeout_seconds: 60,
            concurrency: 8,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
            retain_done: Retention::hours(24),
            retain_dead: Retention::hours(30 * 24),
            retain_cancelled: Retention::hours(24),
        }
    }
}

/// A retention time, written `"90s"`, `"15m"`, `"24h"`, `"30d"` or as seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub std::time::Duration);

impl Retention {
    pub const fn hours(h: u64) -> Retention {
        Retention(std::time::Duration::from_secs(h * 3_600))
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// Parses `"90s"`, `"15m"`, `"24h"`, `"30d"` or `"3600"` (seconds).
    pub fn parse(s: &str) -> Result<Retention, String> {
        let s = s.trim();
        let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration: write 90s, 15m, 24h or 30d"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "m" => n.saturating_mul(60),
            "h" => n.saturating_mul(3_600),
            "d" => n.saturating_mul(86_400),
            other => return Err(format!("unknown unit `{other}` in `{s}`: use s, m, h or d")),
        };
        if secs == 0 {
            return Err("must be at least 1s".into());
        }
        Ok(Retention(std::time::Duration::from_secs(secs)))
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.as_secs();
        match s {
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Retention, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Retention::parse(&n.to_string()),
            Raw::Text(t) => Retention::parse(&t),
        }
        .map_err(serde::de::Error::custom)
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
                // The record itself lives in the audit trail; the job only carries it there.
                retain_done: Retention::hours(1),
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
        // Behavioural rules over stored events: every 5 minutes, at most one window apart.
        map.insert(
            "behavioural_rules".to_owned(),
            ScheduleSettings {
                cron: "45 */5 * * * *".to_owned(),
                queue: Queue::AlertEscalation,
                enabled: true,
                payload: serde_json::json!({ "behavioural": true }),
            },
        );
        Self(map)
    }
}
