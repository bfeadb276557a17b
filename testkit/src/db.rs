//! A fresh, migrated database per test, on SQLite or PostgreSQL.
//!
//! ```no_run
//! # async fn t() {
//! for t in vigil_testkit::db::TestDb::both().await {
//!     // t.db is migrated and empty; t.kind() says which engine
//! }
//! # }
//! ```

use vigil_store::{Db, DbKind};

/// The PostgreSQL server tests create their databases on (`VIGIL_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`: trust auth as on the CI machine).
pub fn postgres_admin_url() -> String {
    std::env::var("VIGIL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// One test's database. PostgreSQL databases are dropped on drop; SQLite files vanish with
/// their temp folder.
pub struct TestDb {
    pub db: Db,
    /// The URL to hand to a vigil process under test.
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A migrated SQLite database in a temp folder.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/vigil.db", dir.path().display());
        let db = Db::connect(&url, 4).await.expect("sqlite connect");
        db.migrate().await.expect("sqlite migrate");
        TestDb {
            db,
            url,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    /// A migrated, uniquely named PostgreSQL database.
    pub async fn postgres() -> TestDb {
        let name = format!("vigil_test_{}", uuid::Uuid::new_v4().simple());
        let admin = postgres_admin_url();
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("PostgreSQL must run on 127.0.0.1:5432 for tests");
        // The name is generated here (a UUID), never user input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("bad admin URL"),
        };
        let db = Db::connect(&url, 5).await.expect("postgres connect");
        db.migrate().await.expect("postgres migrate");
        TestDb {
            db,
            url,
            pg_name: Some(name),
            _dir: None,
        }
    }

    /// One database of each engine: run the same assertions on both.
    pub async fn both() -> Vec<TestDb> {
        vec![TestDb::sqlite().await, TestDb::postgres().await]
    }

    /// Which engine this is.
    pub fn kind(&self) -> DbKind {
        self.db.kind()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = postgres_admin_url();
        // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut conn) =
                        <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                    {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}
