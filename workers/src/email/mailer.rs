//! The mailer: one `email` job in, at most one message out, every step recorded.
//!
//! [`Mailer::send`] runs one attempt:
//! 1. records the delivery (or finds it) by its dedup key: the job's `idempotency_key`, else
//!    its job id. A delivery already `sent` is not sent again; one already `dead` stays dead.
//! 2. builds the message (template or literal body; text, HTML or both as
//!    `multipart/alternative`; a `Message-ID` fixed at the first attempt). A job that cannot
//!    be built (unknown template, bad address) is dead at once.
//! 3. takes the delivery (`sending`, compare-and-set: one attempt at a time), then a token
//!    of the global rate limit.
//! 4. sends over vigil's SMTP pool ([`super::smtp`]: lettre's SMTP client on sockets with
//!    `TCP_NODELAY`, connections reused while they answer), within `smtp.timeout_seconds`,
//!    and records the outcome: `sent` with the server's reply; `failed` +
//!    [`JobError::Retryable`] for connection errors, timeouts and 4xx replies; `dead` +
//!    [`JobError::Permanent`] for 5xx replies, with the reply kept. A dead delivery is
//!    reported to the [`AuditSink`] as `email.dead`.
//!
//! Delivery is at-least-once only in one corner: a process that dies after the server
//! accepted a message and before `sent` was recorded leaves the delivery `sending`; once its
//! lease expires a later attempt sends it again.

use std::sync::Arc;
use std::time::Duration;

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use secrecy::ExposeSecret;
use serde_json::json;
use vigil_jobs::{AuditActor, AuditJob, EmailJob, Validate};
use vigil_store::Db;
use vigil_store::emails::{self, EmailRecord, EmailStatus, NewEmail};

use super::breaker::{Breaker, BreakerTiming, Gate};
use super::metrics::EmailMetrics;
use super::ratelimit::{RateLimitError, SendRateLimiter};
use super::settings::{SmtpSettings, SmtpTls};
use super::smtp::{SendError, SmtpEndpoint, SmtpPool};
use super::templates;
use crate::JobError;
use crate::alerts::NotificationTracker;
use crate::audit::AuditSink;

/// What a successful [`Mailer::send`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The server accepted the message now.
    Sent {
        email_id: i64,
        message_id: String,
        smtp_reply: String,
    },
    /// An earlier attempt (this job's or another with the same idempotency key) already
    /// sent it: nothing was sent.
    AlreadySent { email_id: i64, message_id: String },
}

