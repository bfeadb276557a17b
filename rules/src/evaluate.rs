//! Running the rules on one event.
//!
//! For each enabled rule: does the event pass its match? If the rule has no threshold, a
//! match fires it. If it has one, the event joins the rule's window for its grouping key
//! (the [`WindowStore`]) and the rule fires when the window now meets the threshold. The
//! clock is the event's `published` time, so backfills, late events and `vigil rules test`
//! sequences behave as they did when they happened.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::field::FieldPath;
use crate::rule::{Severity, Threshold};
use crate::settings::RuleSet;
use crate::window::{
    Observation, RecentQuery, SessionObservation, WindowError, WindowStats, WindowStore,
};

/// What the rules made of one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub uuid: String,
    pub published: DateTime<Utc>,
    /// Rules whose match the event passes.
    pub matches: Vec<String>,
    /// Rules that fire on this event (raise or update an alert).
    pub firings: Vec<Firing>,
}

/// A rule that fired: what the alert needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub rule_id: String,
    pub title: String,
    pub severity: Severity,
    pub group_key: String,
    /// The event that fired it.
    pub event_uuid: String,
    /// The window's newest events when it fired (at most 200; just this one without a
    /// threshold).
    pub window_uuids: Vec<String>,
    /// The figures that met the threshold (`count`, distinct counts, spread).
    pub observed: Value,
    /// Matching events in the window (1 without a threshold).
    pub count: u64,
    /// The window's oldest event time (this event's without a threshold).
    pub first_seen: DateTime<Utc>,
    pub dedup_window_seconds: u64,
}

impl RuleSet {
    /// Evaluates every enabled rule on `event` (an Okta LogEvent as JSON).
    pub async fn evaluate(
        &self,
        event: &Value,
        windows: &dyn WindowStore,
    ) -> Result<Evaluation, WindowError> {
        let mut all = self
            .evaluate_all(std::slice::from_ref(event), windows)
            .await?;
        Ok(all.remove(0))
    }

