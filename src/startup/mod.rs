//! Startup as one build step, then run (zero2prod's `Application::build` /
//! `run_until_stopped`): [`Application::build`] does every fallible step — configuration
//! checks, database (migrated), Redis, listeners bound, token keys, rules, SMTP and Okta
//! settings — before any actor starts, so a mistake ends the process with one line and exit
//! code 1 and nothing to tear down. [`Application::run_until_stopped`] starts the actors,
//! the schedules and the API, watches the API task, and on a stop signal drains the API and
//! the running jobs concurrently within `engine.shutdown_deadline_seconds`.

mod services;

use std::time::Duration;

use anyhow::{Context, anyhow};
use prometheus::Registry;
use vigil_queue::Engine;
use vigil_store::db::redact_url;
use vigil_workers::runtime::{Metrics as JobMetrics, Runtime, RuntimeHandle};

use crate::config::{Loaded, Settings};
use crate::shutdown::Shutdown;
pub use services::{Services, detector};

pub use crate::role::Role;
use vigil_jobs::Job as _;

/// What this process serves over HTTP, bound but not serving yet.
enum Server {
    /// The API (with its own `/health`, `/ready`, `/metrics`).
    Api {
        state: vigil_api::ApiState,
        listening: vigil_api::Listening,
    },
    /// A worker's probes on `[worker] listen`.
    Probes(vigil_api::Listening),
}

impl Server {
    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Server::Api { listening, .. } | Server::Probes(listening) => listening.local_addr(),
        }
    }
}

/// The Okta Event Hook route's settings from `[okta]` (the API does not read that section).
fn okta_hook(settings: &Settings) -> Option<vigil_api::routes::okta_hooks::OktaHookSettings> {
    let secret = settings.okta.event_hook_secret.clone()?;
    Some(vigil_api::routes::okta_hooks::OktaHookSettings {
        header: settings.okta.event_hook_header.trim().to_owned(),
        secret,
        max_clock_skew: i64::try_from(settings.okta.max_clock_skew_seconds)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX),
    })
}

/// Everything built and checked; nothing running yet.
pub struct Application {
    role: Role,
    settings: Settings,
    db: vigil_store::Db,
    engine: Engine,
    registry: Registry,
    server: Option<Server>,
    services: Option<(Services, JobMetrics)>,
}

impl Application {
    /// Runs every fallible startup step. `Ok(None)` when a stop signal arrived while waiting
    /// for Redis.
    pub async fn build(
        loaded: &Loaded,
        role: Role,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Option<Application>> {
        let problems = crate::validate::validate(loaded, role);
        if let Some(first) = problems.first() {
            let more = match problems.len() {
                1 => String::new(),
                n => format!(" (and {} more; see `vigil check-config`)", n - 1),
            };
            return Err(anyhow!("invalid configuration: {first}{more}"));
        }
        let settings = loaded.settings.clone();
        let db = crate::commands::migrate::connect_db(&settings).await?;
        db.migrate().await.context("while applying migrations")?;
        let Some(engine) = connect_engine(&settings, shutdown).await? else {
            return Ok(None);
        };
        let registry = Registry::new();
        let (services, metrics) = if role.runs_workers() {
            let services = Services::build(&settings, &engine, &db, &registry)?;
            (Some(services), Some(JobMetrics::register(&registry)?))
        } else {
            (None, None)
        };
        let server = if role.runs_api() {
            // With workers in this process, the API's enqueues count in the same metrics.
            let api_engine = match &metrics {
                Some(m) => engine.clone().with_enqueue_hook(m.enqueue_hook()),
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
                    disabled_queues: disabled_queues(&settings),
                    okta_hook: okta_hook(&settings),
                },
                settings.schedules.clone(),
                registry.clone(),
            )
            .context("while setting up the API")?;
            let mut listening = bind("http.listen", &settings.http.listen, loaded).await?;
            if let Some(config) = settings.http.tls_config().map_err(|e| anyhow!(e))? {
                listening = listening.with_tls(config);
            }
            Some(Server::Api { state, listening })
        } else if let Some(addr) = settings.worker.listen_addr() {
            Some(Server::Probes(bind("worker.listen", addr, loaded).await?))
        } else {
            None
        };
        Ok(Some(Application {
            role,
            settings,
            db,
            engine,
            registry,
            server,
            services: services.zip(metrics),
        }))
    }

