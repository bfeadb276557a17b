//! Behavioural rules on their schedule: the `behavioural_rules` schedule queues an
//! `alert_escalation` job with `behavioural = true` (each tick claimed once across every
//! instance, as for every schedule); its run asks the stored events each enabled
//! behavioural rule's questions ([`vigil_store::behaviour`]) and raises a finding through
//! the same path as the event rules ([`Detector`]'s `raise`: one alert per rule and user,
//! updated within the dedup window, escalated, audited).
//!
//! A finding names one event (the app open that completed a burst, the unusual sign-in). A
//! finding whose event is already linked to an alert of the rule is skipped, so runs that
//! overlap, repeat or come after the alert was resolved raise nothing new.
//!
//! - SWA burst: each run looks back twice the window, so a burst is seen whole as long as
//!   runs are at most one window apart (default: every 5 minutes, 10-minute window). A
//!   `GROUP BY` finds users with enough distinct apps in that span, then each one's opens
//!   are scanned for a window that holds them ([`swa_burst`]).
//! - Unusual hour: the successful sign-ins of the last `lookback_seconds`, against each
//!   user's sign-ins per hour of the day over the `baseline_days` before ([`usual_share`]).

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use vigil_rules::Firing;
use vigil_rules::behaviour::{
    Behaviour, BehaviouralRule, SwaAppBurst, UnusualSigninHour, hour_of_day, swa_burst, usual_share,
};
use vigil_store::behaviour as queries;
use vigil_store::time::from_millis;

use super::detector::DetectError;
use super::{DetectSummary, Detector};

/// Users with a burst looked at per run.
const SWA_USERS: u32 = 500;
/// A user's newest app opens scanned per run.
const OPENS_PER_USER: u32 = 2000;
/// Sign-ins judged per run (the oldest first; the rest wait for the next run while they
/// stay within the lookback).
const SIGNINS_PER_RUN: u32 = 5000;
/// Event uuids linked to a new alert.
const MAX_LINKED: usize = 200;

impl Detector {
    /// Runs every enabled behavioural rule over the stored events as of `now` and raises
    /// what they find.
    pub async fn detect_behaviour(&self, now: DateTime<Utc>) -> Result<DetectSummary, DetectError> {
        let mut summary = DetectSummary::default();
        for rule in self.rules.behavioural() {
            let (examined, findings) = match &rule.behaviour {
                Behaviour::SwaAppBurst(s) => self.swa_bursts(rule, s, now).await?,
                Behaviour::UnusualSigninHour(s) => self.unusual_hours(rule, s, now).await?,
            };
            summary.events += examined;
            for (firing, published) in findings {
                if queries::already_raised(&self.db, rule.id, &firing.event_uuid).await? {
                    continue;
                }
                summary.matches += 1;
                if let Some(m) = &self.metrics {
                    m.matches.with_label_values(&[rule.id]).inc();
                }
                self.raise(&firing, published, &mut summary).await?;
            }
        }
        Ok(summary)
    }

    async fn swa_bursts(
        &self,
        rule: &BehaviouralRule,
        s: &SwaAppBurst,
        now: DateTime<Utc>,
    ) -> Result<(u64, Vec<(Firing, DateTime<Utc>)>), DetectError> {
        let window = Duration::seconds(i64::try_from(s.window_seconds).unwrap_or(86_400));
        let since = now - window * 2;
        let users = queries::swa_candidates(
            &self.db,
            &s.sign_on_modes,
            since,
            now,
            s.distinct_apps,
            SWA_USERS,
        )
        .await?;
        let mut examined = 0;
        let mut findings = Vec::new();
        for user in users {
            let opens = queries::app_opens(
                &self.db,
                &user,
                &s.sign_on_modes,
                since,
                now,
                OPENS_PER_USER,
            )
            .await?;
            examined += opens.len() as u64;
            let Some(burst) = swa_burst(&opens, window.num_milliseconds(), s.distinct_apps) else {
                continue;
            };
            let count = burst.uuids.len() as u64;
            let observed = json!({
                "distinct_apps": burst.apps.len(),
                "apps": burst.apps.iter().take(50).collect::<Vec<_>>(),
                "opens": count,
                "window_seconds": s.window_seconds,
            });
            let published = from_millis(burst.last.published_ms);
            let mut uuids = burst.uuids;
            uuids.drain(..uuids.len().saturating_sub(MAX_LINKED));
            findings.push((
                firing(
                    rule,
                    user,
                    burst.last.uuid,
                    uuids,
                    observed,
                    count,
                    from_millis(burst.first_ms),
                ),
                published,
            ));
        }
        Ok((examined, findings))
    }

    async fn unusual_hours(
        &self,
        rule: &BehaviouralRule,
        s: &UnusualSigninHour,
        now: DateTime<Utc>,
    ) -> Result<(u64, Vec<(Firing, DateTime<Utc>)>), DetectError> {
        let since = now - Duration::seconds(i64::try_from(s.lookback_seconds).unwrap_or(3600));
        let signins =
            queries::signins(&self.db, &s.event_types, since, now, SIGNINS_PER_RUN).await?;
        let mut actors: Vec<String> = signins.iter().map(|e| e.actor.clone()).collect();
        actors.sort();
        actors.dedup();
        let baseline_start = since - Duration::days(i64::try_from(s.baseline_days).unwrap_or(30));
        let baselines =
            queries::signin_hours(&self.db, &s.event_types, &actors, baseline_start, since).await?;
        let mut findings = Vec::new();
        for signin in &signins {
            let Some(hours) = baselines.get(&signin.actor) else {
                continue;
            };
            let total: u64 = hours.iter().sum();
            if total < s.min_baseline_signins {
                continue;
            }
            let hour = hour_of_day(signin.published.timestamp_millis());
            let share = usual_share(hours, hour, s.tolerance_hours);
            if share > s.max_share {
                continue;
            }
            let usual: Vec<usize> = (0..24).filter(|h| hours[*h] > 0).collect();
            let observed = json!({
                "hour_utc": hour,
                "baseline_signins": total,
                "baseline_days": s.baseline_days,
                "share_within_tolerance": share,
                "tolerance_hours": s.tolerance_hours,
                "usual_hours_utc": usual,
            });
            findings.push((
                firing(
                    rule,
                    signin.actor.clone(),
                    signin.uuid.clone(),
                    vec![signin.uuid.clone()],
                    observed,
                    1,
                    signin.published,
                ),
                signin.published,
            ));
        }
        Ok((signins.len() as u64, findings))
    }
}

/// A behavioural finding in the shape event rules fire in.
fn firing(
    rule: &BehaviouralRule,
    user: String,
    event_uuid: String,
    window_uuids: Vec<String>,
    observed: serde_json::Value,
    count: u64,
    first_seen: DateTime<Utc>,
) -> Firing {
    Firing {
        rule_id: rule.id.to_owned(),
        title: rule.title.to_owned(),
        severity: rule.severity,
        group_key: user,
        event_uuid,
        window_uuids,
        observed,
        count,
        first_seen,
        dedup_window_seconds: rule.dedup_window_seconds,
    }
}
