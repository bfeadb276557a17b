//! Okta Event Hooks over real HTTP with the test kit's sender (Okta's wire format): the
//! one-time verification, the secret header (constant-time, no secret echoed), deliveries
//! stored once by uuid through the polling path, malformed events kept, detection queued,
//! clear 4xx errors, and 404 while the hook is off.

mod common;

use chrono::Utc;
use common::TestApp;
use secrecy::SecretString;
use serde_json::json;
use vigil_api::routes::okta_hooks::OktaHookSettings;
use vigil_jobs::{AlertEscalationJob, Job as _};
use vigil_store::events;
use vigil_testkit::fake_okta::generated_event;
use vigil_testkit::okta_hook::OktaHookSender;

const SECRET: &str = "a-long-okta-hook-secret-0123456789";

/// The app served on a free port; returns the hook URL.
async fn serve(app: &TestApp) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listening = vigil_api::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/hooks/okta/events", listening.local_addr());
    let state = app.state.clone();
    tokio::spawn(async move { listening.run(state, std::future::pending()).await });
    url
}

async fn hooked() -> TestApp {
    TestApp::with(|s| {
        s.okta_hook = Some(OktaHookSettings {
            header: "X-Vigil-Hook".to_owned(),
            secret: SecretString::from(SECRET),
            max_clock_skew: chrono::TimeDelta::seconds(300),
        });
    })
    .await
}

#[tokio::test]
async fn verification_echoes_the_challenge_only_with_the_secret() {
    let app = hooked().await;
    let url = serve(&app).await;
    let okta = OktaHookSender::new(&url, "X-Vigil-Hook", SECRET);
    let a = okta
        .verify("Zsx2Wl3KpoGPCsSa9kPDnWCHmD0A1dgfi7yJkgJi")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"verification": "Zsx2Wl3KpoGPCsSa9kPDnWCHmD0A1dgfi7yJkgJi"})
    );

    let wrong = OktaHookSender::new(&url, "X-Vigil-Hook", "a-long-okta-hook-secret-012345678X");
    let a = wrong.verify("c").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["error"], "unauthorized");
    assert!(a.body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(
        !a.body.to_string().contains("012345678"),
        "no secret echoed"
    );
    let a = OktaHookSender::new(&url, "Authorization", SECRET)
        .deliver(&[])
        .await;
    assert_eq!(a.status, 401, "the secret in another header does not count");
}

#[tokio::test]
async fn deliveries_are_stored_once_and_queued_for_detection() {
    let app = hooked().await;
    let url = serve(&app).await;
    let okta = OktaHookSender::new(&url, "X-Vigil-Hook", SECRET);
    let now = Utc::now();
    let batch: Vec<_> = (0..3)
        .map(|i| generated_event(i, now - chrono::Duration::seconds(3 - i as i64)))
        .collect();
    let a = okta.deliver(&batch).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"received": 3, "stored": 3, "duplicates": 0, "malformed": 0})
    );
    for e in &batch {
        let got = events::get(&app.db.db, e["uuid"].as_str().unwrap())
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&got.raw).unwrap(),
            *e
        );
    }

    // Okta delivers again (a retry), with one new event, one malformed, one from the future.
    let mut future = generated_event(10, now + chrono::Duration::days(365 * 900));
    future["eventType"] = json!("user.session.start");
    let texts = vec![
        batch[0].to_string(),
        generated_event(3, now).to_string(),
        r#"{"uuid":"no-published","eventType":"x"}"#.to_owned(),
        future.to_string(),
    ];
    let a = okta.deliver_raw(&texts).await;
    assert_eq!(
        a.body,
        json!({"received": 4, "stored": 2, "duplicates": 1, "malformed": 1})
    );
    assert_eq!(events::malformed_count(&app.db.db).await.unwrap(), 1);
    let f = events::get(&app.db.db, future["uuid"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        f.published_reported
            .is_some_and(|p| p.timestamp() > now.timestamp() + 86_400)
    );
    assert!(f.published <= Utc::now(), "clamped to the time of receipt");

    // Each delivery with new events queued one detection run naming them.
    let jobs = app
        .engine
        .list(&vigil_queue::JobFilter {
            queue: Some(AlertEscalationJob::QUEUE),
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut ids: Vec<i64> = jobs
        .jobs
        .iter()
        .flat_map(|j| {
            j.payload["okta_event_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|v| v.as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 5, "{jobs:?}");
    assert_eq!(jobs.jobs.len(), 2);
}

#[tokio::test]
async fn bad_deliveries_get_clear_errors_and_an_off_hook_is_404() {
    let app = hooked().await;
    let url = serve(&app).await;
    let client = reqwest::Client::new();
    for (body, why) in [
        ("{not json", "JSON"),
        (
            r#"{"eventType":"com.okta.event_hook","data":{}}"#,
            "data.events",
        ),
    ] {
        let r = client
            .post(&url)
            .header("X-Vigil-Hook", SECRET)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["error"], "bad_request");
        assert!(b["message"].as_str().unwrap().contains(why), "{b}");
    }

    let off = TestApp::new().await;
    let url = serve(&off).await;
    let a = OktaHookSender::new(&url, "Authorization", SECRET)
        .verify("x")
        .await;
    assert_eq!(a.status, 404);
    assert!(
        a.body["message"]
            .as_str()
            .unwrap()
            .contains("okta.event_hook_secret")
    );
}
