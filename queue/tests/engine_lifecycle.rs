//! Engine transitions against a real Redis: retries, dead jobs, leases, fencing,
//! idempotency, delays, pause/resume, cancel, retry, retention, listing and schedule claims.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::json;
use vigil_jobs::{AlertEscalationJob, AuditJob, EmailJob, Job as _};
use vigil_queue::{EngineError, FailOutcome, JobFilter, JobStatus, NewJob, Queue, backoff_ceiling};

const Q: Queue = AuditJob::QUEUE;

fn raw(n: usize) -> Vec<NewJob> {
    (0..n).map(|i| NewJob::new(Q, json!({ "i": i }))).collect()
}

#[tokio::test]
async fn retries_follow_the_configured_backoff_and_stop_at_max_attempts() {
    let t = TestEngine::with("backoff", &vigil_testkit::redis::shared_url(), |_, q| {
        let s = q.get_mut(Q);
        s.max_attempts = 4;
        s.backoff_base_ms = 100;
        s.backoff_max_ms = 250;
    })
    .await;
    let e = &t.engine;
    let id = e.enqueue_raw(raw(1)).await.unwrap()[0].job.id.clone();
    let settings = e.queue_settings(Q).clone();
    for attempt in 1..=4u32 {
        let mut batch = e.lease(Q, "w1", 10).await.unwrap();
        while batch.jobs.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            batch = e.lease(Q, "w1", 10).await.unwrap();
        }
        let job = batch.jobs.remove(0);
        assert_eq!(job.id, id);
        assert_eq!(
            job.attempt, attempt,
            "attempts are counted when an attempt starts"
        );
        let before = Utc::now();
        let outcome = e
            .fail(&job, &format!("boom {attempt}"), false)
            .await
            .unwrap();
        let after = Utc::now();
        match outcome {
            FailOutcome::Retry { run_at } => {
                assert!(attempt < 4, "attempt {attempt} must be the last");
                let ceiling =
                    chrono::Duration::from_std(backoff_ceiling(&settings, attempt)).unwrap();
                assert!(
                    run_at >= before - chrono::Duration::milliseconds(1),
                    "retry is not in the past"
                );
                assert!(
                    run_at <= after + ceiling,
                    "retry {attempt} waits at most the backoff ceiling"
                );
                let rec = e.get(&id).await.unwrap().unwrap();
                assert_eq!(rec.status, JobStatus::Failed);
            }
            FailOutcome::Dead => assert_eq!(attempt, 4, "dead only at max_attempts"),
            FailOutcome::Stale => panic!("not fenced"),
        }
    }
    let rec = e.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.status, JobStatus::Dead);
    assert_eq!(rec.attempts, 4);
    let errors: Vec<&str> = rec.errors.iter().map(|e| e.error.as_str()).collect();
    assert_eq!(
        errors,
        vec!["boom 1", "boom 2", "boom 3", "boom 4"],
        "every attempt's error is kept"
    );
    assert_eq!(counts(e, Q).await.dead, 1);
}

#[tokio::test]
async fn permanent_errors_are_dead_at_once() {
    let t = TestEngine::new("permanent").await;
    let e = &t.engine;
    let id = e.enqueue_raw(raw(1)).await.unwrap()[0].job.id.clone();
    let job = e.lease(Q, "w", 1).await.unwrap().jobs.remove(0);
    assert_eq!(
        e.fail(&job, "bad input", true).await.unwrap(),
        FailOutcome::Dead
    );
    let rec = e.get(&id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (JobStatus::Dead, 1));
    assert_eq!(rec.last_error(), Some("bad input"));
}

