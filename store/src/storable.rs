//! Values as both engines can store and index them, whatever an event carries.
//!
//! Event fields are outside data (a failed sign-in's `actor.alternateId` is whatever the
//! person typed), so nothing about their size or characters can be assumed:
//! - PostgreSQL refuses `U+0000` in `TEXT`: every extracted string has it replaced by
//!   `U+2400` (␀, "symbol for null") — [`text_form`];
//! - a B-tree entry must stay under ~2.7 KB on PostgreSQL: indexed columns hold at most
//!   [`MAX_INDEXED_BYTES`], a longer value becomes its prefix, `…` and a hash of the whole
//!   value — [`indexed_form`]. Filters apply the same function to what they look for, so a
//!   search with the full value finds the event, and two long values sharing a prefix stay
//!   apart. The full value is always in `raw`;
//! - JSON text may hold a lone UTF-16 surrogate escape (`"\ud800"`), which `serde_json`
//!   refuses to turn into a string: [`parse_lenient`] reads it as `U+FFFD` (the raw text
//!   keeps the original);
//! - when the database still refuses a row, [`blames_the_row`] tells a refusal of this
//!   row's data (store it elsewhere and go on) from a failure of the database (retry later).

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// The most bytes an indexed text column holds.
pub const MAX_INDEXED_BYTES: usize = 1024;

/// What replaces `U+0000` in stored text.
pub const NUL_REPLACEMENT: char = '\u{2400}';

/// Hex digits of the hash that ends a shortened value.
const HASH_HEX: usize = 16;

/// `s` with `U+0000` replaced by [`NUL_REPLACEMENT`] (PostgreSQL text cannot hold it).
pub fn text_form(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', &NUL_REPLACEMENT.to_string()))
    } else {
        Cow::Borrowed(s)
    }
}

/// The form of `s` an indexed column holds: [`text_form`], and when longer than
/// [`MAX_INDEXED_BYTES`], its prefix + `…` + `sha256:` + 16 hex digits of the whole value's
/// hash. Idempotent on values that fit; apply it to filter values too.
pub fn indexed_form(s: &str) -> Cow<'_, str> {
    let text = text_form(s);
    if text.len() <= MAX_INDEXED_BYTES {
        return text;
    }
    let digest = hex::encode(Sha256::digest(s.as_bytes()));
    let suffix = format!("…sha256:{}", &digest[..HASH_HEX]);
    let mut cut = MAX_INDEXED_BYTES - suffix.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}{suffix}", &text[..cut]))
}

/// Parses JSON text like `serde_json::from_str`, except that a lone UTF-16 surrogate escape
/// reads as `U+FFFD` instead of failing the whole document.
pub fn parse_lenient(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => match repair_lone_surrogates(text) {
            Some(repaired) => serde_json::from_str(&repaired),
            None => Err(first),
        },
    }
}

/// `text` with each lone surrogate escape replaced by `\ufffd`; `None` when there is none.
fn repair_lone_surrogates(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let hex_at = |i: usize| -> Option<u16> {
        let h = b.get(i..i + 4)?;
        u16::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let escape_at = |i: usize| -> Option<u16> {
        (b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u'))
            .then(|| hex_at(i + 2))
            .flatten()
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(i) else {
            i += 2; // any other escape, `\\` included, is two bytes
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => match escape_at(i + 6) {
                Some(0xDC00..=0xDFFF) => {
                    i += 12; // a proper pair
                    continue;
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..i]);
            o.push_str("\\ufffd");
            copied = i + 6;
        }
        i += 6;
    }
    out.map(|mut o| {
        o.push_str(&text[copied..]);
        o
    })
}

/// Whether `e` is the database refusing this row's data (a value too large to index, a byte
/// the encoding refuses, a constraint or trigger), as opposed to the database failing (a lost
/// connection, a timeout, a deadlock) where a retry later may work.
pub fn blames_the_row(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = pg.code();
        // 22: data exception, 23: integrity constraint, 54: program limit exceeded (index
        // row size), P0001: raised by a trigger.
        return code.starts_with("22")
            || code.starts_with("23")
            || code.starts_with("54")
            || code == "P0001";
    }
    if let Some(code) = db.code().and_then(|c| c.parse::<i32>().ok()) {
        // SQLite primary codes: TOOBIG, CONSTRAINT (triggers included), MISMATCH, RANGE.
        return matches!(code & 0xff, 18 | 19 | 20 | 25);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_and_short_values_are_unchanged() {
        assert_eq!(text_form("a\0b"), "a\u{2400}b");
        assert!(matches!(
            indexed_form("alice@example.com"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn long_values_are_bounded_distinct_and_stable() {
        let a = "é".repeat(2000);
        let b = format!("{}x", "é".repeat(1999));
        let fa = indexed_form(&a);
        assert!(fa.len() <= MAX_INDEXED_BYTES, "{}", fa.len());
        assert!(fa.contains("…sha256:"));
        assert_ne!(fa, indexed_form(&b), "same prefix, different values");
        assert_eq!(fa, indexed_form(&a));
    }

    #[test]
    fn lone_surrogates_read_as_replacement_characters() {
        let v = parse_lenient(r#"{"a":"x\ud800y","b":"\ud83d\ude00","c":"\\ud800","d":"\udc00"}"#)
            .unwrap();
        assert_eq!(v["a"], "x\u{fffd}y");
        assert_eq!(v["b"], "😀");
        assert_eq!(v["c"], "\\ud800", "an escaped backslash is not an escape");
        assert_eq!(v["d"], "\u{fffd}");
        assert!(parse_lenient("{").is_err());
    }
}
