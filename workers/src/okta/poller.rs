//! The Okta poller: turns `okta_fetch` jobs into stored events.
//!
//! **Polling** (the scheduled job, no window): resumes from the stored `next` link (or
//! `since = now - initial_window` on the very first run), stores each page's events and the
//! page's `next` link in one transaction, and follows `next` until a short page (fewer
//! events than `limit`: caught up) or `max_pages_per_run`. Polling order is Okta's
//! persistence order, so events that arrive late are still picked up after the cursor.
//!
//! **Bounded** (backfills: `since`/`until`/`limit`): walks `next` links until the last page
//! (no `next`) or the limit; stores events with the same dedup, never touches the cursor.
//!
//! Rate limits: every request first takes a unit of the org's budget for its endpoint
//! ([`super::budget`], shared through Redis by every process): when the window is spent down
//! to the reserve share, or Okta answered 429 (logs or token endpoint), the poller sleeps
//! until `X-Rate-Limit-Reset` (a backoff only when Okta sent no reset). 5xx,
//! timeouts and broken bodies are retried with exponential backoff, then surface as
//! [`JobError::Retryable`]; other 4xx are [`JobError::Permanent`] with Okta's error.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use reqwest::Url;
use serde::Serialize;
use tokio::sync::Mutex;
use vigil_jobs::OktaFetchJob;
use vigil_store::events::{MalformedEvent, NewEvent, StoredEvent};
use vigil_store::okta_event::parse_event;
use vigil_store::{Db, okta_cursor};

use super::OktaError;
use super::client::{FetchError, LogsPage, OktaClient};
use super::http::MAX_RESET_WAIT;
use super::metrics::{OktaMetrics, OrgMetrics};
use super::run_guard::{RunGuard, created_ms};
use super::settings::{DEFAULT_ORG, OktaSettings};
use crate::JobError;

/// Okta's default page size when a URL carries no `limit`.
const OKTA_DEFAULT_LIMIT: u32 = 100;
/// Consecutive rate-limit waits for one request before giving the job back to the queue.
const MAX_RATE_LIMIT_WAITS: u32 = 5;
/// How far before the last stored event a lost cursor restarts (dedup absorbs the overlap).
const CURSOR_FALLBACK_OVERLAP_MINUTES: i64 = 5;

/// Receives the events each page stored for the first time (alert detection), so they need
/// not be read back from the database.
pub trait NewEventsSink: Send + Sync {
    /// Called after each committed page that stored at least one new event.
    fn on_new_events<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, ()>;

