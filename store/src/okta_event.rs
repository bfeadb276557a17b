//! Reading one Okta `LogEvent` tolerantly into the columns vigil stores — the one parser of
//! polling (`vigil-workers`) and Event Hook deliveries (`vigil-api`), so both store an
//! event the same way.
//!
//! Only `uuid`, `published` and `eventType` are required; everything else is optional and
//! may have any JSON type (real events carry the string `"null"`, JSON inside strings,
//! numbers where strings are documented). The raw text is kept byte for byte, so unknown
//! fields survive. A lone surrogate escape reads as U+FFFD
//! ([`parse_lenient`]); the store bounds and cleans the columns ([`NewEvent::storable`]).
//!
//! An event missing a required field, with a uuid the API could not look up (longer than
//! [`MAX_UUID_LEN`], or holding control characters), or that is no JSON value at all becomes
//! a [`MalformedEvent`]: with the uuid whenever one can be read, and the reason as it is.

use crate::events::{MAX_UUID_LEN, MalformedEvent, NewEvent};
use crate::storable::parse_lenient;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::LazyLock;
use vigil_rules::field::FieldPath;

/// Just the uuid of an event whose whole text does not parse (other fields are skipped
/// without being decoded, so whatever broke the parse elsewhere does not matter here).
#[derive(Deserialize)]
struct UuidOnly {
    uuid: Option<String>,
}

/// Reads one event of a page. `Err` carries the malformed record to keep.
pub fn parse_event(raw: &RawValue) -> Result<NewEvent, MalformedEvent> {
    let text = raw.get();
    let malformed = |uuid: Option<String>, reason: &str| MalformedEvent {
        uuid,
        reason: reason.to_owned(),
        raw: text.to_owned(),
    };
    let v: Value = match parse_lenient(text) {
        Ok(v) => v,
        Err(e) => {
            let uuid = serde_json::from_str::<UuidOnly>(text)
                .ok()
                .and_then(|u| u.uuid);
            return Err(malformed(uuid, &format!("not valid JSON: {e}")));
        }
    };
    if !v.is_object() {
        return Err(malformed(None, "not a JSON object"));
    }
    // Keys in any case: data lakes re-export events with lowercase top-level keys.
    let uuid = match vigil_rules::field::get_key(&v, "uuid") {
        Some(Value::String(u)) if !u.trim().is_empty() => u.clone(),
        Some(Value::String(_)) => return Err(malformed(None, "empty uuid")),
        Some(other) => {
            return Err(malformed(Some(other.to_string()), "uuid is not a string"));
        }
        None => return Err(malformed(None, "missing uuid")),
    };
    let chars = uuid.chars().count();
    if chars > MAX_UUID_LEN {
        return Err(malformed(
            Some(uuid),
            &format!("uuid is {chars} characters long; at most {MAX_UUID_LEN} are accepted"),
        ));
    }
    if uuid.chars().any(char::is_control) {
        return Err(malformed(Some(uuid), "uuid holds control characters"));
    }
    // RFC 3339 from Okta; SQL-style UTC times and epoch milliseconds from re-exports.
    let published = match vigil_rules::time::published(&v) {
        Some(p) => p,
        None => return Err(malformed(Some(uuid), "missing or invalid published")),
    };
    let event_type = match vigil_rules::evaluate::text_at(&v, "eventType")
        .filter(|t| !t.is_empty() && t != "null")
    {
        Some(t) => t,
        None => return Err(malformed(Some(uuid), "missing eventType")),
    };
    Ok(NewEvent {
        uuid,
        published,
        event_type,
        severity: text_at(&v, "/severity"),
        actor_id: text_at(&v, "/actor/id"),
        actor_alternate_id: text_at(&v, "/actor/alternateId"),
        actor_display_name: text_at(&v, "/actor/displayName"),
        client_ip: text_at(&v, "/client/ipAddress"),
        country: text_at(&v, "/client/geographicalContext/country"),
        outcome_result: text_at(&v, "/outcome/result"),
        outcome_reason: text_at(&v, "/outcome/reason"),
        display_message: text_at(&v, "/displayMessage"),
        transaction_id: text_at(&v, "/transaction/id"),
        raw: text.to_owned(),
        published_reported: None,
        org: crate::events::DEFAULT_ORG.to_owned(),
        app_id: first_text(&APP_ID, &v),
        app_sign_on_mode: first_text(&APP_MODE, &v),
    })
}

/// The app an event is about, read as rules read fields (keys in any case).
static APP_ID: LazyLock<FieldPath> = LazyLock::new(|| fixed_path("target[type=AppInstance].id"));
static APP_MODE: LazyLock<FieldPath> =
    LazyLock::new(|| fixed_path("target[type=AppInstance].detailEntry.signOnModeType"));

fn fixed_path(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| unreachable!("a fixed path: {e}"))
}

