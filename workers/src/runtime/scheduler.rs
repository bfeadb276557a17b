//! The scheduler actor: fires each enabled schedule on its cron ticks. Every instance runs
//! one; a tick enqueues exactly once across instances because it must first be claimed in
//! Redis (`claim_tick`), and the job also carries the idempotency key
//! `schedule:<name>:<tick ms>`. Ticks missed while no instance ran are not caught up. A
//! schedule switched off at run time (`Engine::disable_schedule`, the API's
//! `POST /api/v1/schedules/{name}/disable`) skips its ticks on every instance until it is
//! switched on again.
//! A tick whose job cannot be enqueued is audited as `schedule.failed` (so is a scheduled job
//! that ends dead: see `schedule_audit`).

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use vigil_queue::{Engine, ScheduleSettings, SchedulesSettings, next_tick};

use super::Metrics;
use super::health::HealthBoard;
use crate::audit::{AuditSink, EngineAuditSink, system_record};

/// Fires schedules.
pub struct Scheduler {
    engine: Engine,
    schedules: SchedulesSettings,
    health: HealthBoard,
    metrics: Metrics,
}

impl Scheduler {
    pub fn new(
        engine: Engine,
        schedules: SchedulesSettings,
        health: HealthBoard,
        metrics: Metrics,
    ) -> Self {
        Self {
            engine,
            schedules,
            health,
            metrics,
        }
    }

    fn plan(&self, name: String, after: DateTime<Utc>, ctx: &mut Context<Self>) {
        let Some(s) = self.schedules.0.get(&name) else {
            return;
        };
        let tick = match next_tick(&name, &s.cron, after) {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(schedule = %name, error = %e, "schedule disabled: invalid cron expression");
                self.health.set("scheduler", false, Some(e.to_string()));
                return;
            }
        };
        let delay = (tick - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        ctx.run_later(delay, move |act, ctx| {
            let engine = act.engine.clone();
            let settings = act.schedules.0.get(&name).cloned();
            let health = act.health.clone();
            let ticks = act.metrics.schedule_ticks.clone();
            let name2 = name.clone();
            let fire = async move {
                if let Some(s) = settings {
                    let outcome = fire(&engine, &name2, &s, tick, &health).await;
                    ticks.with_label_values(&[name2.as_str(), outcome]).inc();
                }
            };
            ctx.spawn(
                fire.into_actor(act)
                    .map(move |_, act, ctx| act.plan(name, tick, ctx)),
            );
        });
    }
}

/// Claims `tick` and enqueues the schedule's job if this instance won the claim, unless the
/// schedule is switched off. Returns the outcome for `vigil_schedule_ticks_total`.
async fn fire(
    engine: &Engine,
    name: &str,
    s: &ScheduleSettings,
    tick: DateTime<Utc>,
    health: &HealthBoard,
) -> &'static str {
    match engine.is_schedule_off(name).await {
        Ok(true) => {
            tracing::debug!(schedule = name, %tick, "schedule is switched off; tick skipped");
            return "off";
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(schedule = name, %tick, error = %e, "could not read whether the schedule is off; skipped");
            health.set("scheduler", false, Some(e.to_string()));
            return "failed";
        }
    }
    match engine.claim_tick(name, tick).await {
        Ok(false) => {
            tracing::debug!(schedule = name, %tick, "tick claimed by another instance");
            return "claimed_elsewhere";
        }
        Ok(true) => {}
        Err(e) => {
            tracing::warn!(schedule = name, %tick, error = %e, "could not claim the tick; skipped");
            health.set("scheduler", false, Some(e.to_string()));
            return "failed";
        }
    }
    match engine.run_schedule(name, s, Some(tick), None).await {
        (_, Ok(done)) => {
            tracing::info!(schedule = name, %tick, job_id = %done.job.id, queue = %s.queue, "schedule fired");
            health.set("scheduler", true, None);
            "fired"
        }
        (_, Err(e)) => {
            tracing::error!(schedule = name, %tick, error = %e, "schedule could not enqueue its job");
            health.set("scheduler", false, Some(e.to_string()));
            // Best effort: the audit queue is on the same Redis, which may be what failed.
            EngineAuditSink::new(engine.clone())
                .record(system_record(
                    format!("schedule-enqueue-failed-{name}-{}", tick.timestamp_millis()),
                    "schedule.failed",
                    ("schedule", name),
                    serde_json::json!({ "tick": tick, "queue": s.queue.as_str(),
                                        "error": e.to_string() }),
                    None,
                ))
                .await;
            "failed"
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.health.set("scheduler", true, None);
        let now = Utc::now();
        let names: Vec<String> = self
            .schedules
            .0
            .iter()
            .filter(|(_, s)| s.enabled)
            .map(|(n, _)| n.clone())
            .collect();
        tracing::info!(schedules = %names.join(","), "scheduler started");
        for name in names {
            self.plan(name, now, ctx);
        }
    }
}
