//! `vigil user` (being built).

use crate::cli::UserCommand;
use crate::config::Settings;

/// Runs a `vigil user` subcommand.
pub async fn run(_settings: &Settings, cmd: &UserCommand) -> anyhow::Result<()> {
    anyhow::bail!("vigil user: {cmd:?} is not available yet")
}
