//! Behavioural rules: questions asked of a user's stored events on a schedule, where one
//! event alone says nothing. The SQL lives in `vigil-store` (`behaviour.rs`), the runs in
//! the workers' detector; this module holds their settings (`[rules.behavioural.<id>]`)
//! and the arithmetic, so both can be tested without a database.
//!
//! - [`SWA_APP_BURST`]: one user opening at least `distinct_apps` different SWA apps
//!   (`user.authentication.sso` to an app whose sign-on mode is one of `sign_on_modes`)
//!   within `window_seconds` ([`swa_burst`]).
//! - [`UNUSUAL_SIGNIN_HOUR`]: a successful sign-in at an hour of the day (UTC) the user
//!   almost never signs in at. The baseline is the user's own successful sign-ins of the
//!   `baseline_days` before the checked period, counted per hour of the day; a sign-in at
//!   hour h is unusual when the user has at least `min_baseline_signins` of them and at
//!   most `max_share` of them lie within `tolerance_hours` of h on the 24-hour clock
//!   ([`usual_share`]).
//!
//! ```toml
//! [rules.behavioural.okta_swa_app_burst]
//! window_seconds = 600
//! distinct_apps = 10
//! [rules.behavioural.okta_unusual_signin_hour]
//! enabled = false
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::rule::{RuleError, Severity};

/// Many distinct SWA apps opened by one user in a short time.
pub const SWA_APP_BURST: &str = "okta_swa_app_burst";
/// A sign-in far outside the user's usual hours.
pub const UNUSUAL_SIGNIN_HOUR: &str = "okta_unusual_signin_hour";

const HOUR_MS: i64 = 3_600_000;

/// `[rules.behavioural]`: one table per behavioural rule, by rule id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviouralSettings {
    pub okta_swa_app_burst: SwaAppBurst,
    pub okta_unusual_signin_hour: UnusualSigninHour,
}

/// `[rules.behavioural.okta_swa_app_burst]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwaAppBurst {
    pub enabled: bool,
    pub severity: Severity,
    /// The sliding window the apps are counted in.
    pub window_seconds: u64,
    /// Fires at this many distinct apps within the window.
    pub distinct_apps: u64,
    /// `target[type=AppInstance].detailEntry.signOnModeType` values that make an SWA app.
    pub sign_on_modes: Vec<String>,
    /// A later burst of the same user within this long updates the open alert.
    pub dedup_window_seconds: u64,
}

impl Default for SwaAppBurst {
    fn default() -> Self {
        SwaAppBurst {
            enabled: true,
            severity: Severity::Medium,
            window_seconds: 600,
            distinct_apps: 10,
            sign_on_modes: [
                "BROWSER_PLUGIN",
                "AUTO_LOGIN",
                "SECURE_PASSWORD_STORE",
                "BASIC_AUTH",
            ]
            .map(str::to_owned)
            .to_vec(),
            dedup_window_seconds: 3600,
        }
    }
}

/// `[rules.behavioural.okta_unusual_signin_hour]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnusualSigninHour {
    pub enabled: bool,
    pub severity: Severity,
    /// Successful events of these types are sign-ins.
    pub event_types: Vec<String>,
    /// Each run checks the sign-ins of this long before it (overlapping runs change
    /// nothing: a sign-in raises once).
    pub lookback_seconds: u64,
    /// The baseline: the user's sign-ins of this many days before the checked period.
    pub baseline_days: u64,
    /// Users with fewer baseline sign-ins are not judged (no habit known yet).
    pub min_baseline_signins: u64,
    /// Hours either side of a sign-in's hour that count as the same time of day.
    pub tolerance_hours: u32,
    /// Unusual when at most this share (0..1) of the baseline lies within the tolerance.
    pub max_share: f64,
    pub dedup_window_seconds: u64,
}

impl Default for UnusualSigninHour {
    fn default() -> Self {
        UnusualSigninHour {
            enabled: true,
            severity: Severity::Medium,
            event_types: vec!["user.session.start".to_owned()],
            lookback_seconds: 3600,
            baseline_days: 30,
            min_baseline_signins: 20,
            tolerance_hours: 2,
            max_share: 0.02,
            dedup_window_seconds: 86_400,
        }
    }
}

/// What a behavioural rule looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    SwaAppBurst(SwaAppBurst),
    UnusualSigninHour(UnusualSigninHour),
}

/// An enabled behavioural rule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct BehaviouralRule {
    pub id: &'static str,
    pub title: &'static str,
    pub description: String,
    pub severity: Severity,
    pub dedup_window_seconds: u64,
    pub behaviour: Behaviour,
}

