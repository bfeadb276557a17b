//! The actor runtime against a real Redis: handlers run through supervised queue actors, a
//! crashed worker is restarted and counted, health reaches Redis, schedules fire once per
//! tick across two instances, and shutdown returns unfinished jobs.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{cleanup, eventually, system};

use futures::FutureExt;
use prometheus::Registry;
use serde_json::json;
use vigil_jobs::JobStatus;
use vigil_jobs::{AlertEscalationJob, AuditJob, EmailJob, Job as _};
use vigil_queue::{Engine, EngineSettings, JobFilter, NewJob, ScheduleSettings, SchedulesSettings};
use vigil_workers::JobError;
use vigil_workers::runtime::{Handler, Runtime};

async fn engine(prefix: &str, tune: impl FnOnce(&mut EngineSettings)) -> Engine {
    common::engine(prefix, |e, _| {
        e.poll_interval_ms = 200;
        tune(e);
    })
    .await
}

fn counting_handler(ran: Arc<AtomicU64>, sleep_ms: u64) -> Handler {
    Arc::new(move |_ctx, payload| {
        let ran = ran.clone();
        async move {
            if payload["fail"].as_bool() == Some(true) {
                return Err(JobError::permanent("asked to fail"));
            }
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        .boxed()
    })
}

fn no_schedules() -> SchedulesSettings {
    SchedulesSettings(BTreeMap::new())
}

#[test]
fn queue_actors_run_handlers_and_a_crashed_worker_is_restarted_and_counted() {
    system(async {
        let prefix = vigil_testkit::redis::unique_prefix("runtime");
        let e = engine(&prefix, |_| {}).await;
        let ran = Arc::new(AtomicU64::new(0));
        let registry = Registry::new();
        let rt = Runtime::builder(e.clone(), no_schedules(), &registry)
            .handler(AuditJob::QUEUE, counting_handler(ran.clone(), 1))
            .start()
            .expect("runtime starts");
        let jobs: Vec<NewJob> = (0..50)
            .map(|i| NewJob::new(AuditJob::QUEUE, json!({ "i": i })))
            .collect();
        rt.engine().enqueue_raw(jobs).await.unwrap();
        rt.engine()
            .enqueue_raw(vec![NewJob::new(AuditJob::QUEUE, json!({"fail": true}))])
            .await
            .unwrap();
        eventually(Duration::from_secs(20), "50 done, 1 dead", || async {
            let c = e.counts(AuditJob::QUEUE).await.unwrap();
            c.done == 50 && c.dead == 1
        })
        .await;
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("vigil_jobs_succeeded_total{queue=\"audit\"} 50"),
            "{text}"
        );
        assert!(text.contains("vigil_jobs_dead_total{queue=\"audit\"} 1"));
        assert!(text.contains("vigil_jobs_enqueued_total{queue=\"audit\"} 51"));

        // Crash the worker: its actor restarts it, counts the restart, and work goes on.
        assert!(rt.crash_worker(AuditJob::QUEUE));
        eventually(Duration::from_secs(10), "restart counted", || async {
            rt.health()
                .iter()
                .any(|a| a.name == "queue:audit" && a.restarts == 1)
        })
        .await;
        rt.engine()
            .enqueue_raw(
                (0..20)
                    .map(|i| NewJob::new(AuditJob::QUEUE, json!({ "j": i })))
                    .collect(),
            )
            .await
            .unwrap();
        eventually(
            Duration::from_secs(20),
            "jobs after the restart done",
            || async { e.counts(AuditJob::QUEUE).await.unwrap().done == 70 },
        )
        .await;
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("vigil_actor_restarts_total{actor=\"queue:audit\"} 1"),
            "{text}"
        );
        // Health reaches Redis for a separate API process.
        eventually(Duration::from_secs(10), "health in Redis", || async {
            e.actors()
                .await
                .unwrap()
                .iter()
                .any(|a| a.name == "queue:audit" && a.instance == rt.instance())
        })
        .await;
        rt.shutdown().await;
        assert!(
            e.actors().await.unwrap().is_empty(),
            "a clean stop removes the report"
        );
        cleanup(&e).await;
    });
}

