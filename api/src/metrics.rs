//! HTTP metrics, registered in the process's shared Prometheus registry: requests by method,
//! route template (never the raw path, so ids do not explode the label set) and status, and
//! latency by method and route; and `vigil_alerts{status}`, the alerts by status, read from
//! the database at each scrape.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use vigil_store::alerts::AlertStatus;

/// The API's metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    alerts: IntGaugeVec,
}

impl HttpMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<HttpMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "vigil_http_requests_total",
                "HTTP requests by method, route template and status",
            ),
            &["method", "route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "vigil_http_request_duration_seconds",
                "HTTP request latency by method and route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        let alerts = IntGaugeVec::new(
            Opts::new(
                "vigil_alerts",
                "Alerts by status (open, acknowledged, resolved)",
            ),
            &["status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(alerts.clone()))?;
        Ok(HttpMetrics {
            requests,
            duration,
            alerts,
        })
    }

    /// Sets `vigil_alerts{status}` (every status, 0 when absent from `counts`).
    pub fn set_alerts(&self, counts: &[(AlertStatus, i64)]) {
        for status in [
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            AlertStatus::Resolved,
        ] {
            let n = counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            self.alerts.with_label_values(&[status.as_str()]).set(n);
        }
    }

    /// Records one finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}
