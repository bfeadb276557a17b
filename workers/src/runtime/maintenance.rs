//! Periodic engine upkeep every worker instance runs: the reaper (expired leases back to
//! the queue, or dead at max attempts), the pruner (finished jobs past their queue's
//! retention), the outbox relay (companion jobs, e.g. enqueue audit records, whose producer
//! stopped before handing them on), the depth gauges (from the ledger) and the health report
//! to Redis.

use std::time::Duration;

use super::supervisor::Shared;

/// How long a health report stays valid in Redis.
pub const HEALTH_TTL: Duration = Duration::from_secs(15);

/// Runs until the runtime shuts down.
pub(crate) async fn run(shared: Shared) {
    let reap_every =
        Duration::from_millis(shared.engine.engine_settings().reaper_interval_ms.max(100));
    let mut reap = tokio::time::interval(reap_every);
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    let mut relay = tokio::time::interval(Duration::from_secs(5));
    let mut gauges = tokio::time::interval(Duration::from_secs(5));
    let mut report = tokio::time::interval(Duration::from_secs(5));
    loop {
        if shared.stopping() {
            break;
        }
        tokio::select! {
            _ = reap.tick() => {
                for q in shared.engine.queues_settings().queues() {
                    match shared.engine.reap(q).await {
                        Ok((0, 0)) => {}
                        Ok((requeued, dead)) => tracing::warn!(queue = %q, requeued, dead,
                            "expired leases reaped (a worker died or stalled)"),
                        Err(e) => tracing::warn!(queue = %q, error = %e, "reaper: Redis unavailable; will retry"),
                    }
                }
            }
            _ = prune.tick() => {
                match shared.engine.prune().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(pruned = n, "finished jobs past the retention deleted"),
                    Err(e) => tracing::warn!(error = %e, "pruner: Redis unavailable; will retry"),
                }
            }
            _ = relay.tick() => {
                match shared.engine.relay_outbox().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(relayed = n, "companion jobs relayed from the outbox"),
                    Err(e) => tracing::warn!(error = %e, "outbox relay: Redis unavailable; will retry"),
                }
            }
            _ = gauges.tick() => {
                for q in shared.engine.queues_settings().queues() {
                    if let Ok(c) = shared.engine.counts(q).await {
                        shared.metrics.set_depth(q, &c);
                    }
                }
            }
            _ = report.tick() => {
                let now = chrono::Utc::now();
                let mut actors = shared.health.snapshot();
                for a in &mut actors {
                    a.reported_at = Some(now);
                }
                if let Err(e) = shared.engine.report_actors(&shared.instance, &actors, HEALTH_TTL).await {
                    tracing::debug!(error = %e, "could not publish actor health");
                }
            }
        }
    }
}
