//! A throw-away API server for the enqueue benchmark (`api/bench/enqueue.sh`): a temp SQLite
//! database with one admin, the Redis at `VIGIL_BENCH_REDIS` (default
//! `redis://127.0.0.1:6379/15`) under a fresh key prefix (deleted on exit), rate limits off.
//!
//! Run with `cargo run --release -p vigil-api --example bench_server`; it prints
//! `TOKEN=<admin access token>` and `LISTEN=<addr>`, then serves until Ctrl-C.

use prometheus::Registry;
use secrecy::SecretString;
use vigil_api::auth::jwt::TokenType;
use vigil_api::{ApiSettings, ApiState};
use vigil_queue::{Engine, EngineSettings, QueuesSettings, RedisSettings, SchedulesSettings};
use vigil_store::users::{self, UserRole};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db =
        vigil_store::Db::connect(&format!("sqlite://{}/bench.db", dir.path().display()), 4).await?;
    db.migrate().await?;
    let hash = vigil_api::auth::password::hash("bench-password-not-secret")?;
    users::create(&db, "bench", &hash, UserRole::Admin).await?;
    let prefix = format!("vigil-bench-{}", uuid::Uuid::new_v4().simple());
    let redis = RedisSettings {
        url: std::env::var("VIGIL_BENCH_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/15".into()),
        prefix: prefix.clone(),
        ..RedisSettings::default()
    };
    let engine =
        Engine::connect(&redis, EngineSettings::default(), QueuesSettings::default()).await?;
    let mut settings = ApiSettings::default();
    settings.auth.jwt_secret = Some(SecretString::from(
        uuid::Uuid::new_v4().to_string() + "-bench-secret-padding",
    ));
    settings.rate_limit.enabled = false;
    settings.http.listen =
        std::env::var("VIGIL_BENCH_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let state = ApiState::new(
        engine.clone(),
        db,
        settings,
        SchedulesSettings::default(),
        Registry::new(),
    )?;
    let token = state
        .auth()
        .keys()
        .issue("bench", UserRole::Admin, TokenType::Access)?;
    let listening = vigil_api::bind(&state.settings().http.listen).await?;
    println!("TOKEN={token}");
    println!("LISTEN={}", listening.local_addr());
    listening
        .run(state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // Clean up the bench's keys.
    let mut conn = engine.redis();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    Ok(())
}