#[tokio::test]
async fn an_expired_lease_counts_the_attempt_and_a_job_whose_worker_always_dies_goes_dead() {
    let t = TestEngine::with("crash", &vigil_testkit::redis::shared_url(), |e, q| {
        e.lease_seconds = 1;
        q.get_mut(Q).max_attempts = 3;
    })
    .await;
    let e = &t.engine;
    let id = e.enqueue_raw(raw(1)).await.unwrap()[0].job.id.clone();
    for attempt in 1..=3u32 {
        // A worker leases the job and dies (never reports).
        let job = e
            .lease(Q, &format!("dead-worker-{attempt}"), 1)
            .await
            .unwrap()
            .jobs
            .remove(0);
        assert_eq!(job.attempt, attempt);
        let (requeued, dead) = reap_when_expired(e).await;
        let rec = e.get(&id).await.unwrap().unwrap();
        assert_eq!(rec.attempts, attempt, "the crashed attempt is counted");
        if attempt < 3 {
            assert_eq!((requeued, dead), (1, 0));
            assert_eq!(rec.status, JobStatus::Pending);
        } else {
            assert_eq!((requeued, dead), (0, 1));
            assert_eq!(
                rec.status,
                JobStatus::Dead,
                "a poison job stops at max_attempts"
            );
            assert_eq!(rec.errors.len(), 3);
            assert!(
                rec.errors[2].error.contains("lease expired"),
                "{:?}",
                rec.errors
            );
        }
    }
}

