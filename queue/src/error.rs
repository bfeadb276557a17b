//! What can go wrong with the engine, in terms the API maps to HTTP statuses. Messages never
//! hold payloads or secrets (the Redis URL's password included).

use vigil_jobs::{JobStatus, ValidationError};

use crate::redis_settings::RedisConfigError;

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
    Unavailable(#[source] Cause),
    /// A write was sent but its reply was lost (timeout, dropped connection), or replicas did
    /// not confirm it in time: it may or may not have happened. API: 503 with
    /// `"outcome": "unknown"`; retrying with the same idempotency key is safe.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(#[source] Cause),
    /// A value could not be encoded for Redis (a bug, not the caller's input). API: 500.
    #[error("could not encode for the job store: {0}")]
    Encode(#[from] serde_json::Error),
    /// `[redis]` is wrong; fix the configuration (never retried).
    #[error(transparent)]
    Config(#[from] RedisConfigError),
}

/// Why Redis failed: the client's error (kept as the source) or a description.
/// RedisError's Display never contains the URL or a password.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Other(String),
}

impl From<String> for Cause {
    fn from(s: String) -> Self {
        Cause::Other(s)
    }
}

impl From<&str> for Cause {
    fn from(s: &str) -> Self {
        Cause::Other(s.to_owned())
    }
}

impl From<redis::RedisError> for EngineError {
    fn from(e: redis::RedisError) -> Self {
        EngineError::Unavailable(Cause::Redis(e))
    }
}

impl EngineError {
    /// A failed write: when the command may have reached Redis (the reply was lost), its
    /// outcome is unknown; otherwise nothing happened.
    pub(crate) fn from_write(e: redis::RedisError) -> EngineError {
        if e.is_timeout() || (e.is_io_error() && !e.is_connection_refusal()) {
            EngineError::OutcomeUnknown(Cause::Redis(e))
        } else {
            EngineError::Unavailable(Cause::Redis(e))
        }
    }

    /// The same failure for another caller (one batch's error answers each of its jobs):
    /// the kind is kept, the source becomes its text.
    pub(crate) fn share(&self) -> EngineError {
        match self {
            EngineError::OutcomeUnknown(c) => EngineError::OutcomeUnknown(c.to_string().into()),
            other => EngineError::Unavailable(other.to_string().into()),
        }
    }

    /// A failed first connection: a certificate the client refuses (wrong `ca`, a server
    /// certificate for another name) or a client configuration Redis rejects is a
    /// configuration mistake, reported as [`EngineError::Config`] so startup stops at once
    /// instead of retrying; anything else is `Unavailable` (retried).
    pub(crate) fn from_connect(e: redis::RedisError) -> EngineError {
        let text = e.to_string();
        let lower = text.to_lowercase();
        if e.kind() == redis::ErrorKind::InvalidClientConfig {
            EngineError::Config(RedisConfigError {
                key: "url",
                message: format!("the client configuration was refused: {text}"),
            })
        } else if lower.contains("certificate") || lower.contains("unknownissuer") {
            EngineError::Config(RedisConfigError {
                key: "ca",
                message: format!("the server's TLS certificate is not accepted: {text}"),
            })
        } else {
            EngineError::Unavailable(Cause::Redis(e))
        }
    }
}
