//! Email metrics.
//!
//! | metric | type |
//! |---|---|
//! | `vigil_emails_sent_total` | counter: messages the server accepted |
//! | `vigil_emails_failed_total` | counter: attempts that failed and will retry |
//! | `vigil_emails_dead_total` | counter: deliveries that failed for good |
//! | `vigil_emails_skipped_total` | counter: re-delivered jobs whose email was already sent |
//! | `vigil_emails_rate_limited_total` | counter: attempts handed back by the rate limit |
//! | `vigil_emails_waiting_total` | counter: sends put off because the SMTP server is unreachable (breaker open) |

use prometheus::{IntCounter, Registry};

/// Every email metric. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EmailMetrics {
    pub sent: IntCounter,
    pub failed: IntCounter,
    pub dead: IntCounter,
    pub skipped: IntCounter,
    pub rate_limited: IntCounter,
    pub waiting: IntCounter,
}

impl EmailMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<EmailMetrics, prometheus::Error> {
        let m = EmailMetrics {
            sent: IntCounter::new("vigil_emails_sent_total", "Emails the SMTP server accepted")?,
            failed: IntCounter::new(
                "vigil_emails_failed_total",
                "Email attempts that failed and will be retried",
            )?,
            dead: IntCounter::new("vigil_emails_dead_total", "Emails that failed permanently")?,
            skipped: IntCounter::new(
                "vigil_emails_skipped_total",
                "Re-delivered email jobs whose message was already sent",
            )?,
            rate_limited: IntCounter::new(
                "vigil_emails_rate_limited_total",
                "Email attempts handed back because the send rate limit was reached",
            )?,
            waiting: IntCounter::new(
                "vigil_emails_waiting_total",
                "Email sends put off because the SMTP server is unreachable (breaker open)",
            )?,
        };
        for c in [
            &m.sent,
            &m.failed,
            &m.dead,
            &m.skipped,
            &m.rate_limited,
            &m.waiting,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        Ok(m)
    }
}
