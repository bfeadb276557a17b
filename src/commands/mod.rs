//! One module per command group. [`dispatch`] loads the configuration, starts telemetry and
//! the runtime, and runs the chosen command.
//!
//! Exit codes: 0 success, 1 the command failed (a daemon that cannot start included: one
//! line says why), 2 the configuration file or variables cannot be read, 130 a daemon forced
//! out by a second stop signal. A failure is reported once, as one line on stderr (or one
//! JSON log line with `log.format = "json"`).

pub mod audit;
pub mod bench;
pub mod check_config;
pub mod healthcheck;
pub mod migrate;
pub mod okta;
pub mod rules;
pub mod serve;
pub mod user;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Cli, Command, OktaCommand};
use crate::config::{LogFormat, Settings};
use crate::startup::Role;

/// Runs the command the operator chose.
pub fn dispatch(cli: Cli) -> ExitCode {
    let explicit = cli.config.is_some();
    let path = cli.config.unwrap_or_else(|| PathBuf::from("config.toml"));
    // Commands that need no configuration, or one section of it, do not read the rest: a
    // mistake in an unrelated section does not stop them.
    match &cli.command {
        Command::Okta(OktaCommand::Keygen(args)) => {
            return ExitCode::from(report(okta::keygen(args), LogFormat::Pretty) as u8);
        }
        Command::Rules(cmd) => {
            let outcome = crate::config::load_section(&path, explicit, "rules")
                .map_err(|e| config_failure(&e))
                .and_then(|rules| block_on(rules::run(&rules, &path, cmd)).map_err(failure));
            return exit(outcome);
        }
        _ => {}
    }
    let loaded = match Settings::load(&path, explicit) {
        Ok(loaded) => loaded,
        Err(e) => return ExitCode::from(config_failure(&e)),
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
    let format = loaded.settings.log.format;
    let settings: &Settings = &loaded.settings;
    let outcome = match &cli.command {
        Command::Run => block_on(serve::run(loaded.clone(), Role::All)),
        Command::Worker => block_on(serve::run(loaded.clone(), Role::Worker)),
        Command::Api => block_on(serve::run(loaded.clone(), Role::Api)),
        Command::Migrate => block_on(migrate::run(settings)),
        Command::CheckConfig => unreachable!("handled above"),
        Command::User(cmd) => block_on(user::run(settings, cmd)),
        Command::Okta(cmd) => block_on(okta::run(settings, cmd)),
        Command::Rules(_) => unreachable!("handled above"),
        Command::Audit(cmd) => block_on(audit::run(settings, cmd)),
        Command::Bench(args) => block_on(bench::run(args, &settings.redis)),
        Command::Healthcheck { url } => block_on(healthcheck::run(settings, url.as_deref())),
    };
    ExitCode::from(report(outcome, format) as u8)
}

/// Prints an invalid configuration (one line per problem) and returns exit code 2.
fn config_failure(e: &crate::config::ConfigError) -> u8 {
    for line in e.to_string().lines() {
        eprintln!("vigil: {line}");
    }
    2
}

/// A failed command reported at once, exit code 1.
fn failure(e: anyhow::Error) -> u8 {
    report(Err(e), LogFormat::Pretty) as u8
}

fn exit(outcome: Result<(), u8>) -> ExitCode {
    ExitCode::from(outcome.err().unwrap_or(0))
}

/// Reports a command's outcome once and returns its exit code (0, 1, or 2 for a
/// [`crate::config::ConfigError`]): one line on stderr,
/// or one JSON log line when logs are JSON (so a log collector sees it).
pub fn report(outcome: anyhow::Result<()>, format: LogFormat) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            match format {
                LogFormat::Json => tracing::error!(error = %format!("{e:#}"), "vigil stopped"),
                LogFormat::Pretty => eprintln!("vigil: error: {e:#}"),
            }
            // A command refused for its configuration exits 2, like a file that cannot load.
            if e.downcast_ref::<crate::config::ConfigError>().is_some() {
                2
            } else {
                1
            }
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
