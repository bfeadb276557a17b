//! Prometheus metrics of Okta ingestion, registered into the registry the process exposes.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Okta ingestion metrics. Cheap to clone (handles to the same series).
#[derive(Debug, Clone)]
pub struct OktaMetrics {
    /// `vigil_okta_requests_total{endpoint, status}`: responses by HTTP status
    /// (`timeout` / `error` when none arrived).
    pub requests: IntCounterVec,
    /// `vigil_okta_request_duration_seconds{endpoint}`.
    pub latency: HistogramVec,
    /// `vigil_okta_rate_limit_remaining`: `X-Rate-Limit-Remaining` of the last logs response.
    pub rate_limit_remaining: IntGauge,
    /// `vigil_okta_events_ingested_total`: events newly stored.
    pub events_ingested: IntCounter,
    /// `vigil_okta_malformed_events_total`: events recorded as malformed and skipped.
    pub malformed_events: IntCounter,
    /// `vigil_okta_ingestion_lag_seconds`: now minus the newest `published` stored (events
    /// published beyond the allowed clock skew left out).
    pub ingestion_lag: Gauge,
    /// `vigil_okta_rate_limit_waits_total{endpoint, cause}`: waits for a reset, `cause` =
    /// `429` (Okta refused) or `budget` (the shared budget was spent to its reserve).
    pub rate_limit_waits: IntCounterVec,
    /// `vigil_okta_runs_skipped_total`: polling runs skipped because one was still running.
    pub runs_skipped: IntCounter,
    /// `vigil_okta_future_events_total`: events published beyond the allowed clock skew.
    pub future_events: IntCounter,
}

impl OktaMetrics {
    /// Creates the series and registers them into `registry`.
    pub fn register(registry: &Registry) -> Result<OktaMetrics, prometheus::Error> {
        let m = OktaMetrics {
            requests: IntCounterVec::new(
                Opts::new("vigil_okta_requests_total", "Okta HTTP responses by status"),
                &["endpoint", "status"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "vigil_okta_request_duration_seconds",
                    "Latency of Okta HTTP requests",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["endpoint"],
            )?,
            rate_limit_remaining: IntGauge::new(
                "vigil_okta_rate_limit_remaining",
                "X-Rate-Limit-Remaining of the last /api/v1/logs response",
            )?,
            events_ingested: IntCounter::new(
                "vigil_okta_events_ingested_total",
                "Okta events newly stored",
            )?,
            malformed_events: IntCounter::new(
                "vigil_okta_malformed_events_total",
                "Okta events that could not be read, recorded and skipped",
            )?,
            ingestion_lag: Gauge::new(
                "vigil_okta_ingestion_lag_seconds",
                "Now minus the newest published time stored",
            )?,
            rate_limit_waits: IntCounterVec::new(
                Opts::new(
                    "vigil_okta_rate_limit_waits_total",
                    "Waits for an Okta rate-limit reset, by endpoint and cause",
                ),
                &["endpoint", "cause"],
            )?,
            runs_skipped: IntCounter::new(
                "vigil_okta_runs_skipped_total",
                "Okta polling runs skipped because a run of the org was still going",
            )?,
            future_events: IntCounter::new(
                "vigil_okta_future_events_total",
                "Okta events published further in the future than okta.max_clock_skew_seconds",
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.rate_limit_waits.clone()))?;
        registry.register(Box::new(m.runs_skipped.clone()))?;
        registry.register(Box::new(m.future_events.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.rate_limit_remaining.clone()))?;
        registry.register(Box::new(m.events_ingested.clone()))?;
        registry.register(Box::new(m.malformed_events.clone()))?;
        registry.register(Box::new(m.ingestion_lag.clone()))?;
        Ok(m)
    }
}
