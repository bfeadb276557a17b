//! The API's one error shape: `{"error": "<stable_code>", "message": "...", "request_id": "..."}`.
//!
//! Handlers return [`ApiError`]; poem's own errors (bad JSON, unknown fields, bad parameters,
//! unknown routes, missing tokens) are reshaped into the same body by the request middleware
//! ([`crate::context`]), which also fills in `request_id`. A 5xx body never carries the
//! cause: the cause is logged with the request id instead.

use std::sync::OnceLock;

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use vigil_queue::EngineError;
use vigil_store::{Failure, StoreError};

/// Every non-2xx response body.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `not_found`, `validation_failed`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request's id (also in the `X-Request-Id` header); quote it when reporting a problem.
    pub request_id: String,
    /// `unknown` when the request may or may not have taken effect (the job store did not
    /// confirm it in time): retry with the same `Idempotency-Key` header to learn which,
    /// without creating a second job. Absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// An error answer of any route.
#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "from_bad_request")]
pub enum ApiError {
    /// The request is malformed: bad JSON, unknown fields, bad parameters.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid bearer token (missing, malformed, expired, revoked or of a disabled user).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The token is valid but its role may not do this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The resource is in a state where this action does not apply.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than `http.max_body_bytes`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is well-formed but a field breaks a rule.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests, or an account locked after failed sign-ins; see `Retry-After`.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before trying again.
        #[oai(header = "Retry-After")]
        Option<u64>,
    ),
    /// An internal error (details are in the logs under the request id).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (Redis, the database) is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// Routes' result type.
pub type ApiResult<T> = Result<T, ApiError>;

fn body(code: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: code.to_owned(),
        message: message.into(),
        request_id: String::new(),
        outcome: None,
    })
}

fn from_bad_request(err: poem::Error) -> ApiError {
    ApiError::BadRequest(body("bad_request", humanize(&err.to_string())))
}

/// The API's OpenAPI document, to word parse errors: given once by [`crate::app`] (which
/// builds the service), so this module needs nothing from the routes that use it.
static SPEC: OnceLock<serde_json::Value> = OnceLock::new();
static NO_SPEC: serde_json::Value = serde_json::Value::Null;

/// Hands the served OpenAPI document (JSON) to the error wording; the first call wins.
pub fn word_errors_with(spec_json: &str) {
    let _ = SPEC.set(serde_json::from_str(spec_json).unwrap_or_default());
}

fn spec() -> &'static serde_json::Value {
    SPEC.get().unwrap_or(&NO_SPEC)
}

/// The name of the path parameters of type `ty` (poem names a path parameter `param<N>` in
/// its errors), when every route agrees on it.
fn path_param_named(ty: &str) -> Option<String> {
    let needle = format!("#/components/schemas/{ty}");
    let mut names = spec()["paths"]
        .as_object()?
        .values()
        .filter_map(|ops| ops.as_object())
        .flat_map(|ops| ops.values())
        .filter_map(|op| op["parameters"].as_array())
        .flatten()
        .filter(|p| p["in"] == "path" && p["schema"]["$ref"] == needle.as_str())
        .filter_map(|p| p["name"].as_str());
    let first = names.next()?;
    names.all(|n| n == first).then(|| first.to_owned())
}

/// Every `<start>X<end>` in `s`, in order.
fn all_between<'a>(s: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(start) {
        let after = &rest[i + start.len()..];
        match after.find(end) {
            Some(j) => {
                out.push(&after[..j]);
                rest = &after[j + end.len()..];
            }
            None => break,
        }
    }
    out
}

