//! The engine on every supported deployment, each started by the test on free loopback
//! ports: the behaviour suite on standalone, TLS, a 3-master Cluster and a Sentinel set;
//! TLS verification; failovers (Sentinel with and without `min_replicas_ack`, a Cluster
//! shard); skewed client clocks; a lease whose reply is lost; a Redis stall.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vigil_jobs::{AuditJob, EmailJob, Job as _};
use vigil_queue::{EngineError, JobStatus, NewJob, Queue, RedisSettings};
use vigil_testkit::redis::RedisServer;
use vigil_testkit::redis_topology::{
    RedisCluster, SentinelOptions, SentinelSet, TlsAuthClients, TlsRedis,
};

fn tls_settings(tls: &TlsRedis, ca: &std::path::Path, client: bool) -> RedisSettings {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
    RedisSettings {
        url: tls.url(),
        ca: Some(std::fs::read_to_string(ca).unwrap()),
        client_cert: client.then(|| read(tls.client_cert_file())),
        client_key: client.then(|| read(tls.client_key_file())),
        response_timeout_ms: 2_000,
        ..RedisSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_behaviour_suite_passes_on_standalone() {
    let e = engine_on(
        "topo-standalone",
        RedisSettings {
            url: vigil_testkit::redis::shared_url(),
            ..RedisSettings::default()
        },
    )
    .await;
    suite::behaviour_suite(&e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_behaviour_suite_passes_on_a_three_master_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let e = engine_on("topo-cluster", cluster_settings(cluster.nodes())).await;
    // The queues are spread over the shards (one slot per queue).
    let owners: std::collections::BTreeSet<u16> = Queue::all()
        .into_iter()
        .map(|q| cluster.master_of(&format!("{{{q}}}")))
        .collect();
    assert!(owners.len() >= 2, "queues on one shard only: {owners:?}");
    suite::behaviour_suite(&e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_behaviour_suite_passes_on_sentinel() {
    let set = SentinelSet::start();
    let e = engine_on("topo-sentinel", sentinel_settings(&set)).await;
    suite::behaviour_suite(&e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_server_and_presents_a_client_certificate() {
    let tls = TlsRedis::start(TlsAuthClients::Yes);
    let e = engine_on("topo-tls", tls_settings(&tls, &tls.ca_file(), true)).await;
    suite::behaviour_suite(&e).await;

    // A CA that did not sign the server's certificate: a clear error, no connection.
    let err = vigil_queue::Engine::connect(
        &tls_settings(&tls, &tls.wrong_ca_file(), true),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string().to_lowercase();
    assert!(
        matches!(&err, EngineError::Config(c) if c.key == "ca"),
        "a configuration mistake naming redis.ca, not a retry: {err}"
    );
    assert!(
        msg.contains("certificate") || msg.contains("unknownissuer") || msg.contains("tls"),
        "the error says why: {err}"
    );
    // Plain TCP against the TLS port does not pass for a connection either.
    let plain = RedisSettings {
        url: tls.url().replace("rediss://", "redis://"),
        response_timeout_ms: 1_000,
        ..RedisSettings::default()
    };
    // It fails at connect, or (a server that accepts the TCP connection) at the first command.
    if let Ok(e) =
        vigil_queue::Engine::connect(&plain, Default::default(), Default::default()).await
    {
        assert!(
            e.ping().await.is_err(),
            "plain TCP must not talk to a TLS port"
        );
    }
}

/// Enqueues `n` jobs one after another while `fault` runs after `at` of them; returns the
/// ids that were acknowledged.
async fn enqueue_through(
    e: &vigil_queue::Engine,
    n: usize,
    at: usize,
    fault: impl FnOnce(),
) -> (Vec<String>, usize) {
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut fault = Some(fault);
    for i in 0..n {
        if i == at
            && let Some(f) = fault.take()
        {
            f();
        }
        let mut job = NewJob::new(EmailJob::QUEUE, json!({ "i": i }));
        job.idempotency_key = Some(format!("k{i}"));
        match e.enqueue_raw(vec![job]).await {
            Ok(mut out) => acked.push(out.remove(0).job.id),
            Err(_) => failed += 1,
        }
    }
    (acked, failed)
}

async fn drain_exactly_once(e: &vigil_queue::Engine, ids: &[String]) {
    let runs = Runs::default();
    let (control, _task) = counting_worker(e, EmailJob::QUEUE, 8, &runs);
    each_ran_once(&runs, ids, Duration::from_secs(60)).await;
    for id in ids {
        assert_eq!(e.get(id).await.unwrap().unwrap().status, JobStatus::Done);
    }
    control.stop_leasing();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_loses_no_acknowledged_job_with_min_replicas_ack() {
    let set = SentinelSet::start_with(SentinelOptions::default());
    let mut settings = sentinel_settings(&set);
    settings.min_replicas_ack = 1;
    settings.replica_ack_timeout_ms = 1_000;
    let e = engine_on("failover-acked", settings).await;
    let old = set.master_port();
    let (acked, failed) = enqueue_through(&e, 300, 100, || {
        set.failover();
    })
    .await;
    assert_ne!(set.master_port(), old, "the master changed");
    eprintln!(
        "SENTINEL FAILOVER with min_replicas_ack=1: {} acknowledged, {failed} refused",
        acked.len()
    );
    assert!(
        acked.len() >= 200,
        "enqueues resume on the new master: {}",
        acked.len()
    );
    drain_exactly_once(&e, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sentinel_master_loses_no_acknowledged_job_with_min_replicas_ack() {
    let mut set = SentinelSet::start();
    let mut settings = sentinel_settings(&set);
    settings.min_replicas_ack = 1;
    settings.replica_ack_timeout_ms = 200;
    let e = engine_on("kill-acked", settings).await;
    let (mut acked, _) = enqueue_through(&e, 100, 100, || {}).await;
    set.kill_master();
    // The promoted master has no replica left: enqueues are refused (outcome unknown)
    // rather than acknowledged unsafely.
    let (more, failed) = enqueue_through(&e, 20, 20, || {}).await;
    eprintln!(
        "master SIGKILLed with min_replicas_ack=1: {} acknowledged after, {failed} refused",
        more.len()
    );
    acked.extend(more);
    drain_exactly_once(&e, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_min_replicas_ack_the_failover_loss_window_is_reported() {
    let set = SentinelSet::start();
    let e = engine_on("failover-unacked", sentinel_settings(&set)).await;
    let (acked, failed) = enqueue_through(&e, 300, 100, || {
        set.failover();
    })
    .await;
    let mut lost = 0;
    for id in &acked {
        if e.get(id).await.unwrap().is_none() {
            lost += 1;
        }
    }
    eprintln!(
        "SENTINEL FAILOVER without min_replicas_ack: {} acknowledged, {failed} refused, {lost} \
         acknowledged jobs missing on the new master",
        acked.len()
    );
    assert!(acked.len() >= 200, "the engine follows the new master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shard_failover_leaves_the_other_shards_running() {
    let cluster = RedisCluster::start(3, 1);
    let e = engine_on("cluster-failover", cluster_settings(cluster.nodes())).await;
    // A queue whose shard fails over, and one on another shard.
    let moving = EmailJob::QUEUE;
    let owner = cluster.master_of(&format!("{{{moving}}}"));
    let steady = Queue::all()
        .into_iter()
        .find(|q| cluster.master_of(&format!("{{{q}}}")) != owner)
        .expect("a queue on another shard");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let traffic = {
        let (e, stop, ok, errors) = (e.clone(), stop.clone(), ok.clone(), errors.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = e.enqueue_raw(vec![NewJob::new(steady, json!({}))]).await;
                let c = if r.is_ok() { &ok } else { &errors };
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    eventually(Duration::from_secs(5), "traffic flows", || async {
        ok.load(std::sync::atomic::Ordering::Relaxed) > 20
    })
    .await;
    let new_owner = tokio::task::spawn_blocking({
        let key = format!("{{{moving}}}");
        move || {
            let c = cluster;
            let p = c.failover_master_of(&key);
            (c, p)
        }
    })
    .await
    .unwrap();
    let (cluster, promoted) = new_owner;
    assert_ne!(promoted, owner);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(
        errors.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the other shard never failed"
    );
    // The failed-over queue works on its new master.
    eventually(
        Duration::from_secs(20),
        "the moved queue accepts jobs",
        || async {
            e.enqueue_raw(vec![NewJob::new(moving, json!({}))])
                .await
                .is_ok()
        },
    )
    .await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_client_clocks_neither_reap_healthy_jobs_nor_delay_due_ones() {
    let redis = RedisSettings {
        url: vigil_testkit::redis::shared_url(),
        ..RedisSettings::default()
    };
    let ahead = engine_on("skew", redis.clone())
        .await
        .with_clock_offset(chrono::Duration::minutes(10));
    let behind = vigil_queue::Engine::connect(
        &RedisSettings {
            prefix: ahead.prefix().to_owned(),
            ..redis
        },
        ahead.engine_settings().clone(),
        ahead.queues_settings().clone(),
    )
    .await
    .unwrap()
    .with_clock_offset(chrono::Duration::minutes(-10));
    let q = AuditJob::QUEUE;
    // The host behind holds a job under a 1 s lease and renews it.
    let id = behind
        .enqueue_raw(vec![NewJob::new(q, json!({}))])
        .await
        .unwrap()[0]
        .job
        .id
        .clone();
    let held = behind.lease(q, "behind", 1).await.unwrap().jobs.remove(0);
    assert_eq!(held.id, id);
    // The host ahead (its clock 20 minutes later) reaps: the healthy lease stays.
    assert_eq!(ahead.reap(q).await.unwrap(), (0, 0));
    assert!(
        behind.complete(&held).await.unwrap(),
        "nobody took the job over"
    );
    // A job delayed 1 s by the host ahead is due 1 s later by Redis' clock, not 10 min off.
    let mut d = NewJob::new(q, json!({}));
    d.run_at = Some(ahead.now() + chrono::Duration::seconds(1));
    let delayed = ahead.enqueue_raw(vec![d]).await.unwrap().remove(0).job;
    let waited = leased_within(&behind, q, "behind", &delayed.id, Duration::from_secs(5)).await;
    assert!(
        waited >= Duration::from_millis(800),
        "not early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "not late: {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_reply_is_lost_gets_its_jobs_back_at_once() {
    let server = RedisServer::start(false);
    let e = engine_on(
        "lost-lease",
        RedisSettings {
            url: server.url(),
            response_timeout_ms: 300,
            ..RedisSettings::default()
        },
    )
    .await
    .with_lease_seconds(10);
    let q = EmailJob::QUEUE;
    let ids: Vec<String> = e
        .enqueue_raw((0..5).map(|i| NewJob::new(q, json!({"i": i}))).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.job.id)
        .collect();
    // Redis stalls with the lease call in flight: its reply is lost (timeout), the call is
    // asked again with the same request id once Redis answers.
    server.pause();
    let leasing = {
        let e = e.clone();
        tokio::spawn(async move { e.lease(q, "w", 10).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await; // lets the first call time out
    server.resume();
    let began = Instant::now();
    let batch = leasing
        .await
        .unwrap()
        .expect("the lease succeeds after the stall");
    let mut got: Vec<String> = batch.jobs.iter().map(|j| j.id.clone()).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "the same jobs come back, none left unowned");
    assert!(batch.jobs.iter().all(|j| j.attempt == 1));
    let c = counts(&e, q).await;
    assert_eq!((c.pending, c.running), (0, 5));
    eprintln!(
        "lost lease reply: jobs back {:?} after Redis answered",
        began.elapsed()
    );
    // The answered call's replay record lives until the worker's next call, which drops it:
    // a worker keeps at most one in Redis, however many calls it makes.
    let records = || async {
        let mut c = e.redis();
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:{{{q}}}:lease:*", e.prefix()))
            .query_async(&mut c)
            .await
            .unwrap();
        found.len()
    };
    assert_eq!(records().await, 1);
    e.enqueue_raw(vec![NewJob::new(q, json!({"i": 5}))])
        .await
        .unwrap();
    assert_eq!(e.lease(q, "w", 10).await.unwrap().jobs.len(), 1);
    assert_eq!(records().await, 1, "the previous record is dropped");
    assert!(e.lease(q, "w", 10).await.unwrap().jobs.is_empty());
    assert_eq!(records().await, 0, "an empty call leaves none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_never_reports_failed_for_a_job_that_runs() {
    let server = RedisServer::start(false);
    let e = engine_on(
        "stall",
        RedisSettings {
            url: server.url(),
            response_timeout_ms: 1_000,
            ..RedisSettings::default()
        },
    )
    .await;
    let q = EmailJob::QUEUE;
    server.pause();
    let mut attempts = Vec::new();
    for i in 0..4 {
        let mut job = NewJob::new(q, json!({ "i": i }));
        job.idempotency_key = Some(format!("stall-{i}"));
        attempts.push((job.clone(), e.enqueue_raw(vec![job]).await));
    }
    // SIGSTOP for 15 s in all (the enqueues above took ~4 s of it).
    tokio::time::sleep(Duration::from_secs(11)).await;
    server.resume();
    let mut ran_after_unknown = 0;
    for (job, outcome) in attempts {
        let err = outcome.expect_err("no answer during a stall");
        // The client retries with the same key and learns the truth; no second job.
        let retried = eventually_ok(|| e.enqueue_raw(vec![job.clone()]))
            .await
            .remove(0);
        match err {
            EngineError::OutcomeUnknown(_) => ran_after_unknown += retried.duplicate as u32,
            other => assert!(
                !retried.duplicate,
                "told `{other}` (nothing done), yet the job exists"
            ),
        }
    }
    eprintln!("stall: {ran_after_unknown} of 4 enqueues answered `outcome unknown` ran on resume");
    assert_eq!(counts(&e, q).await.pending, 4, "each job exactly once");
}

async fn eventually_ok<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("still failing: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
