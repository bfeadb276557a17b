//! The users store on both engines: add, find, list, disable, duplicate names refused.

use vigil_store::users::{self, UserRole};
use vigil_testkit::db::TestDb;

#[tokio::test]
async fn users_are_added_listed_and_disabled_on_both_engines() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let alice = users::create(&t.db, "alice", "$argon2id$fake", UserRole::Admin)
            .await
            .unwrap();
        assert_eq!(alice.role, UserRole::Admin, "{kind:?}");
        assert!(!alice.disabled, "{kind:?}");
        users::create(&t.db, "bob", "$argon2id$other", UserRole::Analyst)
            .await
            .unwrap();

        let dup = users::create(&t.db, "alice", "$argon2id$x", UserRole::Analyst).await;
        assert!(
            dup.unwrap_err().to_string().contains("already exists"),
            "{kind:?}"
        );

        let names: Vec<_> = users::list(&t.db)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["alice", "bob"], "{kind:?}");

        let creds = users::credentials(&t.db, "alice").await.unwrap().unwrap();
        assert_eq!(creds.password_hash, "$argon2id$fake", "{kind:?}");
        assert!(
            !format!("{creds:?}").contains("argon2id"),
            "{kind:?}: Debug hides the hash"
        );

        assert!(users::disable(&t.db, "bob").await.unwrap(), "{kind:?}");
        assert!(!users::disable(&t.db, "nobody").await.unwrap(), "{kind:?}");
        assert!(
            users::find(&t.db, "bob").await.unwrap().unwrap().disabled,
            "{kind:?}"
        );
        assert!(
            users::find(&t.db, "carol").await.unwrap().is_none(),
            "{kind:?}"
        );
        // Re-enabled, given a new role and a new password.
        assert!(users::set_disabled(&t.db, "bob", false).await.unwrap());
        let change = users::Change::Role(users::UserRole::Admin);
        assert!(users::change(&t.db, "bob", change).await.unwrap());
        let change = users::Change::PasswordHash("$argon2id$new");
        assert!(users::change(&t.db, "bob", change).await.unwrap());
        let bob = users::find(&t.db, "bob").await.unwrap().unwrap();
        assert!(!bob.disabled, "{kind:?}");
        assert_eq!(bob.role, users::UserRole::Admin, "{kind:?}");
        let creds = users::credentials(&t.db, "bob").await.unwrap().unwrap();
        assert_eq!(creds.password_hash, "$argon2id$new", "{kind:?}");
        let nobody = users::change(&t.db, "nobody", users::Change::Disabled(false));
        assert!(!nobody.await.unwrap(), "{kind:?}");
    }
}
