//! Escalation webhooks: one signed JSON POST per (alert, level, URL).
//!
//! Body: `{"event": "alert.escalated", "delivery_id", "level", "policy", "alert": {...}}`.
//! Headers: `X-Vigil-Event`, `X-Vigil-Delivery` (the same on every retry, so a receiver can
//! drop repeats) and [`SIGNATURE_HEADER`]: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>" under escalation.webhook_secret>`; receivers recompute it and compare in
//! constant time, and reject old `t` to stop replays.
//!
//! 2xx is delivered; 429, 5xx, timeouts and connection errors retry with the engine's
//! backoff; any other answer is permanent. A 2xx is recorded by delivery id, so a
//! re-delivered job does not call again (two copies racing may both call: receivers dedup on
//! `X-Vigil-Delivery`). Redirects are not followed, and only URLs that
//! appear in a configured policy are called, whatever a job says.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use vigil_jobs::escalation::redact_webhook;
use vigil_jobs::{EscalationSettings, WebhookDelivery};
use vigil_store::alerts::Alert;
use vigil_store::notifications::Channel;
use vigil_store::{Db, alerts};

use super::http_outcome::{HttpOutcome, classify};
use super::{AlertMetrics, Gate, NotificationTracker};
use crate::JobError;

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Vigil-Signature";

/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Sends escalation webhooks. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    settings: Arc<EscalationSettings>,
    db: Db,
    metrics: Option<AlertMetrics>,
    notifications: Option<NotificationTracker>,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender").finish_non_exhaustive()
    }
}

