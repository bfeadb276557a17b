//! The detector: newly stored events → rules → alerts.
//!
//! Runs in the worker that stored the events (no table re-read), then marks them detected;
//! each polling run first sweeps up stored events left unmarked (a crash between the commit
//! and detection), so no event escapes detection. Threshold windows live in
//! Redis ([`RedisWindows`](vigil_rules::RedisWindows)), so several workers and restarts see
//! one state. Each event is evaluated with its Okta org at `vigil.org` ([`ORG_FIELD`]), so
//! rules can group by org. Everything it writes is idempotent per event (window entries and alert links
//! are keyed by the event uuid), so a batch detected twice changes nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use serde::Serialize;
use vigil_jobs::EscalationSettings;
use vigil_queue::Engine;
use vigil_rules::{Firing, RuleSet, WindowStore};
use vigil_store::Db;
use vigil_store::alert_open;
use vigil_store::alerts::AlertHit;
use vigil_store::events::StoredEvent;

use super::AlertMetrics;
use crate::audit::{AuditSink, EngineAuditSink};
use crate::okta::NewEventsSink;

/// The key rules read vigil's own facts under: `vigil.org` is the event's Okta org, so a
/// rule can `group_by = ["vigil.org", ...]` (Okta puts no `vigil` key in its events).
pub const ORG_FIELD: &str = "vigil";

/// Tries per batch before detection gives up on it (the sweep tries again later).
const ATTEMPTS: u32 = 3;
/// Stored events older than this and still unmarked were missed (a crash, a failure).
const SWEEP_AFTER_SECONDS: i64 = 120;
/// Events per sweep batch, and batches per sweep.
const SWEEP_BATCH: u32 = 500;
const SWEEP_BATCHES: u32 = 20;

/// What one batch produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DetectSummary {
    pub events: u64,
    pub matches: u64,
    pub alerts_opened: Vec<i64>,
    pub alerts_updated: Vec<i64>,
}

/// Why detection failed on a batch.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Window(#[from] vigil_rules::WindowError),
    #[error(transparent)]
    Store(#[from] vigil_store::StoreError),
}

/// Rules, their windows, and where alerts go.
pub struct Detector {
    pub(super) rules: Arc<RuleSet>,
    windows: Arc<dyn WindowStore>,
    pub(super) db: Db,
    engine: Engine,
    escalation: Arc<EscalationSettings>,
    audit: EngineAuditSink,
    pub(super) metrics: Option<AlertMetrics>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("rules", &self.rules.rules().len())
            .finish_non_exhaustive()
    }
}

impl Detector {
    pub fn new(
        rules: Arc<RuleSet>,
        windows: Arc<dyn WindowStore>,
        db: Db,
        engine: Engine,
        escalation: Arc<EscalationSettings>,
        metrics: Option<AlertMetrics>,
    ) -> Detector {
        Detector {
            rules,
            windows,
            db,
            audit: EngineAuditSink::new(engine.clone()),
            engine,
            escalation,
            metrics,
        }
    }

    /// Detects `events` and marks them detected.
    pub async fn detect_and_mark(
        &self,
        events: &[StoredEvent],
    ) -> Result<DetectSummary, DetectError> {
        let summary = self.detect(events).await?;
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        vigil_store::events::mark_detected(&self.db, &ids, Utc::now()).await?;
        Ok(summary)
    }

    /// Detects stored events that were never marked (stored before `now` minus two minutes:
    /// a crash between storing and detecting, a detection failure, `vigil okta backfill`).
    /// Safe to overlap with live detection: everything it writes is keyed by event uuid.
    pub async fn sweep_at(&self, now: chrono::DateTime<Utc>) -> Result<DetectSummary, DetectError> {
        let before = now - chrono::Duration::seconds(SWEEP_AFTER_SECONDS);
        let mut total = DetectSummary::default();
        for _ in 0..SWEEP_BATCHES {
            let missed = vigil_store::events::undetected(&self.db, before, SWEEP_BATCH).await?;
            if missed.is_empty() {
                break;
            }
            let s = self.detect_and_mark(&missed).await?;
            total.events += s.events;
            total.matches += s.matches;
            total.alerts_opened.extend(s.alerts_opened);
            total.alerts_updated.extend(s.alerts_updated);
        }
        if total.events > 0 {
            tracing::warn!(?total, "detection caught up on events it had missed");
        }
        Ok(total)
    }

    /// Detects the stored Okta events `ids` not detected yet (an Event Hook delivery stored
    /// them through the API) and marks them.
    pub async fn detect_stored(&self, ids: &[i64]) -> Result<DetectSummary, DetectError> {
        let events = vigil_store::events::undetected_by_ids(&self.db, ids).await?;
        if events.is_empty() {
            return Ok(DetectSummary::default());
        }
        self.detect_and_mark(&events).await
    }

