//! # Email: the `email` queue's handler
//!
//! - [`settings`]: `[smtp]` (host, port, TLS mode, credentials, from/reply-to, pool,
//!   timeouts, the global send rate).
//! - [`mailer`]: [`Mailer::send`], one attempt of an `email` job, every delivery recorded in
//!   the `emails` table; [`AuditSink`] receives `email.dead` records.
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
pub mod templates;

pub use crate::audit::{AuditSink, EngineAuditSink};
pub use breaker::{Breaker, BreakerTiming};

pub use mailer::{Mailer, MailerError, SendOutcome, check_settings};
pub use metrics::EmailMetrics;
pub use ratelimit::{RateLimitError, SendRateLimiter};
pub use settings::{SmtpSettings, SmtpTls};
