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
    /// `vigil_notifications_total{channel, outcome}`: escalation notification attempts by
    /// outcome (`sent`, `retry`, `dead`, `suppressed`).
    pub notifications: IntCounterVec,
    /// `vigil_escalation_levels_failed_total`: levels whose every notification died.
    pub levels_failed: IntCounter,
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
            notifications: IntCounterVec::new(
                Opts::new(
                    "vigil_notifications_total",
                    "Escalation notification attempts by channel and outcome",
                ),
                &["channel", "outcome"],
            )?,
            levels_failed: IntCounter::new(
                "vigil_escalation_levels_failed_total",
                "Escalation levels whose every notification died",
            )?,
        };
        registry.register(Box::new(m.evaluated.clone()))?;
        registry.register(Box::new(m.notifications.clone()))?;
        registry.register(Box::new(m.levels_failed.clone()))?;
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
        for channel in vigil_store::notifications::Channel::ALL {
            for outcome in ["sent", "retry", "dead", "suppressed"] {
                m.notifications
                    .with_label_values(&[channel.as_str(), outcome]);
            }
        }
        Ok(m)
    }
}
