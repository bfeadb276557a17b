//! # Email: the `email` queue's handler
//!
//! - [`settings`]: `[smtp]` (host, port, TLS mode, credentials, from/reply-to, pool,
//!   timeouts, the global send rate).
//! - [`mailer`]: [`Mailer::send`], one attempt of an `email` job, every delivery recorded in
//!   the `emails` table; [`AuditSink`] receives `email.dead` records.
//! - [`smtp`]: the SMTP connection pool the mailer sends through (lettre's SMTP client on
//!   sockets with `TCP_NODELAY`; TLS, AUTH, reuse and idle timeout as lettre's transport).
//! - [`templates`]: `alert_notification`, `alert_escalation`, `generic` (text + HTML).
//! - [`ratelimit`]: the Redis token bucket all instances share.
//! - [`breaker`]: the SMTP circuit breaker all instances share (outages cost no attempts).
//! - [`metrics`]: sent / failed / dead counters.
//! - [`handler`]: how an `email` job runs (`Perform` over the mailer).

pub mod breaker;
pub mod handler;
pub mod mailer;
pub mod metrics;
pub mod ratelimit;
pub mod settings;
pub mod smtp;
pub mod templates;

pub use crate::audit::{AuditSink, EngineAuditSink};
pub use breaker::{Breaker, BreakerTiming};

pub use mailer::{Mailer, MailerError, SendOutcome, check_settings, smtp_pool};
pub use metrics::EmailMetrics;
pub use ratelimit::{RateLimitError, SendRateLimiter};
pub use settings::{SmtpSettings, SmtpTls};
