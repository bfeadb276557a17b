//! Batch handlers through the real runtime and engine: a kind implementing `PerformBatch`
//! gets its jobs in batches no larger than the queue's `batch_size`, yet each job is acked,
//! retried or dead on its own (a job that fails once is retried alone, a poisoned one dies
//! alone, a batch that panics has its jobs retried), and every job is done exactly once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cleanup, eventually, jobs, system};
use prometheus::Registry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_jobs::{Job, JobStatus, Queue, QueueSettings, Validate, ValidationError};
use vigil_queue::{NewJob, QueuesSettings, SchedulesSettings};
use vigil_workers::JobError;
use vigil_workers::runtime::{JobContext, PerformBatch, Runtime};

/// Count `n`; `fail_first` fails its first attempt, `poison` always fails for good,
/// `panic_first` makes its first attempt's whole batch panic.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TallyJob {
    n: u32,
    fail_first: bool,
    poison: bool,
    panic_first: bool,
}

impl Validate for TallyJob {
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

const BATCH: usize = 20;

impl Job for TallyJob {
    const QUEUE: Queue = Queue::new("tally_test");

    fn settings() -> QueueSettings {
        QueueSettings {
            max_attempts: 3,
            concurrency: 64,
            batch_size: BATCH,
            batch_linger_ms: 50,
            backoff_base_ms: 50,
            backoff_max_ms: 100,
            ..QueueSettings::default()
        }
    }

    fn example() -> serde_json::Value {
        json!({"n": 1})
    }
}

/// What the batch handler saw: each batch's size, and each job counted with its attempt.
#[derive(Default, Clone)]
struct Tally {
    batches: Arc<Mutex<Vec<usize>>>,
    counted: Arc<Mutex<Vec<(u32, u32)>>>,
}

impl PerformBatch for TallyJob {
    type Deps = Tally;

    async fn perform_batch(
        jobs: Vec<(JobContext, TallyJob)>,
        tally: Arc<Tally>,
    ) -> Vec<Result<(), JobError>> {
        tally.batches.lock().unwrap().push(jobs.len());
        if jobs
            .iter()
            .any(|(ctx, j)| j.panic_first && ctx.attempt == 1)
        {
            panic!("a batch handler bug");
        }
        jobs.into_iter()
            .map(|(ctx, j)| {
                if j.poison {
                    Err(JobError::Permanent(format!("job {} is poison", j.n)))
                } else if j.fail_first && ctx.attempt == 1 {
                    Err(JobError::Retryable("busy".into()))
                } else {
                    tally.counted.lock().unwrap().push((j.n, ctx.attempt));
                    Ok(())
                }
            })
            .collect()
    }
}

#[test]
fn batches_are_bounded_and_each_job_is_acked_retried_or_dead_on_its_own() {
    vigil_jobs::register::<TallyJob>();
    // `[queues.tally_test]` takes the batch fields like any other.
    let queues: QueuesSettings =
        serde_json::from_value(json!({"tally_test": {"batch_size": 5, "batch_linger_ms": 0}}))
            .unwrap();
    let s = queues.get(TallyJob::QUEUE);
    assert_eq!((s.batch_size, s.batch_linger_ms, s.concurrency), (5, 0, 64));

    system(async {
        let prefix = vigil_testkit::redis::unique_prefix("batch");
        let e = common::engine(&prefix, |_, _| {}).await;
        let total = 200u32;
        let batch: Vec<NewJob> = (0..total)
            .map(|n| {
                let job = TallyJob {
                    n,
                    fail_first: n == 7,
                    poison: n == 13,
                    panic_first: n == 21,
                };
                NewJob::new(TallyJob::QUEUE, serde_json::to_value(job).unwrap())
            })
            .collect();
        e.enqueue_many(batch).await.unwrap();
        let tally = Tally::default();
        let registry = Registry::new();
        let rt = Runtime::builder(e.clone(), SchedulesSettings(BTreeMap::new()), &registry)
            .batch_job::<TallyJob>(tally.clone())
            .start()
            .unwrap();

        eventually(Duration::from_secs(60), "every job settled", || async {
            let all = jobs(&e, TallyJob::QUEUE).await;
            all.len() == total as usize
                && all
                    .iter()
                    .all(|j| matches!(j.status, JobStatus::Done | JobStatus::Dead))
        })
        .await;
        rt.shutdown().await;

        let all = jobs(&e, TallyJob::QUEUE).await;
        let by_n: HashMap<u64, &vigil_jobs::JobRecord> = all
            .iter()
            .map(|j| (j.payload["n"].as_u64().unwrap(), j))
            .collect();
        // The poisoned job died alone, on its first attempt, with its own error.
        let dead: Vec<u64> = all
            .iter()
            .filter(|j| j.status == JobStatus::Dead)
            .map(|j| j.payload["n"].as_u64().unwrap())
            .collect();
        assert_eq!(dead, [13]);
        assert_eq!(by_n[&13].attempts, 1);
        assert!(
            by_n[&13].errors.iter().any(|e| e.error.contains("poison")),
            "{:?}",
            by_n[&13].errors
        );
        // The job that failed once was retried alone and done on its second attempt.
        assert_eq!(by_n[&7].attempts, 2);
        assert_eq!(by_n[&7].status, JobStatus::Done);
        // The panicking batch's jobs were retried, and done.
        assert_eq!(by_n[&21].attempts, 2);
        assert!(
            by_n[&21].errors.iter().any(|e| e.error.contains("batch")),
            "{:?}",
            by_n[&21].errors
        );

        // Every other job counted exactly once.
        let counted = tally.counted.lock().unwrap().clone();
        let mut seen: Vec<u32> = counted.iter().map(|(n, _)| *n).collect();
        seen.sort_unstable();
        let expected: Vec<u32> = (0..total).filter(|n| *n != 13).collect();
        assert_eq!(seen, expected, "each job once");

        // Batches never exceeded batch_size, and the jobs came many at a time.
        let batches = tally.batches.lock().unwrap().clone();
        assert!(
            batches.iter().all(|b| (1..=BATCH).contains(b)),
            "{batches:?}"
        );
        let handed: usize = batches.iter().sum();
        assert!(
            handed >= total as usize,
            "every attempt was handed over: {batches:?}"
        );
        assert!(
            batches.len() * 5 <= handed,
            "batches of 5 or more on average: {batches:?}"
        );
        cleanup(&e).await;
    });
}
