//! The startup checks, in one place: [`validate`] returns every problem of a loaded
//! configuration that would stop (or silently break) a daemon, each naming its key and
//! where the value came from. `vigil run|api|worker` refuse to start on the first one;
//! `vigil check-config` prints them all. Nothing here connects anywhere or writes anything.

use std::fmt;

use vigil_api::auth::jwt::{KeyError, TokenKeys};

use crate::config::{Loaded, Settings};
use crate::role::Role;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The config key, e.g. `auth.jwt_secret`.
    pub key: String,
    /// Where its value came from (file, variable, default).
    pub source: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({}): {}", self.key, self.source, self.message)
    }
}

/// Collects problems, naming each key's source.
struct Problems<'a> {
    loaded: &'a Loaded,
    found: Vec<ConfigProblem>,
}

impl Problems<'_> {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.found.push(ConfigProblem {
            key: key.to_owned(),
            source: self.loaded.source_of(key),
            message: message.into(),
        });
    }

    fn check<E: fmt::Display>(&mut self, key: &str, outcome: Result<(), E>) {
        if let Err(e) = outcome {
            self.add(key, e.to_string());
        }
    }
}

/// Every problem that would stop a process of `role` (check-config asks for [`Role::All`]).
pub fn validate(loaded: &Loaded, role: Role) -> Vec<ConfigProblem> {
    let s = &loaded.settings;
    let mut p = Problems {
        loaded,
        found: Vec::new(),
    };
    p.check("log.level", log_level(&s.log.level));
    p.check("database.url", database_url(&s.database.url));
    redis(&mut p, s);
    if role.runs_api() {
        p.check("http.listen", listen_address(&s.http.listen));
        p.check(
            "http.trusted_proxies",
            vigil_api::proxy::TrustedProxies::parse(&s.http.trusted_proxies).map(|_| ()),
        );
        if let Err(e) = s.http.tls_config() {
            let key = e.split(':').next().unwrap_or("http.tls_cert").to_owned();
            p.add(
                &key,
                e.split_once(": ").map_or(e.clone(), |(_, m)| m.to_owned()),
            );
        }
        if s.http.trust_forwarded_for.is_some() {
            p.add(
                "http.trust_forwarded_for",
                "was replaced by http.trusted_proxies: list the proxies' addresses or CIDRs \
                 (e.g. [\"10.0.0.0/8\"]); forwarding headers from other peers are ignored",
            );
        }
        auth(&mut p, s);
        okta_hook(&mut p, s);
    }
    if role == Role::Worker
        && let Some(addr) = s.worker.listen_addr()
    {
        p.check("worker.listen", listen_address(addr));
    }
    if role.runs_workers() {
        workers(&mut p, s);
    }
    p.found
}

/// Redis: the `[redis]` section as the engine checks it before connecting (URL scheme and
/// mode, sentinels and master name, cluster nodes, TLS material, prefix, timeouts), naming
/// the key that is wrong.
fn redis(p: &mut Problems<'_>, s: &Settings) {
    if let Err(e) = s.redis.validate() {
        p.add(&format!("redis.{}", e.key), e.message);
    }
}

fn database_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("sqlite" | "postgres" | "postgresql") => Ok(()),
        _ => Err(format!(
            "`{}` is not a database URL vigil supports; write sqlite://PATH or \
             postgres://USER:PASSWORD@HOST/DB",
            vigil_store::db::redact_url(url)
        )),
    }
}

