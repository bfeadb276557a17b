//! Config sections the engine reads: `[redis]`, `[engine]`, `[queues.<queue>]` and
//! `[schedules.<name>]`. Each struct has defaults, so an empty config file runs vigil.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_jobs::Queue;

pub use crate::redis_settings::{RedisConfigError, RedisMode, RedisSettings};
pub use vigil_jobs::{QueueSettings, Retention};

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

/// `[queues]`: the settings of every registered queue: its job kind's defaults
/// ([`vigil_jobs::Job::settings`]), overridden field by field by `[queues.<name>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuesSettings(BTreeMap<Queue, QueueSettings>);

static GENERIC: std::sync::LazyLock<QueueSettings> =
    std::sync::LazyLock::new(QueueSettings::default);

impl Default for QueuesSettings {
    /// Every registered kind's defaults.
    fn default() -> Self {
        Self(
            vigil_jobs::registry::kinds()
                .into_iter()
                .map(|k| (k.queue, k.settings))
                .collect(),
        )
    }
}

impl QueuesSettings {
    /// The settings of `queue` (generic defaults for a queue registered after these
    /// settings were built).
    pub fn get(&self, queue: Queue) -> &QueueSettings {
        self.0.get(&queue).unwrap_or(&GENERIC)
    }

    /// Mutable settings of `queue` (tests and the bench tune them).
    pub fn get_mut(&mut self, queue: Queue) -> &mut QueueSettings {
        self.0.entry(queue).or_insert_with(|| {
            vigil_jobs::registry::kind(queue)
                .map(|k| k.settings)
                .unwrap_or_default()
        })
    }

    /// The queues these settings hold (the engine's queues), in name order.
    pub fn queues(&self) -> Vec<Queue> {
        self.0.keys().copied().collect()
    }
}

impl Serialize for QueuesSettings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for QueuesSettings {
    /// Each `[queues.<name>]` must name a registered queue; its fields override that kind's
    /// defaults, and an unknown field is an error naming it.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let mut out = QueuesSettings::default();
        for (name, overrides) in raw {
            let queue: Queue = name.parse().map_err(D::Error::custom)?;
            let serde_json::Value::Object(overrides) = overrides else {
                return Err(D::Error::custom(format!("queues.{name}: must be a table")));
            };
            let mut merged = serde_json::to_value(out.get_mut(queue).clone())
                .map_err(|e| D::Error::custom(format!("queues.{name}: {e}")))?;
            if let serde_json::Value::Object(m) = &mut merged {
                m.extend(overrides);
            }
            *out.get_mut(queue) = serde_json::from_value(merged)
                .map_err(|e| D::Error::custom(format!("queues.{name}: {e}")))?;
        }
        Ok(out)
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
    /// Every registered kind's default schedules ([`vigil_jobs::Job::schedules`]).
    fn default() -> Self {
        Self(
            vigil_jobs::registry::kinds()
                .into_iter()
                .flat_map(|k| {
                    k.schedules.into_iter().map(move |d| {
                        (
                            d.name.to_owned(),
                            ScheduleSettings {
                                cron: d.cron.to_owned(),
                                queue: k.queue,
                                enabled: true,
                                payload: d.payload,
                            },
                        )
                    })
                })
                .collect(),
        )
    }
}
