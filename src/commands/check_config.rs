//! `vigil check-config`: the startup validation without side effects. Prints every problem
//! (key, where the value came from, what is wrong) on stderr and the effective
//! configuration on stdout as TOML that loads back, secrets redacted. Exit code 2 when
//! anything would stop vigil from starting.

use std::process::ExitCode;

use crate::config::Loaded;
use crate::startup::Role;

/// Marks a redacted secret in the printed configuration.
pub const REDACTED: &str = "[redacted]";

/// Runs the checks of every role and prints the result.
pub fn run(loaded: &Loaded) -> ExitCode {
    for warning in &loaded.warnings {
        eprintln!("vigil: warning: {warning}");
    }
    if let Ok(rules) = vigil_rules::RuleSet::load(&loaded.settings.rules) {
        for problem in rules.problems() {
            eprintln!("vigil: warning: Sigma rule not loaded: {problem}");
        }
    }
    let problems = crate::validate::validate(loaded, Role::All);
    for problem in &problems {
        eprintln!("vigil: invalid: {problem}");
    }
    match render(loaded) {
        Ok(text) => println!("# effective vigil configuration (secrets redacted)\n{text}"),
        Err(e) => {
            eprintln!("vigil: cannot print the configuration: {e}");
            return ExitCode::FAILURE;
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// The effective settings as TOML. Secret fields serialize as [`REDACTED`], passwords in
/// URLs are masked.
pub fn render(loaded: &Loaded) -> Result<String, toml::ser::Error> {
    let mut settings = loaded.settings.clone();
    settings.database.url = vigil_store::db::redact_url(&settings.database.url);
    settings.redis.url = settings.redis.redacted_url();
    for secret in [
        &mut settings.redis.password,
        &mut settings.redis.sentinel_password,
        &mut settings.redis.client_key,
    ] {
        if secret.is_some() {
            *secret = Some(REDACTED.to_owned());
        }
    }
    if !settings.escalation.webhook_secret.is_empty() {
        settings.escalation.webhook_secret = REDACTED.to_owned();
    }
    // Slack/Teams URLs hold their token in the path; PagerDuty routing keys are secrets.
    for channel in settings.escalation.channels.values_mut() {
        if !channel.url.is_empty() {
            channel.url = vigil_jobs::escalation::redact_webhook(&channel.url);
        }
        if !channel.routing_key.is_empty() {
            channel.routing_key = REDACTED.to_owned();
        }
    }
    toml::to_string(&settings)
}
