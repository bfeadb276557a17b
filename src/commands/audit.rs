//! `vigil audit` (being built).

use crate::cli::AuditCommand;
use crate::config::Settings;

/// Runs a `vigil audit` subcommand.
pub async fn run(_settings: &Settings, cmd: &AuditCommand) -> anyhow::Result<()> {
    anyhow::bail!("vigil audit: {cmd:?} is not available yet")
}
