//! `vigil rules list` and `vigil rules test FILE`: see the rules in force, try them on events.
//! Both take `--sigma PATH` (repeatable) to load Sigma rule files or folders beside the ones
//! `[rules] sigma` names; Sigma rules that cannot be used are reported on stderr.
//!
//! `test` evaluates the rules on the events in FILE (a JSON array, or one JSON event per
//! line) in file order, each event's `published` being the clock, with fresh in-memory
//! windows and no side effects (no database, no Redis, no alerts), and prints one JSON line
//! per event: `{"uuid": ..., "matches": [rule ids], "alerts": [rule ids that raised or
//! updated an alert]}`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use vigil_rules::{MemoryWindows, Rule, RuleSet};

use crate::cli::RulesCommand;

/// Runs a `vigil rules` subcommand over the `[rules]` section loaded from `path`.
pub async fn run(
    settings: &vigil_rules::RulesSettings,
    path: &Path,
    cmd: &RulesCommand,
) -> anyhow::Result<()> {
    let mut settings = settings.clone();
    settings.resolve_paths(&crate::config::config_dir(path));
    let (RulesCommand::List { sigma } | RulesCommand::Test { sigma, .. }) = cmd;
    settings.sigma.extend(sigma.iter().cloned());
    let rules = RuleSet::load(&settings).map_err(|e| {
        crate::config::ConfigError::new(format!("invalid [rules] in {}: {e}", path.display()))
    })?;
    for problem in rules.problems() {
        eprintln!("vigil: warning: Sigma rule not loaded: {problem}");
    }
    match cmd {
        RulesCommand::List { .. } => {
            print!("{}", render_list(&rules));
            Ok(())
        }
        RulesCommand::Test { file, .. } => test_file(&rules, file).await,
    }
}

/// The table `vigil rules list` prints: event rules, then behavioural rules (SQL over stored
/// events on the `behavioural_rules` schedule; source `behavioural`).
fn render_list(rules: &RuleSet) -> String {
    let mut rows: Vec<[String; 5]> = rules
        .rules()
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.severity.as_str().to_owned(),
                fires_when(r),
                r.source.label(),
                r.title.clone(),
            ]
        })
        .collect();
    rows.extend(rules.behavioural().iter().map(|r| {
        [
            r.id.to_owned(),
            r.severity.as_str().to_owned(),
            r.fires_when(),
            "behavioural".to_owned(),
            r.title.to_owned(),
        ]
    }));
    let id_width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(30);
    let source_width = rows.iter().map(|r| r[3].len()).max().unwrap_or(0).max(8);
    let mut out = format!(
        "{:<id_width$} {:<9} {:<34} {:<source_width$} TITLE\n",
        "ID", "SEVERITY", "FIRES WHEN", "SOURCE"
    );
    for [id, severity, when, source, title] in &rows {
        out.push_str(&format!(
            "{id:<id_width$} {severity:<9} {when:<34} {source:<source_width$} {title}\n"
        ));
    }
    let sigma = rules
        .rules()
        .iter()
        .filter(|r| matches!(r.source, vigil_rules::RuleSource::Sigma(_)))
        .count();
    out.push_str(&format!("{} rules active", rows.len()));
    let behavioural = rules.behavioural().len();
    match (sigma, behavioural) {
        (0, 0) => {}
        (s, 0) => out.push_str(&format!(" ({s} from Sigma files)")),
        (0, b) => out.push_str(&format!(" ({b} behavioural)")),
        (s, b) => out.push_str(&format!(" ({s} from Sigma files, {b} behavioural)")),
    }
    if !rules.disabled().is_empty() {
        out.push_str(&format!(
            "; disabled in config: {}",
            rules.disabled().join(", ")
        ));
    }
    if !rules.problems().is_empty() {
        out.push_str(&format!(
            "; {} Sigma rules not loaded (see the warnings)",
            rules.problems().len()
        ));
    }
    out.push('\n');
    out
}

/// "each match", or "20 in 60m by client.ipAddress".
fn fires_when(rule: &Rule) -> String {
    if let Some(s) = &rule.session {
        return format!("new network+client in {}h", s.lifetime_seconds / 3600);
    }
    if let Some(a) = &rule.after {
        return format!("after {} {} in {}m", a.count, a.rule, a.within_seconds / 60);
    }
    match &rule.threshold {
        None => "each match".to_owned(),
        Some(t) => {
            let window = if t.window_seconds % 3600 == 0 {
                format!("{}h", t.window_seconds / 3600)
            } else if t.window_seconds % 60 == 0 {
                format!("{}m", t.window_seconds / 60)
            } else {
                format!("{}s", t.window_seconds)
            };
            let by: Vec<&str> = rule.group_by.iter().map(|g| g.as_str()).collect();
            format!("{} in {window} by {}", t.count, by.join("+"))
        }
    }
}

/// Reads FILE as a JSON array or JSON lines; errors name the line.
fn read_events(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let events: Vec<Value> = serde_json::from_str(trimmed)
            .with_context(|| format!("{} is not a valid JSON array of events", path.display()))?;
        return Ok(events);
    }
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a JSON event", path.display(), i + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// One output line of `rules test`, fields in the documented order.
#[derive(serde::Serialize)]
struct TestLine<'a> {
    uuid: &'a Value,
    matches: &'a [String],
    alerts: Vec<&'a str>,
}

async fn test_file(rules: &RuleSet, path: &Path) -> anyhow::Result<()> {
    let events = read_events(path)?;
    let windows = MemoryWindows::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, event) in events.iter().enumerate() {
        if !event.is_object() {
            anyhow::bail!("{} event {}: not a JSON object", path.display(), i + 1);
        }
        // The clock of the test: without it, windows would silently use the current time,
        // so an event without a readable `published` is refused rather than guessed.
        if vigil_rules::time::published(event).is_none() {
            let got = vigil_rules::field::get_key(event, "published").unwrap_or(&Value::Null);
            anyhow::bail!(
                "{} event {}: `published` is missing or unreadable (got {got}); rules test uses \
                 it as the clock: write it as {}",
                path.display(),
                i + 1,
                vigil_rules::time::PUBLISHED_FORMATS
            );
        }
        let evaluation = rules.evaluate(event, &windows).await?;
        let alerts: Vec<&str> = evaluation
            .firings
            .iter()
            .map(|f| f.rule_id.as_str())
            .collect();
        let line = TestLine {
            uuid: vigil_rules::field::get_key(event, "uuid").unwrap_or(&Value::Null),
            matches: &evaluation.matches,
            alerts,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_shows_thresholds_and_disabled_rules() {
        let off = vigil_rules::settings::RuleOverride {
            enabled: Some(false),
            ..Default::default()
        };
        let settings = vigil_rules::RulesSettings {
            builtin: [("okta_idp_signin".to_owned(), off)].into(),
            ..Default::default()
        };
        let text = render_list(&RuleSet::load(&settings).unwrap());
        let line = |id: &str| text.lines().find(|l| l.starts_with(id)).unwrap().to_owned();
        assert!(line("okta_brute_force_ip ").contains("20 in 1h by client.ipAddress"));
        assert!(line("okta_mfa_push_bombing").contains("5 in 10m by actor.id"));
        assert!(line("okta_api_token_created").contains("each match"));
        assert!(
            line("okta_mfa_push_bombing_accepted").contains("after 5 okta_mfa_push_bombing in 20m")
        );
        assert!(!text.contains("\nokta_idp_signin "));
        assert!(text.ends_with("disabled in config: okta_idp_signin\n"));
    }
}
