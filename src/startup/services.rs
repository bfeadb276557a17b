//! The services behind each queue's handler, in two steps so nothing starts before every
//! fallible step succeeded: [`Services::build`] checks and builds them (rules, SMTP
//! settings, Okta client, metrics) without starting any actor; [`Services::start`] starts the
//! audit writer actor and hands out one handler per served queue (through the
//! registration point, `crate::jobs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::Registry;
use vigil_jobs::Queue;
use vigil_queue::Engine;
use vigil_workers::runtime::{Handler, Registrar};
use vigil_workers::{alerts, audit, email, okta};

use crate::config::Settings;

/// The detector over the configured rules, with windows in Redis (also used by
/// `vigil okta backfill`).
pub fn detector(
    settings: &Settings,
    engine: &Engine,
    db: &vigil_store::Db,
    metrics: Option<alerts::AlertMetrics>,
) -> anyhow::Result<Arc<alerts::Detector>> {
    let rules = vigil_rules::RuleSet::load(&settings.rules).context("invalid [rules]")?;
    tracing::info!(rules = rules.rules().len(), disabled = %rules.disabled().join(","),
        sigma_not_loaded = rules.problems().len(), "detection rules loaded");
    for problem in rules.problems() {
        tracing::warn!(file = %problem.file.display(), rule = %problem.rule,
            construct = %problem.construct, reason = %problem.message,
            "Sigma rule not loaded");
    }
    Ok(Arc::new(alerts::Detector::new(
        Arc::new(rules),
        Arc::new(
            vigil_rules::RedisWindows::new(engine.redis(), engine.prefix())
                .clustered(engine.redis().is_cluster()),
        ),
        db.clone(),
        engine.clone(),
        Arc::new(settings.escalation.clone()),
        metrics,
    )))
}

/// Every queue's service, built but not started.
pub struct Services {
    audit: audit::AuditWriter,
    mailer: email::Mailer,
    escalator: alerts::Escalator,
    webhooks: alerts::WebhookSender,
    detector: Arc<alerts::Detector>,
    okta: Option<okta::OktaOrgs>,
}

impl Services {
    /// Builds the audit writer (not started), the mailer (SMTP pool, shared send limit), the
    /// escalator and webhook sender, the detector over the rules, and one Okta poller per
    /// org when `okta.enabled`. Nothing connects and no actor starts.
    pub fn build(
        settings: &Settings,
        engine: &Engine,
        db: &vigil_store::Db,
        registry: &Registry,
    ) -> anyhow::Result<Services> {
        let audit =
            audit::AuditWriter::new(db.clone(), Some(audit::AuditMetrics::register(registry)?));
        let limiter = email::SendRateLimiter::redis(
            engine.redis(),
            format!("{}:email:rate", engine.prefix()),
            settings.smtp.rate_per_minute,
            Duration::from_secs(settings.smtp.rate_wait_seconds),
        );
        let alert_metrics = alerts::AlertMetrics::register(registry)?;
        let escalation = Arc::new(settings.escalation.clone());
        let tracker = alerts::NotificationTracker::new(
            db.clone(),
            engine.clone(),
            escalation.clone(),
            Some(alert_metrics.clone()),
        );
        let mailer = email::Mailer::new(
            &settings.smtp,
            db.clone(),
            limiter,
            Arc::new(email::EngineAuditSink::new(engine.clone())),
        )
        .context("invalid [smtp] settings")?
        .with_metrics(email::EmailMetrics::register(registry)?)
        .with_notifications(tracker.clone())
        .with_breaker(email::Breaker::redis(
            engine.redis(),
            format!("{}:email:breaker", engine.prefix()),
            email::Mailer::breaker_timing(&settings.smtp),
        ));

        let detector = detector(settings, engine, db, Some(alert_metrics.clone()))?;
        let escalator = alerts::Escalator::new(
            db.clone(),
            engine.clone(),
            escalation.clone(),
            Some(alert_metrics.clone()),
        );
        let webhooks = alerts::WebhookSender::new(escalation, db.clone(), Some(alert_metrics))
            .context("while building the webhook client")?
            .with_notifications(tracker);

        let okta = if settings.okta.enabled {
            let metrics = okta::OktaMetrics::register(registry)?;
            let mut pollers = Vec::new();
            for org in settings.okta.orgs().context("invalid [okta] settings")? {
                let poller = okta::OktaPoller::for_org(
                    &org.name,
                    org.settings,
                    db.clone(),
                    Some(metrics.clone()),
                )
                .with_context(|| format!("invalid settings of Okta org `{}`", org.name))?
                .with_redis(engine.redis(), engine.prefix())
                .with_sink(detector.clone());
                pollers.push(poller);
            }
            Some(okta::OktaOrgs::new(pollers).with_progress(engine.clone()))
        } else {
            None
        };
        Ok(Services {
            audit,
            mailer,
            escalator,
            webhooks,
            detector,
            okta,
        })
    }

    /// Starts the audit writer actor and returns the handler of every queue served here
    /// (each registered kind whose dependencies these services provide). Must run inside
    /// the actix system.
    pub fn start(self) -> Vec<(Queue, Handler)> {
        let mut r = Registrar::new();
        r.provide(self.audit.start_writer())
            .provide(self.mailer)
            .provide(self.webhooks.clone())
            .provide(alerts::AlertWork {
                escalator: self.escalator,
                webhooks: self.webhooks,
                detector: Some(self.detector),
            });
        if let Some(orgs) = self.okta {
            r.provide(orgs);
        }
        crate::jobs::register(&mut r);
        r.into_handlers()
    }
}
