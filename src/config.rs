//! Configuration: typed settings, loaded in three layers.
//!
//! 1. defaults in code (every section's `Default`),
//! 2. the TOML file (`--config PATH`, default `config.toml`; a missing default file is fine),
//! 3. environment variables `VIGIL_SECTION__KEY` (e.g. `VIGIL_DATABASE__URL`).
//!
//! Any key ending in `_file` names a file whose content becomes the key without the suffix
//! (`smtp.password_file = "/run/secrets/smtp"` sets `smtp.password`), so secrets need not
//! sit in the file or the environment. Each member crate owns its section's struct; this
//! module composes them and turns serde errors into messages that name the key, where the
//! value came from (file or variable) and what was expected.

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The prefix of every environment variable vigil reads.
pub const ENV_PREFIX: &str = "VIGIL_";

/// Every setting of vigil, one field per config section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub redis: vigil_queue::RedisSettings,
    pub engine: vigil_queue::EngineSettings,
    pub queues: vigil_queue::QueuesSettings,
    pub schedules: vigil_queue::SchedulesSettings,
    pub http: vigil_api::HttpSettings,
    pub auth: vigil_api::AuthSettings,
    pub rate_limit: vigil_api::RateLimitSettings,
    pub okta: vigil_workers::okta::OktaSettings,
    pub smtp: vigil_workers::email::SmtpSettings,
    pub rules: vigil_rules::RulesSettings,
    pub escalation: vigil_workers::alerts::EscalationSettings,
    pub worker: WorkerSettings,
}

/// `[worker]`: what a `vigil worker` process serves besides its queues.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// `HOST:PORT` where `vigil worker` serves `/health`, `/ready` and `/metrics` (port 0
    /// picks one, logged); `off` serves nothing. `vigil run` serves them on `http.listen`.
    pub listen: String,
}

impl WorkerSettings {
    /// The listen address, or `None` when `off`.
    pub fn listen_addr(&self) -> Option<&str> {
        Some(self.listen.as_str()).filter(|l| !l.eq_ignore_ascii_case("off"))
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".to_owned(),
        }
    }
}

/// `[log]`: how vigil writes its logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,vigil_queue=debug`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info,sqlx=warn".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `[database]`: where vigil keeps users, events, alerts, emails and the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (created with its folder when missing) or `postgres://...`.
    /// A password in the URL is never printed; prefer `database.url_file` in production.
    pub url: String,
    /// Connection pool size (SQLite is capped at 4: one writer at a time).
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/vigil.db".to_owned(),
            max_connections: 10,
        }
    }
}

/// A configuration error, worded for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }
}

/// The loaded settings plus what the operator should hear about them.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// Non-fatal problems (unknown `VIGIL_*` variables), to log once telemetry is up.
    pub warnings: Vec<String>,
    /// The config file path (it may not exist when it is the default).
    pub path: PathBuf,
    figment: Figment,
    secret_files: Vec<(String, String, String)>,
}

impl Loaded {
    /// Where the value of `key` (`section.key`) came from, for error messages: the file,
    /// the environment variable, a `*_file` secret, or the default.
    pub fn source_of(&self, key: &str) -> String {
        if let Some((target, path, source)) = self.secret_files.iter().find(|(t, ..)| t == key) {
            return format!("`{target}_file` = {path} from {source}");
        }
        // `escalation.policies[0].rules` comes from where `escalation.policies` came from.
        let key = key.split('[').next().unwrap_or(key);
        let var = format!(
            "{ENV_PREFIX}{}",
            key.replace('.', "__").to_ascii_uppercase()
        );
        match self.figment.find_metadata(key).map(|m| m.name.to_string()) {
            Some(name) if name.contains("environment") => format!("environment variable {var}"),
            Some(name) if name.contains("TOML") => format!("file {}", self.path.display()),
            _ if self.settings_has_file() => {
                format!("not set in {} or {var}: the default", self.path.display())
            }
            _ => format!("not set: no config file, no {var}: the default"),
        }
    }

    fn settings_has_file(&self) -> bool {
        self.path.exists()
    }

