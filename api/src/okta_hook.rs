//! What the Okta Event Hook route needs from outside it: its settings (passed by the binary
//! from `[okta]`) and its metrics (registered when the API state is built). Kept apart from
//! the route (`routes::okta_hooks`) so the state does not depend on a route.

use prometheus::{IntCounterVec, Opts, Registry};
use secrecy::SecretString;

/// What the binary passes from `[okta]` (the API does not read other crates' sections).
#[derive(Clone)]
pub struct OktaHookSettings {
    /// The header Okta sends the secret in (Okta's "Authentication field").
    pub header: String,
    /// The header's value (Okta's "Authentication secret").
    pub secret: SecretString,
    /// Events published further ahead than this are stored at their time of receipt.
    pub max_clock_skew: chrono::TimeDelta,
}

impl std::fmt::Debug for OktaHookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaHookSettings")
            .field("header", &self.header)
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// `vigil_okta_hook_deliveries_total{outcome}` and `vigil_okta_hook_events_total{result}`.
#[derive(Debug, Clone)]
pub struct OktaHookMetrics {
    pub(crate) deliveries: IntCounterVec,
    pub(crate) events: IntCounterVec,
}

impl OktaHookMetrics {
    pub fn register(registry: &Registry) -> Result<OktaHookMetrics, prometheus::Error> {
        let m = OktaHookMetrics {
            deliveries: IntCounterVec::new(
                Opts::new(
                    "vigil_okta_hook_deliveries_total",
                    "Okta Event Hook requests by outcome (verified, stored, unauthorized, bad_request, error)",
                ),
                &["outcome"],
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    "vigil_okta_hook_events_total",
                    "Events of Okta Event Hook deliveries by result (stored, duplicate, malformed)",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.deliveries.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        Ok(m)
    }
}
