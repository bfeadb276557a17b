//! `vigil migrate`: bring the database schema up to date, then exit.

use anyhow::Context;

use crate::config::Settings;

/// Applies pending migrations; running it twice is harmless.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let db = connect_db(settings).await?;
    db.migrate().await.context("while applying migrations")?;
    tracing::info!(engine = %format!("{:?}", db.kind()).to_lowercase(), "database schema is up to date");
    println!("migrations applied ({:?})", db.kind());
    db.close().await;
    Ok(())
}

/// Connects to the configured database (without migrating).
pub async fn connect_db(settings: &Settings) -> anyhow::Result<vigil_store::Db> {
    let url = &settings.database.url;
    vigil_store::Db::connect(url, settings.database.max_connections)
        .await
        .with_context(|| format!("while connecting to {}", vigil_store::db::redact_url(url)))
}
