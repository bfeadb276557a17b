//! `vigil okta keygen|backfill`.
//!
//! - `keygen` writes a new private key (PEM, mode 0600, never overwriting a file) for the
//!   OAuth `private_key_jwt` client assertion and prints the public JWK to register on the
//!   Okta API Services app.
//! - `backfill` fetches a bounded window now (`since`/`until`, `limit`) with the same client,
//!   store and uuid dedup as polling; it never moves the polling cursor. It runs detection on
//!   each stored page (the rules' windows in Redis, alerts in the database, escalations
//!   queued), unless `--no-detect` (then the events are marked detected unseen by the rules).
//!   It shares the org's rate budget with the daemons through Redis. A spinner shows progress
//!   on a terminal, otherwise a line every few seconds; a summary line ends the run.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use vigil_jobs::{OktaFetchJob, Validate};
use vigil_store::events::StoredEvent;
use vigil_workers::okta::{FetchSummary, KeyKind, NewEventsSink, OktaPoller, generate};

use crate::cli::{OktaBackfillArgs, OktaCommand, OktaKeygenArgs};
use crate::config::Settings;

/// The window of a backfill without `--minutes` or `--since`.
const DEFAULT_BACKFILL_MINUTES: u32 = 15;
/// How often a progress line is printed when stdout is not a terminal.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// `--no-detect`: marks stored events detected without running the rules.
struct MarkOnly(vigil_store::Db);

impl NewEventsSink for MarkOnly {
    fn on_new_events<'a>(&'a self, events: &'a [StoredEvent]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            if let Err(e) = vigil_store::events::mark_detected(&self.0, &ids, Utc::now()).await {
                tracing::warn!(error = %e, "could not mark backfilled events as detected");
            }
        })
    }
}

/// Runs a `vigil okta` subcommand.
pub async fn run(settings: &Settings, cmd: &OktaCommand) -> anyhow::Result<()> {
    match cmd {
        OktaCommand::Keygen(args) => keygen(args),
        OktaCommand::Backfill(args) => backfill(settings, args).await,
    }
}

/// Writes a key pair; needs no configuration.
pub fn keygen(args: &OktaKeygenArgs) -> anyhow::Result<()> {
    let kind = match args.alg.as_str() {
        "ES256" => KeyKind::Es256,
        _ => KeyKind::Rs256,
    };
    let kid = args
        .kid
        .clone()
        .unwrap_or_else(|| format!("vigil-{}", Utc::now().format("%Y%m%d%H%M%S")));
    if args.out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a key (choose another --out)",
            args.out.display()
        );
    }
    let key = generate(kind, &kid)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&args.out)
        .with_context(|| format!("while creating {}", args.out.display()))?;
    file.write_all(secrecy::ExposeSecret::expose_secret(&key.private_pem).as_bytes())
        .with_context(|| format!("while writing {}", args.out.display()))?;
    let jwks = serde_json::json!({ "keys": [key.public_jwk] });
    println!("{}", serde_json::to_string_pretty(&jwks)?);
    eprintln!(
        "Private key written to {} (keep it secret).\n\
         Register the public key above on the Okta API Services app (Client authentication: \
         Public key / Private key), then set in config.toml:\n  \
         [okta]\n  auth = \"oauth\"\n  private_key_file = \"{}\"\n  key_id = \"{kid}\"",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

fn parse_time(flag: &str, value: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("{flag} `{value}` is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z)")
        })
}

async fn backfill(settings: &Settings, args: &OktaBackfillArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let until = match &args.until {
        Some(u) => parse_time("--until", u)?,
        None => now,
    };
    let since = match (&args.since, args.minutes) {
        (Some(s), _) => parse_time("--since", s)?,
        (None, Some(m)) => until - Duration::minutes(i64::from(m)),
        (None, None) => until - Duration::minutes(i64::from(DEFAULT_BACKFILL_MINUTES)),
    };
    let job = OktaFetchJob {
        since: Some(since),
        until: Some(until),
        limit: args.limit,
        org: args.org.clone(),
    };
    job.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut orgs = settings.okta.orgs()?;
    let org = match &args.org {
        Some(name) => orgs
            .into_iter()
            .find(|o| &o.name == name)
            .with_context(|| format!("--org `{name}`: no such org in [[okta.orgs]]"))?,
        None if orgs.len() == 1 => orgs.remove(0),
        None => anyhow::bail!(
            "several Okta orgs are configured; name one with --org ({})",
            orgs.iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };

    let db = super::migrate::connect_db(settings).await?;
    db.migrate().await.context("while applying migrations")?;
    let mut poller = OktaPoller::for_org(&org.name, org.settings, db.clone(), None)?;
    let engine = vigil_queue::Engine::connect(
        &settings.redis,
        settings.engine.clone(),
        settings.queues.clone(),
    )
    .await;
    match (engine, args.no_detect) {
        (Ok(engine), no_detect) => {
            poller = poller.with_redis(engine.redis(), engine.prefix());
            poller = if no_detect {
                poller.with_sink(Arc::new(MarkOnly(db.clone())))
            } else {
                poller.with_sink(crate::startup::detector(settings, &engine, &db, None)?)
            };
        }
        (Err(e), true) => {
            eprintln!(
                "warning: Redis is unreachable ({e}); the Okta rate budget is not shared with the daemons"
            );
            poller = poller.with_sink(Arc::new(MarkOnly(db.clone())));
        }
        (Err(e), false) => {
            return Err(anyhow::anyhow!(e)).context(
                "detection needs Redis (its threshold windows and alert jobs live there); \
                 fix [redis] or pass --no-detect to store the events only",
            );
        }
    }

    let bar = if std::io::stdout().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message("fetching…");
        Some(bar)
    } else {
        None
    };
    let progress = {
        let bar = bar.clone();
        let last: Mutex<Option<Instant>> = Mutex::new(None);
        move |s: &FetchSummary| {
            let line = format!(
                "{} events received, {} new, {} already stored, {} malformed, {} pages",
                s.received, s.stored, s.duplicates, s.malformed, s.pages
            );
            match &bar {
                Some(bar) => bar.set_message(line),
                None => {
                    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                    if last.is_none_or(|l| l.elapsed() >= PROGRESS_EVERY) {
                        *last = Some(Instant::now());
                        println!("okta backfill progress: {line}");
                    }
                }
            }
        }
    };
    let outcome = poller
        .backfill(since, until, args.limit.map(u64::from), &progress)
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    db.close().await;
    let s = outcome.map_err(|e| anyhow::anyhow!("backfill failed: {e}"))?;
    println!(
        "okta backfill {}..{}: {} events received, {} new, {} already stored, {} malformed, {} pages, detection {}{}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        s.received,
        s.stored,
        s.duplicates,
        s.malformed,
        s.pages,
        if args.no_detect {
            "skipped (--no-detect)"
        } else {
            "run"
        },
        if s.caught_up {
            ""
        } else {
            " (stopped at --limit)"
        }
    );
    Ok(())
}
