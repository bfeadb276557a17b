//! `vigil user add|list|disable|enable|set-password|set-role|revoke-sessions`: manage the
//! API's users from the command line.
//!
//! `add` reads the password from a hidden prompt on a terminal, else one line of stdin (so
//! `printf '%s\n' "$PW" | vigil user add alice --role admin` works in scripts), and stores
//! only its argon2id hash. Adding and disabling users are audited like API mutations (through
//! the `audit` queue; if Redis is down the change is still made and the miss is logged).

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use vigil_api::audit::{self, Entry};
use vigil_api::auth::password;
use vigil_jobs::AuditActor;
use vigil_store::sessions;
use vigil_store::users::{self, UserRole};

use crate::cli::UserCommand;
use crate::config::Settings;

/// Passwords shorter than this are refused.
const MIN_PASSWORD: usize = 12;

/// Runs a `vigil user` subcommand.
pub async fn run(settings: &Settings, cmd: &UserCommand) -> anyhow::Result<()> {
    let db = super::migrate::connect_db(settings).await?;
    db.migrate().await.context("while applying migrations")?;
    let outcome = match cmd {
        UserCommand::Add { name, role } => add(settings, &db, name, role).await,
        UserCommand::List => list(&db).await,
        UserCommand::Disable { name } => {
            let done = apply(settings, &db, name, users::Change::Disabled(true)).await;
            done.map(|()| {
                println!(
                    "disabled user {name}: their tokens stop working within auth.user_cache_seconds"
                )
            })
        }
        UserCommand::Enable { name } => {
            let done = apply(settings, &db, name, users::Change::Disabled(false)).await;
            done.map(|()| println!("enabled user {name}"))
        }
        UserCommand::SetPassword { name } => {
            let hash = new_password_hash(name).await?;
            let done = apply(settings, &db, name, users::Change::PasswordHash(&hash)).await;
            done.map(|()| println!("set a new password for {name}"))
        }
        UserCommand::SetRole { name, role } => {
            let role: UserRole = role.parse()?;
            let done = apply(settings, &db, name, users::Change::Role(role)).await;
            done.map(|()| println!("{name} is now {role}"))
        }
        UserCommand::RevokeSessions { name } => revoke_sessions(settings, &db, name).await,
    };
    db.close().await;
    outcome
}

async fn add(
    settings: &Settings,
    db: &vigil_store::Db,
    name: &str,
    role: &str,
) -> anyhow::Result<()> {
    let role: UserRole = role.parse()?;
    users::validate_username(name)?;
    let hash = new_password_hash(name).await?;
    let user = users::create(db, name, &hash, role).await?;
    audit_cli(
        settings,
        "user.add",
        name,
        serde_json::json!({"role": role.as_str()}),
    )
    .await;
    println!("added user {} ({})", user.username, user.role);
    Ok(())
}

async fn list(db: &vigil_store::Db) -> anyhow::Result<()> {
    let all = users::list(db).await?;
    if all.is_empty() {
        println!("no users; add one with: vigil user add NAME --role admin");
        return Ok(());
    }
    let width = all
        .iter()
        .map(|u| u.username.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<width$}  {:<8}  {:<8}  CREATED",
        "USERNAME", "ROLE", "STATUS"
    );
    for u in all {
        println!(
            "{:<width$}  {:<8}  {:<8}  {}",
            u.username,
            u.role.as_str(),
            if u.disabled { "disabled" } else { "active" },
            u.created_at.format("%Y-%m-%d %H:%M UTC"),
        );
    }
    Ok(())
}

/// Revokes every session of `name` (audited as `user.revoke_sessions`).
async fn revoke_sessions(
    settings: &Settings,
    db: &vigil_store::Db,
    name: &str,
) -> anyhow::Result<()> {
    if users::find(db, name).await?.is_none() {
        bail!("no user named `{name}`");
    }
    let now = chrono::Utc::now().timestamp_millis();
    let revoked = sessions::revoke_user(db, name, sessions::reason::ADMIN, now).await?;
    audit_cli(
        settings,
        "user.revoke_sessions",
        name,
        serde_json::json!({"sessions": revoked}),
    )
    .await;
    println!(
        "revoked {} session(s) of {name}: their tokens stop working within auth.user_cache_seconds",
        revoked.len()
    );
    Ok(())
}

/// Applies `change` to user `name` and audits it (`user.disable`, `user.enable`,
/// `user.set_password`, `user.set_role`).
async fn apply(
    settings: &Settings,
    db: &vigil_store::Db,
    name: &str,
    change: users::Change<'_>,
) -> anyhow::Result<()> {
    let (action, details) = match &change {
        users::Change::Disabled(true) => ("user.disable", serde_json::json!({})),
        users::Change::Disabled(false) => ("user.enable", serde_json::json!({})),
        users::Change::PasswordHash(_) => ("user.set_password", serde_json::json!({})),
        users::Change::Role(r) => ("user.set_role", serde_json::json!({"role": r.as_str()})),
    };
    if !users::change(db, name, change).await? {
        bail!("no user named `{name}`");
    }
    audit_cli(settings, action, name, details).await;
    Ok(())
}

/// Reads a new password for `name` and hashes it (argon2id); refuses short ones.
async fn new_password_hash(name: &str) -> anyhow::Result<String> {
    let password = read_password(name)?;
    if password.chars().count() < MIN_PASSWORD {
        bail!("the password must have at least {MIN_PASSWORD} characters");
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .context("while hashing the password")??;
    Ok(hash)
}

/// The password: a hidden prompt on a terminal, else the first line of stdin.
fn read_password(name: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))?;
        let again = rpassword::prompt_password("Repeat the password: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("while reading the password from stdin")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// Audits a CLI change as the operating-system user (`cli:<login>`).
async fn audit_cli(settings: &Settings, action: &str, target: &str, details: serde_json::Value) {
    let engine = match vigil_queue::Engine::connect(
        &settings.redis,
        settings.engine.clone(),
        settings.queues.clone(),
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, action, target, "audit record not written: Redis is unavailable");
            return;
        }
    };
    let login = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    audit::record(
        &engine,
        Entry {
            actor: AuditActor::User(format!("cli:{login}")),
            action,
            target_type: "user",
            target_id: target,
            details,
            request_id: None,
            job_id: None,
        },
    )
    .await;
}
