//! Shared setup of the Okta tests: a fake org with a registered client key, and matching
//! settings for vigil's poller.

#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde_json::Value;
use vigil_testkit::fake_okta::{FakeOkta, FakeOktaConfig, generated_event};
use vigil_workers::okta::{KeyKind, OktaAuthMode, OktaSettings, generate};

pub const KID: &str = "vigil-test-kid";

/// A fake org whose app has a fresh key of `kind` registered, and settings to use it.
pub async fn oauth_org_with(
    kind: KeyKind,
    tweak: impl FnOnce(&mut FakeOktaConfig),
) -> (FakeOkta, OktaSettings) {
    let key = generate(kind, KID).expect("generate a key");
    let mut config = FakeOktaConfig {
        client_jwk: Some(key.public_jwk.clone()),
        ..Default::default()
    };
    tweak(&mut config);
    let client_id = config.client_id.clone();
    let fake = FakeOkta::start(config).await;
    let settings = OktaSettings {
        enabled: true,
        domain: fake.base_url(),
        auth: OktaAuthMode::Oauth,
        client_id,
        private_key: Some(key.private_pem),
        key_id: KID.to_owned(),
        page_limit: 100,
        request_timeout_seconds: 2,
        retry_backoff_millis: 20,
        max_pages_per_run: 10_000,
        ..Default::default()
    };
    (fake, settings)
}

/// [`oauth_org_with`] with an ES256 key and the default org.
pub async fn oauth_org() -> (FakeOkta, OktaSettings) {
    oauth_org_with(KeyKind::Es256, |_| {}).await
}

/// A fake org accepting the SSWS token `token`.
pub async fn ssws_org(token: &str) -> (FakeOkta, OktaSettings) {
    let fake = FakeOkta::start(FakeOktaConfig {
        api_token: Some(token.to_owned()),
        ..Default::default()
    })
    .await;
    let settings = OktaSettings {
        enabled: true,
        domain: fake.base_url(),
        auth: OktaAuthMode::Ssws,
        api_token: Some(SecretString::from(token.to_owned())),
        page_limit: 100,
        request_timeout_seconds: 2,
        retry_backoff_millis: 20,
        max_pages_per_run: 10_000,
        ..Default::default()
    };
    (fake, settings)
}

/// Generated events `from..to`, published one second apart starting at `start`.
pub fn events(from: u64, to: u64, start: DateTime<Utc>) -> Vec<Value> {
    (from..to)
        .map(|i| generated_event(i, start + Duration::seconds(i as i64)))
        .collect()
}

/// Two hours ago, to the second (generated runs of events stay in the past).
pub fn recent() -> DateTime<Utc> {
    let t = Utc::now() - Duration::hours(2);
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Counts stored events and distinct uuids.
pub async fn counts(db: &vigil_store::Db) -> (i64, i64) {
    use sqlx::Row;
    let row = sqlx::query("SELECT COUNT(*) AS n, COUNT(DISTINCT uuid) AS d FROM events")
        .fetch_one(db.pool())
        .await
        .expect("count events");
    (row.try_get("n").unwrap(), row.try_get("d").unwrap())
}
