//! Reading an event's `published` time in the forms real exports carry.
//!
//! Okta writes RFC 3339 (`2024-04-02T19:17:37.621Z`); SIEMs and data lakes re-export the
//! same events as `2020-11-25 21:27:03.496000000` (UTC, any number of fraction digits) or
//! as epoch milliseconds (a JSON number or a string of digits). All three are accepted, and
//! the key is found whatever its case (`published`, `Published`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use crate::field::get_key;

/// What `published` may look like, for error messages.
pub const PUBLISHED_FORMATS: &str = "RFC 3339 (2024-04-02T19:17:37.621Z), \
     `YYYY-MM-DD HH:MM:SS[.fraction]` in UTC, or epoch milliseconds";

/// The event's `published` time, if present and in one of the accepted forms.
pub fn published(event: &Value) -> Option<DateTime<Utc>> {
    match get_key(event, "published")? {
        Value::String(s) => parse_time(s),
        Value::Number(n) => n.as_i64().and_then(DateTime::from_timestamp_millis),
        _ => None,
    }
}

/// Parses one of the accepted forms of a time.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if !text.is_empty() && text.len() <= 15 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis);
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_forms_give_the_same_instant() {
        let want = DateTime::parse_from_rfc3339("2020-11-25T21:27:03.496Z")
            .unwrap()
            .with_timezone(&Utc);
        for e in [
            json!({"published": "2020-11-25T21:27:03.496Z"}),
            json!({"published": "2020-11-25T23:27:03.496+02:00"}),
            json!({"published": "2020-11-25 21:27:03.496000000"}),
            json!({"Published": "2020-11-25 21:27:03.496"}),
            json!({"published": 1_606_339_623_496_i64}),
            json!({"PUBLISHED": "1606339623496"}),
        ] {
            assert_eq!(published(&e), Some(want), "{e}");
        }
        assert_eq!(
            parse_time("2020-11-25 21:27:03"),
            Some(want - chrono::Duration::milliseconds(496))
        );
    }

    #[test]
    fn other_forms_and_types_are_absent() {
        for e in [
            json!({}),
            json!({"published": "yesterday"}),
            json!({"published": "2020-11-25"}),
            json!({"published": "25/11/2020 21:27:03"}),
            json!({"published": null}),
            json!({"published": true}),
            json!({"published": ""}),
        ] {
            assert_eq!(published(&e), None, "{e}");
        }
    }
}