    /// Runs the rules on security events posted through the API that they have not seen yet
    /// (the escalation run calls it every minute, and the API queues a run per event).
    pub async fn detect_security_events(&self) -> Result<DetectSummary, DetectError> {
        let mut summary = DetectSummary::default();
        for _ in 0..SWEEP_BATCHES {
            let batch = vigil_store::security_events::undetected(&self.db, SWEEP_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            let docs: Vec<serde_json::Value> = batch
                .iter()
                .map(vigil_store::security_events::as_rule_document)
                .collect();
            self.evaluate(&docs, &mut summary).await?;
            let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
            vigil_store::security_events::mark_detected(&self.db, &ids, Utc::now()).await?;
        }
        Ok(summary)
    }

    /// Runs the rules on `events` (in order) and raises their alerts.
    pub async fn detect(&self, events: &[StoredEvent]) -> Result<DetectSummary, DetectError> {
        let mut summary = DetectSummary::default();
        // Stored events were parsed once already; one that no longer parses is skipped. An
        // event published beyond the allowed clock skew counts at its time of receipt, so it
        // cannot push a threshold window's other events out.
        let docs: Vec<serde_json::Value> = events
            .iter()
            .filter_map(|e| {
                let mut doc = vigil_store::storable::parse_lenient(&e.raw).ok()?;
                // The org the event came from, for rules that group by it (`vigil.org`).
                if let Some(o) = doc.as_object_mut() {
                    o.insert(ORG_FIELD.to_owned(), serde_json::json!({ "org": e.org }));
                }
                if e.published_reported.is_some()
                    && let Some(o) = doc.as_object_mut()
                {
                    o.insert(
                        "published".to_owned(),
                        e.published
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                            .into(),
                    );
                }
                Some(doc)
            })
            .collect();
        self.evaluate(&docs, &mut summary).await?;
        Ok(summary)
    }

    /// Runs the rules on `docs` (the whole batch in two round trips to Redis), then raises
    /// their alerts in order.
    async fn evaluate(
        &self,
        docs: &[serde_json::Value],
        summary: &mut DetectSummary,
    ) -> Result<(), DetectError> {
        for evaluation in self.rules.evaluate_all(docs, self.windows.as_ref()).await? {
            self.record(evaluation, summary).await?;
        }
        Ok(())
    }

    /// Counts an evaluation and raises its firings.
    async fn record(
        &self,
        evaluation: vigil_rules::Evaluation,
        summary: &mut DetectSummary,
    ) -> Result<(), DetectError> {
        summary.events += 1;
        summary.matches += evaluation.matches.len() as u64;
        if let Some(m) = &self.metrics {
            m.evaluated.inc();
            for id in &evaluation.matches {
                m.matches.with_label_values(&[id.as_str()]).inc();
            }
        }
        for firing in &evaluation.firings {
            self.raise(firing, evaluation.published, summary).await?;
        }
        Ok(())
    }

    /// Opens or updates the alert of `firing` (see `store::alerts::raise`), audits and
    /// queues the escalation of a new one. Behavioural rules raise through it too.
    pub(super) async fn raise(
        &self,
        firing: &Firing,
        published: chrono::DateTime<Utc>,
        summary: &mut DetectSummary,
    ) -> Result<(), DetectError> {
        let now = Utc::now();
        let severity = firing.severity.as_str();
        let hit = AlertHit {
            rule_id: firing.rule_id.clone(),
            title: firing.title.clone(),
            description: self
                .rules
                .description(&firing.rule_id)
                .unwrap_or_default()
                .to_owned(),
            severity: severity.to_owned(),
            group_key: firing.group_key.clone(),
            event_uuid: firing.event_uuid.clone(),
            seen_at: published,
            window_uuids: firing.window_uuids.clone(),
            window_count: i64::try_from(firing.count).unwrap_or(i64::MAX),
            first_seen: firing.first_seen,
            dedup_window_ms: i64::try_from(firing.dedup_window_seconds.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            details: firing.observed.to_string(),
            escalation: None,
        };
        let details = serde_json::json!({ "observed": firing.observed });
        let (raised, follow_ups) =
            alert_open::open_or_update(&self.db, hit, &self.escalation, now, details, None).await?;
        if let Some(follow_ups) = follow_ups {
            summary.alerts_opened.push(raised.alert_id);
            if let Some(m) = &self.metrics {
                m.opened
                    .with_label_values(&[firing.rule_id.as_str(), severity])
                    .inc();
            }
            tracing::warn!(alert_id = raised.alert_id, rule = %firing.rule_id, severity,
                group_key = %firing.group_key, "alert opened");
            self.audit.record(follow_ups.audit).await;
            // Escalation looks at the new alert now (its first level may be due at once).
            if let Some((job, key)) = follow_ups.escalate
                && let Err(e) = self.engine.enqueue_job(&job, Some(key)).await
            {
                // The cron run picks it up within a minute.
                tracing::warn!(alert_id = raised.alert_id, error = %e,
                    "could not queue the new alert's escalation run");
            }
        } else if raised.linked {
            summary.alerts_updated.push(raised.alert_id);
            if let Some(m) = &self.metrics {
                m.updated
                    .with_label_values(&[firing.rule_id.as_str()])
                    .inc();
            }
        }
        Ok(())
    }
}

impl NewEventsSink for Detector {
    fn sweep(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.sweep_at(Utc::now()).await {
                if let Some(m) = &self.metrics {
                    m.errors.inc();
                }
                tracing::error!(error = %e, "the detection sweep failed; the next run retries");
            }
        })
    }

    fn on_new_events<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=ATTEMPTS {
                match self.detect_and_mark(events).await {
                    Ok(summary) => {
                        if !summary.alerts_opened.is_empty() || !summary.alerts_updated.is_empty() {
                            tracing::info!(?summary, "detection");
                        }
                        return;
                    }
                    Err(e) if attempt < ATTEMPTS => {
                        tracing::warn!(error = %e, attempt, "detection failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 4;
                    }
                    Err(e) => {
                        if let Some(m) = &self.metrics {
                            m.errors.inc();
                        }
                        tracing::error!(error = %e, events = events.len(),
                            "detection failed for a batch of events; the next sweep retries them");
                    }
                }
            }
        })
    }
}
