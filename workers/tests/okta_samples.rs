//! Every shared sample event (real Okta events) parses, keeps its raw JSON byte for byte,
//! and goes through the fake org into the store unchanged.

mod okta_common;

use okta_common::*;
use serde_json::Value;
use serde_json::value::RawValue;
use vigil_store::events;
use vigil_store::okta_event::parse_event;
use vigil_testkit::db::TestDb;
use vigil_testkit::fake_okta::FakeOkta;
use vigil_workers::okta::OktaPoller;

#[test]
fn every_sample_event_parses_and_round_trips() {
    let samples = FakeOkta::sample_events();
    assert!(samples.len() >= 20, "samples found: {}", samples.len());
    for (name, text) in &samples {
        let raw = RawValue::from_string(text.trim().to_owned()).expect(name);
        let e = parse_event(&raw).unwrap_or_else(|m| panic!("{name}: {}", m.reason));
        assert_eq!(e.raw, text.trim(), "{name}: raw kept byte for byte");
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&e.raw).unwrap(),
            original,
            "{name}"
        );
        assert_eq!(Some(e.uuid.as_str()), original["uuid"].as_str(), "{name}");
        assert_eq!(
            Some(e.event_type.as_str()),
            original["eventType"].as_str(),
            "{name}"
        );
        let outcome = original["outcome"]["result"].as_str();
        assert_eq!(e.outcome_result.as_deref(), outcome, "{name}");
    }
}

#[tokio::test]
async fn sample_events_are_ingested_unchanged() {
    for t in TestDb::both().await {
        let (fake, settings) = oauth_org().await;
        let samples = FakeOkta::sample_events();
        let now = chrono::Utc::now().timestamp_millis();
        for (_, text) in &samples {
            fake.add_raw_event(text, now);
        }
        let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
        let s = poller.poll().await.unwrap();
        let distinct: std::collections::HashSet<_> = samples
            .iter()
            .map(|(_, t)| {
                serde_json::from_str::<Value>(t).unwrap()["uuid"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(s.stored as usize, distinct.len(), "{:?}", t.kind());
        assert_eq!(s.malformed, 0);
        for (name, text) in &samples {
            let uuid = serde_json::from_str::<Value>(text).unwrap()["uuid"]
                .as_str()
                .unwrap()
                .to_owned();
            let stored = events::get(&t.db, &uuid).await.unwrap().unwrap();
            if distinct.len() == samples.len() {
                assert_eq!(stored.raw, text.trim(), "{name}");
            }
        }
    }
}