    /// Called at the start of each polling run: catch up on stored events a crash kept from
    /// the sink (the default does nothing).
    fn sweep(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A sink that ignores events (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopSink;

impl NewEventsSink for NoopSink {
    fn on_new_events<'a>(&'a self, _events: &'a [StoredEvent]) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Which kind of request a run made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchMode {
    #[default]
    Polling,
    Bounded,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FetchSummary {
    pub mode: FetchMode,
    /// Pages stored.
    pub pages: u32,
    /// HTTP requests to `/api/v1/logs`, retries included.
    pub requests: u32,
    /// Events received (before dedup).
    pub received: u64,
    /// Events stored for the first time.
    pub stored: u64,
    /// Events already stored (overlaps, replays).
    pub duplicates: u64,
    /// Events recorded as malformed and skipped.
    pub malformed: u64,
    /// Retries after 5xx, timeouts or broken bodies.
    pub retries: u32,
    /// Waits for a rate-limit reset (pacing and 429s).
    pub rate_limit_waits: u32,
    /// Polling reached a short page (nothing more to read now); bounded reached the end.
    pub caught_up: bool,
    /// The polling run was skipped: another run of the org was going, or one started
    /// after the job was created.
    pub skipped: bool,
    /// The newest `published` stored so far (a bounded run's position in its window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<DateTime<Utc>>,
}

/// The long-lived Okta poller (one per process; the runtime wraps it in its handler).
pub struct OktaPoller {
    db: Db,
    client: OktaClient,
    settings: OktaSettings,
    sink: Arc<dyn NewEventsSink>,
    metrics: Option<OrgMetrics>,
    /// The org's name: its events' `org`, its cursor row, its metrics label.
    org: String,
    newest_published: Mutex<Option<DateTime<Utc>>>,
    run_guard: RunGuard,
}

impl std::fmt::Debug for OktaPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaPoller")
            .field("client", &self.client)
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

impl OktaPoller {
    /// A poller over `db` for the single org of `[okta]` ([`DEFAULT_ORG`]) in `settings`
    /// (keys are read here: errors are configuration errors).
    pub fn new(
        settings: OktaSettings,
        db: Db,
        metrics: Option<OktaMetrics>,
    ) -> Result<OktaPoller, OktaError> {
        Self::for_org(DEFAULT_ORG, settings, db, metrics)
    }

    /// A poller of the org named `org` (see [`OktaSettings::orgs`]).
    pub fn for_org(
        org: &str,
        settings: OktaSettings,
        db: Db,
        metrics: Option<OktaMetrics>,
    ) -> Result<OktaPoller, OktaError> {
        let metrics = metrics.map(|m| m.org(org));
        let client = OktaClient::new(&settings, metrics.clone())?;
        Ok(OktaPoller {
            db,
            client,
            settings,
            sink: Arc::new(NoopSink),
            metrics,
            org: org.to_owned(),
            newest_published: Mutex::new(None),
            run_guard: RunGuard::local(),
        })
    }

    /// Shares the org's rate budget and run claim with every process using the same Redis
    /// and `prefix` (keyed by the org's host and port), instead of keeping them in-process.
    pub fn with_redis(mut self, conn: vigil_queue::RedisConn, prefix: &str) -> OktaPoller {
        let base = self.client.base();
        let org = match base.port() {
            Some(p) => format!("{}_{p}", base.host_str().unwrap_or_default()),
            None => base.host_str().unwrap_or_default().to_owned(),
        };
        let org: String = org
            .chars()
            .map(|c| if matches!(c, '{' | '}' | ':') { '_' } else { c })
            .collect();
        self.run_guard = RunGuard::redis(conn.clone(), prefix, &org);
        self.client = self
            .client
            .with_budget(super::Budget::redis(conn, prefix, &org));
        self
    }

    /// Hands newly stored events to `sink` (alert detection).
    pub fn with_sink(mut self, sink: Arc<dyn NewEventsSink>) -> OktaPoller {
        self.sink = sink;
        self
    }

    /// The org's name.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The `okta_fetch` handler: a bounded run when the job has `since`, else a polling run
    /// — skipped when another polling run of the org is going or one started after the job
    /// was created ([`super::run_guard`]).
    pub async fn fetch(&self, job_id: &str, job: &OktaFetchJob) -> Result<FetchSummary, JobError> {
        self.fetch_with_progress(job_id, job, &|_| {}).await
    }

    /// [`Self::fetch`], calling `progress` after each page of a bounded run.
    pub async fn fetch_with_progress(
        &self,
        job_id: &str,
        job: &OktaFetchJob,
        progress: &(dyn Fn(&FetchSummary) + Send + Sync),
    ) -> Result<FetchSummary, JobError> {
        let result = self.run(job_id, job, progress).await;
        if let Some(m) = &self.metrics
            && !result.as_ref().is_ok_and(|s| s.skipped)
        {
            m.run_finished(result.is_ok());
        }
        result
    }

    async fn run(
        &self,
        job_id: &str,
        job: &OktaFetchJob,
        progress: &(dyn Fn(&FetchSummary) + Send + Sync),
    ) -> Result<FetchSummary, JobError> {
        let summary = match job.since {
            Some(since) => {
                let until = job.until.unwrap_or_else(Utc::now);
                self.backfill(since, until, job.limit.map(u64::from), progress)
                    .await?
            }
            None => match self.run_guard.claim(created_ms(job_id)).await {
                Ok(claim) => {
                    let result = self.poll().await;
                    claim.release().await;
                    result?
                }
                Err(skip) => {
                    if let Some(m) = &self.metrics {
                        m.runs_skipped().inc();
                    }
                    tracing::info!(
                        job_id,
                        org = %self.org,
                        ?skip,
                        "okta polling run skipped: the org's run is going or already covered this tick"
                    );
                    return Ok(FetchSummary {
                        skipped: true,
                        ..Default::default()
                    });
                }
            },
        };
        tracing::info!(
            job_id,
            org = %self.org,
            mode = ?summary.mode,
            pages = summary.pages,
            stored = summary.stored,
            duplicates = summary.duplicates,
            malformed = summary.malformed,
            caught_up = summary.caught_up,
            "okta fetch done"
        );
        Ok(summary)
    }

    /// One polling run from the stored cursor.
    pub async fn poll(&self) -> Result<FetchSummary, JobError> {
        let mut summary = FetchSummary {
            mode: FetchMode::Polling,
            ..Default::default()
        };
        self.sink.sweep().await;
        let mut url = self.start_url().await?;
        let max_pages = self.settings.max_pages_per_run.max(1);
        while summary.pages < max_pages {
            let page = self.get_with_retries(&url, &mut summary).await?;
            let limit = url_limit(&url);
            let count = page.events.len();
            let next = match &page.next {
                Some(n) => Some(self.checked_next(n)?),
                None => None,
            };
            self.store(&page, next.as_ref().map(Url::as_str), None, &mut summary)
                .await?;
            if count < limit as usize {
                summary.caught_up = true;
                break;
            }
            match next {
                Some(n) => url = n,
                None => {
                    tracing::warn!(
                        "Okta sent a polling page without a next link; the next run repeats it"
                    );
                    break;
                }
            }
        }
        Ok(summary)
    }

    /// A bounded run over `[since, until)`, stopping after `limit` events when given.
    /// `progress` is called after each page.
    pub async fn backfill(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: Option<u64>,
        progress: &(dyn Fn(&FetchSummary) + Send + Sync),
    ) -> Result<FetchSummary, JobError> {
        let mut summary = FetchSummary {
            mode: FetchMode::Bounded,
            ..Default::default()
        };
        let page_limit = match limit {
            Some(l) => self
                .page_limit()
                .min(u32::try_from(l).unwrap_or(u32::MAX))
                .max(1),
            None => self.page_limit(),
        };
        let mut url = self.logs_url(&[
            ("since", okta_time(since)),
            ("until", okta_time(until)),
            ("limit", page_limit.to_string()),
            ("sortOrder", "ASCENDING".to_owned()),
        ])?;
        loop {
            let page = self.get_with_retries(&url, &mut summary).await?;
            let room = limit.map(|l| l.saturating_sub(summary.received));
            self.store(&page, None, room, &mut summary).await?;
            progress(&summary);
            if limit.is_some_and(|l| summary.received >= l) {
                break;
            }
            match &page.next {
                Some(n) if !page.events.is_empty() => url = self.checked_next(n)?,
                _ => {
                    summary.caught_up = true;
                    break;
                }
            }
        }
        Ok(summary)
    }

    fn page_limit(&self) -> u32 {
        self.settings.page_limit.clamp(1, 1000)
    }

    fn logs_url(&self, query: &[(&str, String)]) -> Result<Url, JobError> {
        let mut url = self
            .client
            .base()
            .join("/api/v1/logs")
            .map_err(JobError::permanent)?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Where polling resumes: the stored `next` link, or a fresh `since`.
    async fn start_url(&self) -> Result<Url, JobError> {
        let cursor = okta_cursor::load(&self.db, &self.org)
            .await
            .map_err(|e| JobError::retryable(format!("cannot read the Okta cursor: {e}")))?;
        let since = match cursor {
            Some(c) => match Url::parse(&c.next_url) {
                Ok(u) if self.client.is_own_url(&u) => return Ok(u),
                _ => {
                    // The org changed or the cursor is damaged: restart just before the last
                    // stored event; uuid dedup absorbs the overlap.
                    tracing::warn!(
                        org = %self.org,
                        "the stored Okta cursor does not point at the org's domain; restarting from the last stored event"
                    );
                    c.last_published
                        .map(|p| p - chrono::Duration::minutes(CURSOR_FALLBACK_OVERLAP_MINUTES))
                        .unwrap_or_else(|| self.initial_since())
                }
            },
            None => self.initial_since(),
        };
        self.logs_url(&[
            ("since", okta_time(since)),
            ("limit", self.page_limit().to_string()),
        ])
    }

    fn initial_since(&self) -> DateTime<Utc> {
        Utc::now() - chrono::Duration::minutes(i64::from(self.settings.initial_window_minutes))
    }

    /// Parses a `next` link and refuses one that leaves the configured org.
    fn checked_next(&self, next: &str) -> Result<Url, JobError> {
        match Url::parse(next) {
            Ok(u) if self.client.is_own_url(&u) => Ok(u),
            _ => Err(JobError::Permanent(format!(
                "Okta's next link does not point at okta.domain ({}); refusing to follow it",
                self.client.base()
            ))),
        }
    }

    /// Parses and stores a page (and the cursor when `next` is given) in one transaction.
    async fn store(
        &self,
        page: &LogsPage,
        next: Option<&str>,
        room: Option<u64>,
        summary: &mut FetchSummary,
    ) -> Result<(), JobError> {
        let take = room.map_or(page.events.len(), |r| {
            page.events
                .len()
                .min(usize::try_from(r).unwrap_or(usize::MAX))
        });
        let mut events: Vec<NewEvent> = Vec::with_capacity(take);
        let mut malformed: Vec<MalformedEvent> = Vec::new();
        for raw in &page.events[..take] {
            match parse_event(raw) {
                Ok(e) => events.push(e),
                Err(m) => {
                    tracing::warn!(uuid = ?m.uuid, reason = %m.reason, "malformed Okta event recorded and skipped");
                    malformed.push(m);
                }
            }
        }
        for e in &mut events {
            e.org.clone_from(&self.org);
        }
        let received = Utc::now();
        let skew = i64::try_from(self.settings.max_clock_skew_seconds)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX);
        for e in &mut events {
            if e.clamp_future(received, skew) {
                tracing::warn!(uuid = %e.uuid, reported = ?e.published_reported,
                    "Okta event published in the future beyond okta.max_clock_skew_seconds; stored with the time of receipt and flagged");
                if let Some(m) = &self.metrics {
                    m.future_events().inc();
                }
            }
        }
        let newest = events
            .iter()
            .filter(|e| e.published_reported.is_none())
            .map(|e| e.published)
            .max();
        let committed = okta_cursor::commit_page(&self.db, &self.org, &events, &malformed, next)
            .await
            .map_err(|e| JobError::retryable(format!("cannot store Okta events: {e}")))?;
        let new = committed.new;
        let refused = committed.refused.len();
        summary.pages += 1;
        summary.received += take as u64;
        summary.stored += new.len() as u64;
        summary.duplicates += (events.len() - new.len() - refused) as u64;
        summary.malformed += (malformed.len() + refused) as u64;
        if newest.is_some_and(|n| summary.position.is_none_or(|p| n > p)) {
            summary.position = newest;
        }
        if let Some(m) = &self.metrics {
            m.events_ingested().inc_by(new.len() as u64);
            m.malformed_events()
                .inc_by((malformed.len() + refused) as u64);
        }
        self.update_lag(newest).await;
        if !new.is_empty() {
            self.sink.on_new_events(&new).await;
        }
        Ok(())
    }

    async fn update_lag(&self, page_newest: Option<DateTime<Utc>>) {
        let Some(m) = &self.metrics else { return };
        let mut newest = self.newest_published.lock().await;
        if newest.is_none() {
            *newest = vigil_store::events::newest_published_of(&self.db, &self.org)
                .await
                .ok()
                .flatten();
        }
        if let Some(p) = page_newest
            && newest.is_none_or(|n| p > n)
        {
            *newest = Some(p);
        }
        if let Some(n) = *newest {
            let lag = (Utc::now() - n).num_milliseconds().max(0) as f64 / 1000.0;
            m.ingestion_lag().set(lag);
        }
    }

    /// One page, retrying transient failures with backoff and waiting out 429s.
    async fn get_with_retries(
        &self,
        url: &Url,
        summary: &mut FetchSummary,
    ) -> Result<LogsPage, JobError> {
        let mut failures = 0u32;
        let mut limited = 0u32;
        loop {
            summary.requests += 1;
            match self.client.get_logs(url).await {
                Ok(page) => return Ok(page),
                Err(FetchError::Permanent(msg)) => return Err(JobError::Permanent(msg)),
                Err(FetchError::RateLimited {
                    endpoint,
                    wait,
                    by_okta,
                    message,
                }) => {
                    limited += 1;
                    if limited > MAX_RATE_LIMIT_WAITS {
                        return Err(JobError::Retryable(message));
                    }
                    summary.rate_limit_waits += 1;
                    if let Some(m) = &self.metrics {
                        m.rate_limit_waits(endpoint, if by_okta { "429" } else { "budget" })
                            .inc();
                    }
                    match (by_okta, wait) {
                        (true, Some(wait)) => tracing::info!(
                            endpoint,
                            wait_ms = wait.as_millis() as u64,
                            "Okta answered 429; waiting until its X-Rate-Limit-Reset"
                        ),
                        (false, Some(wait)) => tracing::info!(
                            endpoint,
                            wait_ms = wait.as_millis() as u64,
                            "the org's Okta rate budget is spent down to the reserve; waiting until X-Rate-Limit-Reset"
                        ),
                        (_, None) => tracing::warn!(
                            endpoint,
                            "Okta answered 429 without X-Rate-Limit-Reset; backing off"
                        ),
                    }
                    let wait = wait.unwrap_or_else(|| self.backoff(limited));
                    tokio::time::sleep(wait).await;
                }
                Err(FetchError::Transient(msg)) => {
                    failures += 1;
                    if failures > self.settings.max_retries {
                        return Err(JobError::Retryable(format!(
                            "{msg} (gave up after {} retries)",
                            self.settings.max_retries
                        )));
                    }
                    summary.retries += 1;
                    let wait = self.backoff(failures);
                    tracing::warn!(error = %msg, attempt = failures, wait_ms = wait.as_millis() as u64, "Okta request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Exponential backoff with jitter: base * 2^(n-1), ±25%.
    fn backoff(&self, n: u32) -> Duration {
        let base = self.settings.retry_backoff_millis.max(1);
        let ms = base.saturating_mul(1u64 << n.saturating_sub(1).min(10));
        let jitter = rand::random_range(0.75..1.25);
        Duration::from_millis((ms as f64 * jitter) as u64).min(MAX_RESET_WAIT)
    }
}

/// The `limit` of a logs URL (Okta's default when absent).
fn url_limit(url: &Url) -> u32 {
    url.query_pairs()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(OKTA_DEFAULT_LIMIT)
}

/// Okta's time format: `2024-04-02T19:17:37.621Z`.
pub(crate) fn okta_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_times() {
        let u = Url::parse("https://a/api/v1/logs?limit=20&after=1_1").unwrap();
        assert_eq!(url_limit(&u), 20);
        let u = Url::parse("https://a/api/v1/logs?after=1_1").unwrap();
        assert_eq!(url_limit(&u), 100);
        let t = DateTime::parse_from_rfc3339("2024-04-02T19:17:37.621Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(okta_time(t), "2024-04-02T19:17:37.621Z");
    }
}
