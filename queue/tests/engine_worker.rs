//! The worker path (apalis worker over `VigilBackend`) against real Redis: a 100k backlog
//! drains, pickup is woken (not polled), Redis restarts don't kill workers or lose
//! acknowledged enqueues, handler errors become retries or dead jobs. Each test is also the
//! regression test of an apalis-redis 1.0.0 defect (numbers from issue 3).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vigil_jobs::{AuditJob, Job as _};
use vigil_queue::{EngineError, JobStatus, NewJob, Queue};

const Q: Queue = AuditJob::QUEUE;

/// Defects 1 and 2: a backlog far above 8,000 due jobs drains completely (the lease script
/// takes a bounded slice per call instead of unpacking every due id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_backlog_drains_completely() {
    let t = TestEngine::new("drain").await;
    let e = &t.engine;
    const N: usize = 100_000;
    let began = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(10_000) {
        let jobs: Vec<NewJob> = chunk
            .iter()
            .map(|i| NewJob::new(Q, json!({ "i": i })))
            .collect();
        e.enqueue_raw(jobs).await.unwrap();
    }
    let enqueued = began.elapsed();
    assert_eq!(counts(e, Q).await.pending, N as u64);
    let ran = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let ran = ran.clone();
        workers.push(worker(e, Q, 64, move |_job| {
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }));
    }
    let began = Instant::now();
    eventually(Duration::from_secs(300), "100k jobs done", || async {
        counts(e, Q).await.done == N as u64
    })
    .await;
    println!(
        "enqueued {N} in {:?}, drained in {:?} ({:.0} jobs/s)",
        enqueued,
        began.elapsed(),
        N as f64 / began.elapsed().as_secs_f64()
    );
    let c = counts(e, Q).await;
    assert_eq!((c.pending, c.running, c.failed, c.dead), (0, 0, 0, 0));
    assert!(ran.load(Ordering::Relaxed) >= N as u64);
    for (control, task) in workers {
        control.stop_leasing();
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

/// Defect 4: pickup does not wait for a heartbeat or poll. With a 60 s poll interval, only
/// the wake-up can start the job within the test's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_an_enqueue() {
    // A private server, so its blocked-client count is this worker's alone.
    let server = vigil_testkit::redis::RedisServer::start(false);
    let t = TestEngine::with("wake", &server.url(), |e, _| e.poll_interval_ms = 60_000).await;
    let e = &t.engine;
    let (control, _task) = worker(e, Q, 4, |_job| async { Ok(()) });
    let url = server.url();
    for round in 0..3 {
        // The worker is idle, asleep on its wake-up key: only an enqueue can start the job.
        eventually(
            Duration::from_secs(10),
            "the worker blocks on its wake-up key",
            || blocked_clients(&url),
        )
        .await;
        let id = e
            .enqueue_raw(vec![NewJob::new(Q, json!({ "round": round }))])
            .await
            .unwrap()[0]
            .job
            .id
            .clone();
        eventually(
            Duration::from_secs(10),
            "woken worker ran the job",
            || async { e.get(&id).await.unwrap().map(|j| j.status) == Some(JobStatus::Done) },
        )
        .await;
    }
    control.stop_leasing();
}

/// Whether some client of the server at `url` waits in a blocking command.
async fn blocked_clients(url: &str) -> bool {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .is_some_and(|n| n > 0)
}

