//! `vigil okta keygen` and `vigil okta backfill` as an operator runs them: the real binary
//! against the fake Okta org, with the key `keygen` made registered on the fake app; the
//! backfill detects what it stores (or only marks it with `--no-detect`) and prints
//! progress lines when stdout is not a terminal.

mod support;

use support::{NO_ENV, text, vigil};

use chrono::{Duration, SecondsFormat, Utc};
use vigil_testkit::fake_okta::{FakeOkta, FakeOktaConfig, generated_event};

#[tokio::test(flavor = "multi_thread")]
async fn keygen_then_backfill_against_the_fake_org() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        vigil(
            &d,
            &[
                "okta", "keygen", "--out", "okta.pem", "--alg", "ES256", "--kid", "k1",
            ],
            NO_ENV,
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let jwks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is the JWKS");
    let jwk = jwks["keys"][0].clone();
    assert_eq!(jwk["kid"], "k1");
    assert!(jwk.get("d").is_none(), "only the public key is printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("okta.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let d = dir.path().to_owned();
    let again = tokio::task::spawn_blocking(move || {
        vigil(&d, &["okta", "keygen", "--out", "okta.pem"], NO_ENV)
    })
    .await
    .unwrap();
    assert!(!again.status.success());
    assert!(
        text(&again).contains("refusing to overwrite"),
        "{}",
        text(&again)
    );

    // The fake org knows the key; it holds 300 events over the last 5 hours.
    let fake = FakeOkta::start(FakeOktaConfig {
        client_jwk: Some(jwk),
        ..Default::default()
    })
    .await;
    let start = Utc::now() - Duration::hours(5);
    // Two bursts of 25 failed sign-ins from one IP: minutes 0..25 and 100..125.
    fake.add_events((0..300).map(|i| {
        let mut e = generated_event(i, start + Duration::minutes(i as i64));
        let ip = match i {
            0..25 => Some("198.51.100.10"),
            100..125 => Some("198.51.100.9"),
            _ => None,
        };
        if let Some(ip) = ip {
            e["outcome"] =
                serde_json::json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"});
            e["client"]["ipAddress"] = serde_json::json!(ip);
        }
        e
    }));
    let db_url = format!("sqlite://{}/v.db", dir.path().display());
    let prefix = vigil_testkit::redis::unique_prefix("cli-okta");
    let env = vec![
        ("VIGIL_DATABASE__URL", db_url.clone()),
        ("VIGIL_REDIS__PREFIX", prefix.clone()),
        ("VIGIL_OKTA__DOMAIN", fake.base_url()),
        ("VIGIL_OKTA__CLIENT_ID", "0oa1fakeclient".to_owned()),
        (
            "VIGIL_OKTA__PRIVATE_KEY_FILE",
            dir.path().join("okta.pem").display().to_string(),
        ),
        ("VIGIL_OKTA__KEY_ID", "k1".to_owned()),
        ("VIGIL_OKTA__PAGE_LIMIT", "100".to_owned()),
    ];
    let since = (start + Duration::minutes(100)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let until = (start + Duration::minutes(200)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let d = dir.path().to_owned();
    let env2 = env.clone();
    let out = tokio::task::spawn_blocking(move || {
        vigil(
            &d,
            &["okta", "backfill", "--since", &since, "--until", &until],
            &env2,
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("100 events received, 100 new, 0 already stored"),
        "{t}"
    );
    assert!(
        t.contains("okta backfill progress: "),
        "a line without a terminal: {t}"
    );
    assert!(t.contains("detection run"), "{t}");
    assert!(!t.contains("BEGIN PRIVATE KEY"), "{t}");
    let db = vigil_store::Db::connect(&db_url, 1).await.unwrap();
    let ip9 = alerts_for(&db, "198.51.100.9").await;
    assert_eq!(ip9, 1, "the backfilled burst raised its alert");

    // A wider window stopped by --limit: the overlap with the first run is deduplicated.
    let d = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        vigil(
            &d,
            &[
                "okta",
                "backfill",
                "--minutes",
                "600",
                "--limit",
                "150",
                "--no-detect",
            ],
            &env,
        )
    })
    .await
    .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("150 events received, 100 new, 50 already stored"),
        "{t}"
    );
    assert!(t.contains("stopped at --limit"), "{t}");
    assert!(t.contains("detection skipped (--no-detect)"), "{t}");
    assert_eq!(
        alerts_for(&db, "198.51.100.10").await,
        0,
        "--no-detect raised nothing"
    );
    let undetected: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE detected_at IS NULL")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        undetected, 0,
        "--no-detect marks what it stores, so no sweep detects it later"
    );
    db.close().await;
}

async fn alerts_for(db: &vigil_store::Db, key: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM alerts WHERE rule_id = 'okta_brute_force_ip' AND group_key = $1",
    )
    .bind(key)
    .fetch_one(db.pool())
    .await
    .unwrap()
}
