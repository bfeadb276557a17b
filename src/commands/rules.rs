//! `vigil rules` (being built).

use crate::cli::RulesCommand;
use crate::config::Settings;

/// Runs a `vigil rules` subcommand.
pub async fn run(_settings: &Settings, cmd: &RulesCommand) -> anyhow::Result<()> {
    anyhow::bail!("vigil rules: {cmd:?} is not available yet")
}
