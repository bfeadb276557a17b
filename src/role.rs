//! [`Role`]: which parts of vigil one process runs (`vigil run`, `worker`, `api`), shared by
//! the startup and the configuration checks.

/// Which parts of vigil this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// API, workers and schedules (`vigil run`).
    All,
    /// Workers and schedules only (`vigil worker`).
    Worker,
    /// The HTTP API only (`vigil api`).
    Api,
}

impl Role {
    pub fn runs_workers(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }

    pub fn runs_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// The name in logs, the audit trail and the fleet view: `run`, `worker` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "run",
            Role::Worker => "worker",
            Role::Api => "api",
        }
    }
}
