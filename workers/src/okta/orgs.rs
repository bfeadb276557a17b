//! Many orgs: one [`OktaPoller`] per org, and the `okta_fetch` job dispatched to the org it
//! names (`org`) or, without one, to every org at once. Each org keeps its own cursor, rate
//! budget, run guard and metrics; one org failing does not stop the others (the job then
//! fails with every failed org's error, and its retry re-runs only what it must: polling
//! runs of the orgs that succeeded are skipped by their run guard).
//!
//! A bounded run (a backfill) reports its progress on the job through the engine
//! ([`vigil_queue::Engine::set_progress`], fenced by the attempt's token): events stored so
//! far and the position reached, in total and per org.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use serde_json::{Value, json};
use vigil_jobs::OktaFetchJob;
use vigil_queue::Engine;

use super::poller::{FetchSummary, OktaPoller};
use crate::JobError;
use crate::runtime::JobContext;

/// Every configured org's poller.
pub struct OktaOrgs {
    pollers: Vec<Arc<OktaPoller>>,
    progress: Option<Engine>,
}

impl From<OktaPoller> for OktaOrgs {
    fn from(poller: OktaPoller) -> OktaOrgs {
        OktaOrgs::new(vec![poller])
    }
}

impl OktaOrgs {
    /// The orgs' pollers (names are unique: [`super::OktaSettings::orgs`] checks them).
    pub fn new(pollers: Vec<OktaPoller>) -> OktaOrgs {
        OktaOrgs {
            pollers: pollers.into_iter().map(Arc::new).collect(),
            progress: None,
        }
    }

    /// Writes bounded runs' progress on their job through `engine`.
    pub fn with_progress(mut self, engine: Engine) -> OktaOrgs {
        self.progress = Some(engine);
        self
    }

    /// The org names, in configuration order.
    pub fn names(&self) -> Vec<&str> {
        self.pollers.iter().map(|p| p.org()).collect()
    }

    /// Runs `job` on the org it names, or on every org; the summaries by org.
    pub async fn fetch(
        &self,
        ctx: &JobContext,
        job: &OktaFetchJob,
    ) -> Result<BTreeMap<String, FetchSummary>, JobError> {
        let targets: Vec<&Arc<OktaPoller>> = match &job.org {
            Some(name) => match self.pollers.iter().find(|p| p.org() == name) {
                Some(p) => vec![p],
                None => {
                    return Err(JobError::Permanent(format!(
                        "no Okta org named `{name}` is configured here (orgs: {})",
                        self.names().join(", ")
                    )));
                }
            },
            None => self.pollers.iter().collect(),
        };
        let tracker = match (&self.progress, job.since) {
            (Some(engine), Some(_)) => Some(Tracker::start(engine.clone(), ctx, job)),
            _ => None,
        };
        let runs = targets.iter().map(|p| {
            let tracker = tracker.as_ref();
            async move {
                let org = p.org().to_owned();
                let report = |s: &FetchSummary| {
                    if let Some(t) = tracker {
                        t.update(&org, s);
                    }
                };
                let result = p.fetch_with_progress(&ctx.job_id, job, &report).await;
                (p.org().to_owned(), result)
            }
        });
        let results = join_all(runs).await;
        if let Some(t) = tracker {
            t.finish().await;
        }
        let mut done = BTreeMap::new();
        let mut failed: Vec<(String, JobError)> = Vec::new();
        for (org, result) in results {
            match result {
                Ok(s) => {
                    done.insert(org, s);
                }
                Err(e) => {
                    tracing::warn!(org = %org, error = %e, "the Okta fetch of one org failed; the other orgs went on");
                    failed.push((org, e));
                }
            }
        }
        if failed.is_empty() {
            return Ok(done);
        }
        let retryable = failed
            .iter()
            .any(|(_, e)| !matches!(e, JobError::Permanent(_)));
        let message = failed
            .iter()
            .map(|(org, e)| format!("org {org}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(if retryable {
            JobError::Retryable(message)
        } else {
            JobError::Permanent(message)
        })
    }
}

/// A bounded run's progress: the latest summary of each org, written on the job by one
/// background task (always the newest snapshot; a slow write never holds up a page).
struct Tracker {
    orgs: Mutex<BTreeMap<String, FetchSummary>>,
    tx: tokio::sync::watch::Sender<Value>,
    writer: tokio::task::JoinHandle<()>,
}

impl Tracker {
    fn start(engine: Engine, ctx: &JobContext, job: &OktaFetchJob) -> Tracker {
        let (tx, mut rx) = tokio::sync::watch::channel(Value::Null);
        let (queue, id, token) = (ctx.queue, ctx.job_id.clone(), ctx.token.clone());
        let window = json!({ "since": job.since, "until": job.until });
        let writer = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let mut value = rx.borrow_and_update().clone();
                if let Some(o) = value.as_object_mut() {
                    o.insert("window".to_owned(), window.clone());
                }
                match engine.set_progress(queue, &id, &token, &value).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job_id = %id, "the job's lease moved on; its progress is no longer written here");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job_id = %id, error = %e, "cannot record the backfill's progress")
                    }
                }
            }
        });
        Tracker {
            orgs: Mutex::new(BTreeMap::new()),
            tx,
            writer,
        }
    }

    fn update(&self, org: &str, summary: &FetchSummary) {
        let mut orgs = self.orgs.lock().unwrap_or_else(|p| p.into_inner());
        orgs.insert(org.to_owned(), summary.clone());
        self.tx.send_replace(snapshot(&orgs, false));
    }

    /// Sends the final snapshot and waits until it is written.
    async fn finish(self) {
        let last = {
            let orgs = self.orgs.lock().unwrap_or_else(|p| p.into_inner());
            snapshot(&orgs, true)
        };
        self.tx.send_replace(last);
        drop(self.tx);
        let _ = self.writer.await;
    }
}

/// `{stored, received, duplicates, malformed, pages, position, finished, orgs: {name: ...}}`;
/// the overall position is the furthest-behind org's.
fn snapshot(orgs: &BTreeMap<String, FetchSummary>, finished: bool) -> Value {
    let sum = |f: fn(&FetchSummary) -> u64| orgs.values().map(f).sum::<u64>();
    let position = orgs.values().filter_map(|s| s.position).min();
    let per_org: serde_json::Map<String, Value> = orgs
        .iter()
        .map(|(org, s)| {
            (
                org.clone(),
                json!({ "stored": s.stored, "received": s.received,
                        "duplicates": s.duplicates, "malformed": s.malformed,
                        "pages": s.pages, "position": s.position, "caught_up": s.caught_up }),
            )
        })
        .collect();
    json!({
        "stored": sum(|s| s.stored),
        "received": sum(|s| s.received),
        "duplicates": sum(|s| s.duplicates),
        "malformed": sum(|s| s.malformed),
        "pages": sum(|s| u64::from(s.pages)),
        "position": position,
        "finished": finished,
        "orgs": per_org,
    })
}
