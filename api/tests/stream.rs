//! The live stream `GET /api/v1/stream` (server-sent events) over a real socket: every
//! section on connect, then each change to every open stream; one read of the read budget
//! per stream opened; the stream ends when the server shuts down.

mod common;

use std::time::Duration;

use common::TestApp;
use serde_json::{Value, json};
use tokio::time::Instant;

/// One open stream, read event by event.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(base: &str, token: &str) -> Sse {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let resp = reqwest::Client::new()
            .get(format!("{base}/api/v1/stream"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (type, data), None when the stream ended; panics after `within`.
    async fn next(&mut self, within: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut kind = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(data["section"], kind.as_str(), "{data}");
                return Some((kind, data["data"].clone()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("no event within the deadline")
                .unwrap();
            match chunk {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// Reads until an event of `kind` whose data satisfies `pred`; returns that data.
    async fn until(&mut self, kind: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (k, data) = self.next(left).await.expect("the stream ended");
            if k == kind && pred(&data) {
                return data;
            }
        }
    }
}

fn pending(queues: &Value, queue: &str) -> u64 {
    queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == queue)
        .unwrap()["counts"]["pending"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_open_stream_gets_each_section_then_each_change() {
    let app = TestApp::new().await;
    let served = app.serve().await;
    let token = app.analyst().await;
    let admin = app.admin().await;
    // Two tabs.
    let mut tabs = [
        Sse::open(&served.base, &token).await,
        Sse::open(&served.base, &token).await,
    ];
    for tab in &mut tabs {
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 5 {
            let (kind, data) = tab.next(Duration::from_secs(30)).await.unwrap();
            match kind.as_str() {
                "queues" => assert_eq!(pending(&data, "email"), 0),
                "alerts" => assert_eq!(data["count"], 0, "{data}"),
                "jobs" => assert!(data["changed_at"].is_string(), "{data}"),
                "instances" | "schedules" => assert!(data.is_array(), "{data}"),
                other => panic!("unexpected event {other}"),
            }
            seen.insert(kind);
        }
    }

    // An enqueue reaches both tabs as new counts and a job-list signal.
    app.post(
        "/api/v1/jobs/email",
        Some(&admin),
        json!({"payload": {"to": ["soc@example.com"], "subject": "hi", "body": {"text": "x"}},
               "delay_seconds": 3600}),
    )
    .await
    .expect(202);
    for tab in &mut tabs {
        let queues = tab
            .until("queues", |q| {
                q.as_array()
                    .unwrap()
                    .iter()
                    .any(|q| q["queue"] == "email" && q["counts"]["scheduled"].as_u64() == Some(1))
            })
            .await;
        assert_eq!(pending(&queues, "email"), 0);
        tab.until("jobs", |_| true).await;
    }

    // A new alert reaches them too.
    let reported = app
        .post(
            "/api/v1/events/security",
            Some(&admin),
            json!({"source": "edr", "event_type": "malware.detected", "severity": 4,
                   "description": "beacon on laptop-42"}),
        )
        .await;
    reported.expect(201);
    let alert_id = reported.body["alert_id"].clone();
    for tab in &mut tabs {
        let alerts = tab.until("alerts", |a| a["count"] == 1).await;
        assert_eq!(alerts["results"][0]["id"], alert_id, "{alerts}");
    }

    // Shutting the server down ends the streams (an open dashboard does not hold it up).
    drop(served);
    for tab in &mut tabs {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tab
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
            .is_some()
        {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_needs_a_token_and_costs_one_read() {
    let app = TestApp::with(|s| {
        s.rate_limit.read_per_minute = 2;
        s.rate_limit.authenticated_per_minute = 5;
    })
    .await;
    let served = app.serve().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::get(format!("{}/api/v1/stream", served.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized", "{body}");

    let token = app.admin().await;
    let mut first = Sse::open(&served.base, &token).await;
    let _second = Sse::open(&served.base, &token).await;
    // However long they stay open, two streams cost two reads: the third is refused...
    first.until("queues", |_| true).await;
    first.until("schedules", |_| true).await;
    let third = reqwest::Client::new()
        .get(format!("{}/api/v1/stream", served.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429);
    // ...and the user's write budget is untouched.
    app.call(
        poem::http::Method::POST,
        "/api/v1/queues/email/pause",
        Some(&token),
        None,
    )
    .await
    .expect(200);
}