#[test]
fn shutdown_lets_running_jobs_finish_and_returns_the_rest() {
    system(async {
        let prefix = vigil_testkit::redis::unique_prefix("shutdown");
        let e = engine(&prefix, |s| s.shutdown_deadline_seconds = 1).await;
        let ran = Arc::new(AtomicU64::new(0));
        let rt = Runtime::builder(e.clone(), no_schedules(), &Registry::new())
            .handler(EmailJob::QUEUE, counting_handler(ran.clone(), 300))
            .start()
            .unwrap();
        // Email concurrency is 4: 4 run, 6 wait.
        rt.engine()
            .enqueue_raw(
                (0..10)
                    .map(|i| NewJob::new(EmailJob::QUEUE, json!({ "i": i })))
                    .collect(),
            )
            .await
            .unwrap();
        eventually(Duration::from_secs(10), "some running", || async {
            e.counts(EmailJob::QUEUE).await.unwrap().running > 0
        })
        .await;
        let running_at_shutdown = e.counts(EmailJob::QUEUE).await.unwrap().running;
        rt.shutdown().await;
        let c = e.counts(EmailJob::QUEUE).await.unwrap();
        assert_eq!(c.running, 0, "nothing left running");
        assert_eq!(c.done + c.pending, 10, "nothing lost: {c:?}");
        assert!(
            c.done >= running_at_shutdown.max(1),
            "every job running at shutdown finished within the deadline: {running_at_shutdown} running, {c:?}"
        );
        assert_eq!(c.done, ran.load(Ordering::SeqCst));
        cleanup(&e).await;
    });
}

/// One schedule, `name`, enqueueing an `alert_escalation` job every second.
fn every_second(name: &str) -> SchedulesSettings {
    let mut map = BTreeMap::new();
    map.insert(
        name.to_owned(),
        ScheduleSettings {
            cron: "* * * * * *".to_owned(),
            queue: AlertEscalationJob::QUEUE,
            enabled: true,
            payload: json!({}),
        },
    );
    SchedulesSettings(map)
}

#[test]
fn a_schedule_fires_once_per_tick_across_two_instances() {
    system(async {
        let prefix = vigil_testkit::redis::unique_prefix("cron");
        let schedules = every_second("escalate");
        let a = engine(&prefix, |_| {}).await;
        let b = engine(&prefix, |_| {}).await;
        // Two instances, no handlers: jobs stay pending, so they can be counted.
        let (reg_a, reg_b) = (Registry::new(), Registry::new());
        let ra = Runtime::builder(a.clone(), schedules.clone(), &reg_a)
            .start()
            .unwrap();
        let rb = Runtime::builder(b.clone(), schedules.clone(), &reg_b)
            .start()
            .unwrap();
        let pending = || async {
            a.list(&JobFilter {
                queue: Some(AlertEscalationJob::QUEUE),
                status: Some(JobStatus::Pending),
                page: 1,
                page_size: 100,
            })
            .await
            .unwrap()
        };
        common::eventually(Duration::from_secs(30), "three ticks fired", || async {
            pending().await.jobs.len() >= 3
        })
        .await;
        ra.shutdown().await;
        rb.shutdown().await;
        let page = pending().await;
        let keys: HashSet<String> = page
            .jobs
            .iter()
            .filter_map(|j| j.idempotency_key.clone())
            .collect();
        assert_eq!(keys.len(), page.jobs.len(), "no tick produced two jobs");
        // Each tick was claimed by exactly one instance: the instances fired as many times
        // in total as there are jobs (the idempotency key alone would hide a double fire).
        let fired = ticks(&reg_a, "fired") + ticks(&reg_b, "fired");
        assert_eq!(fired as usize, page.jobs.len(), "each tick fired once");
        assert!(ticks(&reg_a, "claimed_elsewhere") + ticks(&reg_b, "claimed_elsewhere") > 0.0);
        let runs = a.schedule_runs().await.unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].job_id.is_some());
        cleanup(&a).await;
    });
}