    /// The bound address of the API or the worker's probes, if this process serves one.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(Server::addr)
    }

    /// Starts the actors, schedules and API; returns after a stop signal and a drain, or
    /// with an error when the API task dies.
    pub async fn run_until_stopped(self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let Application {
            role,
            settings,
            db,
            engine,
            registry,
            server,
            services,
        } = self;
        let runtime = match services {
            Some(parts) => Some(start_runtime(&settings, &engine, &registry, parts, role)?),
            None => None,
        };
        let local: Option<vigil_api::LocalActors> = runtime.as_ref().map(|rt| {
            let board = rt.health_board();
            std::sync::Arc::new(move || board.snapshot()) as vigil_api::LocalActors
        });
        let listen = server
            .as_ref()
            .map(|s| format!("http://{}", s.addr()))
            .unwrap_or_default();
        let (stop_server, mut server_task) = match server {
            Some(server) => {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let stop = async {
                    let _ = rx.await;
                };
                let task = match server {
                    Server::Api { state, listening } => {
                        if let Some(local) = local {
                            state.set_local_actors(local);
                        }
                        let listening = listening.drain_within(drain_deadline(&settings));
                        tokio::spawn(listening.run(state, stop))
                    }
                    Server::Probes(listening) => {
                        let local = local.context("a worker's probes need its runtime")?;
                        let app = vigil_api::probes::app(registry.clone(), local);
                        tokio::spawn(listening.serve(app, stop))
                    }
                };
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        // An API-only process reports itself, so the fleet view lists it.
        let presence = (role == Role::Api).then(|| {
            let instance = vigil_queue::new_worker_id(role.as_str());
            let task = tokio::spawn(vigil_api::routes::instances::report_api_instance(
                engine.clone(),
                instance.clone(),
            ));
            (instance, task)
        });
        audit_daemon(&engine, "daemon.start", role).await;
        log_ready(&settings, role, &listen, runtime.as_ref());

        let api_died = tokio::select! {
            _ = shutdown.recv() => None,
            ended = watch(&mut server_task) => Some(ended),
        };
        let running = runtime.as_ref().map_or(0, RuntimeHandle::running_jobs);
        match &api_died {
            None => tracing::info!(
                running_jobs = running,
                deadline_seconds = drain_deadline(&settings).as_secs(),
                http = server_task.is_some(),
                "stop signal received: draining HTTP requests and running jobs; a second \
                 signal forces exit"
            ),
            Some(why) => tracing::error!(error = %why, running_jobs = running,
                "the HTTP server stopped unexpectedly; stopping the workers"),
        }
        audit_daemon(&engine, "daemon.stop", role).await;
        if let Some((instance, task)) = presence {
            task.abort();
            let _ = engine.forget_instance(&instance).await;
        }
        let api_drain = async {
            if let Some(tx) = stop_server {
                let _ = tx.send(());
            }
            if let Some(task) = server_task.filter(|_| api_died.is_none()) {
                let _ = task.await;
            }
        };
        let jobs_drain = async {
            if let Some(runtime) = runtime {
                runtime.shutdown().await;
            }
        };
        tokio::join!(api_drain, jobs_drain);
        db.close().await;
        match api_died {
            None => {
                tracing::info!("vigil stopped");
                Ok(())
            }
            Some(why) => Err(anyhow!("the HTTP server stopped unexpectedly: {why}")),
        }
    }
}

/// Resolves when the HTTP server task ends (never when there is none), with why it ended.
async fn watch(task: &mut Option<tokio::task::JoinHandle<std::io::Result<()>>>) -> String {
    match task {
        Some(t) => match t.await {
            Ok(Ok(())) => "the server ended without a stop signal".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("the server task failed: {e}"),
        },
        None => std::future::pending().await,
    }
}

/// Queues whose feature is off in this configuration, with the key that turns them on.
fn disabled_queues(settings: &Settings) -> std::collections::BTreeMap<vigil_jobs::Queue, String> {
    let mut off = std::collections::BTreeMap::new();
    if !settings.okta.enabled {
        off.insert(
            vigil_jobs::OktaFetchJob::QUEUE,
            "okta.enabled is false".to_owned(),
        );
    }
    off
}

/// The one deadline of the whole drain (HTTP requests and running jobs together).
fn drain_deadline(settings: &Settings) -> Duration {
    Duration::from_secs(settings.engine.shutdown_deadline_seconds)
}

/// Binds a listener for config key `key`; the error names the key, its source and the cause.
async fn bind(key: &str, addr: &str, loaded: &Loaded) -> anyhow::Result<vigil_api::Listening> {
    vigil_api::bind(addr).await.map_err(|e| {
        anyhow!(
            "cannot listen on {key} = {addr} (from {}): {e}",
            loaded.source_of(key)
        )
    })
}

/// The startup line: role, where the data lives (redacted), where to reach it, what runs.
fn log_ready(settings: &Settings, role: Role, listen: &str, runtime: Option<&RuntimeHandle>) {
    let (queues, schedules) = match runtime {
        Some(rt) => (
            rt.queues()
                .iter()
                .map(|q| q.as_str())
                .collect::<Vec<_>>()
                .join(","),
            rt.schedule_names().join(","),
        ),
        None => (String::new(), String::new()),
    };
    tracing::info!(
        role = role.as_str(),
        database = %redact_url(&settings.database.url),
        redis = %engine_redis_description(settings),
        listen,
        queues,
        schedules,
        "vigil is ready"
    );
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
        details: serde_json::json!({ "role": role.as_str(),
                                     "version": env!("CARGO_PKG_VERSION") }),
        request_id: None,
        job_id: None,
    };
    if vigil_api::audit::record(engine, entry).await.is_none() {
        tracing::warn!(action, "could not audit the daemon {action}");
    }
}

