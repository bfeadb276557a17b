//! `vigil run`, `vigil worker`, `vigil api`: build everything ([`Application::build`]), then
//! run until a stop signal ([`Application::run_until_stopped`]). See [`crate::startup`].

use crate::config::Loaded;
use crate::shutdown::Shutdown;
use crate::startup::{Application, Role};

/// Builds and runs the parts of `role`. A build failure returns (nothing was started); once
/// the actors run, the process exits from here, inside the runtime, with the outcome's code:
/// letting the actor system be torn down after the runtime is gone makes services with
/// async clean-up (lettre's SMTP pool) panic.
pub async fn run(loaded: Loaded, role: Role) -> anyhow::Result<()> {
    let shutdown = Shutdown::from_signals();
    let Some(app) = Application::build(&loaded, role, &shutdown).await? else {
        return Ok(());
    };
    let outcome = app.run_until_stopped(shutdown).await;
    std::process::exit(super::report(outcome, loaded.settings.log.format))
}
