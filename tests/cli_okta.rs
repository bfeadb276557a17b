//! `vigil okta keygen` and `vigil okta backfill` as an operator runs them: the real binary
//! against the fake Okta org, with the key `keygen` made registered on the fake app.

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
    fake.add_events((0..300).map(|i| generated_event(i, start + Duration::minutes(i as i64))));
    let env = vec![
        (
            "VIGIL_DATABASE__URL",
            format!("sqlite://{}/v.db", dir.path().display()),
        ),
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
    assert!(!t.contains("BEGIN PRIVATE KEY"), "{t}");

    // A wider window stopped by --limit: the overlap with the first run is deduplicated.
    let d = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        vigil(
            &d,
            &["okta", "backfill", "--minutes", "600", "--limit", "150"],
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
}
