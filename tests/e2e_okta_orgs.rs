//! Many Okta orgs in the real daemon: `[[okta.orgs]]` in config.toml (one token from a
//! file), a backfill queued through `POST /api/v1/jobs/okta_fetch` runs on both orgs in the
//! worker and shows its progress on the job while it runs, events are listed by org, and a
//! job naming one org fetches only that org.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use support::{Deployment, get_json as get, post_json, wait_status};
use vigil_testkit::fake_okta::{FakeOkta, FakeOktaConfig, Fault, generated_event};

async fn fake(token: &str) -> FakeOkta {
    FakeOkta::start(FakeOktaConfig {
        api_token: Some(token.to_owned()),
        ..Default::default()
    })
    .await
}

fn events(from: u64, to: u64, start: chrono::DateTime<Utc>) -> Vec<Value> {
    (from..to)
        .map(|i| generated_event(i, start + chrono::Duration::seconds(i as i64)))
        .collect()
}

async fn listed(base: &str, token: &str, org: &str) -> usize {
    get(
        base,
        token,
        &format!("/api/v1/events?org={org}&page_size=1000"),
    )
    .await["results"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_job_runs_on_every_org_with_progress_and_events_carry_their_org() {
    let (alpha, beta) = (fake("00alpha-token").await, fake("00beta-token").await);
    let start = Utc::now() - chrono::Duration::hours(2);
    let start = chrono::DateTime::from_timestamp(start.timestamp(), 0).unwrap();
    alpha.add_events(events(0, 240, start));
    beta.add_events(events(1000, 1180, start - chrono::Duration::seconds(1000)));
    // Slow pages, so the run is seen while it goes.
    alpha.inject_every(Some((1, Fault::Hang(Duration::from_millis(300)))));
    beta.inject_every(Some((1, Fault::Hang(Duration::from_millis(300)))));

    let vigil = Deployment::new(
        1,
        &[
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
            // No scheduled polls: only the jobs this test queues touch the orgs.
            ("VIGIL_SCHEDULES__OKTA_FETCH__ENABLED", "false"),
        ],
    );
    std::fs::write(vigil.dir.path().join("alpha.token"), "00alpha-token\n").unwrap();
    std::fs::write(
        vigil.dir.path().join("config.toml"),
        format!(
            r#"
[okta]
enabled = true
page_limit = 20
request_timeout_seconds = 5

[[okta.orgs]]
name = "alpha"
domain = "{}"
auth = "ssws"
api_token_file = "{}"

[[okta.orgs]]
name = "beta"
domain = "{}"
auth = "ssws"
api_token = "00beta-token"
schedule = "*/5 * * * * *"   # accepted; disabled with okta_fetch here
"#,
            alpha.base_url(),
            vigil.dir.path().join("alpha.token").display(),
            beta.base_url()
        ),
    )
    .unwrap();
    vigil.add_user("alice", "admin");
    let daemon = vigil.start("run").await;
    daemon
        .wait_for_log("okta_fetch.alpha,okta_fetch.beta", Duration::from_secs(30))
        .await;
    let base = vigil.base();
    let token = vigil.token("alice").await;

    let (status, job) = post_json(
        &base,
        &token,
        "/api/v1/jobs/okta_fetch",
        &json!({"payload": {"since": (start - chrono::Duration::hours(1)).to_rfc3339()}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();

    // Progress while it runs: some events stored, not finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let j = get(&base, &token, &format!("/api/v1/jobs/{id}")).await;
        let p = &j["progress"];
        if j["status"] == "running"
            && p["stored"].as_u64().unwrap_or(0) > 0
            && p["finished"] == false
        {
            break j;
        }
        assert!(
            Instant::now() < deadline && j["status"] != "done",
            "no progress seen while the job ran: {j}\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let p = &seen["progress"];
    assert!(p["position"].is_string(), "{seen}");
    assert!(p["orgs"].is_object(), "{seen}");

    let done = wait_status(&base, &token, &id, "done").await;
    assert_eq!(done["status"], "done", "{done}\n{}", daemon.logs());
    let p = &done["progress"];
    assert_eq!(p["finished"], true, "{done}");
    assert_eq!(p["stored"], 420, "{done}");
    assert_eq!(p["orgs"]["alpha"]["stored"], 240, "{done}");
    assert_eq!(p["orgs"]["beta"]["stored"], 180, "{done}");
    assert_eq!(
        p["orgs"]["alpha"]["position"],
        (start + chrono::Duration::seconds(239)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "{done}"
    );
    assert_eq!(listed(&base, &token, "alpha").await, 240);
    assert_eq!(listed(&base, &token, "beta").await, 180);

    // A job naming beta polls beta only.
    alpha.inject_every(None);
    beta.inject_every(None);
    let alpha_requests = alpha.counters().logs_requests;
    let fresh = Utc::now() - chrono::Duration::seconds(30);
    alpha.add_events(events(500, 505, fresh));
    beta.add_events(events(1500, 1507, fresh));
    let (status, job) = post_json(
        &base,
        &token,
        "/api/v1/jobs/okta_fetch",
        &json!({"payload": {"org": "beta"}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let done = wait_status(&base, &token, job["id"].as_str().unwrap(), "done").await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(listed(&base, &token, "beta").await, 187);
    assert_eq!(listed(&base, &token, "alpha").await, 240);
    assert_eq!(alpha.counters().logs_requests, alpha_requests);

    daemon.terminate().await;
    vigil.clean_redis().await;
}
