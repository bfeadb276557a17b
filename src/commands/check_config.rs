//! `vigil check-config`: print the effective configuration with secrets redacted.

use std::process::ExitCode;

use crate::config::Loaded;

/// Prints the settings as TOML. Secret fields are never serialized (they print as absent),
/// and passwords inside URLs are masked.
pub fn run(loaded: &Loaded) -> ExitCode {
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let mut settings = loaded.settings.clone();
    settings.database.url = vigil_store::db::redact_url(&settings.database.url);
    settings.redis.url = vigil_store::db::redact_url(&settings.redis.url);
    if !settings.escalation.webhook_secret.is_empty() {
        settings.escalation.webhook_secret = "<redacted>".to_owned();
    }
    match toml_string(&settings) {
        Ok(text) => {
            println!("# effective vigil configuration (secrets redacted)\n{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

fn toml_string<T: serde::Serialize>(value: &T) -> Result<String, String> {
    // serde_json gives a walkable tree; a dozen lines render it as TOML without a toml crate.
    let json = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let mut out = String::new();
    render(&json, "", &mut out);
    Ok(out)
}

/// A small TOML renderer for the settings tree: scalars and arrays first, then tables.
fn render(value: &serde_json::Value, table: &str, out: &mut String) {
    let Some(map) = value.as_object() else { return };
    let (tables, scalars): (Vec<_>, Vec<_>) = map.iter().partition(|(_, v)| v.is_object());
    if !table.is_empty() && !scalars.is_empty() {
        out.push_str(&format!("\n[{table}]\n"));
    }
    for (key, v) in scalars {
        if !v.is_null() {
            out.push_str(&format!("{key} = {v}\n"));
        }
    }
    for (key, v) in tables {
        let name = if table.is_empty() {
            key.clone()
        } else {
            format!("{table}.{key}")
        };
        render(v, &name, out);
    }
}
