//! Deleting jobs, and retrying, cancelling or deleting many at once: by ids, or by filter in
//! bounded slices resumed with a cursor. Each job still changes in one script (the same
//! transitions as one-by-one), so counts stay exact and a job that moved on in between (a
//! dead job already retried, a pending job now running) is skipped, not forced.
//!
//! A filtered run walks the ledger (`s:<status>`) of each matching queue and status, oldest
//! entry first, and only entries that were there when the run began (the cursor carries that
//! time): a job retried by the run that fails again is not retried twice. The cursor is the
//! last position walked, so entries acted upon (which leave the ledger) and entries skipped
//! (which stay) are both passed exactly once.

use vigil_jobs::{JobStatus, Queue};

use super::{Engine, with_keys};
use crate::error::EngineError;
use crate::keys::queue_of_id;
use crate::scripts;

/// Most jobs one bulk call walks (ids given, or ledger entries of a filter).
pub const MAX_BULK: u32 = 1000;

/// What a bulk call does to each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// Dead or failed jobs back to pending with a fresh set of attempts.
    Retry,
    /// Pending, scheduled or failed jobs to cancelled.
    Cancel,
    /// Any job that is not running, gone for good.
    Delete,
}

impl BulkAction {
    /// `retry`, `cancel`, `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
            BulkAction::Delete => "delete",
        }
    }

    /// Whether it applies to a job in `status` (the rules of [`JobStatus`], which the
    /// scripts are given).
    pub const fn applies(self, status: JobStatus) -> bool {
        match self {
            BulkAction::Retry => status.is_retryable(),
            BulkAction::Cancel => status.is_cancellable(),
            BulkAction::Delete => status.is_deletable(),
        }
    }

    /// The statuses it applies to.
    pub fn applies_to(self) -> Vec<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .filter(|s| self.applies(*s))
            .collect()
    }
}

/// Which jobs a filtered bulk call acts on.
#[derive(Debug, Clone, Default)]
pub struct BulkFilter {
    /// Every queue when None.
    pub queue: Option<Queue>,
    /// Every status the action applies to when None.
    pub status: Option<JobStatus>,
    /// Further conditions on the job (search text, creation time); None: every job.
    pub matches: Option<super::search::JobMatch>,
}

/// Where a filtered run goes on: opaque to clients (`<since>.<queue>.<status>.<score>.<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkCursor {
    /// Only ledger entries up to this time (ms, server clock) are walked.
    until: i64,
    queue: usize,
    status: usize,
    score: i64,
    id: String,
}

impl BulkCursor {
    /// Reads a cursor a previous call returned; None when it is not one.
    pub fn parse(text: &str) -> Option<BulkCursor> {
        let mut parts = text.splitn(5, '.');
        let mut num = || parts.next()?.parse::<i64>().ok();
        let (until, queue, status, score) = (num()?, num()?, num()?, num()?);
        let id = parts.next()?.to_owned();
        let fits = |v: i64, n: usize| usize::try_from(v).ok().filter(|v| *v < n);
        Some(BulkCursor {
            until,
            queue: fits(queue, Queue::all().len())?,
            status: fits(status, JobStatus::ALL.len())?,
            score,
            id: (id.len() <= 100).then_some(id)?,
        })
    }
}

impl std::fmt::Display for BulkCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}.{}",
            self.until, self.queue, self.status, self.score, self.id
        )
    }
}

/// What a bulk call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Jobs the action changed.
    pub affected: u64,
    /// Jobs walked but left alone (unknown, no longer in a state the action applies to, or
    /// not matching the filter's conditions).
    pub skipped: u64,
    /// Where to go on, when the filter has more jobs to walk.
    pub next: Option<BulkCursor>,
}

impl Engine {
    /// Deletes a job that is not running; returns the status it had.
    pub async fn delete(&self, id: &str) -> Result<JobStatus, EngineError> {
        match self.apply(BulkAction::Delete, id).await? {
            Applied::Ok(status) => Ok(status),
            Applied::Invalid(status) => Err(EngineError::InvalidState {
                id: id.to_owned(),
                status,
                action: "delete",
            }),
            Applied::Missing => Err(EngineError::NotFound(id.to_owned())),
        }
    }

    /// `action` on each of `ids` (at most [`MAX_BULK`] are walked).
    pub async fn bulk_ids(
        &self,
        action: BulkAction,
        ids: &[String],
    ) -> Result<BulkOutcome, EngineError> {
        let mut out = BulkOutcome::default();
        for id in ids.iter().take(MAX_BULK as usize) {
            match self.apply(action, id).await? {
                Applied::Ok(_) => out.affected += 1,
                _ => out.skipped += 1,
            }
        }
        Ok(out)
    }

