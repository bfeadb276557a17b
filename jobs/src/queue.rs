//! The four queues vigil runs. A queue name is part of the contract: it appears in URLs
//! (`/api/v1/queues/{queue}`), config sections (`[queues.email]`), Redis keys and metrics.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One of vigil's job queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    /// Polls the Okta System Log and stores new events.
    OktaFetch,
    /// Sends one email through SMTP and records the delivery.
    Email,
    /// Appends one record to the hash-chained audit trail.
    Audit,
    /// Finds alerts whose next escalation level is due and notifies.
    AlertEscalation,
}

impl Queue {
    /// Every queue, in a stable order (used for listings and metrics).
    pub const ALL: [Queue; 4] = [
        Queue::OktaFetch,
        Queue::Email,
        Queue::Audit,
        Queue::AlertEscalation,
    ];

    /// The queue's wire name, e.g. `okta_fetch`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Queue::OktaFetch => "okta_fetch",
            Queue::Email => "email",
            Queue::Audit => "audit",
            Queue::AlertEscalation => "alert_escalation",
        }
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queue name that is not one of [`Queue::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown queue `{0}`; expected one of okta_fetch, email, audit, alert_escalation")]
pub struct UnknownQueue(pub String);

impl FromStr for Queue {
    type Err = UnknownQueue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Queue::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| UnknownQueue(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for q in Queue::ALL {
            assert_eq!(q.as_str().parse::<Queue>().unwrap(), q);
            let json = serde_json::to_string(&q).unwrap();
            assert_eq!(json, format!("\"{}\"", q.as_str()));
        }
        assert!("emails".parse::<Queue>().is_err());
    }
}
