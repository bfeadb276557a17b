//! Logging: `tracing` with one subscriber for the whole process.
//!
//! `log.format = "json"` writes one JSON object per line with the fields of every enclosing
//! span, so a job's lines carry `job_id` and `queue` and a request's lines carry
//! `request_id` (the spans are opened by the runtime and the API). `pretty` is for people.
//! `RUST_LOG`, when set, overrides `log.level`. Pretty lines print fields as `key=value`
//! and use colour only when stderr is a terminal (never in a file or a pipe).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .try_init(),
        LogFormat::Pretty => builder.with_target(false).compact().try_init(),
    };
}
