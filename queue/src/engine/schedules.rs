//! Schedules at run time: claiming a tick (once across every instance), each schedule's runs
//! (the last one, and a bounded history of the last [`HISTORY`]), and switching a schedule
//! off and on for every instance at once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::error::EngineError;
use crate::model::{Enqueued, NewJob, ScheduleRun};
use crate::settings::ScheduleSettings;

/// How many runs of each schedule are kept.
pub const HISTORY: usize = 50;

/// Who switched a schedule off, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleOff {
    pub by: String,
    pub at: DateTime<Utc>,
}

impl Engine {
    /// Enqueues `s`'s job for one run and records the run (its job, or why it could not be
    /// enqueued). `tick` is the cron tick (the job's idempotency key, so a tick enqueues
    /// once), or `None` for a run by hand, which `by` names.
    pub async fn run_schedule(
        &self,
        name: &str,
        s: &ScheduleSettings,
        tick: Option<DateTime<Utc>>,
        by: Option<&str>,
    ) -> (ScheduleRun, Result<Enqueued, EngineError>) {
        let at = tick.unwrap_or_else(Utc::now);
        let job = NewJob {
            idempotency_key: tick.map(|t| format!("schedule:{name}:{}", t.timestamp_millis())),
            ..NewJob::new(s.queue, s.payload.clone())
        };
        let outcome = self.enqueue(job).await;
        let run = ScheduleRun {
            schedule: name.to_owned(),
            tick: at,
            job_id: outcome.as_ref().ok().map(|e| e.job.id.clone()),
            error: outcome.as_ref().err().map(ToString::to_string),
            manual_by: by.map(str::to_owned),
        };
        if let Err(e) = self.record_schedule_run(&run).await {
            tracing::warn!(schedule = name, error = %e, "could not record the schedule run");
        }
        (run, outcome)
    }

    /// Claims one tick of a schedule; true for exactly one caller across all instances.
    pub async fn claim_tick(
        &self,
        schedule: &str,
        tick: DateTime<Utc>,
    ) -> Result<bool, EngineError> {
        let mut c = self.conn.clone();
        let claimed: Option<String> = redis::cmd("SET")
            .arg(self.keys.tick(schedule, tick.timestamp_millis()))
            .arg(Utc::now().to_rfc3339())
            .arg("NX")
            .arg("EX")
            .arg(86_400)
            .query_async(&mut c)
            .await?;
        Ok(claimed.is_some())
    }

    /// Records a run of a schedule: its last run, and the head of its history (the last
    /// [`HISTORY`] runs).
    pub async fn record_schedule_run(&self, run: &ScheduleRun) -> Result<(), EngineError> {
        let json = serde_json::to_string(run).map_err(EngineError::Encode)?;
        let history = self.keys.schedule_history(&run.schedule);
        let mut c = self.conn.clone();
        let _: () = c
            .hset(self.keys.schedule_runs(), &run.schedule, &json)
            .await?;
        // Push and trim in one round trip (one key: one slot on a Cluster).
        let mut pipe = redis::pipe();
        pipe.lpush(&history, &json)
            .ignore()
            .ltrim(&history, 0, HISTORY as isize - 1)
            .ignore();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// The last `n` runs of `schedule` (at most [`HISTORY`]), newest first.
    pub async fn schedule_history(
        &self,
        schedule: &str,
        n: usize,
    ) -> Result<Vec<ScheduleRun>, EngineError> {
        let n = n.clamp(1, HISTORY);
        let mut c = self.conn.clone();
        let raw: Vec<String> = c
            .lrange(self.keys.schedule_history(schedule), 0, n as isize - 1)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect())
    }

    /// Switches `schedule` off for every instance (its ticks are skipped until it is switched
    /// on again); `by` says who.
    pub async fn disable_schedule(
        &self,
        schedule: &str,
        by: &str,
    ) -> Result<ScheduleOff, EngineError> {
        let off = ScheduleOff {
            by: by.to_owned(),
            at: Utc::now(),
        };
        let json = serde_json::to_string(&off).map_err(EngineError::Encode)?;
        let mut c = self.conn.clone();
        let _: () = c.hset(self.keys.schedules_off(), schedule, json).await?;
        Ok(off)
    }

    /// Switches `schedule` on again; false when it was not off.
    pub async fn enable_schedule(&self, schedule: &str) -> Result<bool, EngineError> {
        let mut c = self.conn.clone();
        let removed: u64 = c.hdel(self.keys.schedules_off(), schedule).await?;
        Ok(removed > 0)
    }

    /// The schedules switched off at run time, by name.
    pub async fn schedules_off(&self) -> Result<HashMap<String, ScheduleOff>, EngineError> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> = c.hgetall(self.keys.schedules_off()).await?;
        Ok(map
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|off| (k, off)))
            .collect())
    }

    /// Whether `schedule` is switched off at run time.
    pub async fn is_schedule_off(&self, schedule: &str) -> Result<bool, EngineError> {
        let mut c = self.conn.clone();
        Ok(c.hexists(self.keys.schedules_off(), schedule).await?)
    }

    /// The last run of every schedule that ever ran.
    pub async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, EngineError> {
        let mut c = self.conn.clone();
        let map: HashMap<String, String> = c.hgetall(self.keys.schedule_runs()).await?;
        let mut runs: Vec<ScheduleRun> = map
            .values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect();
        runs.sort_by(|a, b| a.schedule.cmp(&b.schedule));
        Ok(runs)
    }
}
