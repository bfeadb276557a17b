//! Schedules: cron expressions (6 fields, seconds first, UTC) and their next ticks.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::model::{ScheduleInfo, ScheduleRun};
use crate::settings::SchedulesSettings;

/// A cron expression that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("schedule `{name}`: invalid cron expression `{cron}`: {reason}")]
pub struct ScheduleError {
    pub name: String,
    pub cron: String,
    pub reason: String,
}

/// The first tick of `cron` strictly after `after`.
pub fn next_tick(
    name: &str,
    cron: &str,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    let schedule = cron::Schedule::from_str(cron).map_err(|e| ScheduleError {
        name: name.to_owned(),
        cron: cron.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(schedule.after(&after).next())
}

/// Every schedule with its next run (from `now`) and its last run (from `runs`).
pub fn schedules(
    settings: &SchedulesSettings,
    runs: &[ScheduleRun],
    now: DateTime<Utc>,
) -> Vec<ScheduleInfo> {
    settings
        .0
        .iter()
        .map(|(name, s)| ScheduleInfo {
            name: name.clone(),
            cron: s.cron.clone(),
            queue: s.queue,
            enabled: s.enabled,
            next_run: if s.enabled {
                next_tick(name, &s.cron, now).ok().flatten()
            } else {
                None
            },
            last_run: runs.iter().find(|r| &r.schedule == name).cloned(),
        })
        .collect()
}

/// Checks every expression (config validation).
pub fn validate(settings: &SchedulesSettings) -> Result<(), ScheduleError> {
    for (name, s) in &settings.0 {
        next_tick(name, &s.cron, Utc::now())?;
    }
    Ok(())
}
