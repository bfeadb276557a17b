//! The `vigil` binary: parse the command line and hand over to [`vigil::commands`].
//!
//! Run `vigil --help` for the subcommands; README.md has the quickstart.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = vigil::cli::Cli::parse();
    // Before anything parses a queue name (config sections, API routes, schedules).
    vigil::jobs::register_kinds();
    vigil::commands::dispatch(cli)
}