#[tokio::test]
async fn a_stale_worker_cannot_complete_or_fail_a_job_handed_to_another() {
    let t = TestEngine::with("fencing", &vigil_testkit::redis::shared_url(), |e, _| {
        e.lease_seconds = 1
    })
    .await;
    let e = &t.engine;
    let id = e.enqueue_raw(raw(1)).await.unwrap()[0].job.id.clone();
    let stale = e.lease(Q, "worker-a", 1).await.unwrap().jobs.remove(0);
    reap_when_expired(e).await;
    let fresh = e.lease(Q, "worker-b", 1).await.unwrap().jobs.remove(0);
    assert_eq!(fresh.id, id);
    assert_ne!(stale.token, fresh.token);
    assert!(
        !e.complete(&stale).await.unwrap(),
        "zombie's complete is rejected"
    );
    assert_eq!(
        e.fail(&stale, "late", false).await.unwrap(),
        FailOutcome::Stale
    );
    assert!(
        !e.renew(Q, &[(stale.id.clone(), stale.token.clone())])
            .await
            .unwrap()[0]
    );
    assert_eq!(
        e.get(&id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
    assert!(e.complete(&fresh).await.unwrap());
    assert_eq!(e.get(&id).await.unwrap().unwrap().status, JobStatus::Done);
}

#[tokio::test]
async fn idempotency_keys_return_the_first_job() {
    let t = TestEngine::new("idem").await;
    let e = &t.engine;
    let mut job = NewJob::new(AlertEscalationJob::QUEUE, json!({"alert_id": 7}));
    job.idempotency_key = Some("alert-7-level-1".into());
    let first = e.enqueue(job.clone()).await.unwrap();
    let second = e.enqueue(job.clone()).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.job.id, second.job.id);
    // Within one batch too.
    let batch = e.enqueue_many(vec![job.clone(), job]).await.unwrap();
    assert!(
        batch
            .iter()
            .all(|x| x.duplicate && x.job.id == first.job.id)
    );
    assert_eq!(
        e.counts(AlertEscalationJob::QUEUE).await.unwrap().pending,
        1
    );
}

#[tokio::test]
async fn invalid_payloads_are_rejected_before_anything_is_written() {
    let t = TestEngine::new("invalid").await;
    let e = &t.engine;
    let err = e
        .enqueue(NewJob::new(
            EmailJob::QUEUE,
            json!({"to": [], "subject": "x"}),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Invalid(ref v) if v.field == "to"),
        "{err}"
    );
    assert_eq!(e.counts(EmailJob::QUEUE).await.unwrap(), Default::default());
}

#[tokio::test]
async fn delayed_jobs_wait_for_their_time() {
    let t = TestEngine::new("delayed").await;
    let e = &t.engine;
    let mut job = NewJob::new(Q, json!({}));
    job.run_at = Some(Utc::now() + chrono::Duration::milliseconds(700));
    let rec = e.enqueue_raw(vec![job]).await.unwrap().remove(0).job;
    assert_eq!(rec.status, JobStatus::Scheduled);
    let batch = e.lease(Q, "w", 5).await.unwrap();
    assert!(batch.jobs.is_empty(), "not due yet");
    assert!(batch.next_due.is_some());
    assert_eq!(counts(e, Q).await.scheduled, 1);
    // Leased as soon as it is due, and never before its time.
    let leased = lease_when_available(e, Q, "w", Duration::from_secs(10)).await;
    assert_eq!(leased.id, rec.id);
    assert!(leased.started_at >= rec.run_at);
}

#[tokio::test]
async fn pause_stops_leasing_on_every_instance_and_resume_restarts_it() {
    let t = TestEngine::new("pause").await;
    let e = &t.engine;
    e.enqueue_raw(raw(3)).await.unwrap();
    e.pause(Q).await.unwrap();
    assert!(e.is_paused(Q).await.unwrap());
    let batch = e.lease(Q, "w", 10).await.unwrap();
    assert!(batch.paused && batch.jobs.is_empty());
    assert!(
        e.stats()
            .await
            .unwrap()
            .iter()
            .any(|s| s.queue == Q && s.paused)
    );
    e.resume(Q).await.unwrap();
    assert_eq!(e.lease(Q, "w", 10).await.unwrap().jobs.len(), 3);
}

#[tokio::test]
async fn cancel_and_retry_by_id() {
    let t = TestEngine::new("cancel").await;
    let e = &t.engine;
    let ids: Vec<String> = e
        .enqueue_raw(raw(3))
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.job.id)
        .collect();
    let cancelled = e.cancel(&ids[0]).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(matches!(
        e.cancel(&ids[0]).await,
        Err(EngineError::InvalidState { .. })
    ));
    assert!(matches!(
        e.cancel("nope").await,
        Err(EngineError::NotFound(_))
    ));
    let leased = e.lease(Q, "w", 10).await.unwrap().jobs;
    assert_eq!(leased.len(), 2, "a cancelled job is never leased");
    assert!(leased.iter().all(|j| j.id != ids[0]));
    assert!(matches!(
        e.cancel(&leased[0].id).await,
        Err(EngineError::InvalidState {
            status: JobStatus::Running,
            ..
        })
    ));
    e.fail(&leased[0], "nope", true).await.unwrap();
    let again = e.retry(&leased[0].id).await.unwrap();
    assert_eq!(again.status, JobStatus::Pending);
    assert!(
        again.max_attempts > again.attempts,
        "a retried dead job gets new attempts"
    );
    let job = e.lease(Q, "w", 10).await.unwrap().jobs.remove(0);
    assert_eq!((job.id.clone(), job.attempt), (leased[0].id.clone(), 2));
    assert!(e.complete(&job).await.unwrap());
    assert!(matches!(
        e.retry(&job.id).await,
        Err(EngineError::InvalidState {
            status: JobStatus::Done,
            ..
        })
    ));
}

