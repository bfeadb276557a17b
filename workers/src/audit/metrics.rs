//! Audit writer metrics.
//!
//! | metric | type |
//! |---|---|
//! | `vigil_audit_records_written_total` | counter: records appended to the chain |
//! | `vigil_audit_duplicates_total` | counter: re-delivered records skipped (same `event_id`) |
//! | `vigil_audit_batch_failures_total` | counter: batches whose transaction failed |
//! | `vigil_audit_batch_size` | histogram: records per committed batch |

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

/// Every audit metric. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditMetrics {
    pub written: IntCounter,
    pub duplicates: IntCounter,
    pub batch_failures: IntCounter,
    pub batch_size: Histogram,
}

impl AuditMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<AuditMetrics, prometheus::Error> {
        let m = AuditMetrics {
            written: IntCounter::new(
                "vigil_audit_records_written_total",
                "Audit records appended to the chain",
            )?,
            duplicates: IntCounter::new(
                "vigil_audit_duplicates_total",
                "Re-delivered audit records skipped by event_id",
            )?,
            batch_failures: IntCounter::new(
                "vigil_audit_batch_failures_total",
                "Audit batches whose transaction failed",
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new("vigil_audit_batch_size", "Records per audit batch").buckets(
                    vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                ),
            )?,
        };
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.duplicates.clone()))?;
        registry.register(Box::new(m.batch_failures.clone()))?;
        registry.register(Box::new(m.batch_size.clone()))?;
        Ok(m)
    }
}
