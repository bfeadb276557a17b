//! Searching jobs: by id, payload text or error text, by queue, status and creation time,
//! newest created first.
//!
//! Job ids end in a ULID, which sorts by creation time and carries it, so ordering and the
//! time range need no job read; text is matched on the jobs themselves, read in slices. A
//! search looks at the newest [`SEARCH_DEPTH`] jobs of each (queue, status) ledger, and text is
//! matched on at most [`TEXT_DEPTH`] of them (the answer says when it stopped there).

use chrono::{DateTime, TimeZone, Utc};
use vigil_jobs::{JobRecord, JobStatus, Queue};

use super::Engine;
use crate::error::EngineError;
use crate::model::JobPage;

/// The newest ledger entries of each (queue, status) a search considers.
pub const SEARCH_DEPTH: u64 = 10_000;
/// The most jobs a text search reads.
pub const TEXT_DEPTH: usize = 5_000;
/// Jobs read per round of a text search.
const SLICE: usize = 200;

/// Conditions on one job, beyond its queue and status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobMatch {
    /// Matched (case-insensitively) against the id, the payload's JSON text and every
    /// attempt's error.
    pub text: Option<String>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
}

impl JobMatch {
    /// True when `job` meets every condition.
    pub fn matches(&self, job: &JobRecord) -> bool {
        self.created_in_range(&job.id) && self.text_matches(job)
    }

    fn created_in_range(&self, id: &str) -> bool {
        let Some(created) = created_of(id) else {
            return false;
        };
        self.created_after.is_none_or(|t| created >= t)
            && self.created_before.is_none_or(|t| created < t)
    }

    fn text_matches(&self, job: &JobRecord) -> bool {
        let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) else {
            return true;
        };
        let needle = text.to_lowercase();
        job.id.to_lowercase().contains(&needle)
            || job.payload.to_string().to_lowercase().contains(&needle)
            || job
                .errors
                .iter()
                .any(|e| e.error.to_lowercase().contains(&needle))
    }
}

/// A job search.
#[derive(Debug, Clone)]
pub struct JobSearch {
    pub queue: Option<Queue>,
    pub status: Option<JobStatus>,
    pub matches: JobMatch,
    /// 1-based page number.
    pub page: u32,
    /// Jobs per page (1 to 500).
    pub page_size: u32,
}

/// A page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub page: JobPage,
    /// True when a text search stopped after [`TEXT_DEPTH`] jobs: `total` counts the matches
    /// among those.
    pub truncated: bool,
}

/// When the job with this id was created (from its ULID).
pub fn created_of(id: &str) -> Option<DateTime<Utc>> {
    let (_, ulid) = id.rsplit_once('-')?;
    let ms = ulid::Ulid::from_string(ulid).ok()?.timestamp_ms();
    Utc.timestamp_millis_opt(i64::try_from(ms).ok()?).single()
}

/// The ULID part of an id, the sort key of "newest created first".
fn ulid_of(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(_, u)| u)
}

impl Engine {
    /// Jobs matching `search`, newest created first.
    pub async fn search(&self, search: &JobSearch) -> Result<SearchPage, EngineError> {
        let size = search.page_size.clamp(1, 500) as usize;
        let start = (search.page.max(1) as usize - 1) * size;
        let queues: Vec<Queue> = search
            .queue
            .map_or_else(|| self.queues.queues(), |q| vec![q]);
        let statuses: Vec<JobStatus> = search.status.map_or(JobStatus::ALL.to_vec(), |s| vec![s]);
        let mut ids: Vec<String> = Vec::new();
        for q in &queues {
            let mut pipe = redis::pipe();
            for s in &statuses {
                pipe.cmd("ZRANGE")
                    .arg(self.keys.status(*q, *s))
                    .arg(0)
                    .arg(SEARCH_DEPTH - 1)
                    .arg("REV");
            }
            let mut c = self.conn.clone();
            let found: Vec<Vec<String>> = pipe.query_async(&mut c).await?;
            ids.extend(found.into_iter().flatten());
        }
        ids.retain(|id| search.matches.created_in_range(id));
        ids.sort_unstable_by(|a, b| ulid_of(b).cmp(ulid_of(a)).then_with(|| b.cmp(a)));
        ids.dedup();
        if search.matches.text.as_deref().is_none_or(str::is_empty) {
            let total = ids.len() as u64;
            let shown: Vec<String> = ids.into_iter().skip(start).take(size).collect();
            let jobs = self.get_many(&shown).await?;
            return Ok(SearchPage {
                page: JobPage { total, jobs },
                truncated: false,
            });
        }
        let truncated = ids.len() > TEXT_DEPTH;
        ids.truncate(TEXT_DEPTH);
        let mut total = 0u64;
        let mut jobs = Vec::new();
        for slice in ids.chunks(SLICE) {
            for job in self.get_many(slice).await? {
                if search.matches.text_matches(&job) {
                    if total as usize >= start && jobs.len() < size {
                        jobs.push(job);
                    }
                    total += 1;
                }
            }
        }
        Ok(SearchPage {
            page: JobPage { total, jobs },
            truncated,
        })
    }
}
