//! [`Engine`]: the job engine's one interface. Producers enqueue, workers lease and report,
//! the API and dashboard read job state and act on jobs, the runtime claims schedule ticks
//! and publishes actor health. Cheap to clone (shares one Redis connection).
//!
//! # Layout
//! - this module: the engine, connecting, shared helpers;
//! - [`produce`]: enqueue (with replica acknowledgement and companion jobs) and the outbox relay;
//! - [`read`]: jobs by id, lists, counts, queue stats;
//! - [`control`]: retry, cancel, pause/resume, the fleet's health reports;
//! - [`schedules`]: schedule ticks, runs and history, switching schedules off and on;
//! - [`work`]: the worker side (lease, complete, fail, renew, release, reap, prune, wake-ups);
//! - [`bulk`]: delete, and retry/cancel/delete many jobs by ids or by filter (resumable);
//! - [`search`]: jobs by id, payload or error text and creation time, newest created first.
//! - [`progress`]: a running job's progress, fenced by its token.
//! - [`series`]: per-minute counts and wait/run histograms of a queue (the charts).

mod bulk;
mod control;
mod produce;
mod progress;
mod read;
mod schedules;
mod search;
mod series;
mod work;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use vigil_jobs::Queue;

use crate::conn::{Connector, RedisConn};
use crate::error::EngineError;
use crate::keys::Keys;
use crate::settings::{EngineSettings, QueueSettings, QueuesSettings, RedisSettings};

pub use bulk::{BulkAction, BulkCursor, BulkFilter, BulkOutcome, MAX_BULK};
pub use schedules::{HISTORY as SCHEDULE_HISTORY, ScheduleOff};
pub use search::{JobMatch, JobSearch, SearchPage, created_of};
pub use series::{SERIES_MAX_MINUTES, Series, SeriesPoint, percentile};
pub use work::Waiter;

/// Called with (queue, number of new jobs) after every successful enqueue (metrics).
pub type EnqueueHook = Arc<dyn Fn(Queue, u64) + Send + Sync>;

/// The job engine.
#[derive(Clone)]
pub struct Engine {
    conn: RedisConn,
    connector: Connector,
    keys: Keys,
    engine: Arc<EngineSettings>,
    queues: Arc<QueuesSettings>,
    hook: Option<EnqueueHook>,
    response_timeout: Duration,
    min_replicas_ack: u32,
    replica_ack_timeout: Duration,
    /// Added to this host's clock (tests of skewed hosts); no script reads it.
    clock_offset: chrono::Duration,
    /// Each worker's last answered lease request (its replay record is dropped next call).
    answered_leases: Arc<work::AnsweredLeases>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("prefix", &self.keys.prefix())
            .field("redis", &self.connector)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Checks `[redis]` (a mistake is [`EngineError::Config`], naming the key) and connects
    /// (`Unavailable` when Redis cannot be reached).
    pub async fn connect(
        redis: &RedisSettings,
        engine: EngineSettings,
        queues: QueuesSettings,
    ) -> Result<Engine, EngineError> {
        let connector = Connector::new(redis)?;
        let conn = connector
            .shared()
            .await
            .map_err(EngineError::from_connect)?;
        Ok(Engine {
            conn,
            connector,
            keys: Keys::new(&redis.prefix),
            engine: Arc::new(engine),
            queues: Arc::new(queues),
            hook: None,
            response_timeout: Duration::from_millis(redis.response_timeout_ms.max(1)),
            min_replicas_ack: redis.min_replicas_ack,
            replica_ack_timeout: Duration::from_millis(redis.replica_ack_timeout_ms.max(1)),
            clock_offset: chrono::Duration::zero(),
            answered_leases: Arc::default(),
        })
    }

    /// The same engine, calling `hook` after every enqueue.
    pub fn with_enqueue_hook(mut self, hook: EnqueueHook) -> Engine {
        self.hook = Some(hook);
        self
    }

    /// The same engine on a host whose clock is `offset` off (tests: every comparison of
    /// times happens in Redis, so this changes only what the host itself stamps).
    #[doc(hidden)]
    pub fn with_clock_offset(mut self, offset: chrono::Duration) -> Engine {
        self.clock_offset = offset;
        self
    }

    /// The same engine with another lease length (tests).
    #[doc(hidden)]
    pub fn with_lease_seconds(mut self, seconds: u64) -> Engine {
        let mut settings = (*self.engine).clone();
        settings.lease_seconds = seconds;
        self.engine = Arc::new(settings);
        self
    }

    /// This host's clock (with the test offset, if any).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    /// The shared connection (the API's rate limiter, the email send limit and the rule
    /// windows use it, so they follow failovers like the engine).
    pub fn redis(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Opens further connections to the same deployment.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn engine_settings(&self) -> &EngineSettings {
        &self.engine
    }

    pub fn queue_settings(&self, queue: Queue) -> &QueueSettings {
        self.queues.get(queue)
    }

    pub fn queues_settings(&self) -> &QueuesSettings {
        &self.queues
    }

    /// The expiry of a finished job's hash: its retention plus an hour (the pruner deletes it
    /// first; the expiry is a safety net).
    fn ttl_ms(&self, queue: Queue, retain: fn(&QueueSettings) -> u64) -> u64 {
        retain(self.queues.get(queue)).saturating_add(3_600_000)
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Redis server time (what every script compares against).
    pub async fn server_time(&self) -> Result<DateTime<Utc>, EngineError> {
        let mut c = self.conn.clone();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut c).await?;
        Ok(ms_to_time(secs * 1000 + micros / 1000))
    }
}

/// Epoch millis to a UTC time.
pub(crate) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The keys of `queue` as a script invocation's `KEYS`.
fn with_keys<'a>(inv: &mut redis::ScriptInvocation<'a>, keys: &Keys, queue: Queue) {
    for k in keys.script_keys(queue).iter() {
        inv.key(k);
    }
}
