//! Prometheus metrics of detection and escalation.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Detection and escalation metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertMetrics {
    /// `vigil_rule_events_evaluated_total`: events run through the rules.
    pub evaluated: IntCounter,
    /// `vigil_rule_matches_total{rule}`: events passing a rule's match.
    pub matches: IntCounterVec,
    /// `vigil_alerts_opened_total{rule, severity}`.
    pub opened: IntCounterVec,
    /// `vigil_alerts_updated_total{rule}`: repeats added to an active alert.
    pub updated: IntCounterVec,
    /// `vigil_detection_errors_total`: batches whose detection failed (logged).
    pub errors: IntCounter,
    /// `vigil_alert_escalations_total{policy, level}`: levels reached.
    pub escalations: IntCounterVec,
    /// `vigil_webhook_requests_total{outcome}`: `ok`, `retry`, `failed`.
    pub webhooks: IntCounterVec,
}

impl AlertMetrics {
    pub fn register(registry: &Registry) -> Result<AlertMetrics, prometheus::Error> {
        let m = AlertMetrics {
            evaluated: IntCounter::new(
                "vigil_rule_events_evaluated_total",
                "Events run through the detection rules",
            )?,
            matches: IntCounterVec::new(
                Opts::new("vigil_rule_matches_total", "Events passing a rule's match"),
                &["rule"],
            )?,
            opened: IntCounterVec::new(
                Opts::new("vigil_alerts_opened_total", "Alerts opened"),
                &["rule", "severity"],
            )?,
            updated: IntCounterVec::new(
                Opts::new(
                    "vigil_alerts_updated_total",
                    "Repeats added to an open or acknowledged alert",
                ),
                &["rule"],
            )?,
            errors: IntCounter::new(
                "vigil_detection_errors_total",
                "Event batches whose detection failed",
            )?,
            escalations: IntCounterVec::new(
                Opts::new("vigil_alert_escalations_total", "Escalation levels reached"),
                &["policy", "level"],
            )?,
            webhooks: IntCounterVec::new(
                Opts::new("vigil_webhook_requests_total", "Escalation webhook calls"),
                &["outcome"],
            )?,
        };
        registry.register(Box::new(m.evaluated.clone()))?;
        registry.register(Box::new(m.matches.clone()))?;
        registry.register(Box::new(m.opened.clone()))?;
        registry.register(Box::new(m.updated.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.escalations.clone()))?;
        registry.register(Box::new(m.webhooks.clone()))?;
        // Export these at 0 from the start (dashboards show 0, not "no data").
        for outcome in ["ok", "retry", "failed"] {
            m.webhooks.with_label_values(&[outcome]);
        }
        Ok(m)
    }
}
