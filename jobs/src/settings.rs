//! A queue's settings (`[queues.<queue>]`): attempts, timeout, concurrency, batching,
//! backoff and retention. A job kind declares its defaults ([`crate::Job::settings`]); config overrides them
//! field by field.

use serde::{Deserialize, Serialize};

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
    /// Kinds with a batch handler only: jobs handed to the handler at once, at most (one
    /// database transaction for all of them); each job is still acked, retried or dead on
    /// its own. Keep `concurrency` at least this large.
    pub batch_size: usize,
    /// Kinds with a batch handler only: how long the first job of a batch waits for
    /// company, in milliseconds.
    pub batch_linger_ms: u64,
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
            batch_size: 1,
            batch_linger_ms: 5,
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
