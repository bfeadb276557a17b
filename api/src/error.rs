//! The API's one error shape: `{"error": "<stable_code>", "message": "...", "request_id": "..."}`.
//!
//! Handlers return [`ApiError`]; poem's own errors (bad JSON, unknown fields, bad parameters,
//! unknown routes, missing tokens) are reshaped into the same body by the request middleware
//! ([`crate::context`]), which also fills in `request_id`. A 5xx body never carries the
//! cause: the cause is logged with the request id instead.

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
    ApiError::BadRequest(body("bad_request", err.to_string()))
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
