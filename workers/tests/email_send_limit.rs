//! The SMTP send budget shared by every worker through Redis, on a Redis Cluster and on a
//! Sentinel master started by the test: the budget holds, and an exhausted one says so.

use std::time::Duration;

use vigil_queue::{Connector, RedisMode, RedisSettings};
use vigil_testkit::redis_topology::{RedisCluster, SentinelSet};
use vigil_workers::email::SendRateLimiter;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_budget_holds_on_a_cluster_and_on_sentinel() {
    let cluster = RedisCluster::start(3, 0);
    let set = SentinelSet::start();
    let deployments = [
        RedisSettings {
            mode: RedisMode::Cluster,
            nodes: cluster.nodes(),
            ..RedisSettings::default()
        },
        RedisSettings {
            url: set.url(),
            ..RedisSettings::default()
        },
    ];
    for redis in deployments {
        let conn = Connector::new(&redis).unwrap().shared().await.unwrap();
        // Two sends a minute: two tokens now, the third would wait ~30 s, past the 200 ms limit.
        let a = SendRateLimiter::redis(
            conn.clone(),
            "vigil:email:rate",
            2,
            Duration::from_millis(200),
        );
        let b = SendRateLimiter::redis(conn, "vigil:email:rate", 2, Duration::from_millis(200));
        a.acquire().await.unwrap();
        b.acquire().await.unwrap();
        let third = a.acquire().await;
        assert!(
            third.is_err(),
            "{:?}: the shared budget of 2 is spent",
            redis.mode
        );
        assert!(
            b.acquire().await.is_err(),
            "{:?}: for every worker",
            redis.mode
        );
    }
}