/// The first value at `path` that is not empty nor the string `"null"`.
fn first_text(path: &FieldPath, v: &Value) -> Option<String> {
    path.values(v)
        .into_iter()
        .find(|s| !s.is_empty() && s != "null")
}

/// The scalar at `pointer` as text; `null`, the string `"null"`, empty strings, objects and
/// arrays read as absent.
fn text_at(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) if s.is_empty() || s == "null" => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn the_app_an_event_is_about_is_read_from_its_targets() {
        let e = parse_event(&raw(
            r#"{"uuid":"u2","published":"2024-04-02T19:17:37.621Z","eventType":"user.authentication.sso",
               "TARGET":[{"type":"AppUser","id":"x"},
                         {"type":"AppInstance","id":"0oa1","detailEntry":{"signOnModeType":"BROWSER_PLUGIN"}}]}"#,
        ))
        .unwrap();
        assert_eq!(e.app_id.as_deref(), Some("0oa1"));
        assert_eq!(e.app_sign_on_mode.as_deref(), Some("BROWSER_PLUGIN"));
        let none = parse_event(&raw(
            r#"{"uuid":"u3","published":"2024-04-02T19:17:37.621Z","eventType":"user.session.start",
               "target":[{"type":"AppInstance","id":"null"}]}"#,
        ))
        .unwrap();
        assert_eq!((none.app_id, none.app_sign_on_mode), (None, None));
    }

    #[test]
    fn odd_values_never_fail_an_event() {
        let e = parse_event(&raw(
            r#"{"uuid":"u1","published":"2024-04-02T19:17:37.621Z","eventType":"user.session.start",
               "client":{"zone":"null","ipAddress":"null","geographicalContext":null},
               "actor":{"id":7,"alternateId":"a@b"},"outcome":"weird",
               "debugContext":{"debugData":{"risk":"{level=LOW}","x":"{\"a\":1}"}},"newField":[1]}"#,
        ))
        .unwrap();
        assert_eq!(e.client_ip, None);
        assert_eq!(e.actor_id.as_deref(), Some("7"));
        assert_eq!(e.outcome_result, None);
        assert!(e.raw.contains("newField"));
    }

    #[test]
    fn missing_required_fields_are_malformed() {
        let m = parse_event(&raw(r#"{"published":"2024-04-02T19:17:37.621Z"}"#)).unwrap_err();
        assert_eq!(m.reason, "missing uuid");
        let m = parse_event(&raw(
            r#"{"uuid":"x","published":"yesterday","eventType":"a"}"#,
        ))
        .unwrap_err();
        assert_eq!(m.uuid.as_deref(), Some("x"));
        assert!(parse_event(&raw("[1]")).is_err());
    }

    #[test]
    fn a_broken_event_keeps_its_uuid_and_the_real_reason() {
        let m = parse_event(&raw(
            r#"{"uuid":"u-9","published":"2024-04-02T19:17:37.621Z","eventType":"a","x":1e400}"#,
        ))
        .unwrap_err();
        assert_eq!(m.uuid.as_deref(), Some("u-9"));
        assert!(
            m.reason.starts_with("not valid JSON: number out of range"),
            "{}",
            m.reason
        );
        let long = "u".repeat(MAX_UUID_LEN + 1);
        let m = parse_event(&raw(&format!(
            r#"{{"uuid":"{long}","published":"2024-04-02T19:17:37.621Z","eventType":"a"}}"#
        )))
        .unwrap_err();
        assert_eq!(m.uuid.as_deref(), Some(long.as_str()));
        assert!(m.reason.contains("at most 100"), "{}", m.reason);
    }

    #[test]
    fn a_lone_surrogate_is_read_not_refused() {
        let e = parse_event(&raw(r#"{"uuid":"u-8","published":"2024-04-02T19:17:37.621Z","eventType":"a","actor":{"alternateId":"bob\ud800"}}"#))
            .unwrap();
        assert_eq!(e.actor_alternate_id.as_deref(), Some("bob\u{fffd}"));
        assert!(e.raw.contains("\\ud800"));
    }

    #[test]
    fn exported_times_and_lowercase_keys_are_read() {
        let want = parse_event(&raw(
            r#"{"uuid":"a","published":"2020-11-25T21:27:03.496Z","eventType":"t"}"#,
        ))
        .unwrap()
        .published;
        for text in [
            r#"{"uuid":"a","published":"2020-11-25 21:27:03.496000000","eventType":"t"}"#,
            r#"{"uuid":"a","published":1606339623496,"eventType":"t"}"#,
            r#"{"UUID":"a","published":"1606339623496","eventtype":"t"}"#,
        ] {
            let e = parse_event(&raw(text)).unwrap();
            assert_eq!((e.published, e.event_type.as_str()), (want, "t"), "{text}");
        }
    }
}
