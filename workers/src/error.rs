//! The outcome of a failed job attempt: try again later, or never.

/// Why a job attempt failed. The runtime maps [`JobError::Retryable`] to a retry with
/// backoff (until the queue's `max_attempts`), [`JobError::RetryAfter`] to a retry after the
/// given delay (a server's `Retry-After`), [`JobError::Snooze`] to waiting without counting
/// the attempt, and [`JobError::Permanent`] to dead at once.
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
    /// A transient failure whose server said when to come back: the retry waits this long
    /// instead of the queue's backoff (the attempt counts).
    #[error("{1}")]
    RetryAfter(std::time::Duration, String),
    /// Nothing failed, but the job cannot run now (its server is known to be down): it waits
    /// this long in Redis and the attempt is given back.
    #[error("{1}")]
    Snooze(std::time::Duration, String),
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
        !matches!(self, JobError::Permanent(_))
    }
}
