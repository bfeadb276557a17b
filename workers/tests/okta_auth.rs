//! Okta authentication against the fake org: the DPoP nonce flow, token caching and
//! renewal, resource nonces, refused credentials (permanent, no retry storm), SSWS.

mod okta_common;

use std::time::Duration;

use okta_common::*;
use vigil_testkit::db::TestDb;
use vigil_workers::JobError;
use vigil_workers::okta::{KeyKind, OktaPoller, generate};

#[tokio::test]
async fn dpop_nonce_flow_then_cached_token() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org().await;
    fake.add_events(events(0, 250, recent()));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let s = poller.poll().await.unwrap();
    assert_eq!(s.stored, 250);
    let c = fake.counters();
    assert_eq!(c.token_nonce_challenges, 1, "{c:?}");
    assert_eq!(
        c.token_requests, 2,
        "challenge + retry with the nonce: {c:?}"
    );
    assert_eq!(c.tokens_issued, 1);
    assert_eq!(c.status("/oauth2/v1/token", 400), 1);
    assert_eq!(c.status("/api/v1/logs", 200), 3);
    assert!(
        c.rejections.is_empty(),
        "every assertion and proof was valid: {:?}",
        c.rejections
    );

    // The next run reuses the cached token.
    poller.poll().await.unwrap();
    assert_eq!(fake.counters().token_requests, 2);
}

#[tokio::test]
async fn rs256_keys_work_too() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org_with(KeyKind::Rs256, |_| {}).await;
    fake.add_events(events(0, 3, recent()));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    assert_eq!(poller.poll().await.unwrap().stored, 3);
    assert!(fake.counters().rejections.is_empty());
}

#[tokio::test]
async fn tokens_are_renewed_before_expiry_and_after_revocation() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org_with(KeyKind::Es256, |c| {
        c.token_lifetime = Duration::from_secs(2);
    })
    .await;
    fake.add_events(events(0, 5, recent()));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    poller.poll().await.unwrap();
    assert_eq!(fake.counters().tokens_issued, 1);

    // Poll until the token has expired and been renewed (it lives 2 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.counters().tokens_issued < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the token was never renewed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        poller.poll().await.unwrap();
    }
    let c = fake.counters();
    assert_eq!(c.tokens_issued, 2, "renewed on expiry: {c:?}");
    assert_eq!(
        c.status("/api/v1/logs", 401),
        0,
        "renewed before use, never refused"
    );
    assert_eq!(c.token_nonce_challenges, 1, "the nonce is reused");

    // A token revoked behind our back: one 401, one new token, the run succeeds.
    fake.revoke_tokens();
    fake.add_events(events(5, 8, recent()));
    let s = poller.poll().await.unwrap();
    assert_eq!(s.stored, 3);
    let c = fake.counters();
    assert_eq!(c.tokens_issued, 3, "{c:?}");
    assert_eq!(c.status("/api/v1/logs", 401), 1, "{c:?}");
}

#[tokio::test]
async fn resource_nonce_challenge_is_answered() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org_with(KeyKind::Es256, |c| c.resource_nonce = true).await;
    fake.add_events(events(0, 150, recent()));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    assert_eq!(poller.poll().await.unwrap().stored, 150);
    let c = fake.counters();
    assert_eq!(c.resource_nonce_challenges, 1, "{c:?}");
    assert_eq!(c.status("/api/v1/logs", 401), 1);
    assert_eq!(c.status("/api/v1/logs", 200), 2);
    assert!(c.rejections.is_empty(), "{:?}", c.rejections);
}

#[tokio::test]
async fn bearer_tokens_without_dpop() {
    let t = TestDb::sqlite().await;
    let (fake, mut settings) = oauth_org_with(KeyKind::Es256, |c| c.require_dpop = false).await;
    settings.dpop = false;
    fake.add_events(events(0, 4, recent()));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    assert_eq!(poller.poll().await.unwrap().stored, 4);
    let c = fake.counters();
    assert_eq!((c.token_requests, c.token_nonce_challenges), (1, 0));
}

#[tokio::test]
async fn refused_credentials_are_permanent_with_oktas_message_and_no_retry_storm() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = oauth_org().await;
    fake.add_events(events(0, 4, recent()));
    // Okta has another key registered for the app.
    let other = generate(KeyKind::Es256, KID).unwrap();
    fake.set_client_jwk(Some(other.public_jwk));
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let err = poller.poll().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, JobError::Permanent(_)), "{err:?}");
    assert!(
        msg.contains("invalid_client") && msg.contains("signature is invalid"),
        "{msg}"
    );
    assert!(!msg.contains("eyJ"), "no JWT in the message: {msg}");
    let c = fake.counters();
    assert_eq!(
        c.token_requests, 2,
        "nonce challenge + one real attempt, no storm: {c:?}"
    );
    assert_eq!(c.logs_requests, 0);

    // A scope the app was not granted: Okta's invalid_scope, permanent.
    let (fake, mut settings) = oauth_org().await;
    settings.scopes = "okta.users.manage".to_owned();
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let err = poller.poll().await.unwrap_err();
    assert!(matches!(err, JobError::Permanent(_)));
    assert!(err.to_string().contains("invalid_scope"), "{err}");
    assert_eq!(fake.counters().token_requests, 2);
}

#[tokio::test]
async fn ssws_mode_reads_logs_and_names_oktas_error_code_when_refused() {
    let t = TestDb::sqlite().await;
    let (fake, settings) = ssws_org("00QCjAl4MlV-WPXM-test-token").await;
    fake.add_events(events(0, 120, recent()));
    let poller = OktaPoller::new(settings.clone(), t.db.clone(), None).unwrap();
    assert_eq!(poller.poll().await.unwrap().stored, 120);
    assert_eq!(fake.counters().token_requests, 0);

    let mut wrong = settings;
    wrong.api_token = Some(secrecy::SecretString::from("00-wrong".to_owned()));
    let poller = OktaPoller::new(wrong, t.db.clone(), None).unwrap();
    let before = fake.counters().logs_requests;
    let err = poller.poll().await.unwrap_err();
    assert!(matches!(err, JobError::Permanent(_)), "{err:?}");
    assert!(
        err.to_string().contains("E0000011: Invalid token provided"),
        "{err}"
    );
    assert_eq!(fake.counters().logs_requests, before + 1, "not retried");
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let t = TestDb::sqlite().await;
    let (_fake, settings) = oauth_org().await;
    let shown = format!("{settings:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
    let shown = format!("{poller:?}");
    assert!(
        !shown.contains("PRIVATE KEY") && !shown.contains("fake."),
        "{shown}"
    );
    let (_f, ssws) = ssws_org("00secret-token-value").await;
    assert!(!format!("{ssws:?}").contains("00secret"));
    let poller = OktaPoller::new(ssws, t.db.clone(), None).unwrap();
    assert!(!format!("{poller:?}").contains("00secret"));
}
