//! Sessions on both engines: rotation, reuse revokes the family, concurrent refreshes with
//! one token (exactly one wins), revoke per user, pruning.

use vigil_store::sessions::{self, Rotation, reason};
use vigil_testkit::db::TestDb;

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn rotation_reuse_revocation_and_pruning_on_both_engines() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let now = 1_000 * HOUR;
        sessions::start(&t.db, "s1", "alice", "j1", now + HOUR, now)
            .await
            .unwrap();
        // The current token rotates; its successor is current now.
        let r = sessions::rotate(&t.db, "j1", "j2", now + 2 * HOUR, now + 1)
            .await
            .unwrap();
        let Rotation::Rotated(s) = r else {
            panic!("{kind:?}: {r:?}")
        };
        assert_eq!(s.username, "alice");
        assert_eq!(s.expires_at.timestamp_millis(), now + 2 * HOUR);
        assert!(matches!(
            sessions::rotate(&t.db, "j2", "j3", now + 2 * HOUR, now + 2)
                .await
                .unwrap(),
            Rotation::Rotated(_)
        ));
        // j1 again: reuse, the family is revoked, and j3 (the newest) stops working.
        let r = sessions::rotate(&t.db, "j1", "jx", now + 2 * HOUR, now + 3)
            .await
            .unwrap();
        let Rotation::Reused { session, newly } = r else {
            panic!("{kind:?}: {r:?}")
        };
        assert!(newly);
        assert_eq!(session.revoked_reason.as_deref(), Some(reason::REUSE));
        let r = sessions::rotate(&t.db, "j3", "j4", now + 2 * HOUR, now + 4)
            .await
            .unwrap();
        assert!(matches!(r, Rotation::Revoked(_)), "{kind:?}: {r:?}");
        assert!(
            !sessions::get(&t.db, "s1")
                .await
                .unwrap()
                .unwrap()
                .is_active(now)
        );
        assert_eq!(
            sessions::rotate(&t.db, "nope", "j5", now, now)
                .await
                .unwrap(),
            Rotation::Unknown
        );

        // Two concurrent refreshes with one token: exactly one rotates.
        sessions::start(&t.db, "s2", "bob", "k1", now + HOUR, now)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            sessions::rotate(&t.db, "k1", "k2a", now + HOUR, now + 1),
            sessions::rotate(&t.db, "k1", "k2b", now + HOUR, now + 1),
        );
        let rotated = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|r| matches!(r, Rotation::Rotated(_)))
            .count();
        assert_eq!(rotated, 1, "{kind:?}");

        // Revoke every session of a user.
        sessions::start(&t.db, "s3", "bob", "m1", now + HOUR, now)
            .await
            .unwrap();
        sessions::start(&t.db, "s4", "carol", "n1", now + HOUR, now)
            .await
            .unwrap();
        let revoked = sessions::revoke_user(&t.db, "bob", reason::ADMIN, now)
            .await
            .unwrap();
        assert_eq!(revoked, ["s3"], "{kind:?}: s2 was revoked by the reuse");
        assert!(
            sessions::get(&t.db, "s4")
                .await
                .unwrap()
                .unwrap()
                .is_active(now)
        );
        assert!(
            sessions::revoke(&t.db, "s4", reason::LOGOUT, now)
                .await
                .unwrap()
        );
        assert!(
            !sessions::revoke(&t.db, "s4", reason::LOGOUT, now)
                .await
                .unwrap()
        );
        assert_eq!(
            sessions::list_for_user(&t.db, "bob", now)
                .await
                .unwrap()
                .len(),
            2
        );

        // Pruning removes what expired, nothing else.
        sessions::start(&t.db, "s5", "dave", "o1", now + 10 * HOUR, now)
            .await
            .unwrap();
        assert!(sessions::prune(&t.db, now + 5 * HOUR).await.unwrap() > 0);
        assert!(
            sessions::get(&t.db, "s1").await.unwrap().is_none(),
            "{kind:?}"
        );
        assert!(
            sessions::get(&t.db, "s5").await.unwrap().is_some(),
            "{kind:?}"
        );
        assert!(
            sessions::of_token(&t.db, "o1").await.unwrap().is_some(),
            "{kind:?}"
        );
        assert!(
            sessions::of_token(&t.db, "j3").await.unwrap().is_none(),
            "{kind:?}"
        );
    }
}