impl BehaviouralRule {
    /// The `FIRES WHEN` column of `vigil rules list`.
    pub fn fires_when(&self) -> String {
        match &self.behaviour {
            Behaviour::SwaAppBurst(s) => {
                let w = s.window_seconds;
                let window = if w % 60 == 0 {
                    format!("{}m", w / 60)
                } else {
                    format!("{w}s")
                };
                format!("{} SWA apps in {window} by user", s.distinct_apps)
            }
            Behaviour::UnusualSigninHour(s) => format!(
                "sign-in hour ≤{}% of {}d baseline",
                s.max_share * 100.0,
                s.baseline_days
            ),
        }
    }
}

impl BehaviouralSettings {
    /// The enabled rules (checked), and the ids of the disabled ones.
    pub fn compile(&self) -> Result<(Vec<BehaviouralRule>, Vec<String>), RuleError> {
        let fail = |rule: &str, key: &str, message: &str| RuleError {
            rule: rule.to_owned(),
            key: format!("rules.behavioural.{rule}.{key}"),
            message: message.to_owned(),
        };
        let mut rules = Vec::new();
        let mut disabled = Vec::new();
        let s = &self.okta_swa_app_burst;
        if !(1..=86_400).contains(&s.window_seconds) {
            return Err(fail(
                SWA_APP_BURST,
                "window_seconds",
                "must be between 1 and 86400",
            ));
        }
        if !(2..=1000).contains(&s.distinct_apps) {
            return Err(fail(
                SWA_APP_BURST,
                "distinct_apps",
                "must be between 2 and 1000",
            ));
        }
        if s.sign_on_modes.is_empty() {
            return Err(fail(
                SWA_APP_BURST,
                "sign_on_modes",
                "must name at least one mode",
            ));
        }
        if s.enabled {
            rules.push(BehaviouralRule {
                id: SWA_APP_BURST,
                title: "Many SWA apps opened in a short time",
                description: format!(
                    "One user signed in to {} or more distinct SWA apps (user.authentication.sso, \
                     sign-on mode {}) within {} seconds, as a stored-event query run on the \
                     behavioural_rules schedule.",
                    s.distinct_apps,
                    s.sign_on_modes.join(", "),
                    s.window_seconds
                ),
                severity: s.severity,
                dedup_window_seconds: s.dedup_window_seconds,
                behaviour: Behaviour::SwaAppBurst(s.clone()),
            });
        } else {
            disabled.push(SWA_APP_BURST.to_owned());
        }
        let u = &self.okta_unusual_signin_hour;
        if u.event_types.is_empty() {
            return Err(fail(
                UNUSUAL_SIGNIN_HOUR,
                "event_types",
                "must name at least one type",
            ));
        }
        if !(60..=7 * 86_400).contains(&u.lookback_seconds) {
            return Err(fail(
                UNUSUAL_SIGNIN_HOUR,
                "lookback_seconds",
                "must be between 60 and 604800",
            ));
        }
        if !(1..=365).contains(&u.baseline_days) {
            return Err(fail(
                UNUSUAL_SIGNIN_HOUR,
                "baseline_days",
                "must be between 1 and 365",
            ));
        }
        if u.min_baseline_signins == 0 {
            return Err(fail(
                UNUSUAL_SIGNIN_HOUR,
                "min_baseline_signins",
                "must be at least 1",
            ));
        }
        if u.tolerance_hours > 11 {
            return Err(fail(
                UNUSUAL_SIGNIN_HOUR,
                "tolerance_hours",
                "must be between 0 and 11",
            ));
        }
        if !(0.0..1.0).contains(&u.max_share) {
            return Err(fail(
                UNUSUAL_SIGNIN_HOUR,
                "max_share",
                "must be at least 0 and below 1",
            ));
        }
        if u.enabled {
            rules.push(BehaviouralRule {
                id: UNUSUAL_SIGNIN_HOUR,
                title: "Sign-in far outside the user's usual hours",
                description: format!(
                    "A successful sign-in ({}) at an hour of the day (UTC) when at most {}% of \
                     the user's own sign-ins of the {} days before fell within {} hours of it \
                     (judged once the user has {} such sign-ins).",
                    u.event_types.join(", "),
                    u.max_share * 100.0,
                    u.baseline_days,
                    u.tolerance_hours,
                    u.min_baseline_signins
                ),
                severity: u.severity,
                dedup_window_seconds: u.dedup_window_seconds,
                behaviour: Behaviour::UnusualSigninHour(u.clone()),
            });
        } else {
            disabled.push(UNUSUAL_SIGNIN_HOUR.to_owned());
        }
        Ok((rules, disabled))
    }
}

/// The hour of the day (0..24, UTC) of an epoch-millisecond time.
pub fn hour_of_day(ms: i64) -> u32 {
    // `rem_euclid` keeps times before 1970 in 0..24 too; the result fits a u32.
    u32::try_from(ms.div_euclid(HOUR_MS).rem_euclid(24)).unwrap_or(0)
}

