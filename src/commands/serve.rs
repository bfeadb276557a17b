//! `vigil run`, `vigil worker`, `vigil api`: start the long-running parts and stop them
//! cleanly on SIGTERM or SIGINT.
//!
//! Startup order: database (migrated) → Redis engine (waits for Redis with backoff, so a
//! daemon started before Redis comes up by itself) → workers runtime and/or API → "ready".
//! Shutdown order: the API stops accepting, the runtime stops leasing and drains running
//! jobs up to `engine.shutdown_deadline_seconds`, unfinished jobs go back to their queue.

use std::time::Duration;

use anyhow::Context;
use prometheus::Registry;
use vigil_queue::Engine;
use vigil_workers::runtime::{Handler, Runtime, RuntimeHandle};

use crate::config::Settings;

/// Which parts of vigil this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// API, workers and schedules.
    All,
    /// Workers and schedules only.
    Worker,
    /// The HTTP API only.
    Api,
}

impl Role {
    fn runs_workers(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// Starts the parts of `role`, waits for a stop signal, then shuts them down.
pub async fn run(settings: Settings, role: Role) -> anyhow::Result<()> {
    let db = super::migrate::connect_db(&settings).await?;
    db.migrate().await.context("while applying migrations")?;
    let Some(engine) = connect_engine(&settings).await? else {
        return Ok(());
    };
    let registry = Registry::new();
    let runtime = if role.runs_workers() {
        Some(start_runtime(&settings, &engine, &registry, Vec::new())?)
    } else {
        None
    };
    let api = if role != Role::Worker {
        let state = vigil_api::ApiState::new(
            engine.clone(),
            db.clone(),
            vigil_api::ApiSettings {
                http: settings.http.clone(),
                auth: settings.auth.clone(),
                rate_limit: settings.rate_limit.clone(),
            },
            settings.schedules.clone(),
            registry.clone(),
        )
        .context("while setting up the API")?;
        let listening = vigil_api::bind(&settings.http.listen)
            .await
            .with_context(|| format!("while binding the API to {}", settings.http.listen))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(listening.run(state, async {
            let _ = stop_rx.await;
        }));
        Some((stop_tx, task))
    } else {
        None
    };
    tracing::info!(?role, "vigil is ready");
    wait_for_stop_signal().await;
    tracing::info!("stop signal received, shutting down");
    if let Some((stop_tx, task)) = api {
        let _ = stop_tx.send(());
        let _ = task.await;
    }
    if let Some(runtime) = runtime {
        runtime.shutdown().await;
    }
    db.close().await;
    tracing::info!("vigil stopped");
    Ok(())
}

/// Connects to Redis, retrying with backoff while it is unreachable. Returns `None` when a
/// stop signal arrives first.
pub async fn connect_engine(settings: &Settings) -> anyhow::Result<Option<Engine>> {
    let mut delay = Duration::from_millis(200);
    let stop = wait_for_stop_signal();
    tokio::pin!(stop);
    loop {
        match Engine::connect(
            &settings.redis,
            settings.engine.clone(),
            settings.queues.clone(),
        )
        .await
        {
            Ok(engine) => return Ok(Some(engine)),
            Err(vigil_queue::EngineError::Unavailable(why)) => {
                tracing::warn!(
                    redis = %vigil_store::db::redact_url(&settings.redis.url),
                    error = %why,
                    retry_in = ?delay,
                    "Redis is not reachable yet"
                );
            }
            Err(e) => return Err(e).context("while connecting to Redis"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Starts the supervised workers of every queue that has a handler, and the schedules.
pub fn start_runtime(
    settings: &Settings,
    engine: &Engine,
    registry: &Registry,
    handlers: Vec<(vigil_jobs::Queue, Handler)>,
) -> anyhow::Result<RuntimeHandle> {
    let mut builder = Runtime::builder(engine.clone(), settings.schedules.clone(), registry);
    for (queue, handler) in handlers {
        builder = builder.handler(queue, handler);
    }
    builder.start().context("while starting the job runtime")
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