/// Handler outcomes through the worker path: retryable errors retry with backoff until
/// max_attempts (defect 3), permanent ones are dead at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_retry_then_die_and_permanent_errors_die_at_once() {
    let t = TestEngine::with("outcomes", &vigil_testkit::redis::shared_url(), |_, q| {
        let s = q.get_mut(Q);
        s.max_attempts = 3;
        s.backoff_base_ms = 20;
        s.backoff_max_ms = 50;
    })
    .await;
    let e = &t.engine;
    let (control, _task) = worker(e, Q, 4, |job| async move {
        match job.payload["kind"].as_str() {
            Some("flaky") if job.attempt < 3 => {
                Err(format!("flaky attempt {}", job.attempt).into())
            }
            Some("flaky") => Ok(()),
            Some("always") => Err("always fails".into()),
            _ => Err(permanent("bad input")),
        }
    });
    let ids: Vec<String> = e
        .enqueue_raw(vec![
            NewJob::new(Q, json!({"kind": "flaky"})),
            NewJob::new(Q, json!({"kind": "always"})),
            NewJob::new(Q, json!({"kind": "bad"})),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.job.id)
        .collect();
    eventually(Duration::from_secs(20), "all three settled", || async {
        let c = counts(e, Q).await;
        c.done == 1 && c.dead == 2
    })
    .await;
    let flaky = e.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (flaky.status, flaky.attempts, flaky.errors.len()),
        (JobStatus::Done, 3, 2)
    );
    let always = e.get(&ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (always.status, always.attempts),
        (JobStatus::Dead, 3),
        "max_attempts honoured"
    );
    let bad = e.get(&ids[2]).await.unwrap().unwrap();
    assert_eq!(
        (bad.status, bad.attempts),
        (JobStatus::Dead, 1),
        "permanent: dead at once"
    );
    control.stop_leasing();
}

/// Defect 5: Redis restarted during work. Enqueues fail loudly while it is down, workers
/// survive and resume, and no acknowledged enqueue is lost (AOF, appendfsync always).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_neither_kills_workers_nor_loses_acknowledged_jobs() {
    let mut server = vigil_testkit::redis::RedisServer::start(true);
    let t = TestEngine::with("restart", &server.url(), |e, _| {
        e.poll_interval_ms = 100;
        e.lease_seconds = 2;
        e.reaper_interval_ms = 500;
    })
    .await;
    let e = &t.engine;
    let (control, _task) = worker(e, Q, 8, |_job| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    });
    let mut acknowledged = Vec::new();
    for i in 0..200 {
        acknowledged.push(
            e.enqueue_raw(vec![NewJob::new(Q, json!({ "i": i }))])
                .await
                .unwrap()[0]
                .job
                .id
                .clone(),
        );
    }
    server.stop();
    let err = e
        .enqueue_raw(vec![NewJob::new(Q, json!({"lost": true}))])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Unavailable(_) | EngineError::OutcomeUnknown(_)
        ),
        "an enqueue during an outage fails loudly (nothing done, or outcome unknown): {err}"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.restart();
    // The shared connection reconnects by itself.
    eventually(Duration::from_secs(20), "engine reconnected", || async {
        e.ping().await.is_ok()
    })
    .await;
    for i in 200..400 {
        acknowledged.push(
            e.enqueue_raw(vec![NewJob::new(Q, json!({ "i": i }))])
                .await
                .unwrap()[0]
                .job
                .id
                .clone(),
        );
    }
    // Jobs that were running when Redis died come back through the reaper.
    let reaper = {
        let e = e.clone();
        tokio::spawn(async move {
            loop {
                let _ = e.reap(Q).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    eventually(
        Duration::from_secs(60),
        "every acknowledged job done",
        || async { counts(e, Q).await.done == acknowledged.len() as u64 },
    )
    .await;
    reaper.abort();
    for id in &acknowledged {
        assert_eq!(e.get(id).await.unwrap().unwrap().status, JobStatus::Done);
    }
    control.stop_leasing();
}

/// Shutdown: stop leasing, and what is still held goes back to the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_workers_give_unfinished_jobs_back() {
    let t = TestEngine::new("release").await;
    let e = &t.engine;
    let (control, task) = worker(e, Q, 2, |_job| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    });
    e.enqueue_raw((0..5).map(|i| NewJob::new(Q, json!({ "i": i }))).collect())
        .await
        .unwrap();
    // Running in Redis and held by the worker (the lease reply has reached it).
    eventually(Duration::from_secs(5), "two running", || async {
        counts(e, Q).await.running == 2 && control.inflight() == 2
    })
    .await;
    control.stop_leasing();
    task.abort(); // the deadline passed: running attempts are abandoned
    assert_eq!(control.release_all().await, 2);
    let c = counts(e, Q).await;
    assert_eq!((c.pending, c.running), (5, 0), "nothing lost");
}
