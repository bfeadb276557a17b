//! The engine's behaviour suite, run unchanged against every supported deployment
//! (standalone, TLS, Sentinel, Cluster): enqueue, lease, fencing, reaper, retries, dead jobs,
//! idempotency, delayed jobs, pause/resume, cancel, retry, retention, counts and lists,
//! schedule ticks, the fleet report, companion jobs, and a worker draining every queue.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use vigil_queue::{
    ActorHealth, Companion, Engine, FailOutcome, JobFilter, JobStatus, NewJob, Queue,
};

use super::{Runs, counting_worker, counts, each_ran_once, eventually, leased_within};
use vigil_jobs::{AlertEscalationJob, AuditJob, EmailJob, Job as _, OktaFetchJob};

fn raw(q: Queue, n: usize) -> Vec<NewJob> {
    (0..n).map(|i| NewJob::new(q, json!({ "i": i }))).collect()
}

async fn lease_one(e: &Engine, q: Queue, worker: &str) -> vigil_queue::LeasedJob {
    for _ in 0..100 {
        if let Some(j) = e.lease(q, worker, 1).await.unwrap().jobs.pop() {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing to lease on {q}");
}

/// Runs every behaviour against `e` (an engine on a fresh prefix with lease_seconds = 1 and
/// fast polling). Panics naming the behaviour that broke.
pub async fn behaviour_suite(e: &Engine) {
    lifecycle_and_fencing(e).await;
    retries_and_dead(e).await;
    idempotency_delays_cancel_retry(e).await;
    pause_and_resume(e).await;
    reaper_counts_an_expired_lease(e).await;
    lists_counts_retention(e).await;
    done_jobs_are_compact_and_still_read(e).await;
    retries_wait_behind_first_attempts(e).await;
    ticks_fleet_companions(e).await;
    a_worker_drains_every_queue(e).await;
}

async fn lifecycle_and_fencing(e: &Engine) {
    let q = EmailJob::QUEUE;
    let ids: Vec<String> = e
        .enqueue_raw(raw(q, 3))
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.job.id)
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("email-")), "{ids:?}");
    let batch = e.lease(q, "w1", 10).await.unwrap();
    assert_eq!(batch.jobs.len(), 3, "lease hands out every due job");
    assert!(batch.jobs.iter().all(|j| j.attempt == 1));
    let c = counts(e, q).await;
    assert_eq!((c.pending, c.running), (0, 3));
    // A stale token cannot finish the job; the right one can.
    let job = &batch.jobs[0];
    let mut stale = job.clone();
    stale.token = "someone-else:1".into();
    assert!(!e.complete(&stale).await.unwrap(), "fenced");
    assert_eq!(
        e.fail(&stale, "x", false).await.unwrap(),
        FailOutcome::Stale
    );
    assert!(
        e.renew(q, &[(job.id.clone(), job.token.clone())])
            .await
            .unwrap()[0]
    );
    let pairs: Vec<(String, String)> = batch
        .jobs
        .iter()
        .map(|j| (j.id.clone(), j.token.clone()))
        .collect();
    assert_eq!(e.complete_many(q, &pairs).await.unwrap(), vec![true; 3]);
    let done = e.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Done);
    assert!(done.finished_at.is_some());
    assert_eq!(counts(e, q).await.done, 3);
}

async fn retries_and_dead(e: &Engine) {
    let q = AlertEscalationJob::QUEUE;
    let id = e.enqueue_raw(raw(q, 1)).await.unwrap()[0].job.id.clone();
    let max = e.queue_settings(q).max_attempts;
    for attempt in 1..=max {
        let job = lease_one(e, q, "w1").await;
        assert_eq!((job.id.as_str(), job.attempt), (id.as_str(), attempt));
        let out = e.fail(&job, "boom", false).await.unwrap();
        if attempt < max {
            assert!(matches!(out, FailOutcome::Retry { .. }), "{out:?}");
        } else {
            assert_eq!(out, FailOutcome::Dead);
        }
    }
    let dead = e.get(&id).await.unwrap().unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(
        dead.errors.len(),
        max as usize,
        "every attempt's error is kept"
    );
    // A permanent error is dead at once.
    let id = e.enqueue_raw(raw(q, 1)).await.unwrap()[0].job.id.clone();
    let job = lease_one(e, q, "w1").await;
    assert_eq!(job.id, id);
    assert_eq!(e.fail(&job, "bad", true).await.unwrap(), FailOutcome::Dead);
}

