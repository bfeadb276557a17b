//! Rate limits shared by API instances through Redis.

mod common;

use common::TestApp;
use serde_json::json;
use vigil_testkit::db::TestDb;

#[tokio::test]
async fn two_instances_share_the_anonymous_budget() {
    let limits = |s: &mut vigil_api::ApiSettings| {
        s.rate_limit.anonymous_per_minute = 5;
        s.rate_limit.authenticated_per_minute = 8;
    };
    let a = TestApp::with(limits).await;
    let b = TestApp::on(a.prefix.clone(), TestDb::sqlite().await, limits).await;
    // 5 anonymous requests across both instances pass, with the budget counting down.
    for i in 0..5u64 {
        let app = if i % 2 == 0 { &a } else { &b };
        let r = app.get("/api/v1/schedules", None).await;
        r.expect(401);
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some((4 - i).to_string().as_str())
        );
        assert!(r.header("x-ratelimit-reset").is_some());
    }
    for app in [&a, &b] {
        let r = app.get("/api/v1/schedules", None).await;
        r.expect(429);
        assert_eq!(r.code(), "rate_limited");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    }
    // Probes are exempt.
    a.get("/health", None).await.expect(200);
}

#[tokio::test]
async fn users_are_counted_apart_from_anonymous_callers_and_groups_can_have_their_own_budget() {
    let app = TestApp::with(|s| {
        s.rate_limit.anonymous_per_minute = 3;
        s.rate_limit.read_per_minute = 4;
        s.rate_limit.groups.insert(
            "auth".into(),
            vigil_api::settings::GroupLimit {
                anonymous_per_minute: 2,
                authenticated_per_minute: 2,
            },
        );
    })
    .await;
    app.add_user("eve", vigil_store::users::UserRole::Analyst)
        .await;
    // The auth group has its own budget of 2.
    let login = || {
        app.post(
            "/api/v1/auth/token",
            None,
            json!({"username": "eve", "password": common::PASSWORD}),
        )
    };
    let first = login().await;
    first.expect(200);
    let token = first.body["access_token"].as_str().unwrap().to_owned();
    login().await.expect(200);
    login().await.expect(429);
    // The user's own read budget (4) is untouched by anonymous use.
    for _ in 0..4 {
        let r = app.get("/api/v1/queues", Some(&token)).await;
        r.expect(200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("4"));
    }
    app.get("/api/v1/queues", Some(&token)).await.expect(429);
    // Anonymous callers still have their default budget.
    app.get("/api/v1/queues", None).await.expect(401);
}

/// A user's reads (the dashboard) and writes (a script enqueuing) are counted apart: spending
/// one leaves the other whole, and the read budget is one across route groups.
#[tokio::test]
async fn a_users_reads_and_writes_have_separate_budgets() {
    let app = TestApp::with(|s| {
        s.rate_limit.authenticated_per_minute = 3;
        s.rate_limit.read_per_minute = 5;
    })
    .await;
    let token = app.admin().await;
    let email =
        || json!({"payload": {"to": ["soc@example.com"], "subject": "hi", "body": {"text": "x"}}});
    for left in (0..3u64).rev() {
        let r = app.post("/api/v1/jobs/email", Some(&token), email()).await;
        r.expect(202);
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(left.to_string().as_str())
        );
    }
    app.post("/api/v1/jobs/email", Some(&token), email())
        .await
        .expect(429);
    // The write budget is spent; every read still passes, from one budget across groups.
    for (i, path) in [
        "/api/v1/queues",
        "/api/v1/jobs",
        "/api/v1/schedules",
        "/api/v1/alerts",
        "/api/v1/queues",
    ]
    .into_iter()
    .enumerate()
    {
        let r = app.get(path, Some(&token)).await;
        r.expect(200);
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some((4 - i).to_string().as_str())
        );
    }
    app.get("/api/v1/jobs", Some(&token)).await.expect(429);
}

/// The shared budget on a Redis Cluster (callers' windows land on different shards) and on a
/// Sentinel master, started by the test: counts are exact and the budget holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_holds_on_a_cluster_and_on_sentinel() {
    use vigil_api::ratelimit::{Caller, RateLimiter};
    use vigil_queue::{Connector, RedisMode, RedisSettings};
    use vigil_testkit::redis_topology::{RedisCluster, SentinelSet};

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
        let settings = vigil_api::settings::RateLimitSettings {
            authenticated_per_minute: 3,
            ..Default::default()
        };
        let limiter = RateLimiter::new(conn, "rl-topology", settings);
        // Enough callers that their keys fall on every shard of the cluster.
        for user in (0..12).map(|i| format!("user-{i}")) {
            let caller = Caller::User(user.clone());
            for left in (0..3u64).rev() {
                let d = limiter.check("jobs", &caller, false).await.unwrap();
                assert!(d.allowed, "{:?}: {user} within budget", redis.mode);
                assert_eq!(d.remaining, left);
            }
            let d = limiter.check("jobs", &caller, false).await.unwrap();
            assert!(
                !d.allowed,
                "{:?}: {user}'s fourth request is refused",
                redis.mode
            );
            assert!((1..=60).contains(&d.reset_secs));
        }
    }
}
