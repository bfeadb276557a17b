//! The engine's Prometheus metrics, registered in the registry the composition root owns
//! (the API serves the same registry on `/metrics`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `vigil_jobs_enqueued_total` | counter | queue |
//! | `vigil_jobs_started_total` | counter | queue |
//! | `vigil_jobs_succeeded_total` | counter | queue |
//! | `vigil_jobs_failed_total` | counter (failed attempts, retried or dead) | queue |
//! | `vigil_jobs_retried_total` | counter | queue |
//! | `vigil_jobs_dead_total` | counter | queue |
//! | `vigil_job_duration_seconds` | histogram (one attempt) | queue |
//! | `vigil_jobs` | gauge (depth, refreshed from the ledger) | queue, status |
//! | `vigil_actor_restarts_total` | counter | actor |
//! | `vigil_schedule_ticks_total` | counter (ticks this instance saw: `fired` = it won the claim and enqueued, `claimed_elsewhere`, `off` = switched off at run time, `failed`) | schedule, outcome |

use std::sync::Arc;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use vigil_jobs::{JobStatus, Queue, QueueCounts};
use vigil_queue::LeasedJob;
use vigil_queue::backend::{AttemptOutcome, JobObserver};
use vigil_queue::engine::EnqueueHook;

/// Every engine metric. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub enqueued: IntCounterVec,
    pub started: IntCounterVec,
    pub succeeded: IntCounterVec,
    pub failed: IntCounterVec,
    pub retried: IntCounterVec,
    pub dead: IntCounterVec,
    pub duration: HistogramVec,
    pub depth: IntGaugeVec,
    pub actor_restarts: IntCounterVec,
    pub schedule_ticks: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let counter =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["queue"]);
        let m = Metrics {
            enqueued: counter("vigil_jobs_enqueued_total", "Jobs enqueued")?,
            started: counter("vigil_jobs_started_total", "Job attempts started")?,
            succeeded: counter("vigil_jobs_succeeded_total", "Jobs that succeeded")?,
            failed: counter(
                "vigil_jobs_failed_total",
                "Job attempts that failed (retried or dead)",
            )?,
            retried: counter(
                "vigil_jobs_retried_total",
                "Failed attempts rescheduled for a retry",
            )?,
            dead: counter("vigil_jobs_dead_total", "Jobs that went dead")?,
            duration: HistogramVec::new(
                HistogramOpts::new("vigil_job_duration_seconds", "Duration of one job attempt")
                    .buckets(vec![
                        0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
                    ]),
                &["queue"],
            )?,
            depth: IntGaugeVec::new(
                Opts::new(
                    "vigil_jobs",
                    "Jobs per queue and status (from the job ledger)",
                ),
                &["queue", "status"],
            )?,
            actor_restarts: IntCounterVec::new(
                Opts::new(
                    "vigil_actor_restarts_total",
                    "Actor restarts by the supervisor",
                ),
                &["actor"],
            )?,
            schedule_ticks: IntCounterVec::new(
                Opts::new(
                    "vigil_schedule_ticks_total",
                    "Schedule ticks seen by this instance, by outcome",
                ),
                &["schedule", "outcome"],
            )?,
        };
        registry.register(Box::new(m.enqueued.clone()))?;
        registry.register(Box::new(m.started.clone()))?;
        registry.register(Box::new(m.succeeded.clone()))?;
        registry.register(Box::new(m.failed.clone()))?;
        registry.register(Box::new(m.retried.clone()))?;
        registry.register(Box::new(m.dead.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.depth.clone()))?;
        registry.register(Box::new(m.actor_restarts.clone()))?;
        registry.register(Box::new(m.schedule_ticks.clone()))?;
        for q in Queue::all() {
            for c in [
                &m.enqueued,
                &m.started,
                &m.succeeded,
                &m.failed,
                &m.retried,
                &m.dead,
            ] {
                c.with_label_values(&[q.as_str()]);
            }
        }
        Ok(m)
    }

    /// A hook for [`vigil_queue::Engine::with_enqueue_hook`] that counts enqueues.
    pub fn enqueue_hook(&self) -> EnqueueHook {
        let enqueued = self.enqueued.clone();
        Arc::new(move |queue: Queue, n: u64| {
            enqueued.with_label_values(&[queue.as_str()]).inc_by(n);
        })
    }

    /// Sets the depth gauges of `queue`.
    pub fn set_depth(&self, queue: Queue, counts: &QueueCounts) {
        for s in JobStatus::ALL {
            self.depth
                .with_label_values(&[queue.as_str(), s.as_str()])
                .set(counts.get(s) as i64);
        }
    }
}

impl JobObserver for Metrics {
    fn started(&self, job: &LeasedJob) {
        self.started.with_label_values(&[job.queue.as_str()]).inc();
    }

    fn finished(
        &self,
        job: &LeasedJob,
        outcome: AttemptOutcome,
        elapsed: Duration,
        _held: Duration,
    ) {
        let q = [job.queue.as_str()];
        self.duration
            .with_label_values(&q)
            .observe(elapsed.as_secs_f64());
        match outcome {
            AttemptOutcome::Succeeded => self.succeeded.with_label_values(&q).inc(),
            AttemptOutcome::Retried => {
                self.failed.with_label_values(&q).inc();
                self.retried.with_label_values(&q).inc();
            }
            AttemptOutcome::Dead => {
                self.failed.with_label_values(&q).inc();
                self.dead.with_label_values(&q).inc();
            }
            AttemptOutcome::Fenced | AttemptOutcome::Unrecorded | AttemptOutcome::Snoozed => {}
        }
    }
}
