//! No poison event: whatever one event carries, polling stores it (bounded, cleaned) or keeps
//! it as malformed with a readable uuid and the true reason, and every later event is stored.
//! End to end through the fake Okta, on SQLite and PostgreSQL.

mod okta_common;

use chrono::Utc;
use okta_common::*;
use serde_json::{Value, json};
use sqlx::Row;
use vigil_store::events::{self, EventQuery};
use vigil_store::okta_cursor;
use vigil_store::storable::MAX_INDEXED_BYTES;
use vigil_store::{Db, DbKind};
use vigil_testkit::db::TestDb;
use vigil_testkit::fake_okta::generated_event;
use vigil_workers::okta::OktaPoller;

/// A generated event number `i` (published now) with `edit` applied.
fn event(i: u64, edit: impl FnOnce(&mut Value)) -> Value {
    let mut e = generated_event(i, Utc::now() - chrono::Duration::minutes(5));
    edit(&mut e);
    e
}

/// 3,000 characters starting with `c` that PostgreSQL cannot compress below its B-tree
/// limit (a repeated character would compress to almost nothing), the same for each `c`.
fn incompressible(c: char) -> String {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(c);
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(3000);
    out.push(c);
    while out.len() < 3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
    }
    out
}

/// Malformed rows: (uuid, reason).
async fn malformed(db: &Db) -> Vec<(Option<String>, String)> {
    sqlx::query("SELECT uuid, reason FROM okta_malformed_events ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.try_get("uuid").unwrap(), r.try_get("reason").unwrap()))
        .collect()
}

async fn find(db: &Db, q: EventQuery) -> Vec<String> {
    events::list(db, &EventQuery { limit: 1000, ..q })
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.uuid)
        .collect()
}

