//! # vigil: the composition root
//!
//! The only crate that reads configuration, builds pools and clients, chooses the runtime and
//! wires the member crates together. Nothing imports it.
//!
//! # Layout
//! - [`cli`]: the command line (clap).
//! - [`config`]: layered settings (defaults, `config.toml`, `VIGIL_*` variables, `*_file` secrets).
//! - [`telemetry`]: the tracing subscriber (pretty or JSON).
//! - [`commands`]: one module per command group; `commands::dispatch` runs one.
//! - [`jobs`]: the job kinds, registered in one place.
//! - [`role`]: which parts of vigil a process runs.
//! - [`startup`]: the daemon's build step (every fallible step) and run step.
//! - [`shutdown`]: stop signals (a second one forces exit).
//! - [`validate`]: every startup check of the configuration (also `vigil check-config`).
//!
//! The member crates, and which way their dependencies point:
//! ```text
//!   vigil (src/) ──► vigil-api ─────┐
//!        │                          ├──► vigil-queue ──► vigil-jobs
//!        └────────► vigil-workers ──┤    vigil-store ──► vigil-jobs
//!                                   └──► vigil-rules
//! ```

pub mod cli;
pub mod commands;
pub mod config;
pub mod jobs;
pub mod role;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod validate;
