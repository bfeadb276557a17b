//! Shared test helpers: an engine on a unique key prefix, a worker running the real
//! apalis path over `VigilBackend`, polling helpers and key cleanup.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis_core::task::data::Data;
use apalis_core::worker::builder::WorkerBuilder;
use vigil_queue::backend::{PermanentFailure, WorkerControl};
use vigil_queue::{
    Engine, EngineSettings, LeasedJob, Queue, QueueCounts, QueuesSettings, RedisSettings,
    VigilBackend, new_worker_id,
};

pub type BoxError = apalis_core::error::BoxDynError;

pub struct TestEngine {
    pub engine: Engine,
    url: String,
}

impl TestEngine {
    pub async fn new(name: &str) -> TestEngine {
        Self::with(name, &vigil_testkit::redis::shared_url(), |_, _| {}).await
    }

    pub async fn with(
        name: &str,
        url: &str,
        tune: impl FnOnce(&mut EngineSettings, &mut QueuesSettings),
    ) -> TestEngine {
        let mut engine = EngineSettings {
            poll_interval_ms: 200,
            ..EngineSettings::default()
        };
        let mut queues = QueuesSettings::default();
        tune(&mut engine, &mut queues);
        let redis = RedisSettings {
            url: url.to_owned(),
            prefix: vigil_testkit::redis::unique_prefix(name),
            response_timeout_ms: 2_000,
            ..Default::default()
        };
        let engine = Engine::connect(&redis, engine, queues)
            .await
            .expect("engine connects");
        TestEngine {
            engine,
            url: url.to_owned(),
        }
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        // Delete this test's keys (best effort, synchronous client).
        let pattern = format!("{}:*", self.engine.prefix());
        if let Ok(client) = redis::Client::open(self.url.as_str())
            && let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(2))
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut c)
                .unwrap_or_default();
            for chunk in keys.chunks(1000) {
                let _: Result<(), _> = redis::cmd("UNLINK").arg(chunk).query(&mut c);
            }
        }
    }
}

/// Runs an apalis worker over vigil's backend with `handler`; returns its control and task.
pub fn worker<F, Fut>(
    engine: &Engine,
    queue: Queue,
    concurrency: usize,
    handler: F,
) -> (WorkerControl, tokio::task::JoinHandle<()>)
where
    F: Fn(LeasedJob) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let id = new_worker_id("test");
    let (backend, control) =
        VigilBackend::start(engine.clone(), queue, id.clone(), concurrency, None);
    let handler = TestHandler(Arc::new(move |job| Box::pin(handler(job))));
    let worker = WorkerBuilder::new(id)
        .backend(backend)
        .data(handler)
        .build(run_handler);
    let task = tokio::spawn(async move {
        let _ = worker.run().await;
    });
    (control, task)
}

type HandlerFn = dyn Fn(LeasedJob) -> HandlerFuture + Send + Sync;

/// A named wrapper: a `dyn` type directly inside `Data<..>` trips rustc's higher-ranked
/// lifetime check when the worker future is spawned.
#[derive(Clone)]
struct TestHandler(Arc<HandlerFn>);

type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

fn run_handler(job: LeasedJob, h: Data<TestHandler>) -> HandlerFuture {
    let f: &TestHandler = &h;
    (f.0)(job)
}

/// A permanent failure for handlers.
pub fn permanent(msg: &str) -> BoxError {
    Box::new(PermanentFailure(msg.to_owned()))
}

/// Leases the first job of `q` that becomes available to `worker` (reaping expired leases
/// first, so a job whose lease ran out is available again), waiting up to `limit`.
pub async fn lease_when_available(
    e: &Engine,
    q: Queue,
    worker: &str,
    limit: Duration,
) -> LeasedJob {
    let deadline = Instant::now() + limit;
    loop {
        e.reap(q).await.unwrap();
        let mut batch = e.lease(q, worker, 1).await.unwrap();
        if let Some(job) = batch.jobs.pop() {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "no job of {q} became available to {worker} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it returns true or `limit` passes; panics with `what` on timeout.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn counts(engine: &Engine, q: Queue) -> QueueCounts {
    engine.counts(q).await.expect("counts")
}

pub mod suite;

/// An engine on a fresh prefix of the deployment `redis` describes, tuned for the suite
/// (1 s leases, fast polling, 3 attempts).
pub async fn engine_on(name: &str, mut redis: RedisSettings) -> Engine {
    let _ = rustls::crypto::ring::default_provider().install_default();
    redis.prefix = vigil_testkit::redis::unique_prefix(name);
    let engine = EngineSettings {
        poll_interval_ms: 100,
        lease_seconds: 1,
        ..EngineSettings::default()
    };
    let mut queues = QueuesSettings::default();
    for q in Queue::all() {
        let s = queues.get_mut(q);
        s.max_attempts = 3;
        s.backoff_base_ms = 10;
        s.backoff_max_ms = 20;
    }
    Engine::connect(&redis, engine, queues)
        .await
        .expect("engine connects")
}

/// `[redis]` for a Cluster given its node URLs.
pub fn cluster_settings(nodes: Vec<String>) -> RedisSettings {
    RedisSettings {
        mode: vigil_queue::RedisMode::Cluster,
        nodes,
        response_timeout_ms: 2_000,
        ..RedisSettings::default()
    }
}

/// `[redis]` for a Sentinel set.
pub fn sentinel_settings(set: &vigil_testkit::redis_topology::SentinelSet) -> RedisSettings {
    RedisSettings {
        mode: vigil_queue::RedisMode::Sentinel,
        sentinels: set.sentinel_urls(),
        master_name: set.master_name().to_owned(),
        password: set.password().map(str::to_owned),
        response_timeout_ms: 1_000,
        ..RedisSettings::default()
    }
}

/// How many times each job id ran, shared by counting workers.
pub type Runs = Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>;

/// A worker on `queue` that only counts the runs of each job in `runs`.
pub fn counting_worker(
    engine: &Engine,
    queue: Queue,
    concurrency: usize,
    runs: &Runs,
) -> (WorkerControl, tokio::task::JoinHandle<()>) {
    let r = runs.clone();
    worker(engine, queue, concurrency, move |job| {
        let r = r.clone();
        async move {
            *r.lock().unwrap().entry(job.id).or_default() += 1;
            Ok(())
        }
    })
}

/// Waits until every job of `ids` ran, then asserts each ran exactly once.
pub async fn each_ran_once(runs: &Runs, ids: &[String], limit: Duration) {
    eventually(limit, "every job ran", || async {
        let r = runs.lock().unwrap().clone();
        ids.iter().all(|id| r.contains_key(id))
    })
    .await;
    let r = runs.lock().unwrap().clone();
    for id in ids {
        assert_eq!(r[id], 1, "{id} ran exactly once");
    }
}

/// Leases from `queue` as `worker` until the job `id` comes out (`limit` at most); returns
/// how long that took.
pub async fn leased_within(
    engine: &Engine,
    queue: Queue,
    worker: &str,
    id: &str,
    limit: Duration,
) -> Duration {
    let began = Instant::now();
    eventually(limit, "the job is leased", || async {
        engine
            .lease(queue, worker, 10)
            .await
            .unwrap()
            .jobs
            .iter()
            .any(|j| j.id == id)
    })
    .await;
    began.elapsed()
}