    /// A settings-only `Loaded` (tests, tools that build settings in code).
    pub fn from_settings(settings: Settings) -> Loaded {
        Loaded {
            figment: Figment::from(Serialized::defaults(&settings)),
            settings,
            warnings: Vec::new(),
            path: PathBuf::from("config.toml"),
            secret_files: Vec::new(),
        }
    }
}

impl Settings {
    /// Loads the three layers. `explicit` says whether the operator named the file (then it
    /// must exist) or it is the default path (then it may be missing).
    pub fn load(path: &Path, explicit: bool) -> Result<Loaded, ConfigError> {
        Self::load_from(path, explicit, std::env::vars().collect())
    }

    /// Like [`Settings::load`], with the environment given (tests pass their own).
    pub fn load_from(
        path: &Path,
        explicit: bool,
        env: Vec<(String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let Layers {
            figment,
            warnings,
            secret_files,
        } = layers(path, explicit, env)?;
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError(describe(&e, path)))?;
        let mut loaded = Loaded {
            settings: Settings::default(),
            warnings,
            path: path.to_path_buf(),
            figment,
            secret_files,
        };
        // A relative SQLite path in the file is relative to the file's folder, so every
        // command finds the same database wherever it runs.
        if loaded.source_of("database.url").starts_with("file ") {
            settings.database.url = resolve_sqlite(&settings.database.url, &config_dir(path));
        }
        // Sigma rule paths are relative to the config file's folder too.
        settings.rules.resolve_paths(&config_dir(path));
        loaded.settings = settings;
        Ok(loaded)
    }
}

/// The layered sources before extraction.
struct Layers {
    figment: Figment,
    warnings: Vec<String>,
    secret_files: Vec<(String, String, String)>,
}

/// Stacks defaults, the file and the variables, and reads the `*_file` secrets.
fn layers(path: &Path, explicit: bool, env: Vec<(String, String)>) -> Result<Layers, ConfigError> {
    if explicit && !path.exists() {
        return Err(ConfigError(format!(
            "config file {} does not exist",
            path.display()
        )));
    }
    let env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != "VIGIL_CONFIG")
        .collect();
    let (known_env, warnings) = split_unknown_env(&env);
    let file_keys = Arc::new(Mutex::new(Vec::new()));
    let file = StripFileKeys {
        inner: Toml::file(path),
        found: file_keys.clone(),
    };
    let vars = StripFileKeys {
        inner: EnvVars(known_env),
        found: file_keys.clone(),
    };
    let mut figment = Figment::from(Serialized::defaults(Settings::default()))
        .merge(file)
        .merge(vars);
    let secret_files = lock(&file_keys).clone();
    let secrets = read_secret_files(&secret_files)?;
    if !secrets.is_empty() {
        figment = figment.merge(Serialized::globals(secrets));
    }
    Ok(Layers {
        figment,
        warnings,
        secret_files,
    })
}

/// Loads one section alone (`rules`, ...) from the same layers, so a command that needs only
/// it is not stopped by a mistake in another section.
pub fn load_section<T: serde::de::DeserializeOwned>(
    path: &Path,
    explicit: bool,
    key: &str,
) -> Result<T, ConfigError> {
    let layers = layers(path, explicit, std::env::vars().collect())?;
    layers
        .figment
        .extract_inner(key)
        .map_err(|e| ConfigError(describe(&e, path)))
}

/// `sqlite://REL` → `sqlite://DIR/REL`; absolute paths, `:memory:` and other URLs unchanged.
fn resolve_sqlite(url: &str, dir: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(rest) if !rest.starts_with('/') && !rest.starts_with(':') && dir != Path::new(".") => {
            format!("sqlite://{}", dir.join(rest).display())
        }
        _ => url.to_owned(),
    }
}

