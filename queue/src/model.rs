//! The engine's request and answer types (everything the API and dashboard exchange with it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_jobs::{Job, JobRecord, JobStatus, Queue, QueueCounts};

/// A job to enqueue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewJob {
    pub queue: Queue,
    /// The payload; validated by the queue's registered job kind.
    pub payload: serde_json::Value,
    /// Run no earlier than this (a delayed job); now when omitted or in the past.
    pub run_at: Option<DateTime<Utc>>,
    /// Within the engine's idempotency window, a second job with the same key (same queue)
    /// returns the first job and enqueues nothing.
    pub idempotency_key: Option<String>,
    /// The job's id, when the producer chose it ([`crate::keys::new_job_id`] of the same
    /// queue): an existing job with this id makes the enqueue a duplicate.
    #[serde(default)]
    pub id: Option<String>,
    /// A job for another queue written in the same atomic step (e.g. the audit record of
    /// this enqueue): it waits in this queue's outbox until relayed, so it can never be lost
    /// while the job itself is kept. Ignored for a duplicate.
    #[serde(default)]
    pub companion: Option<Companion>,
}

/// A job enqueued together with another one (see [`NewJob::companion`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Companion {
    pub queue: Queue,
    pub payload: serde_json::Value,
}

impl Companion {
    /// `job` as a companion.
    pub fn of<J: Job>(job: &J) -> Result<Self, serde_json::Error> {
        Ok(Self {
            queue: J::QUEUE,
            payload: serde_json::to_value(job)?,
        })
    }
}

impl NewJob {
    /// `job`, due now, without idempotency key.
    pub fn of<J: Job>(job: &J) -> Result<Self, serde_json::Error> {
        Ok(Self::new(J::QUEUE, serde_json::to_value(job)?))
    }

    /// A job due now, without idempotency key.
    pub fn new(queue: Queue, payload: serde_json::Value) -> Self {
        Self {
            queue,
            payload,
            run_at: None,
            idempotency_key: None,
            id: None,
            companion: None,
        }
    }
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enqueued {
    pub job: JobRecord,
    /// True when the idempotency key was already used: `job` is the first job.
    pub duplicate: bool,
}

/// Which jobs to list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobFilter {
    pub queue: Option<Queue>,
    pub status: Option<JobStatus>,
    /// 1-based page number.
    pub page: u32,
    /// Jobs per page (1 to 500).
    pub page_size: u32,
}

impl Default for JobFilter {
    fn default() -> Self {
        Self {
            queue: None,
            status: None,
            page: 1,
            page_size: 50,
        }
    }
}

/// One page of jobs, newest first (by the time they entered their current status).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobPage {
    /// Jobs matching the filter, on every page.
    pub total: u64,
    pub jobs: Vec<JobRecord>,
}

/// One queue at a glance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue: Queue,
    pub counts: QueueCounts,
    pub paused: bool,
    /// Jobs that succeeded in the last 60 seconds (10-second resolution).
    pub processed_last_minute: u64,
    /// Attempts that failed in the last 60 seconds (10-second resolution).
    pub failed_last_minute: u64,
}

/// The last firing of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRun {
    pub schedule: String,
    pub tick: DateTime<Utc>,
    /// The job enqueued for this tick.
    pub job_id: Option<String>,
    /// Why no job was enqueued.
    pub error: Option<String>,
    /// Who ran it by hand ("run now"); none for a cron tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_by: Option<String>,
}

/// A schedule as listed by the API: its config, next tick and last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    pub queue: Queue,
    pub enabled: bool,
    /// None when disabled or the expression never fires again.
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<ScheduleRun>,
}

/// The health of one actor of one worker instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorHealth {
    /// The worker instance (unique per process start).
    pub instance: String,
    /// The actor, e.g. `queue:email`, `scheduler`, `supervisor`.
    pub name: String,
    pub healthy: bool,
    /// How many times the supervisor restarted it.
    pub restarts: u64,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// When the instance last published this entry (its heartbeat); absent in older reports.
    #[serde(default)]
    pub reported_at: Option<DateTime<Utc>>,
    /// A queue actor's load: the jobs its worker runs now, of how many at most, and the
    /// worker's id (absent for other actors and in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<ActorLoad>,
}

/// What a queue actor's worker is doing (see [`ActorHealth::load`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorLoad {
    pub in_flight: u64,
    pub concurrency: u64,
    pub worker: String,
}
