//! `vigil bench` (being built).

use crate::cli::BenchArgs;

/// Runs the benchmark.
pub async fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("vigil bench is not available yet")
}