/// A mailer that cannot be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("smtp.{key}: `{value}` is not a mailbox (e.g. `vigil <vigil@example.com>`): {reason}")]
    Mailbox {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("smtp: TLS setup for `{host}` failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("smtp: username and password must be set together")]
    HalfCredentials,
    #[error("smtp.{key}: {reason}")]
    Outage { key: &'static str, reason: String },
}

/// Sends `email` jobs. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Mailer {
    db: Db,
    smtp: SmtpPool,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    message_id_domain: String,
    limiter: SendRateLimiter,
    audit: Arc<dyn AuditSink>,
    metrics: Option<EmailMetrics>,
    lease: Duration,
    send_timeout: Duration,
    notifications: Option<NotificationTracker>,
    breaker: Breaker,
    give_up: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

fn mailbox(key: &'static str, value: &str) -> Result<Mailbox, MailerError> {
    value
        .parse()
        .map_err(|e: lettre::address::AddressError| MailerError::Mailbox {
            key,
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// The `[smtp]` settings parsed: mailboxes and TLS mode.
struct Checked {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    tls: Tls,
}

fn checked(settings: &SmtpSettings) -> Result<Checked, MailerError> {
    let from = mailbox("from", &settings.from)?;
    let reply_to = settings
        .reply_to
        .as_deref()
        .map(|r| mailbox("reply_to", r))
        .transpose()?;
    let tls_params = || {
        TlsParameters::new_rustls(settings.host.clone()).map_err(|e| MailerError::Tls {
            host: settings.host.clone(),
            reason: e.to_string(),
        })
    };
    let tls = match settings.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_params()?),
        SmtpTls::Tls => Tls::Wrapper(tls_params()?),
    };
    if settings.username.is_some() != settings.password.is_some() {
        return Err(MailerError::HalfCredentials);
    }
    let outage = |key, reason: &str| MailerError::Outage {
        key,
        reason: reason.to_owned(),
    };
    if !(1..=3600).contains(&settings.outage_probe_seconds) {
        return Err(outage("outage_probe_seconds", "must be between 1 and 3600"));
    }
    if settings.outage_probe_max_seconds < settings.outage_probe_seconds
        || settings.outage_probe_max_seconds > 3600
    {
        return Err(outage(
            "outage_probe_max_seconds",
            "must be at least outage_probe_seconds and at most 3600",
        ));
    }
    if settings.outage_give_up_seconds < 60 {
        return Err(outage("outage_give_up_seconds", "must be at least 60"));
    }
    Ok(Checked {
        from,
        reply_to,
        tls,
    })
}

/// Checks `[smtp]` as [`Mailer::new`] does, without building a pool (for
/// `vigil check-config`).
pub fn check_settings(settings: &SmtpSettings) -> Result<(), MailerError> {
    checked(settings).map(|_| ())
}

/// The SMTP pool `[smtp]` asks for, checked as [`Mailer::new`] checks it (for a send outside
/// the mailer, e.g. `vigil bench`'s direct baseline).
pub fn smtp_pool(settings: &SmtpSettings) -> Result<SmtpPool, MailerError> {
    Ok(pool_of(settings, checked(settings)?.tls))
}

/// The pool of `settings` with its checked `tls`: at most `pool_max_size` idle connections,
/// each connect bounded by `timeout_seconds`.
fn pool_of(settings: &SmtpSettings, tls: Tls) -> SmtpPool {
    // `checked` refused a user without a password and the reverse.
    let credentials = match (&settings.username, &settings.password) {
        (Some(user), Some(password)) => Some(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        )),
        _ => None,
    };
    let endpoint = SmtpEndpoint {
        host: settings.host.clone(),
        port: settings.port,
        tls,
        credentials,
        connect_timeout: Duration::from_secs(settings.timeout_seconds.max(1)),
    };
    SmtpPool::new(
        endpoint,
        usize::try_from(settings.pool_max_size).unwrap_or(usize::MAX),
    )
}

impl Mailer {
    /// A mailer over an SMTP pool built from `settings` (at most `pool_max_size` idle
    /// connections). Nothing connects until the first send.
    pub fn new(
        settings: &SmtpSettings,
        db: Db,
        limiter: SendRateLimiter,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Mailer, MailerError> {
        let Checked {
            from,
            reply_to,
            tls,
        } = checked(settings)?;
        let timeout = Duration::from_secs(settings.timeout_seconds.max(1));
        let message_id_domain = from.email.domain().to_owned();
        Ok(Mailer {
            db,
            smtp: pool_of(settings, tls),
            from,
            reply_to,
            message_id_domain,
            limiter,
            audit,
            metrics: None,
            notifications: None,
            breaker: Breaker::Off,
            give_up: Duration::from_secs(settings.outage_give_up_seconds),
            send_timeout: timeout,
            // Long enough for the rate-limit wait plus a slow send; a dead worker's
            // delivery is taken over after it.
            lease: Duration::from_secs(settings.rate_wait_seconds)
                + timeout * 6
                + Duration::from_secs(30),
        })
    }

    /// Counts outcomes in `metrics`.
    pub fn with_metrics(mut self, metrics: EmailMetrics) -> Mailer {
        self.metrics = Some(metrics);
        self
    }

    /// Shares the SMTP circuit breaker through Redis (see [`super::breaker`]).
    pub fn with_breaker(mut self, breaker: Breaker) -> Mailer {
        self.breaker = breaker;
        self
    }

    /// The breaker timing `[smtp]` asks for (the probe lease covers one send).
    pub fn breaker_timing(settings: &SmtpSettings) -> BreakerTiming {
        BreakerTiming {
            first_wait: Duration::from_secs(settings.outage_probe_seconds),
            longest_wait: Duration::from_secs(settings.outage_probe_max_seconds),
            probe_lease: Duration::from_secs(settings.timeout_seconds.max(1) + 5),
        }
    }

    /// Records the outcome of escalation notifications (jobs with `notification_id`).
    pub fn with_notifications(mut self, tracker: NotificationTracker) -> Mailer {
        self.notifications = Some(tracker);
        self
    }

    /// The tracker of escalation notifications, if any.
    pub fn notifications(&self) -> Option<NotificationTracker> {
        self.notifications.clone()
    }

    /// Runs one attempt of `job` (see the module docs).
    pub async fn send(&self, job_id: &str, job: &EmailJob) -> Result<SendOutcome, JobError> {
        self.send_attempt(job_id, job, false).await
    }

    /// A later attempt of the same job supersedes earlier ones. The engine counts attempts
    /// and fences stale workers, so when `attempt` is past every attempt the delivery record
    /// saw, the earlier attempt is over: a `dead` record (an operator retried the job) is
    /// reopened, and a `sending` claim left by a worker that died mid-send is released
    /// instead of blocking every retry until the claim expires. A re-delivery of the same
    /// attempt never takes anything over: its number is not past the record's.
    pub async fn supersede_earlier_attempts(
        &self,
        job_id: &str,
        job: &EmailJob,
        attempt: u32,
    ) -> Result<(), JobError> {
        let key = emails::dedup_key(job_id, job.idempotency_key.as_deref());
        let record = emails::find_by_dedup_key(&self.db, &key)
            .await
            .map_err(|e| JobError::retryable(format!("reading the email failed: {e}")))?;
        if let Some(r) = record
            && matches!(r.status, EmailStatus::Dead | EmailStatus::Sending)
            && i64::from(attempt) > r.attempts
        {
            emails::supersede(&self.db, r.id)
                .await
                .map_err(|e| JobError::retryable(format!("taking over the email failed: {e}")))?;
            tracing::info!(email_id = r.id, was = ?r.status, attempt, "email taken over by a later attempt of its job");
        }
        Ok(())
    }

    /// Like [`Mailer::send`]; on the job's `last_attempt` a transient failure also ends the
    /// delivery: it is recorded `dead` and audited (the engine dead-letters the job).
    pub async fn send_attempt(
        &self,
        job_id: &str,
        job: &EmailJob,
        last_attempt: bool,
    ) -> Result<SendOutcome, JobError> {
        let dedup_key = emails::dedup_key(job_id, job.idempotency_key.as_deref());
        let new = NewEmail {
            dedup_key: dedup_key.clone(),
            job_id: job_id.to_owned(),
            idempotency_key: job.idempotency_key.clone(),
            message_id: format!("<{}@{}>", uuid::Uuid::new_v4(), self.message_id_domain),
            recipients: job.to.clone(),
            subject: job.subject.clone(),
            template: job.template.clone(),
        };
        let record = emails::record(&self.db, &new)
            .await
            .map_err(|e| JobError::retryable(format!("recording the email failed: {e}")))?;
        match record.status {
            EmailStatus::Sent => {
                self.count(|m| m.skipped.inc());
                return Ok(SendOutcome::AlreadySent {
                    email_id: record.id,
                    message_id: record.message_id,
                });
            }
            EmailStatus::Dead => return Err(dead_again(&record)),
            EmailStatus::Queued | EmailStatus::Sending | EmailStatus::Failed => {}
        }

        let message = match self.build(job, &record.message_id) {
            Ok(m) => m,
            Err(reason) => return Err(self.dead(job_id, &record, &reason, None).await),
        };

        // The breaker: while the server is unreachable only one send probes it; the others
        // wait in Redis without spending an attempt or a send-rate token.
        let token = uuid::Uuid::new_v4().to_string();
        let probing = match self.breaker.gate(&token).await {
            Gate::Closed => false,
            Gate::Probe { .. } => true,
            Gate::Wait { wait, since_ms } => {
                let down_for = outage_age(since_ms);
                let since = since_text(since_ms);
                if down_for > self.give_up {
                    let why = format!(
                        "the SMTP server has been unreachable since {since} (more than \
                         smtp.outage_give_up_seconds = {} s); the message was never sent",
                        self.give_up.as_secs()
                    );
                    return Err(self.dead(job_id, &record, &why, None).await);
                }
                self.count(|m| m.waiting.inc());
                return Err(JobError::Snooze(
                    wait + jitter(),
                    format!("the SMTP server is unreachable since {since}; waiting for it"),
                ));
            }
        };

        let taken = emails::start_attempt(&self.db, record.id, self.lease.as_millis() as i64)
            .await
            .map_err(|e| JobError::retryable(format!("recording the attempt failed: {e}")))?;
        if !taken {
            let now = emails::get(&self.db, record.id)
                .await
                .map_err(|e| JobError::retryable(format!("reading the email failed: {e}")))?;
            return match now {
                Some(r) if r.status == EmailStatus::Sent => {
                    self.count(|m| m.skipped.inc());
                    Ok(SendOutcome::AlreadySent {
                        email_id: r.id,
                        message_id: r.message_id,
                    })
                }
                Some(r) if r.status == EmailStatus::Dead => Err(dead_again(&r)),
                _ => Err(JobError::Retryable(format!(
                    "email {} is being sent by another attempt",
                    record.id
                ))),
            };
        }

        if let Err(e) = self.limiter.acquire().await {
            let msg = e.to_string();
            if let RateLimitError::Exhausted { .. } = e {
                self.count(|m| m.rate_limited.inc());
            }
            if last_attempt {
                return Err(self.dead(job_id, &record, &msg, None).await);
            }
            self.failed(&record, &msg, None).await;
            return Err(JobError::Retryable(msg));
        }

        // The pool bounds the connect, not a server that stalls mid-dialogue: the whole
        // exchange gets a deadline too. (A stall after DATA may still have been accepted: the
        // retry can then duplicate the message, the price of not losing it.)
        let raw = message.formatted();
        let send = self.smtp.send(message.envelope(), &raw);
        let sent = match tokio::time::timeout(self.send_timeout, send).await {
            Ok(result) => result,
            Err(_) => {
                let error = format!(
                    "the SMTP server did not answer within {} s",
                    self.send_timeout.as_secs()
                );
                if last_attempt {
                    return Err(self.dead(job_id, &record, &error, None).await);
                }
                self.failed(&record, &error, None).await;
                return Err(JobError::Retryable(format!("email {}: {error}", record.id)));
            }
        };
        match sent {
            Ok(response) => {
                if let Some(since) = self.breaker.succeeded().await {
                    tracing::warn!(
                        down_seconds = outage_age(since).as_secs(),
                        "the SMTP server answers again; email resumes"
                    );
                }
                let reply = format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                );
                self.record_sent(record.id, &reply).await;
                self.count(|m| m.sent.inc());
                Ok(SendOutcome::Sent {
                    email_id: record.id,
                    message_id: record.message_id,
                    smtp_reply: reply,
                })
            }
            Err(e) => {
                let reply = e.status().map(|code| {
                    let text = std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    format!("{code} {text}").trim().to_owned()
                });
                let error = e.to_string();
                if unreachable(&e) {
                    // Not the message's fault: give the token back, open (or keep open) the
                    // breaker, and wait for the next probe without spending the attempt.
                    self.limiter.refund().await;
                    if let Some((since_ms, wait)) = self.breaker.failed(&token).await {
                        if !probing {
                            tracing::warn!(error, "the SMTP server is unreachable; email waits");
                        }
                        self.failed(&record, &error, None).await;
                        if outage_age(since_ms) <= self.give_up {
                            return Err(JobError::Snooze(
                                wait + jitter(),
                                format!(
                                    "email {}: {error}; the SMTP server is unreachable since {}",
                                    record.id,
                                    since_text(since_ms)
                                ),
                            ));
                        }
                    }
                }
                if e.is_permanent() || last_attempt {
                    Err(self.dead(job_id, &record, &error, reply.as_deref()).await)
                } else {
                    self.failed(&record, &error, reply.as_deref()).await;
                    Err(JobError::Retryable(format!("email {}: {error}", record.id)))
                }
            }
        }
    }

    /// The message for `job`, or why it cannot be built.
    fn build(&self, job: &EmailJob, message_id: &str) -> Result<Message, String> {
        job.validate()
            .map_err(|e| format!("invalid email job: {e}"))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(job.subject.clone())
            .message_id(Some(message_id.to_owned()))
            .user_agent("vigil".to_owned());
        if let Some(r) = &self.reply_to {
            builder = builder.reply_to(r.clone());
        }
        for (i, to) in job.to.iter().enumerate() {
            let mbox: Mailbox = to
                .parse()
                .map_err(|e| format!("to[{i}]: `{to}` is not an email address: {e}"))?;
            builder = builder.to(mbox);
        }
        let (text, html) = match (&job.template, &job.body) {
            (Some(name), _) => {
                let r =
                    templates::render(name, &job.subject, &job.vars).map_err(|e| e.to_string())?;
                (Some(r.text), Some(r.html))
            }
            (None, Some(body)) => (
                body.text.clone().filter(|t| !t.trim().is_empty()),
                body.html.clone().filter(|h| !h.trim().is_empty()),
            ),
            (None, None) => (None, None),
        };
        let built = match (text, html) {
            (Some(text), Some(html)) => {
                builder.multipart(MultiPart::alternative_plain_html(text, html))
            }
            (Some(text), None) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            ),
            (None, Some(html)) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html),
            ),
            (None, None) => return Err("the email has no content".to_owned()),
        };
        built.map_err(|e| format!("the message cannot be built: {e}"))
    }

    /// Records `sent`, retrying a failing database a few times: the message is out, so the
    /// job succeeds even if the record cannot be written (it stays `sending`).
    async fn record_sent(&self, id: i64, reply: &str) {
        for attempt in 0..3u64 {
            match emails::mark_sent(&self.db, id, reply).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(email_id = id, attempt, error = %e, "recording a sent email failed");
                    tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                }
            }
        }
    }

    /// Records a retryable failure.
    async fn failed(&self, record: &EmailRecord, error: &str, reply: Option<&str>) {
        self.count(|m| m.failed.inc());
        if let Err(e) =
            emails::mark_failed(&self.db, record.id, EmailStatus::Failed, error, reply).await
        {
            tracing::error!(email_id = record.id, error = %e, "recording a failed email failed");
        }
        tracing::warn!(
            email_id = record.id,
            error,
            "email attempt failed; will retry"
        );
    }

    /// Records a permanent failure, audits it, and returns the job's error.
    async fn dead(
        &self,
        job_id: &str,
        record: &EmailRecord,
        error: &str,
        reply: Option<&str>,
    ) -> JobError {
        self.count(|m| m.dead.inc());
        if let Err(e) =
            emails::mark_failed(&self.db, record.id, EmailStatus::Dead, error, reply).await
        {
            tracing::error!(email_id = record.id, error = %e, "recording a dead email failed");
        }
        tracing::warn!(email_id = record.id, error, "email is dead");
        self.audit
            .record(AuditJob {
                event_id: format!("email.dead:{}", record.dedup_key),
                occurred_at: chrono::Utc::now(),
                actor: AuditActor::Job(job_id.to_owned()),
                action: "email.dead".to_owned(),
                target_type: "email".to_owned(),
                target_id: record.id.to_string(),
                details: json!({
                    "recipients": record.recipients,
                    "subject": record.subject,
                    "template": record.template,
                    "error": error,
                    "smtp_reply": reply,
                }),
                request_id: None,
                job_id: Some(job_id.to_owned()),
            })
            .await;
        JobError::Permanent(format!("email {}: {error}", record.id))
    }

    fn count(&self, f: impl FnOnce(&EmailMetrics)) {
        if let Some(m) = &self.metrics {
            f(m);
        }
    }
}

/// Whether a send failed because the server could not be reached at all (connection refused
/// or reset, network down, connect timed out), as opposed to a reply, a TLS or a client
/// problem.
fn unreachable(e: &SendError) -> bool {
    let e = match e {
        SendError::Connect(_) => return true,
        SendError::Smtp(e) => e,
    };
    !e.is_response() && !e.is_client() && !e.is_tls() && !e.is_permanent() && {
        let text = e.to_string();
        text.starts_with("Connection error") || text.starts_with("network error") || e.is_timeout()
    }
}

/// How long the server has been unreachable (outage start in Redis ms).
fn outage_age(since_ms: i64) -> Duration {
    let now = chrono::Utc::now().timestamp_millis();
    Duration::from_millis(u64::try_from(now - since_ms).unwrap_or(0))
}

fn since_text(since_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(since_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "an unknown time".to_owned())
}

/// Up to a second, so snoozed jobs do not all come back at once.
fn jitter() -> Duration {
    Duration::from_millis(rand::random_range(0..1000))
}

fn dead_again(record: &EmailRecord) -> JobError {
    JobError::Permanent(format!(
        "email {} is dead: {}",
        record.id,
        record.last_error.as_deref().unwrap_or("permanent failure")
    ))
}
