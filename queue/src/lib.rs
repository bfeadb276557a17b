//! # vigil-queue: the Redis job engine
//!
//! Every job transition (enqueue, lease, complete, fail, reap, cancel, retry, prune) is one
//! Lua script of vigil's own, so a job is always in exactly one status, its per-status index
//! and its queue structures agree, and counts/lists are exact under any concurrency.
//!
//! # Layout
//! - [`settings`]: `[redis]`, `[engine]`, `[queues.*]`, `[schedules.*]` config sections.
//! - [`engine`]: [`Engine`], the one interface producers, workers, the API and the
//!   dashboard use.
//! - [`model`]: request/answer types ([`NewJob`], [`JobFilter`], [`JobPage`], ...).
//! - [`lease`]: the worker side: leased jobs, fencing tokens, retry backoff.
//! - [`backend`]: the apalis-core `Backend` that apalis workers run on.
//! - [`schedule`]: cron parsing and the list of schedules with their next run.
//! - [`redis_settings`]: `[redis]` (standalone, TLS, ACL, Sentinel, Cluster) and its checks;
//!   [`conn`]: the connection handle for all of them (Sentinel failover in `sentinel`).
//! - [`keys`]: the Redis key layout (one hash slot per queue); `scripts`: the Lua transitions.
//! - [`bench`]: the engine benchmark behind `vigil bench`.
//!
//! # Guarantees
//! At-least-once delivery under a per-job lease; attempts are counted when an attempt starts
//! (so a job that kills its worker still reaches `max_attempts` and goes dead); a worker whose
//! lease was taken over cannot complete or fail the job (fencing token = worker id + attempt).

pub mod backend;
pub mod bench;
pub mod conn;
pub mod engine;
pub mod error;
pub mod keys;
pub mod lease;
pub mod model;
mod plan;
pub mod redis_settings;
pub mod schedule;
mod scripts;
mod sentinel;
pub mod settings;

pub use backend::{AckLayer, AckService, VigilBackend};
pub use conn::{Connector, RedisConn};
pub use engine::{
    BulkAction, BulkCursor, BulkFilter, BulkOutcome, Engine, JobMatch, JobSearch, MAX_BULK,
    SCHEDULE_HISTORY, SERIES_MAX_MINUTES, ScheduleOff, SearchPage, Series, SeriesPoint, created_of,
};
pub use error::{Cause, EngineError};
pub use keys::{new_job_id, queue_of_id};
pub use lease::{
    FailOutcome, LeaseBatch, LeasedJob, backoff_ceiling, new_worker_id, retry_delay, worker_of,
};
pub use model::{
    ActorHealth, ActorLoad, Companion, Enqueued, JobFilter, JobPage, NewJob, QueueStats,
    ScheduleInfo, ScheduleRun,
};
pub use redis_settings::{RedisConfigError, RedisMode};
pub use schedule::{ScheduleError, next_tick, schedules};
pub use settings::{
    EngineSettings, QueueSettings, QueuesSettings, RedisSettings, Retention, ScheduleSettings,
    SchedulesSettings,
};
pub use vigil_jobs::{JobRecord, JobStatus, Queue, QueueCounts};
