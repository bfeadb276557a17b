//! One module per command group. [`dispatch`] loads the configuration, starts telemetry and
//! the runtime, and runs the chosen command.
//!
//! Exit codes: 0 success, 1 the command failed, 2 the configuration is invalid.

pub mod audit;
pub mod bench;
pub mod check_config;
pub mod migrate;
pub mod okta;
pub mod rules;
pub mod serve;
pub mod user;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::Settings;

/// Runs the command the operator chose.
pub fn dispatch(cli: Cli) -> ExitCode {
    let explicit = cli.config.is_some();
    let path = cli.config.unwrap_or_else(|| PathBuf::from("config.toml"));
    let loaded = match Settings::load(&path, explicit) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("vigil: configuration error\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        return check_config::run(&loaded);
    }
    crate::telemetry::init(&loaded.settings.log);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // rustls needs one process-wide crypto provider; vigil uses ring everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = loaded.settings;
    let outcome = match &cli.command {
        Command::Run => block_on(serve::run(settings, serve::Role::All)),
        Command::Worker => block_on(serve::run(settings, serve::Role::Worker)),
        Command::Api => block_on(serve::run(settings, serve::Role::Api)),
        Command::Migrate => block_on(migrate::run(&settings)),
        Command::CheckConfig => unreachable!("handled above"),
        Command::User(cmd) => block_on(user::run(&settings, cmd)),
        Command::Okta(cmd) => block_on(okta::run(&settings, cmd)),
        Command::Rules(cmd) => block_on(rules::run(&settings, cmd)),
        Command::Audit(cmd) => block_on(audit::run(&settings, cmd)),
        Command::Bench(args) => block_on(bench::run(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "vigil stopped with an error");
            eprintln!("vigil: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `fut` inside an actix `System` on a multi-threaded tokio runtime: actors live on the
/// system's thread, job handlers and HTTP requests run on the worker pool.
fn block_on<F: Future<Output = anyhow::Result<()>>>(fut: F) -> anyhow::Result<()> {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("vigil")
            .build()
            .expect("the tokio runtime must start")
    })
    .block_on(fut)
}
