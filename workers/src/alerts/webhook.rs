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
use vigil_store::{Db, alerts};

use super::AlertMetrics;
use crate::JobError;

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

/// Sends escalation webhooks.
pub struct WebhookSender {
    client: reqwest::Client,
    settings: Arc<EscalationSettings>,
    db: Db,
    metrics: Option<AlertMetrics>,
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
        })
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
        let body = json!({
            "event": "alert.escalated",
            "delivery_id": delivery_id,
            "level": d.level,
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
            .post(&d.url)
            .header("Content-Type", "application/json")
            .header("X-Vigil-Event", "alert.escalated")
            .header("X-Vigil-Delivery", &delivery_id)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let target = redact_webhook(&d.url);
        match sent {
            Ok(resp) if resp.status().is_success() => {
                self.count("ok");
                alerts::record_webhook(
                    &self.db,
                    &delivery_id,
                    d.alert_id,
                    d.level,
                    resp.status().as_u16(),
                    Utc::now(),
                )
                .await
                .map_err(store)?;
                tracing::info!(alert_id = d.alert_id, level = d.level, %target, "webhook delivered");
                Ok(())
            }
            Ok(resp) => {
                let status = resp.status();
                if status.as_u16() == 429 || status.is_server_error() {
                    self.count("retry");
                    Err(JobError::Retryable(format!(
                        "webhook {target} answered {status}"
                    )))
                } else {
                    self.count("failed");
                    Err(JobError::Permanent(format!(
                        "webhook {target} answered {status}"
                    )))
                }
            }
            Err(e) => {
                self.count("retry");
                let why = if e.is_timeout() {
                    "timed out"
                } else {
                    "could not be reached"
                };
                Err(JobError::Retryable(format!("webhook {target} {why}")))
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
