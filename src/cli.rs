//! The command line: one binary, `vigil`, with a subcommand per job an operator does.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// vigil: a background worker system for security operations.
///
/// Configuration comes from built-in defaults, then the config file, then environment
/// variables named VIGIL_SECTION__KEY (for example VIGIL_DATABASE__URL).
#[derive(Debug, Parser)]
#[command(name = "vigil", version, propagate_version = true)]
pub struct Cli {
    /// Path of the TOML config file [default: config.toml, which may be missing].
    #[arg(long, short, global = true, env = "VIGIL_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything: the HTTP API, the workers of every queue and the schedules.
    Run,
    /// Run only the workers and the schedules (scale these apart from the API).
    Worker,
    /// Run only the HTTP API.
    Api,
    /// Apply pending database migrations, then exit. Safe to run twice.
    Migrate,
    /// Print the effective configuration (secrets redacted) and exit non-zero if it is invalid.
    CheckConfig,
    /// Manage API users.
    #[command(subcommand)]
    User(UserCommand),
    /// Okta tools: key generation and backfills.
    #[command(subcommand)]
    Okta(OktaCommand),
    /// Detection rules: list them, try them on a file of events.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Measure the job engine against a Redis server and print JSON lines.
    Bench(BenchArgs),
    /// Probe this host's vigil: GET /health on http.listen (or --url); exit 0 when it
    /// answers 200. For container health checks (no shell or curl needed).
    Healthcheck {
        /// What to probe instead, e.g. a worker's http://127.0.0.1:8081/health.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. The password is read from a prompt, or from stdin when it is not a terminal.
    Add {
        /// Login name.
        name: String,
        /// What the user may do: `admin` (everything) or `analyst` (read only).
        #[arg(long, value_parser = ["admin", "analyst"])]
        role: String,
    },
    /// List users.
    List,
    /// Disable a user: their tokens stop working and they can no longer sign in.
    Disable {
        /// Login name.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// Login name.
        name: String,
    },
    /// Set a new password (read like `add` reads it; at least 12 characters).
    SetPassword {
        /// Login name.
        name: String,
    },
    /// Change a user's role.
    SetRole {
        /// Login name.
        name: String,
        /// `admin` (everything) or `analyst` (read only).
        #[arg(long, value_parser = ["admin", "analyst"])]
        role: String,
    },
    /// Revoke every sign-in session of a user: their refresh tokens and the access tokens of
    /// those sessions stop working (within auth.user_cache_seconds); they may sign in again.
    RevokeSessions {
        /// Login name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OktaCommand {
    /// Write a new key pair for private_key_jwt and print the public JWK to register in Okta.
    Keygen(OktaKeygenArgs),
    /// Fetch a bounded window of events now (same store and dedup as polling).
    Backfill(OktaBackfillArgs),
}

#[derive(Debug, Args)]
pub struct OktaKeygenArgs {
    /// Where to write the private key (PEM). Refuses to overwrite.
    #[arg(long, default_value = "okta-private-key.pem")]
    pub out: PathBuf,
    /// Key type.
    #[arg(long, default_value = "RS256", value_parser = ["RS256", "ES256"])]
    pub alg: String,
    /// Key id (`kid`) to put in the JWK; a random one when omitted.
    #[arg(long)]
    pub kid: Option<String>,
}

#[derive(Debug, Args)]
pub struct OktaBackfillArgs {
    /// Fetch the last N minutes.
    #[arg(long, conflicts_with = "since")]
    pub minutes: Option<u32>,
    /// Start of the window (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window (RFC 3339); now when omitted.
    #[arg(long)]
    pub until: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u32>,
    /// The org to fetch (`[[okta.orgs]] name`); needed when several are configured.
    #[arg(long)]
    pub org: Option<String>,
    /// Store only: mark the stored events as detected without running the rules, so this
    /// backfill never raises alerts (default: run detection on what it stores, as polling does).
    #[arg(long)]
    pub no_detect: bool,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print the active detection rules (built-in, from config, Sigma) and where each comes from.
    List {
        /// Also load these Sigma rule files or folders (beside `[rules] sigma`).
        #[arg(long, value_name = "PATH")]
        sigma: Vec<PathBuf>,
    },
    /// Evaluate the rules on the events in FILE (a JSON array or JSON lines), in file order,
    /// with fresh state and no side effects; prints one JSON line per event.
    Test {
        /// File of Okta events.
        file: PathBuf,
        /// Also load these Sigma rule files or folders (beside `[rules] sigma`).
        #[arg(long, value_name = "PATH")]
        sigma: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain: prints OK with the count, or the first bad record and why.
    Verify,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Redis to measure against: a redis://, rediss:// or redis+sentinel:// URL; without it,
    /// the `[redis]` section of the configuration (any mode, Cluster included). The bench
    /// writes under a fresh key prefix and deletes its own keys only.
    #[arg(long)]
    pub redis: Option<String>,
    /// Spread the jobs over every registered queue (on a Cluster: over the shards that own them).
    #[arg(long)]
    pub spread: bool,
    /// Number of jobs (at least 1).
    #[arg(long, short, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,
    /// Worker concurrency while draining (no short flag: `-c` is `--config`); default 64,
    /// or with `--workload audit` the audit queue's own.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Also run the latency mode: a paced stream at this many jobs per second (1 to 1,000,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: Option<u64>,
    /// What the jobs do: `noop` (the engine alone), `audit` (real audit records through
    /// the audit queue's batch handler into `--database`, beside a one-per-transaction
    /// baseline in the same run) or `email` (real emails through the email worker to
    /// `--smtp`, deliveries recorded in `--database`, beside the same messages sent directly
    /// in the same run).
    #[arg(long, value_enum, default_value_t = Workload::Noop)]
    pub workload: Workload,
    /// The database `--workload audit` and `--workload email` write to. Use a scratch
    /// database: audit records are append-only and cannot be deleted.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// The SMTP server `--workload email` sends to: smtp://HOST[:PORT] (plain SMTP, e.g. a
    /// local test server).
    #[arg(long, value_name = "URL")]
    pub smtp: Option<String>,
}

/// What `vigil bench` jobs do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// No-op jobs: the engine's own cost.
    Noop,
    /// Audit records written through the batch handler.
    Audit,
    /// Emails sent through the email worker.
    Email,
}