/// `vigil_schedule_ticks_total` of `outcome` in `r`.
fn ticks(r: &Registry, outcome: &str) -> f64 {
    r.gather()
        .iter()
        .filter(|f| f.name() == "vigil_schedule_ticks_total")
        .flat_map(|f| f.get_metric().to_vec())
        .filter(|m| m.get_label().iter().any(|l| l.value() == outcome))
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[test]
fn a_schedule_switched_off_skips_its_ticks_until_switched_on() {
    system(async {
        let prefix = vigil_testkit::redis::unique_prefix("cron-off");
        let e = engine(&prefix, |_| {}).await;
        let off = e.disable_schedule("escalate", "user:alice").await.unwrap();
        assert_eq!(off.by, "user:alice");
        let registry = Registry::new();
        let rt = Runtime::builder(e.clone(), every_second("escalate"), &registry)
            .start()
            .unwrap();
        let jobs = || async { e.counts(AlertEscalationJob::QUEUE).await.unwrap().pending };
        // Off: ticks come and are skipped; nothing is enqueued.
        common::eventually(Duration::from_secs(20), "two ticks skipped", || async {
            ticks(&registry, "off") >= 2.0
        })
        .await;
        assert_eq!(jobs().await, 0, "no job while the schedule is off");
        assert_eq!(ticks(&registry, "fired"), 0.0);
        // On again: the next tick fires, without a restart.
        assert!(e.enable_schedule("escalate").await.unwrap());
        assert!(!e.enable_schedule("escalate").await.unwrap(), "already on");
        common::eventually(Duration::from_secs(20), "a tick fired", || async {
            jobs().await >= 1
        })
        .await;
        assert!(ticks(&registry, "fired") >= 1.0);
        let history = e.schedule_history("escalate", 10).await.unwrap();
        assert!(!history.is_empty() && history[0].manual_by.is_none());
        rt.shutdown().await;
        cleanup(&e).await;
    });
}

#[test]
fn scheduled_runs_that_fail_are_audited_with_their_schedule_and_error() {
    system(async {
        let prefix = vigil_testkit::redis::unique_prefix("cron-fail");
        let schedule = |payload: serde_json::Value| ScheduleSettings {
            cron: "* * * * * *".to_owned(),
            queue: EmailJob::QUEUE,
            enabled: true,
            payload,
        };
        let mut map = BTreeMap::new();
        // A job that fails for good, and a payload that cannot even be enqueued.
        map.insert(
            "nightly_report".to_owned(),
            schedule(
                json!({"to": ["soc@example.com"], "subject": "report", "body": {"text": "x"}}),
            ),
        );
        map.insert("broken".to_owned(), schedule(json!({"fail": true})));
        let e = engine(&prefix, |_| {}).await;
        let always_fails: Handler = Arc::new(|_ctx, _payload| {
            async { Err(JobError::permanent("SMTP said 554 no")) }.boxed()
        });
        let rt = Runtime::builder(e.clone(), SchedulesSettings(map), &Registry::new())
            .handler(EmailJob::QUEUE, always_fails)
            .start()
            .unwrap();
        let audited = |target: &'static str| {
            let e = e.clone();
            async move {
                common::jobs(&e, AuditJob::QUEUE)
                    .await
                    .into_iter()
                    .map(|j| j.payload)
                    .filter(|p| p["action"] == "schedule.failed" && p["target_id"] == target)
                    .collect::<Vec<_>>()
            }
        };
        eventually(
            Duration::from_secs(10),
            "schedule.failed records",
            || async {
                !audited("nightly_report").await.is_empty() && !audited("broken").await.is_empty()
            },
        )
        .await;
        rt.shutdown().await;

        let dead_run = audited("nightly_report").await.remove(0);
        assert_eq!(dead_run["target_type"], "schedule");
        assert_eq!(dead_run["actor"], json!({"kind": "system"}));
        assert_eq!(dead_run["details"]["queue"], "email");
        assert!(
            dead_run["details"]["error"]
                .as_str()
                .unwrap()
                .contains("554 no"),
            "{dead_run}"
        );
        let dead = e
            .get(dead_run["job_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dead.status, JobStatus::Dead);

        let not_enqueued = audited("broken").await.remove(0);
        assert!(
            not_enqueued["details"]["error"]
                .as_str()
                .unwrap()
                .contains("unknown field `fail`"),
            "{not_enqueued}"
        );
        assert!(not_enqueued.get("job_id").is_none());
        cleanup(&e).await;
    });
}

#[test]
fn a_queue_actor_reports_its_jobs_in_flight_of_its_concurrency() {
    system(async {
        let prefix = vigil_testkit::redis::unique_prefix("load");
        let e = engine(&prefix, |_| {}).await;
        // Jobs hold until the gate opens.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let held = gate.clone();
        let handler: Handler = Arc::new(move |_ctx, _payload| {
            let gate = held.clone();
            async move {
                let _permit = gate.acquire().await.map_err(JobError::retryable)?;
                Ok(())
            }
            .boxed()
        });
        let rt = Runtime::builder(e.clone(), no_schedules(), &Registry::new())
            .handler(EmailJob::QUEUE, handler)
            .start()
            .unwrap();
        let concurrency = e.queue_settings(EmailJob::QUEUE).concurrency as u64;
        assert!(concurrency > 2);
        rt.engine()
            .enqueue_raw(
                (0..2)
                    .map(|i| NewJob::new(EmailJob::QUEUE, json!({ "i": i })))
                    .collect(),
            )
            .await
            .unwrap();
        let load = || async {
            e.actors()
                .await
                .unwrap()
                .into_iter()
                .find(|a| a.name == "queue:email" && a.instance == rt.instance())
                .and_then(|a| a.load)
        };
        eventually(
            Duration::from_secs(20),
            "2 of the queue's jobs in flight",
            || async { load().await.is_some_and(|l| l.in_flight == 2) },
        )
        .await;
        let l = load().await.unwrap();
        assert_eq!(l.concurrency, concurrency);
        assert!(l.worker.starts_with(rt.instance()), "{}", l.worker);
        gate.add_permits(2);
        eventually(Duration::from_secs(20), "nothing in flight", || async {
            load().await.is_some_and(|l| l.in_flight == 0)
        })
        .await;
        rt.shutdown().await;
        cleanup(&e).await;
    });
}