    /// Evaluates `events` in order, with the same results as one by one, but with two
    /// round trips to the window store for the whole batch: every window observation goes
    /// in one pipeline (the store applies them in order, so each event sees the ones before
    /// it), then one lookup of recent events for the rules that fired.
    pub async fn evaluate_all(
        &self,
        events: &[Value],
        windows: &dyn WindowStore,
    ) -> Result<Vec<Evaluation>, WindowError> {
        // 1. Matches; threshold rules become window observations.
        let mut evaluations = Vec::with_capacity(events.len());
        let mut pending: Vec<Pending> = Vec::new();
        let mut observations: Vec<Observation> = Vec::new();
        let mut after_queries: Vec<RecentQuery> = Vec::new();
        let mut sessions: Vec<SessionObservation> = Vec::new();
        let mut pending_sessions: Vec<(usize, usize, std::ops::Range<usize>)> = Vec::new();
        for (e, event) in events.iter().enumerate() {
            let evaluation = Evaluation {
                uuid: text_at(event, "uuid").unwrap_or_default(),
                published: crate::time::published(event).unwrap_or_else(Utc::now),
                matches: Vec::new(),
                firings: Vec::new(),
            };
            let event_type = text_at(event, "eventType")
                .unwrap_or_default()
                .to_ascii_lowercase();
            let mut matches = Vec::new();
            for (r, rule) in self.rules().iter().enumerate() {
                if !rule.matches(&event_type, event) {
                    continue;
                }
                matches.push(rule.id.clone());
                if let Some(spec) = &rule.session {
                    let values: Vec<String> = spec
                        .network
                        .iter()
                        .chain(&spec.client)
                        .map(|f| f.first(event).unwrap_or_default())
                        .collect();
                    let first = sessions.len();
                    for (i, k) in spec.keys.iter().enumerate() {
                        // Okta writes `unknown` where there is no session: not an id.
                        let id = k
                            .first(event)
                            .filter(|v| !v.eq_ignore_ascii_case("unknown"));
                        if let Some(id) = id {
                            sessions.push(SessionObservation {
                                key: format!("{}:s{i}={id}", rule.id),
                                uuid: evaluation.uuid.clone(),
                                at_ms: evaluation.published.timestamp_millis(),
                                lifetime_ms: i64::try_from(spec.lifetime_seconds * 1000)
                                    .unwrap_or(i64::MAX),
                                values: values.clone(),
                            });
                        }
                    }
                    pending_sessions.push((e, r, first..sessions.len()));
                    continue;
                }
                let Some(group_key) = rule.group_key(event) else {
                    continue;
                };
                let observation = rule.threshold.as_ref().map(|t| {
                    observations.push(Observation {
                        key: format!("{}:{group_key}", rule.id),
                        uuid: evaluation.uuid.clone(),
                        at_ms: evaluation.published.timestamp_millis(),
                        window_ms: i64::try_from(t.window_seconds * 1000).unwrap_or(i64::MAX),
                        fields: t.tracked.iter().map(|f| f.first(event)).collect(),
                    });
                    observations.len() - 1
                });
                let after = rule.after.as_ref().map(|a| {
                    let at_ms = evaluation.published.timestamp_millis();
                    let within = i64::try_from(a.within_seconds * 1000).unwrap_or(i64::MAX);
                    after_queries.push(RecentQuery {
                        key: format!("{}:{group_key}", a.rule),
                        from_ms: at_ms - within,
                        to_ms: at_ms,
                    });
                    after_queries.len() - 1
                });
                pending.push(Pending {
                    event: e,
                    rule: r,
                    group_key,
                    observation,
                    after,
                    fired: None,
                });
            }
            evaluations.push(Evaluation {
                matches,
                ..evaluation
            });
        }
        // 2. One pipeline for every observation, in event order; then, for sequence rules,
        //    what the earlier rule's windows hold.
        let stats = windows.observe_all(&observations).await?;
        let preceding = if after_queries.is_empty() {
            Vec::new()
        } else {
            windows.count_all(&after_queries).await?
        };
        // 3. Thresholds; the recent events of each window that fired.
        let mut queries = Vec::new();
        for p in &mut pending {
            let Some(o) = p.observation else {
                continue;
            };
            let rule = &self.rules()[p.rule];
            let (Some(t), Some(st)) = (&rule.threshold, stats.get(o)) else {
                continue;
            };
            if let Some(observed) = check(t, st) {
                let obs = &observations[o];
                queries.push(RecentQuery {
                    key: obs.key.clone(),
                    from_ms: obs.at_ms - obs.window_ms,
                    to_ms: obs.at_ms,
                });
                let first = DateTime::from_timestamp_millis(st.first_ms)
                    .unwrap_or(evaluations[p.event].published);
                p.fired = Some((queries.len() - 1, observed, first));
            }
        }
        let mut recents = windows.recent_all(&queries).await?;
        let origins = if sessions.is_empty() {
            Vec::new()
        } else {
            windows.sessions_all(&sessions).await?
        };
        // Session rules: the first tracked key whose origin differs in network and client.
        for (e, r, range) in pending_sessions {
            let rule = &self.rules()[r];
            let Some(spec) = &rule.session else { continue };
            let evaluation = &mut evaluations[e];
            for i in range {
                let (obs, Some(origin)) = (&sessions[i], origins.get(i)) else {
                    continue;
                };
                let Some(observed) = session_change(spec, obs, origin) else {
                    continue;
                };
                let group_key = obs.key.split_once('=').map_or("", |(_, v)| v).to_owned();
                evaluation.firings.push(Firing {
                    rule_id: rule.id.clone(),
                    title: rule.title.clone(),
                    severity: rule.severity_for(&events[e]),
                    group_key,
                    event_uuid: evaluation.uuid.clone(),
                    window_uuids: vec![origin.uuid.clone(), evaluation.uuid.clone()],
                    observed,
                    count: 2,
                    first_seen: DateTime::from_timestamp_millis(origin.at_ms)
                        .unwrap_or(evaluation.published),
                    dedup_window_seconds: rule.dedup_window_seconds,
                });
                break;
            }
        }
        // 4. Firings, in event then rule order.
        for p in pending {
            let rule = &self.rules()[p.rule];
            let evaluation = &mut evaluations[p.event];
            let (window_uuids, observed, first_seen) = match (p.observation, p.fired) {
                (None, _) => {
                    let mut observed = json!({ "count": 1 });
                    if let (Some(a), Some(q)) = (&rule.after, p.after) {
                        let before = preceding.get(q).copied().unwrap_or(0);
                        if before < a.count {
                            continue;
                        }
                        observed[format!("{} before", a.rule)] = json!(before);
                    }
                    (
                        vec![evaluation.uuid.clone()],
                        observed,
                        evaluation.published,
                    )
                }
                (Some(_), Some((q, observed, first))) => {
                    (std::mem::take(&mut recents[q]), observed, first)
                }
                (Some(_), None) => continue,
            };
            let count = observed["count"].as_u64().unwrap_or(1);
            evaluation.firings.push(Firing {
                rule_id: rule.id.clone(),
                title: rule.title.clone(),
                severity: rule.severity_for(&events[p.event]),
                group_key: p.group_key,
                event_uuid: evaluation.uuid.clone(),
                window_uuids,
                observed,
                count,
                first_seen,
                dedup_window_seconds: rule.dedup_window_seconds,
            });
        }
        Ok(evaluations)
    }
}