async fn idempotency_delays_cancel_retry(e: &Engine) {
    let q = OktaFetchJob::QUEUE;
    let mut job = NewJob::new(q, json!({"k": 1}));
    job.idempotency_key = Some("same".into());
    let first = e.enqueue_raw(vec![job.clone()]).await.unwrap().remove(0);
    let again = e.enqueue_raw(vec![job]).await.unwrap().remove(0);
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.job.id, again.job.id, "the key returns the first job");
    // An explicit id is a second kind of dedup key.
    let id = e.next_id(q);
    let mut j = NewJob::new(q, json!({}));
    j.id = Some(id.clone());
    assert!(!e.enqueue_raw(vec![j.clone()]).await.unwrap()[0].duplicate);
    assert!(e.enqueue_raw(vec![j]).await.unwrap()[0].duplicate);
    // Delayed: scheduled until due (by server time), then leased.
    let mut d = NewJob::new(q, json!({"delayed": true}));
    d.run_at = Some(Utc::now() + chrono::Duration::milliseconds(600));
    let delayed = e.enqueue_raw(vec![d]).await.unwrap().remove(0).job;
    assert_eq!(delayed.status, JobStatus::Scheduled);
    let before: Vec<String> = e
        .lease(q, "w1", 10)
        .await
        .unwrap()
        .jobs
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert!(!before.contains(&delayed.id), "not before its time");
    leased_within(e, q, "w1", &delayed.id, Duration::from_secs(5)).await;
    // Cancel a pending job; retry a dead one.
    let c = e.enqueue_raw(raw(q, 1)).await.unwrap().remove(0).job;
    assert_eq!(e.cancel(&c.id).await.unwrap().status, JobStatus::Cancelled);
    assert!(e.cancel(&c.id).await.is_err(), "cancel twice is refused");
    let r = e.enqueue_raw(raw(q, 1)).await.unwrap().remove(0).job;
    let leased = lease_one(e, q, "w2").await;
    assert_eq!(leased.id, r.id);
    e.fail(&leased, "x", true).await.unwrap();
    assert_eq!(e.retry(&r.id).await.unwrap().status, JobStatus::Pending);
    let again = lease_one(e, q, "w2").await;
    assert_eq!((again.id.as_str(), again.attempt), (r.id.as_str(), 2));
    e.complete(&again).await.unwrap();
    assert!(e.get("okta_fetch-notaulid").await.unwrap().is_none());
}

async fn pause_and_resume(e: &Engine) {
    let q = AuditJob::QUEUE;
    e.pause(q).await.unwrap();
    e.enqueue_raw(raw(q, 2)).await.unwrap();
    let b = e.lease(q, "w1", 10).await.unwrap();
    assert!(
        b.paused && b.jobs.is_empty(),
        "a paused queue leases nothing"
    );
    assert!(e.is_paused(q).await.unwrap());
    e.resume(q).await.unwrap();
    let b = e.lease(q, "w1", 10).await.unwrap();
    assert_eq!(b.jobs.len(), 2);
    let pairs: Vec<(String, String)> = b
        .jobs
        .iter()
        .map(|j| (j.id.clone(), j.token.clone()))
        .collect();
    e.complete_many(q, &pairs).await.unwrap();
}

async fn reaper_counts_an_expired_lease(e: &Engine) {
    let q = AuditJob::QUEUE;
    let id = e.enqueue_raw(raw(q, 1)).await.unwrap()[0].job.id.clone();
    let held = lease_one(e, q, "dies").await;
    assert_eq!(held.id, id);
    // lease_seconds = 1: once it expires (server time), the reaper re-queues the job.
    eventually(
        Duration::from_secs(5),
        "the expired lease is reaped",
        || async { e.reap(q).await.unwrap().0 == 1 },
    )
    .await;
    let job = lease_one(e, q, "lives").await;
    assert_eq!(
        (job.id.as_str(), job.attempt),
        (id.as_str(), 2),
        "the attempt stays counted"
    );
    assert!(
        !e.complete(&held).await.unwrap(),
        "the dead worker is fenced"
    );
    assert!(e.complete(&job).await.unwrap());
}

