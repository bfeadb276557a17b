//! `vigil check-config` and `vigil migrate` as an operator runs them: the real binary, real
//! files, real environment variables.

mod support;

use std::path::Path;

use support::{NO_ENV, text, vigil};

#[test]
fn the_shipped_config_file_is_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = vigil(repo, &["--config", "config.toml", "check-config"], NO_ENV);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("[database]"));
}

#[test]
fn a_wrong_type_in_the_file_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vigil.toml"),
        "[database]\nmax_connections = \"ten\"\n",
    )
    .unwrap();
    let out = vigil(
        dir.path(),
        &["--config", "vigil.toml", "check-config"],
        NO_ENV,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("database.max_connections"), "{t}");
    assert!(t.contains("vigil.toml"), "{t}");
}

#[test]
fn a_wrong_type_in_the_environment_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = vigil(
        dir.path(),
        &["check-config"],
        &[("VIGIL_DATABASE__MAX_CONNECTIONS", "lots")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("VIGIL_DATABASE__MAX_CONNECTIONS"),
        "{}",
        text(&out)
    );
}

#[test]
fn unknown_variables_warn_and_secrets_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("db_url");
    std::fs::write(&secret, "postgres://vigil:hunter2-secret@db/vigil\n").unwrap();
    let out = vigil(
        dir.path(),
        &["check-config"],
        &[
            ("VIGIL_DATABASE__URL_FILE", secret.to_str().unwrap()),
            ("VIGIL_DATABSE__URL", "typo"),
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("VIGIL_DATABSE__URL"), "the typo is named: {t}");
    assert!(!t.contains("hunter2-secret"), "a secret leaked: {t}");
    assert!(t.contains("vigil:***@db/vigil"), "{t}");
}

#[test]
fn migrate_runs_twice_on_sqlite_and_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = vigil(dir.path(), &["migrate"], NO_ENV);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(dir.path().join("data/vigil.db").exists());
}

#[test]
fn migrate_runs_twice_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = rt.block_on(vigil_testkit::db::TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = vigil(dir.path(), &["migrate"], &[("VIGIL_DATABASE__URL", &t.url)]);
        assert!(out.status.success(), "{}", text(&out));
    }
    drop(t);
}
