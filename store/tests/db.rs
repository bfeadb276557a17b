//! The storage foundation on both engines: connect, migrate twice, the schema is there.

use vigil_testkit::db::TestDb;

#[tokio::test]
async fn migrations_apply_and_reapply_on_both_engines() {
    for t in TestDb::both().await {
        // A second run finds nothing to do and does not fail.
        t.db.migrate().await.unwrap();
        t.db.ping().await.unwrap();
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(t.db.pool())
            .await
            .unwrap();
        assert_eq!(row.0, 0, "{:?}: a fresh database has no users", t.kind());
    }
}

#[tokio::test]
async fn the_sqlite_file_and_its_folder_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/vigil.db");
    let url = format!("sqlite://{}", path.display());
    let db = vigil_store::Db::connect(&url, 2).await.unwrap();
    db.migrate().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn each_postgres_test_database_is_isolated() {
    let a = TestDb::postgres().await;
    let b = TestDb::postgres().await;
    assert_ne!(a.url, b.url);
    sqlx::query(
        "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind("alice")
    .bind("x")
    .bind("analyst")
    .bind(false)
    .bind(0_i64)
    .bind(0_i64)
    .execute(a.db.pool())
    .await
    .unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(b.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}
