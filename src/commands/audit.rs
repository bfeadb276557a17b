//! `vigil audit verify`: walk the audit hash chain and say whether it is intact.
//!
//! Prints `OK <count> records`, or `FAILED at sequence <n>: <why>` (hash mismatch, broken
//! link, gap) and exits non-zero. Read-only: it never changes the database.

use anyhow::Context;

use crate::cli::AuditCommand;
use crate::commands::migrate::connect_db;
use crate::config::Settings;

/// Runs a `vigil audit` subcommand.
pub async fn run(settings: &Settings, cmd: &AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify => {
            let db = connect_db(settings).await?;
            let result = vigil_store::audit::verify(&db).await.context(
                "while reading the audit chain (is the schema current? run `vigil migrate`)",
            );
            db.close().await;
            let verification = result?;
            println!("{verification}");
            if verification.is_ok() {
                Ok(())
            } else {
                anyhow::bail!("the audit chain is broken (see above)")
            }
        }
    }
}