/// `HOST:PORT` with a numeric port (port 0 picks one).
fn listen_address(addr: &str) -> Result<(), String> {
    let bad = || format!("`{addr}` is not HOST:PORT (e.g. 127.0.0.1:8080)");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// The largest `okta.max_clock_skew_seconds` (a day).
const MAX_CLOCK_SKEW_SECONDS: u64 = 86_400;

/// The levels a `log.level` directive may name.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A tracing filter of comma-separated `LEVEL` or `TARGET=LEVEL` directives. tracing itself
/// takes a bare word as a target, so `inf0` would silently mean "trace for target inf0".
fn log_level(level: &str) -> Result<(), String> {
    let expected = "expected LEVEL or TARGET=LEVEL directives separated by commas, with \
                    LEVEL one of trace, debug, info, warn, error, off (e.g. info,sqlx=warn)";
    for directive in level.split(',') {
        let lvl = match directive.rsplit_once('=') {
            Some((target, lvl)) if !target.is_empty() => lvl,
            Some(_) => return Err(format!("`{directive}` has no target; {expected}")),
            None => directive,
        };
        if !LEVELS.contains(&lvl.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{level}`: `{directive}` is not a directive; {expected}"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| format!("`{level}`: {e}"))
}

fn auth(p: &mut Problems<'_>, s: &Settings) {
    if let Err(e) = TokenKeys::from_settings(&s.auth) {
        let key = match &e {
            KeyError::MissingSecret | KeyError::ShortSecret => "auth.jwt_secret".to_owned(),
            KeyError::MissingKeyPair(_) => "auth.private_key".to_owned(),
            KeyError::BadKey { field, .. } => format!("auth.{field}"),
        };
        let hint = match e {
            KeyError::MissingSecret => {
                " (e.g. `head -c 48 /dev/urandom | base64 > jwt_secret` and \
                 auth.jwt_secret_file = \"jwt_secret\")"
            }
            _ => "",
        };
        p.add(&key, format!("{e}{hint}"));
    }
    if let Err((key, message)) = s.auth.lockout.validate() {
        p.add(&format!("auth.lockout.{key}"), message);
    }
    if let Some(oidc) = &s.auth.oidc
        && let Err((key, message)) = oidc.validate()
    {
        p.add(&format!("auth.oidc.{key}"), message);
    }
}

/// The shortest `okta.event_hook_secret` accepted.
const MIN_HOOK_SECRET: usize = 16;

/// Okta Event Hooks: a long enough secret in a header name HTTP allows.
fn okta_hook(p: &mut Problems<'_>, s: &Settings) {
    let Some(secret) = &s.okta.event_hook_secret else {
        return;
    };
    if secrecy::ExposeSecret::expose_secret(secret)
        .trim()
        .chars()
        .count()
        < MIN_HOOK_SECRET
    {
        p.add(
            "okta.event_hook_secret",
            format!(
                "is shorter than {MIN_HOOK_SECRET} characters; use a long random value \
                 (e.g. `head -c 32 /dev/urandom | base64`) and the same in Okta's \
                 Authentication secret"
            ),
        );
    }
    let header = s.okta.event_hook_header.trim();
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if header.is_empty() || !header.chars().all(token_char) {
        p.add(
            "okta.event_hook_header",
            format!("`{header}` is not an HTTP header name (e.g. Authorization)"),
        );
    }
}

fn workers(p: &mut Problems<'_>, s: &Settings) {
    for (name, schedule) in &s.schedules.0 {
        let parsed = vigil_queue::next_tick(name, &schedule.cron, chrono::Utc::now());
        p.check(&format!("schedules.{name}.cron"), parsed.map(|_| ()));
    }
    p.check("smtp", vigil_workers::email::check_settings(&s.smtp));
    p.check("email templates", vigil_workers::email::templates::check());
    if s.okta.enabled {
        okta_orgs(p, s);
        if !(1..=MAX_CLOCK_SKEW_SECONDS).contains(&s.okta.max_clock_skew_seconds) {
            p.add(
                "okta.max_clock_skew_seconds",
                format!(
                    "{} is out of range; give 1 to {MAX_CLOCK_SKEW_SECONDS} seconds (default 300)",
                    s.okta.max_clock_skew_seconds
                ),
            );
        }
    }
    rules_and_escalation(p, s);
}

/// Each Okta org: names unique, a domain, credentials that load, a valid schedule. A
/// single `[okta]` is checked under `okta`, each `[[okta.orgs]]` under `okta.orgs[i]`.
fn okta_orgs(p: &mut Problems<'_>, s: &Settings) {
    let orgs = match s.okta.orgs() {
        Ok(orgs) => orgs,
        Err(e) => {
            let message = e.to_string();
            // "okta configuration: okta.orgs[1].name: ..." → key okta.orgs[1].name
            let detail = message.trim_start_matches("okta configuration: ");
            let key = detail.split(": ").next().unwrap_or("okta");
            return p.add(key, detail.trim_start_matches(key).trim_start_matches(": "));
        }
    };
    let many = !s.okta.orgs.is_empty();
    for (i, org) in orgs.iter().enumerate() {
        let key = if many {
            format!("okta.orgs[{i}]")
        } else {
            "okta".to_owned()
        };
        p.check(
            &key,
            vigil_workers::okta::OktaClient::new(&org.settings, None).map(|_| ()),
        );
        if let Some(cron) = &org.schedule {
            let parsed = vigil_queue::next_tick(&org.name, cron, chrono::Utc::now());
            p.check(&format!("{key}.schedule"), parsed.map(|_| ()));
        }
    }
}

/// Rules compile; escalation policies are valid and name rules that exist.
fn rules_and_escalation(p: &mut Problems<'_>, s: &Settings) {
    let rules = match vigil_rules::RuleSet::load(&s.rules) {
        Ok(rules) => rules,
        Err(e) => return p.add("rules", e.to_string()),
    };
    if let Err(e) = s.escalation.validate() {
        return p.add("escalation", e);
    }
    for (i, policy) in s.escalation.policies.iter().enumerate() {
        for id in &policy.rules {
            let known = id == vigil_jobs::escalation::SECURITY_EVENT_RULE
                || rules.is_active(id)
                || rules.disabled().contains(id);
            if !known {
                p.add(
                    &format!("escalation.policies[{i}].rules"),
                    format!(
                        "`{id}` is not a rule (see `vigil rules list`; `{}` is the rule of \
                         security events)",
                        vigil_jobs::escalation::SECURITY_EVENT_RULE
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels() {
        for ok in ["info", "info,sqlx=warn", "vigil_queue=debug", "WARN"] {
            assert!(log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["inf0,,==", "inf0", "info,", "=info", "info,x=loud"] {
            assert!(log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_addresses() {
        assert!(database_url("sqlite://data/vigil.db").is_ok());
        assert!(database_url("postgres://u@h/db").is_ok());
        assert!(database_url("nosuchdb://nowhere").is_err());
        assert!(listen_address("127.0.0.1:0").is_ok());
        assert!(listen_address("[::1]:8080").is_ok());
        assert!(listen_address("8080").is_err());
        assert!(listen_address("localhost:http").is_err());
    }
}