async fn lists_counts_retention(e: &Engine) {
    let stats = e.stats().await.unwrap();
    let names: Vec<Queue> = stats.iter().map(|s| s.queue).collect();
    assert_eq!(
        names,
        vigil_jobs::registry::queues(),
        "one entry per registered queue"
    );
    let email = stats.iter().find(|s| s.queue == EmailJob::QUEUE).unwrap();
    assert_eq!(email.counts.done, 3);
    assert!(email.processed_last_minute >= 3);
    let all = e.list(&JobFilter::default()).await.unwrap();
    let total: u64 = stats
        .iter()
        .map(|s| {
            JobStatus::ALL
                .iter()
                .map(|st| s.counts.get(*st))
                .sum::<u64>()
        })
        .sum();
    assert_eq!(all.total, total, "the list total is the ledger's");
    let done = e
        .list(&JobFilter {
            queue: Some(EmailJob::QUEUE),
            status: Some(JobStatus::Done),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(done.total, 3);
    assert!(done.jobs.iter().all(|j| j.status == JobStatus::Done));
    // Retention per queue: nothing is old enough yet; with a zero age, every finished job goes.
    assert_eq!(e.prune().await.unwrap(), 0);
    let finished: u64 = e
        .stats()
        .await
        .unwrap()
        .iter()
        .map(|s| s.counts.done + s.counts.dead + s.counts.cancelled)
        .sum();
    assert_eq!(e.prune_older_than(Duration::ZERO).await.unwrap(), finished);
    assert_eq!(counts(e, EmailJob::QUEUE).await.done, 0);
}

/// Leases `id` once its retry is due (by server time).
async fn lease_when_due(e: &Engine, q: Queue, id: &str) -> vigil_queue::LeasedJob {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(j) = e.lease(q, "w1", 1).await.unwrap().jobs.pop() {
            assert_eq!(j.id, id, "only this job is waiting on {q}");
            return j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} was never due again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A done job leaves its hash for one compact field, and reads, dedup and refusals see it as
/// before.
async fn done_jobs_are_compact_and_still_read(e: &Engine) {
    let q = EmailJob::QUEUE;
    let payload = json!({"to": ["a|b@example.org"], "note": "pipes | and unicode é"});
    let mut job = NewJob::new(q, payload.clone());
    job.idempotency_key = Some("compact|key".into());
    let first = e
        .enqueue_raw(vec![job.clone()])
        .await
        .unwrap()
        .remove(0)
        .job;
    let leased = lease_one(e, q, "w1").await;
    assert_eq!(leased.id, first.id);
    assert!(matches!(
        e.fail(&leased, "first try failed", false).await.unwrap(),
        FailOutcome::Retry { .. }
    ));
    let second = lease_when_due(e, q, &first.id).await;
    assert!(e.complete(&second).await.unwrap());

    let done = e.get(&first.id).await.unwrap().expect("a done job is read");
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!(done.payload, payload);
    assert_eq!((done.attempts, done.max_attempts), (2, first.max_attempts));
    assert_eq!(done.errors.len(), 1);
    assert_eq!(done.errors[0].error, "first try failed");
    assert_eq!(done.idempotency_key.as_deref(), Some("compact|key"));
    assert_eq!(done.created_at, first.created_at);
    let (started, finished) = (done.started_at.unwrap(), done.finished_at.unwrap());
    assert!(done.run_at >= done.created_at && started >= done.run_at && finished >= started);

    let key = e.keys().job(&first.id).unwrap();
    let mut c = e.redis();
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!exists, "the job's hash is gone once it is done");

    let again = e.enqueue_raw(vec![job]).await.unwrap().remove(0);
    assert!(
        again.duplicate,
        "the idempotency key still finds the done job"
    );
    assert_eq!(
        (again.job.id.as_str(), again.job.created_at),
        (first.id.as_str(), first.created_at)
    );
    let mut explicit = NewJob::new(q, json!({}));
    explicit.id = Some(first.id.clone());
    assert!(e.enqueue_raw(vec![explicit]).await.unwrap()[0].duplicate);
    for refused in [e.cancel(&first.id).await, e.retry(&first.id).await] {
        let err = refused.expect_err("a done job cannot be cancelled or retried");
        assert!(err.to_string().contains("it is done"), "{err}");
    }
    let listed = e
        .list(&JobFilter {
            queue: Some(q),
            status: Some(JobStatus::Done),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.jobs.first().map(|j| j.id.as_str()),
        Some(first.id.as_str())
    );
    assert!(e.prune_older_than(Duration::ZERO).await.unwrap() >= 1);
    assert!(e.get(&first.id).await.unwrap().is_none(), "pruned");
}

/// A retry that comes due joins the back of the line: jobs never tried are not starved.
async fn retries_wait_behind_first_attempts(e: &Engine) {
    let q = AlertEscalationJob::QUEUE;
    let retried = e.enqueue_raw(raw(q, 1)).await.unwrap()[0].job.id.clone();
    let job = lease_one(e, q, "w1").await;
    assert_eq!(job.id, retried);
    let FailOutcome::Retry { run_at } = e.fail(&job, "later", false).await.unwrap() else {
        panic!("a first failure is retried");
    };
    // Wait (by server time) until the retry is due, then queue fresh jobs ahead of its lease.
    eventually(Duration::from_secs(30), "the retry comes due", || async {
        e.server_time().await.unwrap() > run_at
    })
    .await;
    let fresh: Vec<String> = e
        .enqueue_raw(raw(q, 3))
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.job.id)
        .collect();
    let mut order = Vec::new();
    while order.len() < 4 {
        let batch = e.lease(q, "w1", 1).await.unwrap();
        for j in batch.jobs {
            order.push(j.id.clone());
            e.complete(&j).await.unwrap();
        }
    }
    assert_eq!(order[..3], fresh[..], "first attempts first");
    assert_eq!(order[3], retried, "then the retry");
}

async fn ticks_fleet_companions(e: &Engine) {
    let tick = Utc::now();
    assert!(e.claim_tick("s", tick).await.unwrap());
    assert!(
        !e.claim_tick("s", tick).await.unwrap(),
        "a tick is claimed once"
    );
    let actor = |i: &str| ActorHealth {
        instance: i.into(),
        name: "queue:email".into(),
        healthy: true,
        restarts: 0,
        last_error: None,
        updated_at: Utc::now(),
        reported_at: None,
        load: None,
    };
    e.report_actors("i1", &[actor("i1")], Duration::from_secs(30))
        .await
        .unwrap();
    e.report_actors("i2", &[actor("i2")], Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        e.actors().await.unwrap().len(),
        2,
        "every live instance is seen"
    );
    e.forget_instance("i2").await.unwrap();
    assert_eq!(e.actors().await.unwrap().len(), 1);
    // A companion (another queue, another slot) is enqueued with its job.
    let mut job = NewJob::new(EmailJob::QUEUE, json!({"with": "companion"}));
    job.companion = Some(Companion {
        queue: AuditJob::QUEUE,
        payload: json!({"companion_of": "email"}),
    });
    let before = counts(e, AuditJob::QUEUE).await.pending;
    e.enqueue_raw(vec![job]).await.unwrap();
    assert_eq!(counts(e, AuditJob::QUEUE).await.pending, before + 1);
    assert_eq!(
        e.relay_outbox().await.unwrap(),
        0,
        "nothing left in the outbox"
    );
}

async fn a_worker_drains_every_queue(e: &Engine) {
    let runs = Runs::default();
    let mut workers = Vec::new();
    let mut ids = Vec::new();
    for q in Queue::all() {
        workers.push(counting_worker(e, q, 4, &runs));
        ids.extend(
            e.enqueue_raw(raw(q, 50))
                .await
                .unwrap()
                .into_iter()
                .map(|x| x.job.id),
        );
    }
    each_ran_once(&runs, &ids, Duration::from_secs(30)).await;
    for (control, _) in &workers {
        control.stop_leasing();
    }
}
