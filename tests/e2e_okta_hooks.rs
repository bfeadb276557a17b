//! Okta Event Hooks in the real daemon: `vigil run` answers Okta's verification, a delivery
//! of a brute force (sent by the test kit's sender in Okta's format) is stored and detected
//! within seconds, and the poll that follows finds the same events already stored.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use support::{Deployment, get_json as get, post_json, wait_status};
use vigil_testkit::fake_okta::{FakeOkta, FakeOktaConfig, generated_event};
use vigil_testkit::okta_hook::OktaHookSender;

const TOKEN: &str = "00e2e-ssws-token";
const HOOK_SECRET: &str = "e2e-okta-event-hook-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_brute_force_is_detected_within_seconds_and_polling_fills_in() {
    let fake = FakeOkta::start(FakeOktaConfig {
        api_token: Some(TOKEN.to_owned()),
        ..Default::default()
    })
    .await;
    let domain = fake.base_url();
    let mut env = support::okta_settings(&domain, TOKEN).to_vec();
    env.push(("VIGIL_OKTA__EVENT_HOOK_SECRET", HOOK_SECRET));
    env.push(("VIGIL_OKTA__EVENT_HOOK_HEADER", "X-Okta-Hook-Auth"));
    let vigil = Deployment::new(1, &env);
    vigil.add_user("alice", "admin");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("alice").await;
    let okta = OktaHookSender::new(
        &format!("{base}/api/v1/hooks/okta/events"),
        "X-Okta-Hook-Auth",
        HOOK_SECRET,
    );

    let v = okta.verify("challenge-Zsx2Wl3Kpo").await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.body["verification"], "challenge-Zsx2Wl3Kpo");

    // 25 failed sign-ins from one IP in the last minutes, pushed in two deliveries; the
    // org also holds them for polling.
    let start = Utc::now() - chrono::Duration::minutes(5);
    let burst: Vec<_> = (0..25)
        .map(|i| {
            let mut e = generated_event(i, start + chrono::Duration::seconds(i as i64 * 10));
            e["outcome"] = json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"});
            e["client"]["ipAddress"] = json!("203.0.113.77");
            e
        })
        .collect();
    fake.add_events(burst.clone());
    let sent = Instant::now();
    let a = okta.deliver(&burst[..12]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = okta.deliver(&burst[12..]).await;
    assert_eq!(a.body["stored"], 13, "{}", a.body);

    // Detected within seconds, with no poll in between: one alert holding all 25 events
    // (the two deliveries are detected by two jobs, so the alert may open at 20 first).
    let alert = loop {
        let alerts = get(&base, &token, "/api/v1/alerts?rule=okta_brute_force_ip").await;
        if alerts["count"] == 1 && alerts["results"][0]["count"] == 25 {
            break alerts["results"][0].clone();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "no alert within 10 s: {alerts}\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alert["group_key"], "203.0.113.77");
    assert_eq!(alert["count"], 25, "{alert}");
    assert_eq!(
        fake.counters().logs_requests,
        0,
        "detected from the push alone"
    );
    let e = get(
        &base,
        &token,
        &format!("/api/v1/events/{}", burst[0]["uuid"].as_str().unwrap()),
    )
    .await;
    assert_eq!(e["raw"], burst[0]);

    // The next poll (the gap filler) finds them all stored: nothing twice.
    let (status, job) = post_json(
        &base,
        &token,
        "/api/v1/jobs/okta_fetch",
        &json!({"payload": {}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let done = wait_status(&base, &token, job["id"].as_str().unwrap(), "done").await;
    assert_eq!(done["status"], "done", "{done}");
    let list = get(
        &base,
        &token,
        "/api/v1/events?ip=203.0.113.77&page_size=100",
    )
    .await;
    assert_eq!(list["results"].as_array().unwrap().len(), 25);
    let alerts = get(&base, &token, "/api/v1/alerts?rule=okta_brute_force_ip").await;
    assert_eq!(alerts["results"][0]["count"], 25);

    // A wrong secret is refused.
    let wrong = OktaHookSender::new(
        &format!("{base}/api/v1/hooks/okta/events"),
        "X-Okta-Hook-Auth",
        "not-the-okta-event-hook-secret",
    );
    assert_eq!(wrong.deliver(&burst[..1]).await.status, 401);
    daemon.terminate().await;
    vigil.clean_redis().await;
}