/// The share (0..=1) of `hours`' sign-ins (a count per hour of the day) that lie within
/// `tolerance` hours of `hour` on the 24-hour clock (23:00 is one hour from 00:00); 0 for
/// an empty baseline.
pub fn usual_share(hours: &[u64; 24], hour: u32, tolerance: u32) -> f64 {
    let total: u64 = hours.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let near: u64 = (0..24u32)
        .filter(|h| {
            let d = h.abs_diff(hour % 24);
            d.min(24 - d) <= tolerance
        })
        .map(|h| hours[h as usize])
        .sum();
    near as f64 / total as f64
}

/// One SWA app opened: the event, its time, the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOpen {
    pub uuid: String,
    pub published_ms: i64,
    pub app: String,
}

/// The latest window of one user's app opens that meets the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// The open that completed it (the alert's event).
    pub last: AppOpen,
    /// Every open of the window, oldest first.
    pub uuids: Vec<String>,
    pub first_ms: i64,
    /// Distinct apps in the window, sorted.
    pub apps: Vec<String>,
}

/// The latest open whose trailing window (`window_ms` long, ending at it) holds at least
/// `min_apps` distinct apps, with that window; `None` when no window does. `opens` are in
/// time order. Deterministic for the same opens, so a rerun names the same event.
pub fn swa_burst(opens: &[AppOpen], window_ms: i64, min_apps: u64) -> Option<Burst> {
    let mut counts: HashMap<&str, u32> = HashMap::new();
    let mut start = 0;
    let mut found: Option<(usize, usize)> = None;
    for (end, open) in opens.iter().enumerate() {
        *counts.entry(open.app.as_str()).or_default() += 1;
        while opens[start].published_ms <= open.published_ms - window_ms {
            let app = opens[start].app.as_str();
            if let Some(n) = counts.get_mut(app) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(app);
                }
            }
            start += 1;
        }
        if counts.len() as u64 >= min_apps {
            found = Some((start, end));
        }
    }
    let (start, end) = found?;
    let window = &opens[start..=end];
    let mut apps: Vec<String> = window.iter().map(|o| o.app.clone()).collect();
    apps.sort();
    apps.dedup();
    Some(Burst {
        last: opens[end].clone(),
        uuids: window.iter().map(|o| o.uuid.clone()).collect(),
        first_ms: window[0].published_ms,
        apps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(i: i64, app: &str) -> AppOpen {
        AppOpen {
            uuid: format!("e{i}"),
            published_ms: i * 60_000,
            app: app.to_owned(),
        }
    }

    #[test]
    fn a_burst_is_the_latest_window_with_enough_apps() {
        // Apps a, b, c one minute apart, then a again, then d far later.
        let opens = [
            open(0, "a"),
            open(1, "b"),
            open(2, "c"),
            open(3, "a"),
            open(30, "d"),
        ];
        let b = swa_burst(&opens, 5 * 60_000, 3).unwrap();
        assert_eq!(b.last.uuid, "e3");
        assert_eq!(b.uuids, ["e0", "e1", "e2", "e3"]);
        assert_eq!(b.apps, ["a", "b", "c"]);
        // The same app many times is one app; a window too short sees fewer.
        assert_eq!(swa_burst(&opens, 2 * 60_000, 3), None);
        let same: Vec<AppOpen> = (0..20).map(|i| open(i, "a")).collect();
        assert_eq!(swa_burst(&same, 3_600_000, 2), None);
    }

    #[test]
    fn usual_share_wraps_around_midnight() {
        let mut hours = [0u64; 24];
        hours[23] = 5;
        hours[9] = 15;
        assert_eq!(usual_share(&hours, 0, 1), 0.25);
        assert_eq!(usual_share(&hours, 10, 1), 0.75);
        assert_eq!(usual_share(&hours, 16, 2), 0.0);
        assert_eq!(usual_share(&[0; 24], 3, 2), 0.0);
        assert_eq!(hour_of_day(0), 0);
        assert_eq!(hour_of_day(25 * HOUR_MS + 5), 1);
        assert_eq!(hour_of_day(-1), 23);
    }

    #[test]
    fn settings_are_checked() {
        let (rules, disabled) = BehaviouralSettings::default().compile().unwrap();
        assert_eq!(rules.len(), 2);
        assert!(disabled.is_empty());
        let mut s = BehaviouralSettings::default();
        s.okta_swa_app_burst.distinct_apps = 1;
        assert_eq!(
            s.compile().unwrap_err().to_string(),
            "rule `okta_swa_app_burst`: rules.behavioural.okta_swa_app_burst.distinct_apps: \
             must be between 2 and 1000"
        );
        let mut s = BehaviouralSettings::default();
        s.okta_unusual_signin_hour.enabled = false;
        let (rules, disabled) = s.compile().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(disabled, [UNUSUAL_SIGNIN_HOUR]);
    }
}
