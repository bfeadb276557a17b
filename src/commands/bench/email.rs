//! `vigil bench --workload email --smtp smtp://HOST:PORT --database URL`: real `email` jobs,
//! drained from the `email` queue through the email worker the daemon runs (the mailer: the
//! delivery recorded in the database, the message built and sent over vigil's SMTP pool, the
//! outcome recorded), beside a baseline measured in the same run:
//!
//! 1. the baseline: the same messages sent straight over one connection of vigil's SMTP pool
//!    (`vigil_workers::email::smtp`, a socket with `TCP_NODELAY`), one after another: no
//!    queue, no database. The same messages through lettre's own pooled transport, one
//!    connection, are printed beside it: lettre's socket has no `TCP_NODELAY`, so each of its
//!    messages waits for the server's delayed ACK.
//! 2. N email jobs drained with the email queue's concurrency (its default, or
//!    `--concurrency`) and as many pooled SMTP connections.
//!
//! It prints one JSON line per run and the ratio. The bench sets no send-rate limit and no
//! outage breaker (`[smtp] rate_per_minute` would measure the limit, not the path). Every
//! delivery is recorded, so the database should be a scratch one; its schema is migrated
//! first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use vigil_jobs::{AuditJob, EmailBody, EmailJob, Job as _};
use vigil_queue::{NewJob, QueuesSettings, RedisSettings, bench};
use vigil_store::Db;
use vigil_store::emails::{self, EmailStatus};
use vigil_workers::email::smtp::SmtpPool;
use vigil_workers::email::{Mailer, SendRateLimiter, SmtpSettings, SmtpTls, smtp_pool};

use super::{Timings, clean_up, connect, cpu_us_per_job, emit, round3, runtime, scratch_db};
use crate::cli::BenchArgs;

const TO: &str = "bench@example.com";
const SUBJECT: &str = "[vigil] bench";
const TEXT: &str = "An email of vigil bench --workload email.\n";

/// Where `--smtp` points: plain SMTP only (a local or test server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SmtpTarget {
    pub host: String,
    pub port: u16,
}

/// Parses `smtp://HOST[:PORT]` (port 25 when left out). The URL is never echoed: it could
/// hold a password.
pub(crate) fn parse_smtp(url: &str) -> anyhow::Result<SmtpTarget> {
    let usage = "--smtp takes smtp://HOST[:PORT] (plain SMTP without credentials, e.g. a local test server)";
    let rest = url.strip_prefix("smtp://").context(usage)?;
    let rest = rest.trim_end_matches('/');
    anyhow::ensure!(!rest.is_empty() && !rest.contains(['@', '/', '?']), usage);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok().context(usage)?),
        None => (rest, 25),
    };
    anyhow::ensure!(!host.is_empty() && port > 0, usage);
    Ok(SmtpTarget {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    })
}

pub async fn run(args: &BenchArgs, config: &RedisSettings) -> anyhow::Result<()> {
    let smtp = parse_smtp(args.smtp.as_deref().context(
        "--workload email needs --smtp smtp://HOST:PORT (the SMTP server the emails go to)",
    )?)?;
    let db = scratch_db(
        args,
        "--workload email needs --database URL (a scratch database: every delivery is recorded)",
    )
    .await?;
    let n = args.n.max(1) as usize;
    let concurrency = args
        .concurrency
        .unwrap_or(EmailJob::settings().concurrency)
        .max(1);

    let baseline = send_directly(&smtp, n, Direct::pool(&smtp)?).await?;
    let lettre = send_directly(&smtp, n, Direct::lettre(&smtp)).await?;
    let sent_before = sent(&db).await?;
    let measured = drain(args, config, &db, &smtp, n, concurrency).await?;
    let recorded = sent(&db).await? - sent_before;
    anyhow::ensure!(
        recorded == n as u64,
        "{n} emails were drained but {recorded} deliveries were recorded as sent"
    );
    emit(json!({
        "system": "vigil",
        "workload": "email",
        "database": format!("{:?}", db.kind()).to_lowercase(),
        "n": n,
        "process_jobs_per_s": f64::round(measured.jobs_per_s),
        "concurrency": concurrency,
        "smtp_pool_max_size": concurrency,
        "recorded_sent": recorded,
        "redis_cpu_us_per_job": measured.cpu_us_per_job.map(|v| (v * 10.0).round() / 10.0),
    }))?;
    emit(json!({
        "baseline": "the same messages sent directly over one connection of vigil's SMTP pool (TCP_NODELAY), one at a time, no queue, no database",
        "n": n,
        "emails_per_s": f64::round(baseline),
        "vigil_vs_baseline": round3(measured.jobs_per_s / baseline.max(1e-9)),
        "lettre_transport_emails_per_s": f64::round(lettre),
        "vigil_vs_lettre_transport": round3(measured.jobs_per_s / lettre.max(1e-9)),
    }))?;
    db.close().await;
    Ok(())
}

/// Deliveries recorded as sent, in all.
async fn sent(db: &Db) -> anyhow::Result<u64> {
    Ok(emails::list(db, Some(EmailStatus::Sent), 1, 1)
        .await
        .context("while counting the sent emails")?
        .total)
}

fn settings(smtp: &SmtpTarget, pool: usize) -> SmtpSettings {
    SmtpSettings {
        host: smtp.host.clone(),
        port: smtp.port,
        tls: SmtpTls::None,
        pool_max_size: u32::try_from(pool).unwrap_or(u32::MAX),
        rate_per_minute: 0,
        ..SmtpSettings::default()
    }
}