/// Rewords poem-openapi's parse errors for people and clients: the field by its name (not the
/// Rust type's), the valid values of an enum listed, the fields of an object named.
/// `failed to parse "StatusName": Expect a valid enumeration value.` for the `status` query
/// parameter becomes `status: not a valid value; valid: pending, scheduled, ...`.
pub fn humanize(raw: &str) -> String {
    let mut field: Option<String> = None;
    let mut rest = raw;
    for prefix in ["failed to parse parameter `", "failed to parse path `"] {
        if let Some(r) = raw.strip_prefix(prefix)
            && let Some((name, tail)) = r.split_once("`: ")
        {
            field = Some(name.to_owned());
            rest = tail;
        }
    }
    if let Some(r) = raw.strip_prefix("parse request payload error: ") {
        rest = r;
    }
    let schemas = &spec()["components"]["schemas"];
    let schema = |name: &str| schemas.get(name).filter(|s| s.is_object());
    // The types named, innermost first, and the objects that held them.
    let failed: Vec<&str> = all_between(rest, "failed to parse \"", "\"");
    let expected: Vec<&str> = all_between(rest, "Expected input type \"", "\"");
    let wrappers: Vec<&str> = all_between(rest, "(occurred while parsing \"", "\")");
    // The objects among them (poem also wraps in `optional_<T>`, `list_<T>`).
    let parents: Vec<&str> = wrappers
        .iter()
        .copied()
        .filter(|p| schema(p).is_some_and(|s| s.get("properties").is_some()))
        .collect();
    let inner = expected.first().or(failed.first()).copied();
    if let (Some(f), Some(t)) = (&field, inner)
        && f.strip_prefix("param")
            .is_some_and(|n| n.parse::<u32>().is_ok())
    {
        field = Some(path_param_named(t).unwrap_or_else(|| "path".to_owned()));
    }
    // The object that held the failing value, and the field it held it in.
    let holder = parents.first().copied().or_else(|| {
        failed
            .iter()
            .copied()
            .find(|n| schema(n).is_some_and(|s| s.get("properties").is_some()))
    });
    if field.is_none()
        && let (Some(t), Some(p)) = (inner, parents.first())
        && let Some(props) = schema(p)
            .and_then(|s| s.get("properties"))
            .and_then(|v| v.as_object())
    {
        let needle = format!("\"#/components/schemas/{t}\"");
        field = props
            .iter()
            .find(|(_, v)| v.to_string().contains(&needle))
            .map(|(k, _)| k.clone());
    }
    let found = rest.split_once(", found ").map(|(_, v)| {
        v.split(". (occurred while parsing")
            .next()
            .unwrap_or(v)
            .trim_end_matches('.')
            .to_owned()
    });
    let names = |v: Option<&serde_json::Value>| -> Option<String> {
        let items: Vec<String> = v?
            .as_array()?
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect();
        (!items.is_empty()).then(|| items.join(", "))
    };
    let enum_values = inner.and_then(|t| names(schema(t).and_then(|s| s.get("enum"))));
    let message = if let Some(valid) = enum_values {
        match found {
            Some(v) => format!("{v} is not a valid value; valid: {valid}"),
            None => format!("not a valid value; valid: {valid}"),
        }
    } else if let Some(unknown) = all_between(rest, "unknown field `", "`").first() {
        let valid = holder
            .and_then(&schema)
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        format!("unknown field `{unknown}`; valid: {valid}")
    } else if rest.contains("expects an input value") || found.as_deref() == Some("null") {
        let required = holder.and_then(|h| names(schema(h).and_then(|s| s.get("required"))));
        match (&field, required) {
            (Some(_), _) => "is required".to_owned(),
            (None, Some(r)) => format!("a required field is missing or null; required: {r}"),
            (None, None) => "a required value is missing".to_owned(),
        }
    } else if let (Some(t), Some(v)) = (expected.first(), &found) {
        let what = match schema(t) {
            Some(s) if s.get("properties").is_some() => "an object".to_owned(),
            Some(_) => "a valid value".to_owned(),
            None => t.replace('(', " ("),
        };
        format!("expected {what}, found {v}")
    } else {
        // Whatever else poem-openapi said, without the Rust type names.
        let mut m = rest.to_owned();
        for n in &failed {
            m = m.replace(&format!("failed to parse \"{n}\": "), "");
        }
        for n in &wrappers {
            m = m.replace(&format!(" (occurred while parsing \"{n}\")"), "");
        }
        m.trim_end_matches('.').to_owned()
    };
    match field {
        Some(f) => format!("{f}: {message}"),
        None => message,
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(body("bad_request", message))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::Unauthorized(body("unauthorized", message))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden(body("forbidden", message))
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(body("not_found", message))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::Conflict(body("conflict", message))
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::Unprocessable(body("validation_failed", message))
    }
    /// 429 with `Retry-After: retry_after_secs`.
    pub fn too_many(code: &str, message: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError::TooManyRequests(body(code, message), Some(retry_after_secs))
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::Unavailable(body("unavailable", message))
    }
    /// A 500 whose cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::Internal(body("internal", "internal error; see the server logs"))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(_) => ApiError::not_found(e.to_string()),
            EngineError::InvalidState { .. } => ApiError::conflict(e.to_string()),
            EngineError::Invalid(v) => ApiError::unprocessable(v.to_string()),
            EngineError::Unavailable(_) => {
                tracing::warn!(error = %e, "job store unavailable");
                ApiError::unavailable("the job store is unavailable; retry later")
            }
            EngineError::OutcomeUnknown(_) => {
                tracing::warn!(error = %e, "job store did not confirm a write");
                let mut b = body(
                    "unavailable",
                    "the job store did not confirm this request in time: it may or may not have \
                     taken effect; retry with the same Idempotency-Key header to find out \
                     without creating a second job",
                );
                b.0.outcome = Some("unknown".to_owned());
                ApiError::Unavailable(b)
            }
            EngineError::Encode(_) | EngineError::Config(_) => ApiError::internal(&e),
            other => ApiError::internal(&other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.failure() {
            Failure::NotFound => ApiError::not_found("no such record"),
            // A constraint the request broke is the client's doing, not an outage.
            Failure::Conflict => {
                tracing::info!(error = %e, "a request broke a database constraint");
                ApiError::conflict(
                    "a record with the same key already exists, or one it refers to does not",
                )
            }
            Failure::Invalid => {
                tracing::info!(error = %e, "a request broke a database constraint");
                ApiError::unprocessable("a value is missing or out of range")
            }
            Failure::Unavailable => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::unavailable("the database is unavailable; retry later")
            }
            Failure::Internal => ApiError::internal(&e),
        }
    }
}

/// The stable code for a status, for errors that did not come from [`ApiError`].
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_failed",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_outcome_says_so_and_names_the_header() {
        let ApiError::Unavailable(Json(body)) =
            ApiError::from(EngineError::OutcomeUnknown("timed out".into()))
        else {
            panic!("503 expected");
        };
        assert_eq!(body.error, "unavailable");
        assert_eq!(body.outcome.as_deref(), Some("unknown"));
        assert!(body.message.contains("Idempotency-Key"), "{}", body.message);
        assert!(
            !body.message.contains("timed out"),
            "the cause stays in the logs"
        );
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["outcome"], "unknown");
        // Other errors carry no outcome field at all.
        let ApiError::Unavailable(Json(plain)) =
            ApiError::from(EngineError::Unavailable("down".into()))
        else {
            panic!("503 expected");
        };
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("outcome")
                .is_none()
        );
    }
}
