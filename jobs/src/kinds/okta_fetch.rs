//! `okta_fetch`: poll the Okta System Log, or fetch a bounded window (a backfill).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{DefaultSchedule, Job, Queue, QueueSettings, Validate, ValidationError};

/// Fetch Okta System Log events.
///
/// With no fields set, continues polling from the stored cursor (the scheduled run). With
/// `since` (and optionally `until`, `limit`), fetches a bounded window (a backfill). `org`
/// names one `[[okta.orgs]]` org; absent, every configured org is fetched (with a single
/// `[okta]` section, its only org). A bounded run reports its progress on the job.
/// Idempotent: events are stored once by `uuid`. Okta 4xx errors other than 429 are
/// permanent (the job goes dead with Okta's `errorCode`); 429, 5xx and timeouts retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OktaFetchJob {
    /// Start of a bounded window (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// End of a bounded window (exclusive); defaults to now when `since` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Stop after this many events (bounded window only; per org).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The org to fetch (`[[okta.orgs]] name`); absent: every configured org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

/// The longest Okta org name.
pub const MAX_ORG_NAME_LEN: usize = 64;

/// Checks an Okta org name (`[[okta.orgs]] name`, the `org` of an `okta_fetch` job): 1 to
/// [`MAX_ORG_NAME_LEN`] lowercase letters, digits, `-` or `_`, so it can sit in schedule
/// names, metric labels and Redis keys as is.
pub fn check_org_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ORG_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {MAX_ORG_NAME_LEN} lowercase letters, digits, `-` or `_`"
        ))
    }
}

impl OktaFetchJob {
    /// Okta keeps 90 days of System Log; older windows return nothing.
    pub const MAX_LOOKBACK_DAYS: i64 = 90;
    /// The largest `limit` accepted.
    pub const MAX_LIMIT: u32 = 1_000_000;
}

impl Validate for OktaFetchJob {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(org) = &self.org {
            check_org_name(org).map_err(|why| ValidationError::new("org", why))?;
        }
        if self.since.is_none() && (self.until.is_some() || self.limit.is_some()) {
            return Err(ValidationError::new(
                "since",
                "is required when until or limit is given",
            ));
        }
        if let Some(since) = self.since {
            if since < Utc::now() - Duration::days(Self::MAX_LOOKBACK_DAYS) {
                return Err(ValidationError::new(
                    "since",
                    format!(
                        "must be within the last {} days (Okta's retention)",
                        Self::MAX_LOOKBACK_DAYS
                    ),
                ));
            }
            if let Some(until) = self.until
                && until <= since
            {
                return Err(ValidationError::new("until", "must be after since"));
            }
        }
        if let Some(limit) = self.limit
            && !(1..=Self::MAX_LIMIT).contains(&limit)
        {
            return Err(ValidationError::new(
                "limit",
                format!("must be between 1 and {}", Self::MAX_LIMIT),
            ));
        }
        Ok(())
    }
}

impl Job for OktaFetchJob {
    const QUEUE: Queue = Queue::new("okta_fetch");

    fn settings() -> QueueSettings {
        QueueSettings {
            max_attempts: 3,
            timeout_seconds: 300,
            concurrency: 1,
            ..QueueSettings::default()
        }
    }

    fn schedules() -> Vec<DefaultSchedule> {
        vec![DefaultSchedule::new("okta_fetch", "0 * * * * *")]
    }

    fn example() -> serde_json::Value {
        serde_json::json!({})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okta_fetch_org_names_are_checked() {
        let job = |org: &str| OktaFetchJob {
            org: Some(org.to_owned()),
            ..Default::default()
        };
        assert!(job("acme-eu_2").validate().is_ok());
        for bad in ["", "Acme", "a b", "a:b", &"x".repeat(MAX_ORG_NAME_LEN + 1)] {
            let e = job(bad).validate().unwrap_err();
            assert_eq!(e.field, "org", "{bad:?}");
        }
        assert!(
            OktaFetchJob::default().validate().is_ok(),
            "absent: every org"
        );
    }
}
