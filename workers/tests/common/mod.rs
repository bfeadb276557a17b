//! Helpers shared by the workers' integration tests: an actix system on a multi-threaded
//! tokio runtime, an engine on the shared Redis under a test's own prefix (with quick
//! polling and retries), waiting for a condition, and deleting the test's keys.
#![allow(dead_code)] // each test file uses its own subset

use std::time::{Duration, Instant};

use vigil_queue::{Engine, EngineSettings, QueueSettings, QueuesSettings, RedisSettings};

/// Runs `f` inside an actix `System` on a 2-thread tokio runtime (what the runtime needs).
pub fn system<F: std::future::Future<Output = ()>>(f: F) {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
    .block_on(f);
}

/// Quick retries for tests: 4 attempts, 100-400 ms apart.
pub fn quick_queue() -> QueueSettings {
    QueueSettings {
        max_attempts: 4,
        timeout_seconds: 20,
        concurrency: 2,
        backoff_base_ms: 100,
        backoff_max_ms: 400,
        ..QueueSettings::default()
    }
}

/// An engine under `prefix` with fast polling; `tune` adjusts the engine and queues.
pub async fn engine(
    prefix: &str,
    tune: impl FnOnce(&mut EngineSettings, &mut QueuesSettings),
) -> Engine {
    let mut settings = EngineSettings {
        poll_interval_ms: 100,
        reaper_interval_ms: 500,
        shutdown_deadline_seconds: 2,
        ..EngineSettings::default()
    };
    let mut queues = QueuesSettings::default();
    tune(&mut settings, &mut queues);
    Engine::connect(
        &RedisSettings {
            url: vigil_testkit::redis::shared_url(),
            prefix: prefix.to_owned(),
            response_timeout_ms: 2_000,
            ..Default::default()
        },
        settings,
        queues,
    )
    .await
    .expect("engine")
}

/// Polls `check` every 50 ms until it holds; fails the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The jobs on `queue` (first 500), whatever their status.
pub async fn jobs(e: &Engine, queue: vigil_jobs::Queue) -> Vec<vigil_jobs::JobRecord> {
    e.list(&vigil_queue::JobFilter {
        queue: Some(queue),
        page_size: 500,
        ..Default::default()
    })
    .await
    .expect("list jobs")
    .jobs
}

/// Deletes every key under the engine's prefix.
pub async fn cleanup(e: &Engine) {
    let mut c = e.redis();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", e.prefix()))
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut c).await;
    }
}