/// Which Redis deployment `[redis]` names, without credentials.
fn engine_redis_description(settings: &Settings) -> String {
    vigil_queue::Connector::new(&settings.redis)
        .map(|c| c.describe())
        .unwrap_or_else(|_| settings.redis.redacted_url())
}

/// Connects to Redis, retrying with backoff while it is unreachable. Returns `None` when a
/// stop signal arrives first.
pub async fn connect_engine(
    settings: &Settings,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Engine>> {
    let mut delay = Duration::from_millis(200);
    let mut stop = shutdown.clone();
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
                    redis = %engine_redis_description(settings),
                    error = %why,
                    retry_in_ms = delay.as_millis() as u64,
                    "Redis is not reachable yet"
                );
            }
            Err(e) => return Err(e).context("while connecting to Redis"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.recv() => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// The schedules, with `okta_fetch` split per org when `[[okta.orgs]]` are configured:
/// `okta_fetch.<org>` with payload `{"org": "<org>"}` on the org's `schedule` (default: the
/// `okta_fetch` cron), so each org is polled on its own ticks. A single `[okta]` keeps the
/// `okta_fetch` schedule as is (its payload without `org` = the only org).
pub fn okta_schedules(settings: &Settings) -> anyhow::Result<vigil_queue::SchedulesSettings> {
    let mut schedules = settings.schedules.clone();
    if !settings.okta.enabled || settings.okta.orgs.is_empty() {
        return Ok(schedules);
    }
    let Some(base) = schedules.0.remove("okta_fetch") else {
        return Ok(schedules);
    };
    for org in settings.okta.orgs().context("invalid [okta] settings")? {
        let mut payload = base.payload.clone();
        if let Some(o) = payload.as_object_mut() {
            o.insert("org".to_owned(), org.name.clone().into());
        }
        schedules.0.insert(
            format!("okta_fetch.{}", org.name),
            vigil_queue::ScheduleSettings {
                cron: org.schedule.clone().unwrap_or_else(|| base.cron.clone()),
                payload,
                ..base.clone()
            },
        );
    }
    Ok(schedules)
}

/// Starts the services' actors, the supervised workers of every queue they serve, and the
/// schedules of those queues (a schedule whose queue nobody here consumes would only pile
/// up jobs).
fn start_runtime(
    settings: &Settings,
    engine: &Engine,
    registry: &Registry,
    (services, metrics): (Services, JobMetrics),
    role: Role,
) -> anyhow::Result<RuntimeHandle> {
    let handlers = services.start();
    let served: Vec<vigil_jobs::Queue> = handlers.iter().map(|(q, _)| *q).collect();
    let mut schedules = okta_schedules(settings)?;
    schedules.0.retain(|name, s| {
        let ok = served.contains(&s.queue);
        if !ok {
            tracing::info!(schedule = %name, queue = %s.queue,
                "schedule skipped: its queue is not served here");
        }
        ok
    });
    let mut builder = Runtime::builder(engine.clone(), schedules, registry)
        .name(role.as_str())
        .metrics(metrics);
    for (queue, handler) in handlers {
        builder = builder.handler(queue, handler);
    }
    builder.start().context("while starting the job runtime")
}
