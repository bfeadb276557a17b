//! Event routes: any signed-in user lists stored Okta events newest first with filters and
//! cursor or page pagination, and reads one with its raw JSON; bad input gets a clear 400.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::TestApp;
use serde_json::json;
use vigil_store::events::{self, NewEvent};

async fn seed(app: &TestApp, n: i64) {
    let start = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let batch: Vec<NewEvent> = (0..n)
        .map(|i| {
            let failed = i % 3 == 0;
            let raw = json!({"uuid": format!("u{i}"), "eventType": "user.session.start",
                             "client": {"ipAddress": format!("10.0.0.{}", i % 2)}});
            NewEvent {
                uuid: format!("u{i}"),
                published: start + Duration::minutes(i),
                event_type: if i % 4 == 0 {
                    "user.account.lock"
                } else {
                    "user.session.start"
                }
                .to_owned(),
                severity: Some("INFO".into()),
                actor_id: Some(format!("00u{}", i % 2)),
                actor_alternate_id: Some(
                    if i % 2 == 0 {
                        "alice@example.com"
                    } else {
                        "bob@example.com"
                    }
                    .into(),
                ),
                actor_display_name: None,
                client_ip: Some(format!("10.0.0.{}", i % 2)),
                country: Some("Norway".into()),
                outcome_result: Some(if failed { "FAILURE" } else { "SUCCESS" }.into()),
                outcome_reason: None,
                display_message: Some("User login to Okta".into()),
                transaction_id: None,
                raw: raw.to_string(),
                published_reported: None,
                // Two orgs: even events from `default`, odd ones from `beta`.
                org: if i % 2 == 0 { "default" } else { "beta" }.into(),
                app_id: None,
                app_sign_on_mode: None,
            }
        })
        .collect();
    events::insert_batch(&app.db.db, &batch).await.unwrap();
}

#[tokio::test]
async fn analysts_list_events_newest_first_with_filters_and_cursors() {
    let app = TestApp::new().await;
    seed(&app, 12).await;
    let analyst = app.analyst().await;

    let all = app.get("/api/v1/events?page_size=5", Some(&analyst)).await;
    all.expect(200);
    let uuids: Vec<&str> = all.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(uuids, ["u11", "u10", "u9", "u8", "u7"]);
    assert!(
        all.body["results"][0].get("raw").is_none(),
        "lists leave the raw event out"
    );

    let cursor = all.body["next_cursor"].as_str().unwrap().to_owned();
    let next = app
        .get(
            &format!("/api/v1/events?page_size=5&cursor={cursor}"),
            Some(&analyst),
        )
        .await;
    next.expect(200);
    assert_eq!(next.body["results"][0]["uuid"], "u6");
    // The envelope: every matching event counted, `next` is the cursor's page.
    assert_eq!(all.body["count"], 12, "{}", all.text);
    assert!(all.body["previous"].is_null());
    let linked = app
        .get(all.body["next"].as_str().unwrap(), Some(&analyst))
        .await;
    assert_eq!(linked.expect(200).body["results"], next.body["results"]);
    assert_eq!(next.body["count"], 12);

    let page2 = app
        .get("/api/v1/events?page_size=5&page=2", Some(&analyst))
        .await;
    assert_eq!(page2.body["results"][0]["uuid"], "u6");

    let filtered = app
        .get(
            "/api/v1/events?outcome=FAILURE&actor=alice@example.com&ip=10.0.0.0",
            Some(&analyst),
        )
        .await;
    let got: Vec<&str> = filtered.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["u6", "u0"]);

    let typed = app
        .get(
            "/api/v1/events?event_type=user.account.lock",
            Some(&analyst),
        )
        .await;
    assert_eq!(typed.body["results"].as_array().unwrap().len(), 3);

    let window = app
        .get(
            "/api/v1/events?since=2026-11-22T10:02:00Z&until=2026-11-22T10:04:00Z",
            Some(&analyst),
        )
        .await;
    let got: Vec<&str> = window.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["u3", "u2"]);

    // Events name their org and can be listed by it.
    assert_eq!(all.body["results"][0]["org"], "beta");
    let beta = app
        .get("/api/v1/events?org=beta&page_size=100", Some(&analyst))
        .await;
    beta.expect(200);
    let got: Vec<&str> = beta.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["u11", "u9", "u7", "u5", "u3", "u1"]);
    let none = app.get("/api/v1/events?org=nosuch", Some(&analyst)).await;
    assert_eq!(
        none.expect(200).body["results"].as_array().unwrap().len(),
        0
    );
}

#[tokio::test]
async fn one_event_comes_with_its_raw_json_and_errors_are_clear() {
    let app = TestApp::new().await;
    seed(&app, 2).await;
    let analyst = app.analyst().await;

    let one = app.get("/api/v1/events/u1", Some(&analyst)).await;
    one.expect(200);
    assert_eq!(one.body["raw"]["client"]["ipAddress"], "10.0.0.1");

    assert_eq!(
        app.get("/api/v1/events/nope", Some(&analyst))
            .await
            .expect(404)
            .code(),
        "not_found"
    );
    assert_eq!(
        app.get("/api/v1/events?cursor=garbage", Some(&analyst))
            .await
            .expect(400)
            .code(),
        "bad_request"
    );
    app.get("/api/v1/events?page_size=0", Some(&analyst))
        .await
        .expect(400);
    app.get("/api/v1/events?since=yesterday", Some(&analyst))
        .await
        .expect(400);
    app.get("/api/v1/events", None).await.expect(401);
}

#[tokio::test]
async fn every_uuid_ingestion_accepts_can_be_read_back() {
    let app = TestApp::new().await;
    let token = app.analyst().await;
    let longest = "u".repeat(vigil_store::events::MAX_UUID_LEN);
    let raw = format!(
        r#"{{"uuid":"{longest}","published":"2026-11-22T10:00:00.000Z","eventType":"user.session.start"}}"#
    );
    let parsed = vigil_store::okta_event::parse_event(
        &serde_json::value::RawValue::from_string(raw).unwrap(),
    )
    .expect("ingestion accepts a uuid of the maximum length");
    events::insert_batch(&app.db.db, &[parsed]).await.unwrap();
    app.call(
        poem::http::Method::GET,
        &format!("/api/v1/events/{longest}"),
        Some(&token),
        None,
    )
    .await
    .expect(200);
    let a = app
        .call(
            poem::http::Method::GET,
            &format!("/api/v1/events/{longest}u"),
            Some(&token),
            None,
        )
        .await;
    a.expect(400);
    assert_eq!(a.code(), "bad_request");
}