/// The `VIGIL_*` variables as a figment provider. Values parse like TOML scalars (`7` is a
/// number, `true` a boolean), keys nest on `__` (`VIGIL_SMTP__PORT` is `smtp.port`).
struct EnvVars(Vec<(String, String)>);

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable(s)")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.0 {
            let path = env_key_path(key);
            let parsed: Value = value.parse().unwrap_or_else(|_| Value::from(value.clone()));
            if let Some(nested) = figment::util::nest(&path, parsed).into_dict() {
                dict = merge_dicts(dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// `VIGIL_SMTP__PORT` -> `smtp.port`.
fn env_key_path(var: &str) -> String {
    var[ENV_PREFIX.len()..]
        .to_ascii_lowercase()
        .replace("__", ".")
}

/// Separates `VIGIL_*` variables that name a real key from those that don't (typos), by
/// asking serde: each variable alone is layered over the defaults and extracted.
fn split_unknown_env(env: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let mut known = Vec::new();
    let mut warnings = Vec::new();
    for (key, value) in env {
        let key_path = env_key_path(key);
        let base_key = key_path
            .strip_suffix("_file")
            .unwrap_or(&key_path)
            .to_owned();
        let probe = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Serialized::global(&base_key, value.as_str()));
        match probe.extract::<Settings>() {
            Err(e)
                if e.clone()
                    .into_iter()
                    .any(|e| matches!(e.kind, figment::error::Kind::UnknownField(..))) =>
            {
                warnings.push(format!(
                    "ignoring environment variable {key}: `{base_key}` is not a vigil setting"
                ));
            }
            _ => known.push((key.clone(), value.clone())),
        }
    }
    (known, warnings)
}

/// A provider wrapper that removes every `*_file` key (recording where it points) so the
/// typed settings never see them; the loader reads those files and merges their contents.
struct StripFileKeys<P> {
    inner: P,
    found: Arc<Mutex<Vec<(String, String, String)>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<P: Provider> Provider for StripFileKeys<P> {
    fn metadata(&self) -> Metadata {
        self.inner.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let source = self.inner.metadata().name.to_string();
        let mut data = self.inner.data()?;
        for dict in data.values_mut() {
            strip(dict, "", &source, &mut lock(&self.found));
        }
        Ok(data)
    }
}

fn strip(dict: &mut Dict, prefix: &str, source: &str, found: &mut Vec<(String, String, String)>) {
    let file_keys: Vec<String> = dict
        .keys()
        .filter(|k| k.ends_with("_file"))
        .cloned()
        .collect();
    for key in file_keys {
        if let Some(Value::String(_, path)) = dict.remove(&key) {
            let target = format!("{prefix}{}", key.trim_end_matches("_file"));
            found.push((target, path, source.to_owned()));
        }
    }
    for (key, value) in dict.iter_mut() {
        if let Value::Dict(_, inner) = value {
            strip(inner, &format!("{prefix}{key}."), source, found);
        }
    }
}

/// Reads each `*_file` secret; the content (trailing newline trimmed) becomes the key's value.
fn read_secret_files(keys: &[(String, String, String)]) -> Result<Dict, ConfigError> {
    let mut out = Dict::new();
    for (target, path, source) in keys {
        let content = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read `{target}_file` = {path} (from {source}): {e}"
            ))
        })?;
        let value = content.trim_end_matches(['\r', '\n']).to_owned();
        let nested = figment::util::nest(target, Value::from(value));
        if let Some(dict) = nested.into_dict() {
            out = merge_dicts(out, dict);
        }
    }
    Ok(out)
}

