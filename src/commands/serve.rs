//! `vigil run`, `vigil worker`, `vigil api`: start the long-running parts and stop them
//! cleanly on SIGTERM or SIGINT.
//!
//! Startup order: database (migrated) → Redis engine (waits for Redis with backoff, so a
//! daemon started before Redis comes up by itself) → workers runtime and/or API → "ready".
//! Shutdown order: the API stops accepting, the runtime stops leasing and drains running
//! jobs up to `engine.shutdown_deadline_seconds`, unfinished jobs go back to their queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::Registry;
use vigil_jobs::Queue;
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
        let handlers = build_handlers(&settings, &engine, &db, &registry)?;
        Some(start_runtime(&settings, &engine, &registry, handlers)?)
    } else {
        None
    };
    let api = if role != Role::Worker {
        // With workers in this process, the API's enqueues count in the same metrics.
        let api_engine = match &runtime {
            Some(rt) => engine
                .clone()
                .with_enqueue_hook(rt.metrics().enqueue_hook()),
            None => engine.clone(),
        };
        let state = vigil_api::ApiState::new(
            api_engine,
            db.clone(),
            vigil_api::ApiSettings {
                http: settings.http.clone(),
                auth: settings.auth.clone(),
                rate_limit: settings.rate_limit.clone(),
                escalation: settings.escalation.clone(),
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
    audit_daemon(&engine, "daemon.start", role).await;
    tracing::info!(?role, "vigil is ready");
    wait_for_stop_signal().await;
    tracing::info!("stop signal received, shutting down");
    audit_daemon(&engine, "daemon.stop", role).await;
    if let Some((stop_tx, task)) = api {
        let _ = stop_tx.send(());
        let _ = task.await;
    }
    if let Some(runtime) = runtime {
        runtime.shutdown().await;
    }
    db.close().await;
    tracing::info!("vigil stopped");
    // Everything durable is done: jobs drained or handed back, server stopped, pool closed.
    // Exit here, inside the runtime, instead of letting the actor system be torn down after
    // the runtime is gone, where services with async clean-up (lettre's SMTP pool) panic.
    std::process::exit(0)
}

/// Audits a daemon start or stop (through the `audit` queue, like every audited action).
async fn audit_daemon(engine: &Engine, action: &str, role: Role) {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    let target = format!("{host}:{}", std::process::id());
    let entry = vigil_api::audit::Entry {
        actor: vigil_jobs::AuditActor::System,
        action,
        target_type: "daemon",
        target_id: &target,
        details: serde_json::json!({ "role": format!("{role:?}").to_lowercase(),
                                     "version": env!("CARGO_PKG_VERSION") }),
        request_id: None,
        job_id: None,
    };
    if vigil_api::audit::record(engine, entry).await.is_none() {
        tracing::warn!(action, "could not audit the daemon {action}");
    }
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
                    redis = %settings.redis.redacted_url(),
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

/// The handler of every queue this process can run, over long-lived services: the audit
/// writer actor, the mailer (SMTP pool, shared send limit), the escalator and webhook sender,
/// the Okta poller (when `okta.enabled`) with the detector as its new-events sink.
pub fn build_handlers(
    settings: &Settings,
    engine: &Engine,
    db: &vigil_store::Db,
    registry: &Registry,
) -> anyhow::Result<Vec<(Queue, Handler)>> {
    use vigil_workers::{alerts, audit, email, okta};
    let mut handlers = Vec::new();

    let audit_metrics = audit::AuditMetrics::register(registry)?;
    let writer = audit::AuditWriter::new(
        db.clone(),
        audit::AuditWriterSettings::default(),
        Some(audit_metrics),
    )
    .start_writer();
    handlers.push((Queue::Audit, audit::audit_handler(writer)));

    let limiter = email::SendRateLimiter::redis(
        engine.redis(),
        format!("{}:email:rate", engine.prefix()),
        settings.smtp.rate_per_minute,
        Duration::from_secs(settings.smtp.rate_wait_seconds),
    );
    let mailer = email::Mailer::new(
        &settings.smtp,
        db.clone(),
        limiter,
        Arc::new(email::EngineAuditSink::new(engine.clone())),
    )
    .context("invalid [smtp] settings")?
    .with_metrics(email::EmailMetrics::register(registry)?);
    handlers.push((Queue::Email, email::email_handler(mailer)));

    let alert_metrics = alerts::AlertMetrics::register(registry)?;
    let escalation = Arc::new(settings.escalation.clone());
    let rules = vigil_rules::RuleSet::load(&settings.rules).context("invalid [rules]")?;
    tracing::info!(rules = rules.rules().len(), disabled = ?rules.disabled(), "detection rules loaded");
    let detector = Arc::new(alerts::Detector::new(
        Arc::new(rules),
        Arc::new(
            vigil_rules::RedisWindows::new(engine.redis(), engine.prefix())
                .clustered(engine.redis().is_cluster()),
        ),
        db.clone(),
        engine.clone(),
        escalation.clone(),
        Some(alert_metrics.clone()),
    ));
    let escalator = alerts::Escalator::new(
        db.clone(),
        engine.clone(),
        escalation.clone(),
        Some(alert_metrics.clone()),
    );
    let webhooks = alerts::WebhookSender::new(escalation, db.clone(), Some(alert_metrics))
        .context("while building the webhook client")?;
    handlers.push((
        Queue::AlertEscalation,
        alerts::alert_escalation_handler(escalator, webhooks, Some(detector.clone())),
    ));

    if settings.okta.enabled {
        let metrics = okta::OktaMetrics::register(registry)?;
        let poller = okta::OktaPoller::new(settings.okta.clone(), db.clone(), Some(metrics))
            .context("invalid [okta] settings")?
            .with_sink(detector);
        handlers.push((Queue::OktaFetch, okta::okta_handler(poller)));
    } else {
        tracing::info!("okta.enabled is false: this process does not fetch Okta events");
    }
    Ok(handlers)
}

/// Starts the supervised workers of every queue that has a handler, and the schedules of
/// those queues (a schedule whose queue nobody here consumes would only pile up jobs).
pub fn start_runtime(
    settings: &Settings,
    engine: &Engine,
    registry: &Registry,
    handlers: Vec<(Queue, Handler)>,
) -> anyhow::Result<RuntimeHandle> {
    let mut schedules = settings.schedules.clone();
    schedules.0.retain(|name, s| {
        let served = handlers.iter().any(|(q, _)| *q == s.queue);
        if !served {
            tracing::info!(schedule = %name, queue = %s.queue, "schedule skipped: no handler for its queue here");
        }
        served
    });
    let mut builder = Runtime::builder(engine.clone(), schedules, registry);
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