/// A trigger that refuses one event type, as a database refuses a row it cannot store.
async fn refuse_event_type(db: &Db, event_type: &str) {
    match db.kind() {
        DbKind::Sqlite => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TRIGGER refuse_test BEFORE INSERT ON events WHEN NEW.event_type = '{event_type}' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
            )))
            .execute(db.pool())
            .await
            .unwrap();
        }
        DbKind::Postgres => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE FUNCTION refuse_test() RETURNS trigger AS $$ BEGIN \
                 IF NEW.event_type = '{event_type}' THEN RAISE EXCEPTION 'refused by the test trigger'; \
                 END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )))
            .execute(db.pool())
            .await
            .unwrap();
            sqlx::query(
                "CREATE TRIGGER refuse_test BEFORE INSERT ON events \
                 FOR EACH ROW EXECUTE FUNCTION refuse_test()",
            )
            .execute(db.pool())
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn no_event_can_stall_polling_on_either_engine() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let (fake, settings) = oauth_org().await;
        let long = incompressible;
        let mut stored_cases: Vec<(String, Value)> = Vec::new();
        let mut add = |name: &str, e: Value| {
            stored_cases.push((name.to_owned(), e.clone()));
            fake.add_events([e]);
        };
        fake.add_events(events(0, 5, recent()));
        // Values over PostgreSQL's 2.7 KB B-tree limit in each indexed column.
        add(
            "alternateId",
            event(100, |e| e["actor"]["alternateId"] = json!(long('a'))),
        );
        add(
            "eventType",
            event(101, |e| e["eventType"] = json!(long('t'))),
        );
        add(
            "actor.id",
            event(102, |e| e["actor"]["id"] = json!(long('i'))),
        );
        add(
            "ipAddress",
            event(103, |e| e["client"]["ipAddress"] = json!(long('9'))),
        );
        add(
            "outcome.result",
            event(104, |e| e["outcome"]["result"] = json!(long('F'))),
        );
        // NUL in every extracted string.
        add(
            "nul",
            event(105, |e| {
                e["eventType"] = json!("user.session.start\u{0}");
                e["severity"] = json!("INFO\u{0}");
                e["actor"]["id"] = json!("00u\u{0}1");
                e["actor"]["alternateId"] = json!("mallory\u{0}@example.com");
                e["actor"]["displayName"] = json!("Mal\u{0}lory");
                e["client"]["ipAddress"] = json!("10.0.0.1\u{0}");
                e["client"]["geographicalContext"]["country"] = json!("Fr\u{0}ance");
                e["outcome"]["result"] = json!("FAILURE\u{0}");
                e["outcome"]["reason"] = json!("INVALID\u{0}");
                e["displayMessage"] = json!("User login\u{0}");
                e["transaction"]["id"] = json!("tx\u{0}");
            }),
        );
        fake.add_events(events(5, 10, recent()));
        // A lone surrogate escape (valid JSON text that serde_json refuses as a string).
        let lone = event(106, |_| {}).to_string().replacen(
            "\"alternateId\":\"",
            "\"alternateId\":\"eve\\ud800",
            1,
        );
        fake.add_raw_event(&lone, Utc::now().timestamp_millis());
        // A uuid longer than the API accepts.
        let long_uuid = format!("{}-long", "u".repeat(145));
        fake.add_events([event(107, |e| e["uuid"] = json!(long_uuid))]);
        // A readable uuid in an event that does not parse as a whole.
        let broken =
            event(108, |_| {})
                .to_string()
                .replacen("\"version\":\"0\"", "\"version\":1e400", 1);
        fake.add_raw_event(&broken, Utc::now().timestamp_millis());
        // An event the database itself refuses: the page is stored event by event.
        refuse_event_type(&t.db, "test.refused").await;
        let refused = event(109, |e| e["eventType"] = json!("test.refused"));
        fake.add_events([refused.clone()]);
        fake.add_events(events(10, 20, recent()));

        let poller = OktaPoller::new(settings, t.db.clone(), None).unwrap();
        let s = poller.poll().await.unwrap();
        assert!(s.caught_up, "{kind:?}: {s:?}");
        // 20 generated + 6 oversized/NUL + the lone surrogate = 27 stored; 3 malformed.
        assert_eq!((s.stored, s.malformed), (27, 3), "{kind:?}: {s:?}");
        assert_eq!(counts(&t.db).await, (27, 27), "{kind:?}");
        let total = fake.event_count();
        let cursor = okta_cursor::load(&t.db, "default").await.unwrap().unwrap();
        assert!(
            cursor.next_url.ends_with(&format!("_{total}")),
            "{kind:?}: the cursor moved past every event: {}",
            cursor.next_url
        );

        // Each oversized value: bounded in its column, whole in raw, found by its full value.
        for (name, e) in &stored_cases[..5] {
            let uuid = e["uuid"].as_str().unwrap();
            let got = events::get(&t.db, uuid).await.unwrap().unwrap();
            let raw: Value = serde_json::from_str(&got.raw).unwrap();
            assert_eq!(&raw, e, "{kind:?} {name}: raw kept whole");
            let q = match name.as_str() {
                "alternateId" | "actor.id" => EventQuery {
                    actor: Some(long(if name == "actor.id" { 'i' } else { 'a' })),
                    ..Default::default()
                },
                "eventType" => EventQuery {
                    event_type: Some(long('t')),
                    ..Default::default()
                },
                "ipAddress" => EventQuery {
                    ip: Some(long('9')),
                    ..Default::default()
                },
                _ => EventQuery {
                    outcome: Some(long('F')),
                    ..Default::default()
                },
            };
            assert_eq!(
                find(&t.db, q).await,
                vec![uuid.to_owned()],
                "{kind:?} {name}"
            );
            for col in [
                &got.event_type,
                got.actor_id.as_ref().unwrap(),
                got.actor_alternate_id.as_ref().unwrap(),
                got.client_ip.as_ref().unwrap(),
                got.outcome_result.as_ref().unwrap(),
            ] {
                assert!(col.len() <= MAX_INDEXED_BYTES, "{kind:?} {name}");
            }
        }

        // NUL: stored as ␀ in every column, found by the value as sent.
        let nul = &stored_cases[5].1;
        let got = events::get(&t.db, nul["uuid"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.actor_alternate_id.as_deref(),
            Some("mallory\u{2400}@example.com")
        );
        assert_eq!(got.transaction_id.as_deref(), Some("tx\u{2400}"));
        assert_eq!(got.country.as_deref(), Some("Fr\u{2400}ance"));
        assert_eq!(
            serde_json::from_str::<Value>(&got.raw).unwrap(),
            *nul,
            "{kind:?}"
        );
        let q = EventQuery {
            actor: Some("mallory\u{0}@example.com".to_owned()),
            outcome: Some("FAILURE\u{0}".to_owned()),
            ..Default::default()
        };
        assert_eq!(find(&t.db, q).await.len(), 1, "{kind:?}");

        // The lone surrogate: stored, the column reads U+FFFD, raw keeps the escape.
        let got = events::get(
            &t.db,
            generated_event(106, Utc::now())["uuid"].as_str().unwrap(),
        )
        .await
        .unwrap()
        .expect("the lone-surrogate event is stored");
        assert!(got.raw.contains("eve\\ud800"), "{kind:?}");
        assert!(
            got.actor_alternate_id
                .as_deref()
                .is_some_and(|a| a.starts_with("eve\u{fffd}")),
            "{kind:?}: {:?}",
            got.actor_alternate_id
        );

        // Malformed: readable uuids and the true reasons.
        let m = malformed(&t.db).await;
        assert_eq!(m.len(), 3, "{kind:?}: {m:?}");
        assert_eq!(m[0].0.as_deref(), Some(long_uuid.as_str()), "{kind:?}");
        assert!(m[0].1.contains("150 characters"), "{kind:?}: {}", m[0].1);
        let broken_uuid = generated_event(108, Utc::now())["uuid"].clone();
        assert_eq!(m[1].0.as_deref(), broken_uuid.as_str(), "{kind:?}");
        assert!(
            m[1].1.contains("number out of range"),
            "{kind:?}: {}",
            m[1].1
        );
        assert_eq!(m[2].0.as_deref(), refused["uuid"].as_str(), "{kind:?}");
        assert!(
            m[2].1.contains("refused by the test trigger"),
            "{kind:?}: the database's own reason: {}",
            m[2].1
        );
        assert!(
            events::get(&t.db, refused["uuid"].as_str().unwrap())
                .await
                .unwrap()
                .is_none()
        );

        // Later events keep flowing.
        fake.add_events(events(20, 25, recent()));
        let s = poller.poll().await.unwrap();
        assert_eq!((s.stored, s.malformed), (5, 0), "{kind:?}: {s:?}");
    }
}
