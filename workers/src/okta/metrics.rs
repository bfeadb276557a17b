//! Prometheus metrics of Okta ingestion, registered into the registry the process exposes.
//! Every series carries an `org` label (`[[okta.orgs]] name`; `default` for `[okta]`);
//! [`OktaMetrics::org`] hands out one org's handles.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Okta ingestion metrics of every org. Cheap to clone (handles to the same series).
#[derive(Debug, Clone)]
pub struct OktaMetrics {
    /// `vigil_okta_requests_total{org, endpoint, status}`: responses by HTTP status
    /// (`timeout` / `error` when none arrived).
    pub requests: IntCounterVec,
    /// `vigil_okta_request_duration_seconds{org, endpoint}`.
    pub latency: HistogramVec,
    /// `vigil_okta_rate_limit_remaining{org}`: `X-Rate-Limit-Remaining` of the last logs
    /// response.
    pub rate_limit_remaining: IntGaugeVec,
    /// `vigil_okta_events_ingested_total{org}`: events newly stored.
    pub events_ingested: IntCounterVec,
    /// `vigil_okta_malformed_events_total{org}`: events recorded as malformed and skipped.
    pub malformed_events: IntCounterVec,
    /// `vigil_okta_ingestion_lag_seconds{org}`: now minus the org's newest `published`
    /// stored (events published beyond the allowed clock skew left out).
    pub ingestion_lag: GaugeVec,
    /// `vigil_okta_rate_limit_waits_total{org, endpoint, cause}`: waits for a reset, `cause`
    /// = `429` (Okta refused) or `budget` (the shared budget was spent to its reserve).
    pub rate_limit_waits: IntCounterVec,
    /// `vigil_okta_runs_skipped_total{org}`: polling runs skipped because one was running.
    pub runs_skipped: IntCounterVec,
    /// `vigil_okta_future_events_total{org}`: events published beyond the allowed skew.
    pub future_events: IntCounterVec,
    /// `vigil_okta_org_up{org}`: the org's health: 1 when its last run succeeded, 0 when it
    /// failed.
    pub up: IntGaugeVec,
    /// `vigil_okta_last_success_timestamp_seconds{org}`: when a run of the org last
    /// succeeded (Unix time).
    pub last_success: GaugeVec,
}

/// One org's handles on [`OktaMetrics`].
#[derive(Debug, Clone)]
pub struct OrgMetrics {
    org: String,
    all: OktaMetrics,
}

impl OrgMetrics {
    /// The org these handles count for.
    pub fn org(&self) -> &str {
        &self.org
    }
    pub fn requests(&self, endpoint: &str, status: &str) -> IntCounter {
        self.all
            .requests
            .with_label_values(&[&self.org, endpoint, status])
    }
    pub fn latency(&self, endpoint: &str) -> Histogram {
        self.all.latency.with_label_values(&[&self.org, endpoint])
    }
    pub fn rate_limit_remaining(&self) -> IntGauge {
        self.all
            .rate_limit_remaining
            .with_label_values(&[&self.org])
    }
    pub fn events_ingested(&self) -> IntCounter {
        self.all.events_ingested.with_label_values(&[&self.org])
    }
    pub fn malformed_events(&self) -> IntCounter {
        self.all.malformed_events.with_label_values(&[&self.org])
    }
    pub fn ingestion_lag(&self) -> Gauge {
        self.all.ingestion_lag.with_label_values(&[&self.org])
    }
    pub fn rate_limit_waits(&self, endpoint: &str, cause: &str) -> IntCounter {
        self.all
            .rate_limit_waits
            .with_label_values(&[&self.org, endpoint, cause])
    }
    pub fn runs_skipped(&self) -> IntCounter {
        self.all.runs_skipped.with_label_values(&[&self.org])
    }
    pub fn future_events(&self) -> IntCounter {
        self.all.future_events.with_label_values(&[&self.org])
    }
    /// Records the outcome of a run: the org's health and, on success, its time.
    pub fn run_finished(&self, ok: bool) {
        self.all
            .up
            .with_label_values(&[&self.org])
            .set(i64::from(ok));
        if ok {
            let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
            self.all
                .last_success
                .with_label_values(&[&self.org])
                .set(now);
        }
    }
}

impl OktaMetrics {
    /// Creates the series and registers them into `registry`.
    pub fn register(registry: &Registry) -> Result<OktaMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let m = OktaMetrics {
            requests: counter(
                "vigil_okta_requests_total",
                "Okta HTTP responses by status",
                &["org", "endpoint", "status"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "vigil_okta_request_duration_seconds",
                    "Latency of Okta HTTP requests",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["org", "endpoint"],
            )?,
            rate_limit_remaining: IntGaugeVec::new(
                Opts::new(
                    "vigil_okta_rate_limit_remaining",
                    "X-Rate-Limit-Remaining of the last /api/v1/logs response",
                ),
                &["org"],
            )?,
            events_ingested: counter(
                "vigil_okta_events_ingested_total",
                "Okta events newly stored",
                &["org"],
            )?,
            malformed_events: counter(
                "vigil_okta_malformed_events_total",
                "Okta events that could not be read, recorded and skipped",
                &["org"],
            )?,
            ingestion_lag: GaugeVec::new(
                Opts::new(
                    "vigil_okta_ingestion_lag_seconds",
                    "Now minus the newest published time stored",
                ),
                &["org"],
            )?,
            rate_limit_waits: counter(
                "vigil_okta_rate_limit_waits_total",
                "Waits for an Okta rate-limit reset, by endpoint and cause",
                &["org", "endpoint", "cause"],
            )?,
            runs_skipped: counter(
                "vigil_okta_runs_skipped_total",
                "Okta polling runs skipped because a run of the org was still going",
                &["org"],
            )?,
            future_events: counter(
                "vigil_okta_future_events_total",
                "Okta events published further in the future than okta.max_clock_skew_seconds",
                &["org"],
            )?,
            up: IntGaugeVec::new(
                Opts::new(
                    "vigil_okta_org_up",
                    "1 when the org's last Okta run succeeded, 0 when it failed",
                ),
                &["org"],
            )?,
            last_success: GaugeVec::new(
                Opts::new(
                    "vigil_okta_last_success_timestamp_seconds",
                    "When a run of the org last succeeded (Unix time)",
                ),
                &["org"],
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
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.last_success.clone()))?;
        Ok(m)
    }

    /// The handles of `org`.
    pub fn org(&self, org: &str) -> OrgMetrics {
        OrgMetrics {
            org: org.to_owned(),
            all: self.clone(),
        }
    }
}