#[tokio::test]
async fn finished_jobs_are_pruned_after_the_retention() {
    let t = TestEngine::new("retention").await;
    let e = &t.engine;
    e.enqueue_raw(raw(5)).await.unwrap();
    let jobs = e.lease(Q, "w", 3).await.unwrap().jobs;
    for j in &jobs {
        e.complete(j).await.unwrap();
    }
    assert_eq!(
        e.prune().await.unwrap(),
        0,
        "nothing is older than the retention yet"
    );
    let pruned = e.prune_older_than(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(pruned, 3);
    assert!(e.get(&jobs[0].id).await.unwrap().is_none());
    let c = counts(e, Q).await;
    assert_eq!((c.done, c.pending), (0, 2), "unfinished jobs are kept");
}

#[tokio::test]
async fn counts_and_lists_are_exact_and_paginated_newest_first() {
    let t = TestEngine::new("ledger").await;
    let e = &t.engine;
    let ids: Vec<String> = e
        .enqueue_raw(raw(25))
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.job.id)
        .collect();
    e.enqueue_raw(vec![NewJob::new(EmailJob::QUEUE, json!({}))])
        .await
        .unwrap();
    let leased = e.lease(Q, "w", 10).await.unwrap().jobs;
    for j in &leased[..4] {
        e.complete(j).await.unwrap();
    }
    e.fail(&leased[4], "x", true).await.unwrap();
    let c = counts(e, Q).await;
    assert_eq!((c.pending, c.running, c.done, c.dead), (15, 5, 4, 1));
    let page = e
        .list(&JobFilter {
            queue: Some(Q),
            status: Some(JobStatus::Pending),
            page: 1,
            page_size: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 15);
    assert_eq!(page.jobs.len(), 10);
    assert_eq!(page.jobs[0].id, ids[24], "newest first");
    let page2 = e
        .list(&JobFilter {
            queue: Some(Q),
            status: Some(JobStatus::Pending),
            page: 2,
            page_size: 10,
        })
        .await
        .unwrap();
    assert_eq!(page2.jobs.len(), 5);
    let all = e
        .list(&JobFilter {
            page_size: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((all.total, all.jobs.len()), (26, 26));
    let dead = e
        .list(&JobFilter {
            status: Some(JobStatus::Dead),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.jobs.len(), 1);
    assert_eq!(dead.jobs[0].errors[0].error, "x");
}

#[tokio::test]
async fn a_schedule_tick_is_claimed_once_across_instances() {
    let a = TestEngine::new("ticks").await;
    // A second instance: same Redis and prefix, its own connection.
    let b = vigil_queue::Engine::connect(
        &vigil_queue::RedisSettings {
            url: vigil_testkit::redis::shared_url(),
            prefix: a.engine.prefix().to_owned(),
            response_timeout_ms: 2_000,
            ..Default::default()
        },
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let tick = Utc::now();
    let mut wins = 0;
    for _ in 0..5 {
        let (x, y) = tokio::join!(
            a.engine.claim_tick("okta_fetch", tick),
            b.claim_tick("okta_fetch", tick)
        );
        wins += x.unwrap() as u32 + y.unwrap() as u32;
    }
    assert_eq!(wins, 1, "one run per tick whatever the number of instances");
    assert!(
        a.engine
            .claim_tick("okta_fetch", tick + chrono::Duration::minutes(1))
            .await
            .unwrap()
    );
}

/// Reaps `Q` until the lease taken just before has expired and been reaped (the lease is a
/// second long; fails after 20 s). Returns (requeued, dead).
async fn reap_when_expired(e: &vigil_queue::Engine) -> (u64, u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (requeued, dead) = e.reap(Q).await.unwrap();
        if requeued + dead > 0 {
            return (requeued, dead);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_ack_that_names_a_job_twice_finishes_it_once() {
    let t = TestEngine::new("ack-twice").await;
    let e = &t.engine;
    e.enqueue_raw(raw(2)).await.unwrap();
    let batch = e.lease(Q, "w1", 10).await.unwrap();
    assert_eq!(batch.jobs.len(), 2);
    let (a, b) = (&batch.jobs[0], &batch.jobs[1]);
    let pairs = vec![
        (a.id.clone(), a.token.clone()),
        (a.id.clone(), a.token.clone()),
        (b.id.clone(), b.token.clone()),
    ];
    assert_eq!(
        e.complete_many(Q, &pairs).await.unwrap(),
        vec![true, false, true],
        "the second mention of a job is not a second completion"
    );
    let c = counts(e, Q).await;
    assert_eq!((c.done, c.running), (2, 0));
    let done = e.get(&a.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (JobStatus::Done, 1));
}
