//! API keys on both engines: create (names unique), read with the secret's hash, list,
//! revoke, last use, expiry.

use vigil_store::api_keys::{self, NewApiKey};
use vigil_store::users::UserRole;
use vigil_testkit::db::TestDb;

#[tokio::test]
async fn keys_are_created_listed_used_and_revoked_on_both_engines() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let queues = vec!["email".to_owned()];
        let new = NewApiKey {
            id: "k1",
            name: "ci",
            role: UserRole::Admin,
            queues: Some(&queues),
            secret_sha256: "abc",
            rate_per_minute: Some(7),
            created_by: "user:admin",
            created_at_ms: 1_000,
            expires_at_ms: Some(5_000),
        };
        let k = api_keys::create(&t.db, &new).await.unwrap();
        assert_eq!(k.queues.as_deref(), Some(&queues[..]), "{kind:?}");
        assert_eq!(k.rate_per_minute, Some(7));
        assert!(k.is_usable(4_999) && !k.is_usable(5_000), "{kind:?}");
        let dup = api_keys::create(
            &t.db,
            &NewApiKey {
                id: "k2",
                ..new.clone()
            },
        )
        .await;
        assert!(dup.unwrap_err().to_string().contains("already exists"));
        api_keys::create(
            &t.db,
            &NewApiKey {
                id: "k3",
                name: "reader",
                role: UserRole::Analyst,
                queues: None,
                expires_at_ms: None,
                rate_per_minute: None,
                ..new.clone()
            },
        )
        .await
        .unwrap();
        let (k, hash) = api_keys::credentials(&t.db, "k1").await.unwrap().unwrap();
        assert_eq!((k.name.as_str(), hash.as_str()), ("ci", "abc"));
        assert!(api_keys::credentials(&t.db, "k9").await.unwrap().is_none());
        api_keys::touch(&t.db, "k3", 2_000).await.unwrap();
        let listed = api_keys::list(&t.db).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].last_used_at.unwrap().timestamp_millis(), 2_000);
        assert!(listed[1].queues.is_none() && listed[1].expires_at.is_none());
        assert!(api_keys::revoke(&t.db, "k3", 3_000).await.unwrap());
        assert!(!api_keys::revoke(&t.db, "k3", 3_000).await.unwrap());
        assert!(
            !api_keys::get(&t.db, "k3")
                .await
                .unwrap()
                .unwrap()
                .is_usable(0)
        );
    }
}