/// A rule that matched an event, waiting for its window's figures.
struct Pending {
    event: usize,
    rule: usize,
    group_key: String,
    /// Index into the batch's observations (threshold rules only).
    observation: Option<usize>,
    /// Index into the sequence queries (rules with `after` only).
    after: Option<usize>,
    /// Threshold met: (index into the recent-events queries, figures, window start).
    fired: Option<(usize, Value, DateTime<Utc>)>,
}

/// Whether a session event differs from the session's first one in network (a known value
/// of a network field changed) and in client; the figures for the alert when it does.
fn session_change(
    spec: &crate::rule::SessionSpec,
    obs: &SessionObservation,
    origin: &crate::window::SessionOrigin,
) -> Option<Value> {
    if origin.uuid == obs.uuid {
        return None;
    }
    let n = spec.network.len();
    let differs = |i: usize| {
        let (a, b) = (
            obs.values.get(i).map_or("", String::as_str),
            origin.values.get(i).map_or("", String::as_str),
        );
        !a.is_empty() && !b.is_empty() && !a.eq_ignore_ascii_case(b)
    };
    let network = (0..n).any(differs);
    let client = (n..n + spec.client.len()).any(differs);
    if !(network && client) {
        return None;
    }
    let fields: Vec<String> = spec
        .network
        .iter()
        .chain(&spec.client)
        .map(|f| f.to_string())
        .collect();
    let side = |values: &[String]| -> BTreeMap<String, String> {
        fields.iter().cloned().zip(values.iter().cloned()).collect()
    };
    let (field, id) = obs
        .key
        .split_once(':')
        .and_then(|(_, k)| k.split_once('='))
        .unwrap_or(("", ""));
    let key_field = field
        .strip_prefix('s')
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| spec.keys.get(i))
        .map(|f| f.to_string())
        .unwrap_or_default();
    Some(json!({
        "count": 2,
        "session": { "field": key_field, "id": id },
        "first": side(&origin.values),
        "first_uuid": origin.uuid,
        "now": side(&obs.values),
    }))
}

/// Whether the window's figures meet the threshold; the figures for the alert when they do.
fn check(t: &Threshold, stats: &WindowStats) -> Option<Value> {
    if stats.count < t.count {
        return None;
    }
    let distinct_of = |f: &FieldPath| -> u64 {
        t.tracked
            .iter()
            .position(|g| g == f)
            .and_then(|i| stats.distinct.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut observed = BTreeMap::new();
    observed.insert("count".to_owned(), json!(stats.count));
    for (f, min) in &t.distinct {
        let n = distinct_of(f);
        observed.insert(format!("distinct {f}"), json!(n));
        if n < *min {
            return None;
        }
    }
    if !t.distinct_any.is_empty() {
        let mut any = false;
        for (f, min) in &t.distinct_any {
            let n = distinct_of(f);
            observed.insert(format!("distinct {f}"), json!(n));
            any |= n >= *min;
        }
        if !any {
            return None;
        }
    }
    if let Some((f, min, max)) = &t.per_value {
        let n = distinct_of(f);
        if n == 0 {
            return None;
        }
        let avg = stats.count as f64 / n as f64;
        observed.insert(format!("per {f} (average)"), json!(avg));
        if min.is_some_and(|m| avg < m) || max.is_some_and(|m| avg > m) {
            return None;
        }
    }
    if t.min_spread_seconds > 0 {
        let spread = (stats.last_ms - stats.first_ms) / 1000;
        observed.insert("spread_seconds".to_owned(), json!(spread));
        if spread < i64::try_from(t.min_spread_seconds).unwrap_or(i64::MAX) {
            return None;
        }
    }
    Some(json!(observed))
}

/// The text of a top-level string field, its key matched ignoring case (`eventtype` from a
/// data lake is `eventType`).
pub fn text_at(event: &Value, key: &str) -> Option<String> {
    crate::field::get_key(event, key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}