fn merge_dicts(mut a: Dict, b: Dict) -> Dict {
    for (k, v) in b {
        match (a.remove(&k), v) {
            (Some(Value::Dict(tag, x)), Value::Dict(_, y)) => {
                a.insert(k, Value::Dict(tag, merge_dicts(x, y)));
            }
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
    a
}

/// Words a figment error as: which key, from where, what was expected.
fn describe(err: &figment::Error, path: &Path) -> String {
    err.clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = match e.metadata.as_ref().map(|m| m.name.to_string()) {
                Some(name) if name.contains("environment") => format!(
                    "environment variable {ENV_PREFIX}{}",
                    e.path.join("__").to_ascii_uppercase()
                ),
                Some(name) if name.contains("TOML") => format!("file {}", path.display()),
                Some(name) => name,
                None => "defaults".to_owned(),
            };
            if let figment::error::Kind::UnknownField(field, expected) = &e.kind {
                return unknown_key(&e.path, field, expected, &source);
            }
            let what = e.kind.to_string();
            if key.is_empty() {
                format!("invalid configuration in {source}: {what}")
            } else {
                format!("invalid value for `{key}` in {source}: {what}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// "unknown key `database.ulr` in file c.toml; did you mean `database.url`?"
fn unknown_key(path: &[String], field: &str, expected: &[&str], source: &str) -> String {
    // figment's path ends with the unknown field itself.
    let parent: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .filter(|p| *p != field)
        .collect();
    let full = |k: &str| {
        parent
            .iter()
            .copied()
            .chain([k])
            .collect::<Vec<_>>()
            .join(".")
    };
    let nearest = expected
        .iter()
        .map(|k| (edit_distance(field, k), *k))
        .min()
        .filter(|(d, k)| *d <= (k.len().max(field.len()) / 2).max(2));
    match nearest {
        Some((_, k)) => format!(
            "unknown key `{}` in {source}; did you mean `{}`?",
            full(field),
            full(k)
        ),
        None => format!(
            "unknown key `{}` in {source}; valid keys here: {}",
            full(field),
            expected.join(", ")
        ),
    }
}

/// Levenshtein distance (for "did you mean").
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The directory config-relative paths are resolved against (the config file's folder).
pub fn config_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "c.toml",
            "[database]\nurl = \"sqlite://file.db\"\nmax_connections = 3\n",
        );
        let loaded =
            Settings::load_from(&cfg, true, env(&[("VIGIL_DATABASE__MAX_CONNECTIONS", "7")]))
                .unwrap();
        // A relative SQLite path in the file is resolved against the file's folder.
        assert_eq!(
            loaded.settings.database.url,
            format!("sqlite://{}", dir.path().join("file.db").display())
        );
        assert_eq!(loaded.settings.database.max_connections, 7);
        assert_eq!(loaded.settings.log.level, LogSettings::default().level);
    }

    #[test]
    fn a_bad_file_value_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "c.toml",
            "[database]\nmax_connections = \"many\"\n",
        );
        let err = Settings::load_from(&cfg, true, vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.max_connections"), "{err}");
        assert!(err.contains("c.toml"), "{err}");
        assert!(err.contains("u32"), "{err}");
    }

    #[test]
    fn a_bad_env_value_names_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let missing_default = dir.path().join("none.toml");
        let err = Settings::load_from(
            &missing_default,
            false,
            env(&[("VIGIL_LOG__FORMAT", "xml")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("VIGIL_LOG__FORMAT"), "{err}");
        assert!(err.contains("pretty") && err.contains("json"), "{err}");
    }

    #[test]
    fn unknown_keys_fail_in_files_and_warn_in_env() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), "c.toml", "[database]\nulr = \"x\"\n");
        let err = Settings::load_from(&cfg, true, vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ulr"), "{err}");
        let ok = write(dir.path(), "ok.toml", "");
        let loaded = Settings::load_from(&ok, true, env(&[("VIGIL_DATABSE__URL", "x")])).unwrap();
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("VIGIL_DATABSE__URL"));
    }

    #[test]
    fn file_keys_read_secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = write(dir.path(), "url", "postgres://u:pw@h/db\n");
        let cfg = write(
            dir.path(),
            "c.toml",
            &format!("[database]\nurl_file = \"{}\"\n", secret.display()),
        );
        let loaded = Settings::load_from(&cfg, true, vec![]).unwrap();
        assert_eq!(loaded.settings.database.url, "postgres://u:pw@h/db");
        let missing = write(
            dir.path(),
            "m.toml",
            "[database]\nurl_file = \"/nonexistent/x\"\n",
        );
        let err = Settings::load_from(&missing, true, vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url_file"), "{err}");
    }

    #[test]
    fn an_explicit_missing_file_is_an_error() {
        let err =
            Settings::load_from(Path::new("/nonexistent/vigil.toml"), true, vec![]).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
