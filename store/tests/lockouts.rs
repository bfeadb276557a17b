//! Per-account sign-in locks on both engines: counting within the window, doubling locks,
//! concurrent failures counted once each (exactly one locks), clearing and pruning.

use vigil_store::lockouts::{self, Policy};
use vigil_testkit::db::TestDb;

const POLICY: Policy = Policy {
    max_failures: 3,
    window_ms: 10_000,
    base_lock_ms: 1_000,
    max_lock_ms: 3_000,
};

#[tokio::test]
async fn failures_lock_for_growing_times_on_both_engines() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let now = 1_000_000_000_i64;
        // Two failures, then a third after the window: the window restarted, no lock.
        for at in [now, now + 1] {
            assert!(
                lockouts::record_failure(&t.db, "alice", &POLICY, at)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        let later = now + POLICY.window_ms + 1;
        assert!(
            lockouts::record_failure(&t.db, "alice", &POLICY, later)
                .await
                .unwrap()
                .is_none()
        );
        lockouts::record_failure(&t.db, "alice", &POLICY, later + 1)
            .await
            .unwrap();
        let lock = lockouts::record_failure(&t.db, "alice", &POLICY, later + 2)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{kind:?}: the third failure in the window locks"));
        assert_eq!(lock.locks, 1);
        assert_eq!(
            lock.locked_until.unwrap().timestamp_millis(),
            later + 2 + 1_000
        );
        assert!(
            lockouts::locked_until(&t.db, "alice", later + 3)
                .await
                .unwrap()
                .is_some()
        );
        // During the lock nothing is counted; after it the next lock lasts twice as long.
        assert!(
            lockouts::record_failure(&t.db, "alice", &POLICY, later + 500)
                .await
                .unwrap()
                .is_none()
        );
        let after = later + 2 + 1_000;
        assert!(
            lockouts::locked_until(&t.db, "alice", after)
                .await
                .unwrap()
                .is_none(),
            "{kind:?}"
        );
        let mut second = None;
        for i in 0..3 {
            second = lockouts::record_failure(&t.db, "alice", &POLICY, after + i)
                .await
                .unwrap();
        }
        let second = second.unwrap();
        assert_eq!(second.locks, 2);
        assert_eq!(
            second.locked_until.unwrap().timestamp_millis(),
            after + 2 + 2_000
        );
        let listed = lockouts::list(&t.db).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].is_locked(after + 3));

        // Concurrent failures for one name: each counted, exactly one locks.
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let db = t.db.clone();
            set.spawn(async move { lockouts::record_failure(&db, "bob", &POLICY, now).await });
        }
        let mut locked = 0;
        while let Some(r) = set.join_next().await {
            locked += usize::from(r.unwrap().unwrap().is_some());
        }
        assert_eq!(locked, 1, "{kind:?}");

        // Clearing forgets; pruning removes stale records but not live locks.
        assert!(lockouts::clear(&t.db, "alice").await.unwrap());
        assert!(!lockouts::clear(&t.db, "alice").await.unwrap());
        lockouts::record_failure(&t.db, "carol", &POLICY, now)
            .await
            .unwrap();
        let pruned = lockouts::prune(&t.db, now + 100_000, 50_000).await.unwrap();
        assert_eq!(pruned, 2, "{kind:?}: carol's and bob's ended records");
    }
}