impl WebhookSender {
    pub fn new(
        settings: Arc<EscalationSettings>,
        db: Db,
        metrics: Option<AlertMetrics>,
    ) -> Result<WebhookSender, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(settings.webhook_timeout_seconds))
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSender {
            client,
            settings,
            db,
            metrics,
            notifications: None,
        })
    }

    /// Delivers recorded notifications (`{"notification_id": N}` jobs) through `tracker`.
    pub fn with_notifications(mut self, tracker: NotificationTracker) -> WebhookSender {
        self.notifications = Some(tracker);
        self
    }

    /// Delivers notification `id` (a signed webhook, Slack, Teams or PagerDuty) and records
    /// the outcome; `alert`: the alert the job says it belongs to (checked when given);
    /// `last`: no attempt follows this one.
    pub async fn deliver_notification(
        &self,
        id: i64,
        alert: Option<i64>,
        last: bool,
    ) -> Result<(), JobError> {
        let Some(tracker) = &self.notifications else {
            return Err(JobError::Permanent(
                "notification deliveries are not configured in this worker".to_owned(),
            ));
        };
        let (n, alert) = match tracker.gate(id).await? {
            Gate::Send(n, a) => {
                if let Some(expected) = alert
                    && a.id != expected
                {
                    return Err(JobError::Permanent(format!(
                        "notification {id} belongs to alert {}, not {expected}",
                        a.id
                    )));
                }
                (n, a)
            }
            Gate::AlreadySent | Gate::Suppressed => return Ok(()),
        };
        let outcome = match n.channel {
            Channel::Webhook => {
                if !self.settings.is_webhook_target(&n.target) {
                    HttpOutcome::Final(format!(
                        "{} is not a webhook target of any escalation policy",
                        n.target_shown
                    ))
                } else if self.settings.webhook_secret.is_empty() {
                    HttpOutcome::Final(
                        "escalation.webhook_secret is not set: webhooks cannot be signed"
                            .to_owned(),
                    )
                } else {
                    let delivery_id = format!("alert-{}-notification-{}", alert.id, n.id);
                    self.post_signed(&n.target, &delivery_id, n.level, &alert)
                        .await
                }
            }
            Channel::Slack | Channel::Teams | Channel::Pagerduty => {
                super::channels::send(&self.client, &self.settings, &n, &alert).await
            }
            Channel::Email => HttpOutcome::Final(
                "an email notification is delivered by the email queue".to_owned(),
            ),
        };
        match outcome {
            HttpOutcome::Delivered { status, id } => {
                self.count("ok");
                tracker.sent(&n, &status, id.as_deref()).await
            }
            HttpOutcome::Retry { error, after } => {
                self.count("retry");
                let error = match after {
                    Some(after) => format!("{error} (Retry-After: {} s)", after.as_secs()),
                    None => error,
                };
                if let Err(e) = tracker.failed(&n, &error, last).await {
                    tracing::error!(error = %e, "recording the notification's failure failed");
                }
                match (last, after) {
                    (true, _) => Err(JobError::Permanent(error)),
                    // Honour the server's Retry-After (bounded: a bad header never parks a
                    // notification for days).
                    (false, Some(after)) => Err(JobError::RetryAfter(
                        after.clamp(Duration::from_secs(1), MAX_RETRY_AFTER),
                        error,
                    )),
                    (false, None) => Err(JobError::Retryable(error)),
                }
            }
            HttpOutcome::Final(error) => {
                self.count("failed");
                if let Err(e) = tracker.failed(&n, &error, true).await {
                    tracing::error!(error = %e, "recording the notification's failure failed");
                }
                Err(JobError::Permanent(error))
            }
        }
    }

    /// POSTs the signed `alert.escalated` body of `alert` at `level` to `url`.
    async fn post_signed(
        &self,
        url: &str,
        delivery_id: &str,
        level: i64,
        alert: &Alert,
    ) -> HttpOutcome {
        let body = json!({
            "event": "alert.escalated",
            "delivery_id": delivery_id,
            "round": alert.escalation_round,
            "level": level,
            "policy": alert.escalation_policy,
            "alert": {
                "id": alert.id,
                "rule_id": alert.rule_id,
                "title": alert.title,
                "severity": alert.severity,
                "status": alert.status,
                "group_key": alert.group_key,
                "count": alert.event_count,
                "first_seen": alert.first_seen,
                "last_seen": alert.last_seen,
                "created_at": alert.created_at,
                "link": self.settings.link(alert.id),
            },
        })
        .to_string();
        let signature = sign(
            self.settings.webhook_secret.as_bytes(),
            Utc::now().timestamp(),
            body.as_bytes(),
        );
        let sent = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Vigil-Event", "alert.escalated")
            .header("X-Vigil-Delivery", delivery_id)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        classify(sent, &redact_webhook(url)).await
    }

    fn count(&self, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.webhooks.with_label_values(&[outcome]).inc();
        }
    }

    /// Delivers `d` once; the error says whether to retry.
    pub async fn deliver(&self, d: &WebhookDelivery) -> Result<(), JobError> {
        if !self.settings.is_webhook_target(&d.url) {
            return Err(JobError::Permanent(format!(
                "{} is not a webhook target of any escalation policy",
                redact_webhook(&d.url)
            )));
        }
        if self.settings.webhook_secret.is_empty() {
            return Err(JobError::Permanent(
                "escalation.webhook_secret is not set: webhooks cannot be signed".to_owned(),
            ));
        }
        let alert = alerts::get(&self.db, d.alert_id)
            .await
            .map_err(|e| JobError::Retryable(format!("reading alert {}: {e}", d.alert_id)))?
            .ok_or_else(|| JobError::Permanent(format!("alert {} does not exist", d.alert_id)))?;
        let delivery_id = format!(
            "alert-{}-level-{}-{}",
            d.alert_id,
            d.level,
            short_hash(&d.url)
        );
        let store =
            |e: vigil_store::StoreError| JobError::Retryable(format!("webhook record: {e}"));
        if alerts::webhook_delivered(&self.db, &delivery_id)
            .await
            .map_err(store)?
        {
            tracing::info!(
                alert_id = d.alert_id,
                level = d.level,
                "webhook already delivered"
            );
            return Ok(());
        }
        match self
            .post_signed(&d.url, &delivery_id, d.level, &alert)
            .await
        {
            HttpOutcome::Delivered { status, .. } => {
                self.count("ok");
                let code = status
                    .trim_start_matches("HTTP ")
                    .parse::<u16>()
                    .unwrap_or(200);
                alerts::record_webhook(
                    &self.db,
                    &delivery_id,
                    d.alert_id,
                    d.level,
                    code,
                    Utc::now(),
                )
                .await
                .map_err(store)?;
                tracing::info!(alert_id = d.alert_id, level = d.level,
                    target = %redact_webhook(&d.url), "webhook delivered");
                Ok(())
            }
            HttpOutcome::Retry { error, .. } => {
                self.count("retry");
                Err(JobError::Retryable(error))
            }
            HttpOutcome::Final(error) => {
                self.count("failed");
                Err(JobError::Permanent(error))
            }
        }
    }
}

/// 16 hex digits of SHA-256 (stable ids per URL without putting the URL in keys).
pub(crate) fn short_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Independent value: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
