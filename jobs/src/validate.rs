//! Validation: every payload checks itself before it is enqueued, and again when a worker
//! decodes it (a job written by an older or foreign producer gets the same checks).

use serde::Serialize;

/// A payload field that does not satisfy its rule. `field` is a JSON path such as `to[2]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Implemented by every payload.
pub trait Validate {
    /// Checks every rule; returns the first broken one.
    fn validate(&self) -> Result<(), ValidationError>;
}

/// Checks that `value` is non-empty (after trimming) and at most `max` characters long.
pub(crate) fn non_empty(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// A pragmatic email address check: `local@domain`, no spaces or control characters, a
/// domain of dot-separated labels. SMTP servers do the final say; this catches typos early.
pub fn is_email_address(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || local.contains(['<', '>', '"', ',', ';']) {
        return false;
    }
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses() {
        for ok in ["a@b.c", "soc+alerts@example.com", "ops@localhost"] {
            assert!(is_email_address(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@", "@b.c", "a b@c.d", "a@b..c", "a@-b.c", "x@y.z\n", "<a@b.c>",
        ] {
            assert!(!is_email_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn non_empty_checks_blank_and_length() {
        assert!(non_empty("f", "x", 3).is_ok());
        assert_eq!(non_empty("f", "  ", 3).unwrap_err().field, "f");
        assert!(non_empty("f", "abcd", 3).is_err());
    }
}
