//! The crate map of ARCHITECTURE.md, checked: dependencies point one way (the API and the
//! workers never depend on each other; the shared vocabulary pulls in no I/O; the engine
//! knows nothing of storage, rules, workers or the API). Read from `cargo metadata`, so a
//! new line in any Cargo.toml that breaks the map fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each workspace member's normal (non-dev) dependencies, by package name.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

fn assert_none(deps: &BTreeMap<String, BTreeSet<String>>, krate: &str, forbidden: &[&str]) {
    let have = &deps[krate];
    let wrong: Vec<&&str> = forbidden.iter().filter(|f| have.contains(**f)).collect();
    assert!(wrong.is_empty(), "{krate} must not depend on {wrong:?}");
}

#[test]
fn crate_dependencies_point_one_way() {
    let deps = dependencies();
    for krate in [
        "vigil-jobs",
        "vigil-queue",
        "vigil-store",
        "vigil-rules",
        "vigil-workers",
        "vigil-api",
    ] {
        assert!(deps.contains_key(krate), "{krate} is a workspace member");
    }
    // The two sides of the queue never see each other.
    assert_none(&deps, "vigil-api", &["vigil-workers", "vigil", "actix"]);
    assert_none(
        &deps,
        "vigil-workers",
        &["vigil-api", "vigil", "poem", "poem-openapi"],
    );
    // The shared vocabulary has no I/O: no Redis, SQL, HTTP, SMTP, actors or runtime.
    assert_none(
        &deps,
        "vigil-jobs",
        &[
            "vigil-queue",
            "vigil-store",
            "vigil-rules",
            "vigil-workers",
            "vigil-api",
            "redis",
            "sqlx",
            "reqwest",
            "lettre",
            "poem",
            "poem-openapi",
            "actix",
            "tokio",
        ],
    );
    // The engine knows jobs only: no storage, rules, workers, API or HTTP.
    assert_none(
        &deps,
        "vigil-queue",
        &[
            "vigil-store",
            "vigil-rules",
            "vigil-workers",
            "vigil-api",
            "sqlx",
            "poem",
            "actix",
        ],
    );
    // Storage and rules are leaves beside the engine.
    assert_none(
        &deps,
        "vigil-store",
        &["vigil-queue", "vigil-workers", "vigil-api", "redis"],
    );
    assert_none(
        &deps,
        "vigil-rules",
        &[
            "vigil-queue",
            "vigil-store",
            "vigil-workers",
            "vigil-api",
            "sqlx",
        ],
    );
    // Nothing depends on the composition root.
    for (krate, have) in &deps {
        assert!(
            !have.contains("vigil"),
            "{krate} depends on the binary crate"
        );
    }
}
