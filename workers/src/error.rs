//! The outcome of a failed job attempt: try again later, or never.

/// Why a job attempt failed. The runtime maps [`JobError::Retryable`] to a retry with
/// backoff (until the queue's `max_attempts`), and [`JobError::Permanent`] to dead at once.
///
/// Messages end up in the job's error history and the API: never put a secret in them.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A transient failure (network, timeout, 5xx, 429): another attempt may succeed.
    #[error("{0}")]
    Retryable(String),
    /// A failure no retry can fix (bad input, 4xx, rejected credentials).
    #[error("{0}")]
    Permanent(String),
}

impl JobError {
    /// A retryable error from anything printable.
    pub fn retryable(e: impl std::fmt::Display) -> Self {
        JobError::Retryable(e.to_string())
    }

    /// A permanent error from anything printable.
    pub fn permanent(e: impl std::fmt::Display) -> Self {
        JobError::Permanent(e.to_string())
    }

    /// Whether another attempt could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobError::Retryable(_))
    }
}
