//! `vigil run`, `vigil worker`, `vigil api`: start the long-running parts and stop them
//! cleanly on SIGTERM or SIGINT.

use anyhow::Context;

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

/// Starts the parts of `role`, waits for a stop signal, then shuts them down.
pub async fn run(settings: Settings, role: Role) -> anyhow::Result<()> {
    let db = super::migrate::connect_db(&settings).await?;
    db.migrate().await.context("while applying migrations")?;
    tracing::info!(?role, "vigil is ready");
    wait_for_stop_signal().await;
    tracing::info!("stop signal received, shutting down");
    db.close().await;
    Ok(())
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
