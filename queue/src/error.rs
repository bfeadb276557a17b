//! What can go wrong with the engine, in terms the API maps to HTTP statuses. Messages never
//! hold payloads or secrets (the Redis URL's password included).

use vigil_jobs::{JobStatus, ValidationError};

/// An engine error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No job with this id (or it was pruned). API: 404.
    #[error("job {0} not found")]
    NotFound(String),
    /// The action does not apply to a job in this state. API: 409.
    #[error("cannot {action} job {id}: it is {status}")]
    InvalidState {
        id: String,
        status: JobStatus,
        action: &'static str,
    },
    /// The payload (or another input) is invalid. API: 422.
    #[error("invalid job: {0}")]
    Invalid(#[from] ValidationError),
    /// Redis could not be reached or did not answer in time; nothing was done, or the
    /// outcome is unknown. API: 503.
    #[error("job store unavailable: {0}")]
    Unavailable(String),
}

impl From<redis::RedisError> for EngineError {
    fn from(e: redis::RedisError) -> Self {
        // RedisError's Display never contains the URL; keep kind + detail only.
        EngineError::Unavailable(e.to_string())
    }
}
