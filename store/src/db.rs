//! Connecting to the database and keeping its schema current.

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Errors of the storage layer. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database URL must start with sqlite:// or postgres:// (got `{0}`)")]
    UnsupportedUrl(String),
    #[error("could not create the folder for the SQLite database `{path}`: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
}

/// What a [`StoreError`] means to whoever caused it (the API maps it to a status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A unique or foreign-key constraint refused the write: the caller's conflict.
    Conflict,
    /// A value was missing or out of range (not-null or check constraint).
    Invalid,
    /// The row asked for does not exist.
    NotFound,
    /// The database did not answer, or failed in a way a retry may fix.
    Unavailable,
    /// A bug or bad configuration (unsupported URL, a failed migration, corrupt data).
    Internal,
}

impl StoreError {
    /// What this error means to whoever caused it.
    pub fn failure(&self) -> Failure {
        use sqlx::error::ErrorKind;
        match self {
            StoreError::Sql(sqlx::Error::RowNotFound) => Failure::NotFound,
            StoreError::Sql(sqlx::Error::Database(db)) => match db.kind() {
                ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation => Failure::Conflict,
                ErrorKind::NotNullViolation | ErrorKind::CheckViolation => Failure::Invalid,
                _ => Failure::Unavailable,
            },
            StoreError::Sql(_) => Failure::Unavailable,
            _ => Failure::Internal,
        }
    }
}

/// Which SQL engine is behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

impl FromStr for DbKind {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url.starts_with("sqlite:") {
            Ok(DbKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DbKind::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }
}

/// A pool of connections to vigil's database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    kind: DbKind,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Db {
    /// Connects to `url`. For SQLite, the file and its folder are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let kind: DbKind = url.parse()?;
        let url = match kind {
            DbKind::Sqlite => prepare_sqlite(url)?,
            DbKind::Postgres => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            // SQLite allows one writer at a time; a small pool avoids lock contention.
            .max_connections(match kind {
                DbKind::Sqlite => max_connections.clamp(1, 4),
                DbKind::Postgres => max_connections.max(1),
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        // WAL lets readers run beside the writer; busy_timeout waits for a lock
                        // instead of failing at once; foreign keys are off by default in SQLite.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA synchronous = NORMAL",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Db { pool, kind })
    }

    /// Applies every pending migration of this engine's dialect. Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.kind {
            DbKind::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            DbKind::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine behind this handle.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Starts a transaction that will write: on SQLite `BEGIN IMMEDIATE`, so it takes the
    /// write lock up front (waiting out the busy timeout) instead of reading under a shared
    /// lock that cannot be upgraded when another connection writes (an immediate
    /// `SQLITE_BUSY`); on PostgreSQL a plain transaction (row locks and guarded updates do
    /// the rest).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.kind {
            DbKind::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            DbKind::Postgres => Ok(self.pool.begin().await?),
        }
    }

    /// Starts a transaction that runs alone among those taking the same `lock_key`: on
    /// PostgreSQL a transaction-scoped advisory lock, on SQLite `BEGIN IMMEDIATE` (the write
    /// lock, so every such transaction is serialised whatever its key).
    pub async fn begin_serialized(
        &self,
        lock_key: i64,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.kind {
            DbKind::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            DbKind::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock_key)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// A trivial query, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (waits for checked-out ones).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the folder of a file-backed SQLite URL and asks SQLite to create the file.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return Ok(url.to_owned());
    }
    if let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(if rest.contains("mode=") {
        url.to_owned()
    } else if rest.contains('?') {
        format!("sqlite://{rest}&mode=rwc")
    } else {
        format!("sqlite://{rest}?mode=rwc")
    })
}

/// Hides the password of a URL such as `postgres://user:secret@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_engine_and_hide_passwords() {
        assert_eq!(
            "sqlite://data/vigil.db".parse::<DbKind>().unwrap(),
            DbKind::Sqlite
        );
        assert_eq!(
            "postgres://u:p@h/db".parse::<DbKind>().unwrap(),
            DbKind::Postgres
        );
        let err = "mysql://root:hunter2@h/db"
            .parse::<DbKind>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn sqlite_urls_gain_create_mode() {
        let dir = std::env::temp_dir().join(format!("vigil-prep-{}", std::process::id()));
        let url = format!("sqlite://{}/sub/v.db", dir.display());
        let prepared = prepare_sqlite(&url).unwrap();
        assert!(prepared.ends_with("?mode=rwc"));
        assert!(dir.join("sub").is_dir());
        std::fs::remove_dir_all(dir).ok();
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    async fn sql_error(sql: &'static str) -> StoreError {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (id, name) VALUES (1, 'a')")
            .execute(&pool)
            .await
            .unwrap();
        StoreError::Sql(sqlx::query(sql).execute(&pool).await.unwrap_err())
    }

    #[tokio::test]
    async fn a_broken_constraint_is_the_callers_failure_not_an_outage() {
        let dup = sql_error("INSERT INTO t (id, name) VALUES (2, 'a')").await;
        assert_eq!(dup.failure(), Failure::Conflict, "{dup}");
        let null = sql_error("INSERT INTO t (id, name) VALUES (3, NULL)").await;
        assert_eq!(null.failure(), Failure::Invalid, "{null}");
        let broken = sql_error("SELECT * FROM missing_table").await;
        assert_eq!(broken.failure(), Failure::Unavailable, "{broken}");
        assert_eq!(
            StoreError::Invalid("corrupt".into()).failure(),
            Failure::Internal
        );
    }
}