    /// `action` on the jobs matching `filter`, walking at most `limit` (≤ [`MAX_BULK`]) of
    /// them from `cursor` (None: a new run starting now).
    pub async fn bulk_filter(
        &self,
        action: BulkAction,
        filter: &BulkFilter,
        cursor: Option<BulkCursor>,
        limit: u32,
    ) -> Result<BulkOutcome, EngineError> {
        let mut pos = match cursor {
            Some(c) => c,
            None => BulkCursor {
                until: self.server_time().await?.timestamp_millis(),
                queue: 0,
                status: 0,
                score: i64::MIN,
                id: String::new(),
            },
        };
        let mut out = BulkOutcome::default();
        let mut budget = u64::from(limit.clamp(1, MAX_BULK));
        // The engine's queues in name order: a cursor's position is an index into them.
        let queues = self.queues.queues();
        while pos.queue < queues.len() {
            let queue = queues[pos.queue];
            let status = JobStatus::ALL[pos.status];
            let wanted = filter.queue.is_none_or(|q| q == queue)
                && filter.status.is_none_or(|s| s == status)
                && action.applies(status);
            let entries = if wanted && budget > 0 {
                self.ledger_after(queue, status, &pos, budget).await?
            } else {
                Vec::new()
            };
            if entries.is_empty() {
                if wanted && budget == 0 {
                    break;
                }
                pos.status += 1;
                if pos.status == JobStatus::ALL.len() {
                    pos.status = 0;
                    pos.queue += 1;
                }
                pos.score = i64::MIN;
                pos.id.clear();
                continue;
            }
            budget -= entries.len() as u64;
            let ids: Vec<String> = entries.iter().map(|(id, _)| id.clone()).collect();
            let records = match &filter.matches {
                Some(_) => self.get_many(&ids).await?,
                None => Vec::new(),
            };
            for (id, score) in entries {
                pos.score = score;
                pos.id.clone_from(&id);
                let keep = match &filter.matches {
                    Some(m) => records.iter().any(|r| r.id == id && m.matches(r)),
                    None => true,
                };
                if keep && matches!(self.apply(action, &id).await?, Applied::Ok(_)) {
                    out.affected += 1;
                } else {
                    out.skipped += 1;
                }
            }
        }
        out.next = (pos.queue < queues.len()).then_some(pos);
        Ok(out)
    }

    /// Up to `n` ledger entries of (queue, status) after `pos`, up to `pos.until`, oldest first.
    async fn ledger_after(
        &self,
        queue: Queue,
        status: JobStatus,
        pos: &BulkCursor,
        n: u64,
    ) -> Result<Vec<(String, i64)>, EngineError> {
        let key = self.keys.status(queue, status);
        let mut c = self.conn.clone();
        let (min, ties) = if pos.id.is_empty() {
            ("-inf".to_owned(), 0u64)
        } else {
            let ties: u64 = redis::cmd("ZCOUNT")
                .arg(&key)
                .arg(pos.score)
                .arg(pos.score)
                .query_async(&mut c)
                .await?;
            (pos.score.to_string(), ties)
        };
        let found: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(min)
            .arg(pos.until)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(n + ties)
            .arg("WITHSCORES")
            .query_async(&mut c)
            .await?;
        Ok(found
            .into_iter()
            .map(|(id, s)| (id, s as i64))
            .filter(|(id, s)| pos.id.is_empty() || *s > pos.score || id.as_str() > pos.id.as_str())
            .take(n as usize)
            .collect())
    }

    /// One job's transition; Redis errors are errors, a job the action does not apply to is
    /// an outcome.
    async fn apply(&self, action: BulkAction, id: &str) -> Result<Applied, EngineError> {
        let Some(queue) = queue_of_id(id) else {
            return Ok(Applied::Missing);
        };
        let (script, extra) = match action {
            BulkAction::Retry => (
                &*scripts::RETRY,
                self.queues.get(queue).max_attempts.max(1) as u64,
            ),
            BulkAction::Cancel => (
                &*scripts::CANCEL,
                self.ttl_ms(queue, |q| q.retain_cancelled.as_millis()),
            ),
            BulkAction::Delete => (&*scripts::DELETE, 0),
        };
        let mut inv = script.prepare_invoke();
        with_keys(&mut inv, &self.keys, queue);
        inv.arg(id)
            .arg(extra)
            .arg(super::control::allowed_statuses(|s| action.applies(s)));
        let mut c = self.conn.clone();
        let answer: Vec<String> = inv
            .invoke_async(&mut c)
            .await
            .map_err(EngineError::from_write)?;
        let status = |i: usize| answer.get(i).and_then(|s| s.parse::<JobStatus>().ok());
        Ok(match answer.first().map(String::as_str) {
            Some("ok") => Applied::Ok(status(1).unwrap_or(JobStatus::Pending)),
            Some("invalid") => Applied::Invalid(status(1).unwrap_or(JobStatus::Running)),
            _ => Applied::Missing,
        })
    }
}

/// One job's transition outcome.
enum Applied {
    /// Done; the status the job had (delete) or `pending` (retry/cancel).
    Ok(JobStatus),
    Invalid(JobStatus),
    Missing,
}
