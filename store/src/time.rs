//! Timestamps are stored as `BIGINT` milliseconds since the Unix epoch on both engines:
//! portable, sortable, and exact to the millisecond Okta uses in `published`.

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the epoch, as stored.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Back from stored milliseconds (out-of-range values clamp to the epoch).
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Now, truncated to what the database keeps.
pub fn now_millis() -> i64 {
    to_millis(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        let t = Utc.with_ymd_and_hms(2024, 4, 2, 19, 17, 37).unwrap()
            + chrono::Duration::milliseconds(621);
        assert_eq!(from_millis(to_millis(t)), t);
    }
}
