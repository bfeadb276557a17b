//! `vigil okta` (being built).

use crate::cli::OktaCommand;
use crate::config::Settings;

/// Runs a `vigil okta` subcommand.
pub async fn run(_settings: &Settings, cmd: &OktaCommand) -> anyhow::Result<()> {
    anyhow::bail!("vigil okta: {cmd:?} is not available yet")
}
