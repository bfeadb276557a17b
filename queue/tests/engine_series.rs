//! The per-minute series behind the dashboard's charts, and the worker and start time kept
//! for each attempt (the job page's timeline), against a real Redis.

mod common;

use common::*;
use serde_json::json;
use vigil_jobs::{AuditJob, Job as _};
use vigil_queue::{NewJob, Queue, SeriesPoint};

const Q: Queue = AuditJob::QUEUE;
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn total(points: &[SeriesPoint], f: fn(&SeriesPoint) -> u64) -> u64 {
    points.iter().map(f).sum()
}

#[tokio::test]
async fn every_transition_lands_in_the_minute_series_and_the_series_expires() {
    let t = TestEngine::new("series").await;
    let e = &t.engine;
    let jobs = (0..5).map(|i| NewJob::new(Q, json!({ "i": i }))).collect();
    e.enqueue_raw(jobs).await.unwrap();
    let batch = e.lease(Q, "w1", 5).await.unwrap().jobs;
    assert_eq!(batch.len(), 5);
    assert!(e.complete(&batch[0]).await.unwrap());
    assert!(e.complete(&batch[1]).await.unwrap());
    e.fail(&batch[2], "try again", false).await.unwrap();
    e.fail(&batch[3], "never", true).await.unwrap();

    let hour = e.series(Q, 60, 1).await.unwrap();
    assert_eq!(hour.step_seconds, 60);
    assert_eq!(hour.points.len(), 60);
    assert!(hour.points.windows(2).all(|w| w[0].at < w[1].at));
    let p = &hour.points;
    assert_eq!(total(p, |p| p.enqueued), 5);
    assert_eq!(total(p, |p| p.done), 2);
    assert_eq!(total(p, |p| p.failed), 1, "the retrying attempt");
    assert_eq!(total(p, |p| p.dead), 1);
    let busy: Vec<&SeriesPoint> = p.iter().filter(|p| p.enqueued > 0 || p.done > 0).collect();
    assert!(busy.iter().any(|p| p.wait_p50_ms.is_some()));
    assert!(busy.iter().any(|p| p.run_p95_ms.is_some()));
    assert!(
        p.iter()
            .filter(|p| p.enqueued == 0 && p.done == 0 && p.failed == 0 && p.dead == 0)
            .all(|p| p.wait_p50_ms.is_none() && p.run_p50_ms.is_none()),
        "quiet minutes have no percentiles"
    );

    let day = e.series(Q, 24 * 60, 15).await.unwrap();
    assert_eq!((day.step_seconds, day.points.len()), (900, 96));
    assert_eq!(total(&day.points, |p| p.enqueued), 5);
    assert_eq!(total(&day.points, |p| p.done), 2);

    // Every minute hash expires (bounded keys whatever the traffic).
    let mut c = e.redis();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*stat:m:*", e.prefix()))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 25 * 3_600_000, "{k} expires: {ttl}");
    }
}

#[tokio::test]
async fn each_attempt_keeps_its_worker_and_start_and_a_done_job_its_worker() {
    let t = TestEngine::new("attempt-worker").await;
    let e = &t.engine;
    let id = e
        .enqueue_raw(vec![NewJob::new(Q, json!({ "i": 1 }))])
        .await
        .unwrap()[0]
        .job
        .id
        .clone();
    let first = lease_when_available(e, Q, "inst-a/audit/1", WAIT).await;
    e.fail_after(&first, "boom", false, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    let failed = e.get(&id).await.unwrap().unwrap();
    assert_eq!(failed.worker.as_deref(), Some("inst-a/audit/1"));
    assert_eq!(failed.errors[0].worker.as_deref(), Some("inst-a/audit/1"));
    assert_eq!(failed.errors[0].started_at, Some(first.started_at));

    let second = lease_when_available(e, Q, "inst-b/audit/7", WAIT).await;
    assert_eq!(second.attempt, 2);
    assert!(e.complete(&second).await.unwrap());
    let done = e.get(&id).await.unwrap().unwrap();
    assert_eq!(done.status, vigil_queue::JobStatus::Done);
    assert_eq!(done.worker.as_deref(), Some("inst-b/audit/7"));
    assert_eq!(done.started_at, Some(second.started_at));
    assert_eq!(
        done.errors[0].worker.as_deref(),
        Some("inst-a/audit/1"),
        "the first attempt's worker is kept in the done record"
    );
}
