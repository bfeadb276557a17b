//! The job-state model: what a job is at any moment, as the API, dashboard and metrics see it.
//!
//! ```text
//!   enqueue ──► scheduled ──(run_at reached)──► pending ──(leased)──► running ──► done
//!                                                  ▲                     │
//!                                                  │   retryable error   ▼
//!                                                  └──(backoff over)── failed
//!                                                                        │ last attempt,
//!                                                                        ▼ or permanent error
//!   pending/scheduled/failed ──cancel──► cancelled                     dead ──retry──► pending
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::Queue;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Due now, waiting for a free worker.
    Pending,
    /// Waiting for its `run_at` time (a delayed job).
    Scheduled,
    /// Held by a worker under a lease.
    Running,
    /// Finished successfully.
    Done,
    /// The last attempt failed; another attempt is scheduled after a backoff.
    Failed,
    /// Will not run again by itself: attempts exhausted, or a permanent error.
    Dead,
    /// Cancelled before it ran.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Pending,
        JobStatus::Scheduled,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ];

    /// The wire name, e.g. `pending`.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// A terminal job never runs again unless an operator retries it.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Dead | JobStatus::Cancelled
        )
    }

    /// Jobs in these states may be cancelled.
    pub const fn is_cancellable(self) -> bool {
        matches!(
            self,
            JobStatus::Pending | JobStatus::Scheduled | JobStatus::Failed
        )
    }

    /// Jobs in these states may be retried by an operator.
    pub const fn is_retryable(self) -> bool {
        matches!(self, JobStatus::Dead | JobStatus::Failed)
    }

    /// Jobs in these states may be deleted by an operator (all but a running one).
    pub const fn is_deletable(self) -> bool {
        !matches!(self, JobStatus::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`JobStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown job status `{0}`; expected one of pending, scheduled, running, done, failed, dead, cancelled"
)]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// The error of one failed attempt, kept for the job's whole life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When the attempt failed.
    pub at: DateTime<Utc>,
    /// The error message (never contains secrets: handlers redact before returning).
    pub error: String,
    /// When the attempt started (absent for a lease that expired, and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// The worker that ran the attempt (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// Everything known about one job: the read model behind `GET /api/v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Unique, time-sortable id (ULID).
    pub id: String,
    pub queue: Queue,
    /// The payload exactly as enqueued.
    pub payload: serde_json::Value,
    pub status: JobStatus,
    /// Attempts started so far (counted when an attempt starts, so a crash counts too).
    pub attempts: u32,
    pub max_attempts: u32,
    /// Every failed attempt's error, oldest first.
    pub errors: Vec<AttemptError>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the job is (or was) due to run.
    pub run_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker of the latest attempt (none before the first attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl JobRecord {
    /// The latest error, if any attempt failed.
    pub fn last_error(&self) -> Option<&str> {
        self.errors.last().map(|e| e.error.as_str())
    }
}

/// How many jobs of one queue are in each status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub pending: u64,
    pub scheduled: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
    pub cancelled: u64,
}

impl QueueCounts {
    /// The count for one status.
    pub fn get(&self, status: JobStatus) -> u64 {
        match status {
            JobStatus::Pending => self.pending,
            JobStatus::Scheduled => self.scheduled,
            JobStatus::Running => self.running,
            JobStatus::Done => self.done,
            JobStatus::Failed => self.failed,
            JobStatus::Dead => self.dead,
            JobStatus::Cancelled => self.cancelled,
        }
    }

    /// Sets the count for one status.
    pub fn set(&mut self, status: JobStatus, n: u64) {
        let slot = match status {
            JobStatus::Pending => &mut self.pending,
            JobStatus::Scheduled => &mut self.scheduled,
            JobStatus::Running => &mut self.running,
            JobStatus::Done => &mut self.done,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Dead => &mut self.dead,
            JobStatus::Cancelled => &mut self.cancelled,
        };
        *slot = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for st in JobStatus::ALL {
            assert_eq!(st.as_str().parse::<JobStatus>().unwrap(), st);
        }
        assert!("complete".parse::<JobStatus>().is_err());
    }

    #[test]
    fn only_waiting_jobs_cancel_and_only_failed_ones_retry() {
        assert!(JobStatus::Pending.is_cancellable());
        assert!(!JobStatus::Running.is_cancellable());
        assert!(!JobStatus::Done.is_cancellable());
        assert!(JobStatus::Dead.is_retryable());
        assert!(!JobStatus::Done.is_retryable());
    }

    #[test]
    fn counts_get_what_was_set() {
        let mut c = QueueCounts::default();
        for (i, st) in JobStatus::ALL.into_iter().enumerate() {
            c.set(st, i as u64 + 1);
        }
        for (i, st) in JobStatus::ALL.into_iter().enumerate() {
            assert_eq!(c.get(st), i as u64 + 1);
        }
    }
}