/// The one-connection sender a baseline uses.
enum Direct {
    /// One connection of vigil's SMTP pool (`TCP_NODELAY`).
    Pool(SmtpPool),
    /// lettre's own pooled transport, one connection.
    Lettre(AsyncSmtpTransport<Tokio1Executor>),
}

impl Direct {
    fn pool(smtp: &SmtpTarget) -> anyhow::Result<Direct> {
        Ok(Direct::Pool(smtp_pool(&settings(smtp, 1))?))
    }

    fn lettre(smtp: &SmtpTarget) -> Direct {
        let s = settings(smtp, 1);
        Direct::Lettre(
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
                .port(s.port)
                .tls(Tls::None)
                .timeout(Some(Duration::from_secs(s.timeout_seconds)))
                .pool_config(PoolConfig::new().max_size(1))
                .build(),
        )
    }

    async fn send(&self, message: Message) -> anyhow::Result<()> {
        match self {
            Direct::Pool(pool) => {
                pool.send(message.envelope(), &message.formatted()).await?;
            }
            Direct::Lettre(transport) => {
                transport.send(message).await?;
            }
        }
        Ok(())
    }
}

/// A baseline: `n` messages as the mailer builds them for a plain-text job, sent one after
/// another over one connection. Emails per second.
async fn send_directly(smtp: &SmtpTarget, n: usize, sender: Direct) -> anyhow::Result<f64> {
    let s = settings(smtp, 1);
    let from: Mailbox = s.from.parse().context("the default From mailbox")?;
    let to: Mailbox = TO.parse().context("the bench recipient")?;
    let domain = from.email.domain().to_owned();
    let began = Instant::now();
    for _ in 0..n {
        let message = Message::builder()
            .from(from.clone())
            .to(to.clone())
            .subject(SUBJECT)
            .message_id(Some(format!(
                "<{}@{domain}>",
                vigil_queue::lease::new_ulid()
            )))
            .user_agent("vigil".to_owned())
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(TEXT.to_owned()),
            )
            .context("while building the baseline message")?;
        sender.send(message).await.with_context(|| {
            format!(
                "the baseline could not send to the SMTP server at {}:{}",
                smtp.host, smtp.port
            )
        })?;
    }
    Ok(n as f64 / began.elapsed().as_secs_f64().max(1e-9))
}

/// One measured drain.
struct Drain {
    jobs_per_s: f64,
    cpu_us_per_job: Option<f64>,
}

/// Enqueues `n` email jobs under a fresh prefix and drains them through the mailer.
async fn drain(
    args: &BenchArgs,
    config: &RedisSettings,
    db: &Db,
    smtp: &SmtpTarget,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Drain> {
    let prefix = format!("vigil-bench:{}", vigil_queue::lease::new_ulid());
    let mut queues = QueuesSettings::default();
    let mut queue = EmailJob::settings();
    queue.concurrency = concurrency;
    *queues.get_mut(EmailJob::QUEUE) = queue;
    let engine = connect(args, config, &prefix, queues).await?;
    let mailer = Mailer::new(
        &settings(smtp, concurrency),
        db.clone(),
        SendRateLimiter::Unlimited,
        Arc::new(|_audit: AuditJob| async {}),
    )
    .context("while building the mailer")?;
    let job = EmailJob {
        to: vec![TO.to_owned()],
        subject: SUBJECT.to_owned(),
        body: Some(EmailBody {
            text: Some(TEXT.to_owned()),
            html: None,
        }),
        template: None,
        vars: BTreeMap::new(),
        idempotency_key: None,
        notification_id: None,
    };
    let payload = serde_json::to_value(&job).context("while encoding the email job")?;
    let cpu_before = bench::used_cpu_seconds(&engine).await;
    let jobs: Vec<NewJob> = (0..n)
        .map(|_| NewJob::new(EmailJob::QUEUE, payload.clone()))
        .collect();
    // The engine sends them in slices of its own, one script call each.
    engine.enqueue_many(jobs).await?;
    let timings = Arc::new(Timings::default());
    let rt = runtime(&engine, &timings).job::<EmailJob>(mailer).start()?;
    let outcome = timings
        .wait_done(n as u64, Duration::from_secs(900), "the email drain")
        .await;
    let cpu_after = bench::used_cpu_seconds(&engine).await;
    rt.shutdown().await;
    clean_up(&engine, &prefix).await;
    let took = outcome?;
    Ok(Drain {
        jobs_per_s: n as f64 / took.as_secs_f64().max(1e-9),
        cpu_us_per_job: cpu_us_per_job(cpu_before, cpu_after, n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let t = |host: &str, port| SmtpTarget {
            host: host.to_owned(),
            port,
        };
        assert_eq!(
            parse_smtp("smtp://127.0.0.1:2525").unwrap(),
            t("127.0.0.1", 2525)
        );
        assert_eq!(
            parse_smtp("smtp://mail.local/").unwrap(),
            t("mail.local", 25)
        );
        for bad in [
            "127.0.0.1:25",
            "smtps://h:465",
            "smtp://",
            "smtp://u:secret@h:25",
            "smtp://h:x",
            "smtp://h:0",
        ] {
            let e = parse_smtp(bad).unwrap_err().to_string();
            assert!(e.contains("--smtp takes smtp://HOST[:PORT]"), "{bad}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
