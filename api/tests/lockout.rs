//! Per-account lockout over real sockets from many source addresses, and trusted proxies:
//! forwarding headers count only from a peer in `http.trusted_proxies`.

mod common;

use std::time::{Duration, Instant};

use common::{PASSWORD, TestApp, client_from};
use serde_json::{Value, json};
use vigil_store::users::UserRole;

const BASE_LOCK_MS: u64 = 1_500;

async fn sign_in(
    base: &str,
    source: &str,
    user: &str,
    password: &str,
) -> (u16, Value, Option<u64>) {
    let resp = client_from(source)
        .post(format!("{base}/api/v1/auth/token"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

fn lockout_app(s: &mut vigil_api::ApiSettings) {
    s.auth.lockout.max_failures = 5;
    s.auth.lockout.window_seconds = 600;
    s.auth.lockout.base_lock_ms = BASE_LOCK_MS;
    s.auth.lockout.max_lock_ms = 60_000;
    // Each address may try 3 times a minute: a distributed guess stays under that.
    s.rate_limit.groups.insert(
        "auth".into(),
        vigil_api::settings::GroupLimit {
            anonymous_per_minute: 3,
            authenticated_per_minute: 3,
        },
    );
}

/// Polls `f` every 50 ms until it returns Some, or panics after `within`.
async fn wait_for<T, F: Future<Output = Option<T>>>(
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_guess_locks_the_account_whatever_the_source_address() {
    let app = TestApp::with(lockout_app).await;
    let admin = app.admin().await;
    app.add_user("victim", UserRole::Analyst).await;
    let served = app.serve().await;
    let base = &served.base;

    // Five wrong passwords from five addresses: each is a plain 401, the fifth locks.
    for i in 0..5 {
        let (status, body, _) =
            sign_in(base, &format!("127.0.1.{}", i + 1), "victim", "guess").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["message"], "invalid username or password");
    }
    let locked_at = Instant::now();
    // Forty more addresses: all refused during the lock, the right password too.
    for i in 0..40 {
        let password = if i % 10 == 9 { PASSWORD } else { "guess" };
        let (status, body, retry) =
            sign_in(base, &format!("127.0.2.{}", i + 1), "victim", password).await;
        assert_eq!(status, 429, "attempt {i}: {body}");
        assert_eq!(body["error"], "account_locked");
        assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
        let retry = retry.expect("Retry-After");
        assert!((1..=2).contains(&retry), "{retry}");
    }
    // Admins see the lock, and it is audited.
    let locks = app.get("/api/v1/auth/lockouts", Some(&admin)).await;
    locks.expect(200);
    let victim = locks.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["username"] == "victim");
    let victim = victim.unwrap_or_else(|| panic!("{}", locks.text));
    assert_eq!(victim["locked"], true);
    assert_eq!(victim["locks"], 1);
    let analyst = app.analyst().await;
    app.get("/api/v1/auth/lockouts", Some(&analyst))
        .await
        .expect(403);

    // After the lock the owner's right password works (from yet another address).
    let mut n = 0;
    let body = wait_for(Duration::from_secs(15), || {
        n += 1;
        let source = format!("127.0.3.{n}");
        async move {
            let (status, body, _) = sign_in(base, &source, "victim", PASSWORD).await;
            (status == 200).then_some(body)
        }
    })
    .await;
    assert!(body["access_token"].is_string());
    assert!(
        locked_at.elapsed() >= Duration::from_millis(BASE_LOCK_MS - 200),
        "accepted only after the lock: {:?}",
        locked_at.elapsed()
    );
    let audit = app.audited().await;
    let lockouts: Vec<&Value> = audit
        .iter()
        .filter(|p| p["action"] == "auth.lockout")
        .collect();
    assert_eq!(lockouts.len(), 1, "{audit:?}");
    assert_eq!(lockouts[0]["target_id"], "victim");
    assert_eq!(lockouts[0]["details"]["ip"], "127.0.1.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_answered_and_locked_like_real_ones() {
    let app = TestApp::with(lockout_app).await;
    let admin = app.admin().await;
    app.add_user("alice", UserRole::Analyst).await;
    let served = app.serve().await;
    let base = &served.base;

    // Same status and message, and similar time: an unknown name is checked against a dummy
    // hash. Medians of 4 alternating attempts each.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..4 {
        for (user, times) in [("alice", &mut known), ("nobody", &mut unknown)] {
            let started = Instant::now();
            let (status, body, _) =
                sign_in(base, &format!("127.0.4.{}", i + 1), user, "guess").await;
            times.push(started.elapsed());
            assert_eq!(status, 401, "{user}: {body}");
            assert_eq!(body["message"], "invalid username or password");
        }
    }
    known.sort();
    unknown.sort();
    let ratio = known[2].as_secs_f64() / unknown[2].as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}: ratio {ratio}"
    );
    // The fifth failure locks the unknown name exactly as it would a real one.
    let (status, body, _) = sign_in(base, "127.0.4.9", "nobody", "guess").await;
    assert_eq!(status, 401, "{body}");
    let (status, body, _) = sign_in(base, "127.0.4.10", "nobody", "guess").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "account_locked");

    // The next lock lasts twice as long.
    let mut n = 0;
    wait_for(Duration::from_secs(15), || {
        n += 1;
        let source = format!("127.0.7.{n}");
        async move {
            let (status, _, _) = sign_in(base, &source, "nobody", "guess").await;
            (status == 401).then_some(())
        }
    })
    .await;
    for i in 0..4 {
        sign_in(base, &format!("127.0.5.{}", i + 1), "nobody", "guess").await;
    }
    let locks = app.get("/api/v1/auth/lockouts", Some(&admin)).await;
    let nobody = locks.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["username"] == "nobody")
        .cloned();
    let nobody = nobody.unwrap_or_else(|| panic!("{}", locks.text));
    assert_eq!(nobody["locks"], 2, "{nobody}");
    let until: chrono::DateTime<chrono::Utc> =
        nobody["locked_until"].as_str().unwrap().parse().unwrap();
    let left = (until - chrono::Utc::now()).num_milliseconds();
    assert!(left > BASE_LOCK_MS as i64, "second lock {left} ms left");

    // An admin unlocks it: audited, gone from the list, attempts are checked again.
    for status in [204, 404] {
        app.call(
            poem::http::Method::DELETE,
            "/api/v1/auth/lockouts/nobody",
            Some(&admin),
            None,
        )
        .await
        .expect(status);
    }
    let (status, _, _) = sign_in(base, "127.0.5.9", "nobody", "guess").await;
    assert_eq!(status, 401);
    let audit = app.audited().await;
    assert!(
        audit
            .iter()
            .any(|p| p["action"] == "auth.unlock" && p["target_id"] == "nobody"),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let app = TestApp::with(|s| {
        s.rate_limit.anonymous_per_minute = 2;
        s.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let served = app.serve().await;
    let get = |source: &'static str, xff: String| {
        let url = format!("{}/api/v1/schedules", served.base);
        async move {
            client_from(source)
                .get(url)
                .header("X-Forwarded-For", xff)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // An untrusted peer cannot escape its budget by making up addresses.
    let spoofed: Vec<u16> =
        futures::future::join_all((0..3).map(|i| get("127.0.6.1", format!("203.0.113.{i}")))).await;
    let mut sorted = spoofed.clone();
    sorted.sort();
    assert_eq!(sorted, [401, 401, 429], "{spoofed:?}");
    // Through the trusted proxy each forwarded client has its own budget...
    for i in 0..3 {
        assert_eq!(
            get("127.0.0.1", format!("6.6.6.6, 198.51.100.{i}")).await,
            401
        );
    }
    // ...and the forwarded client is what is counted (the left-most entry is the client's
    // own claim and is not believed).
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(get("127.0.0.1", format!("10.9.9.{i}, 198.51.100.200")).await);
    }
    assert_eq!(statuses, [401, 401, 429]);

    // The audit records the address the decision used.
    app.add_user("eve", UserRole::Analyst).await;
    for (source, xff, want) in [
        ("127.0.6.2", "192.0.2.50", "127.0.6.2"),
        ("127.0.0.1", "192.0.2.51", "192.0.2.51"),
    ] {
        client_from(source)
            .post(format!("{}/api/v1/auth/token", served.base))
            .header("X-Forwarded-For", xff)
            .json(&json!({"username": "eve", "password": "wrong"}))
            .send()
            .await
            .unwrap();
        let audit = app.audited().await;
        assert!(
            audit
                .iter()
                .any(|p| p["action"] == "auth.login_failed" && p["details"]["ip"] == want),
            "{want} in {audit:?}"
        );
    }
}
