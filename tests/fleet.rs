//! A scaled-out deployment can be watched: one `vigil api` and two `vigil worker`s on one
//! Redis and database. Each worker serves `/health`, `/ready` and `/metrics` on its own
//! `[worker] listen` (port 0, reported in its log); the API is ready without any worker;
//! `GET /api/v1/instances` lists all three with role, queues, actors and heartbeat; and
//! every query of the Grafana dashboard finds its metrics in a live scrape of the fleet
//! (and of a single `vigil run`).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use support::{Daemon, Deployment, get_json, post_json, wait_healthy, wait_status};
use vigil_testkit::fake_okta::{FakeOkta, FakeOktaConfig, generated_event};
use vigil_testkit::smtp::SmtpServer;

const TOKEN: &str = "fleet-okta-token";

/// A deployment with Okta polling a fake org that holds some failed sign-ins.
async fn deployment(smtp: &SmtpServer, fake: &FakeOkta) -> Deployment {
    let start = Utc::now() - chrono::Duration::minutes(30);
    fake.add_events((0..30).map(|i| {
        let mut e = generated_event(i, start + chrono::Duration::minutes(i as i64 / 2 + 1));
        e["outcome"] = json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"});
        e["client"]["ipAddress"] = json!("198.51.100.23");
        e
    }));
    let domain = fake.base_url();
    let vigil = Deployment::new(smtp.port(), &support::okta_settings(&domain, TOKEN));
    // The alert the brute force opens escalates at once, so the escalation panel has data.
    std::fs::write(
        vigil.dir.path().join("config.toml"),
        "[[escalation.policies]]\nname = \"soc\"\nseverities = [\"high\", \"critical\"]\n\
         levels = [{ after_seconds = 0, emails = [\"soc@example.com\"] }]\n",
    )
    .unwrap();
    vigil.add_user("admin", "admin");
    vigil.add_user("analyst", "analyst");
    vigil
}

async fn fake_okta() -> FakeOkta {
    FakeOkta::start(FakeOktaConfig {
        api_token: Some(TOKEN.to_owned()),
        ..Default::default()
    })
    .await
}

/// Some work through the API: an email and an Okta fetch (which opens an alert), both done.
async fn work(base: &str, token: &str) {
    for (queue, payload) in [
        (
            "email",
            json!({"to": ["soc@example.com"], "subject": "fleet", "body": {"text": "x"}}),
        ),
        ("okta_fetch", json!({})),
    ] {
        let (code, job) = post_json(
            base,
            token,
            &format!("/api/v1/jobs/{queue}"),
            &json!({ "payload": payload }),
        )
        .await;
        assert_eq!(code, 202, "{job}");
        let done = wait_status(base, token, job["id"].as_str().unwrap(), "done").await;
        assert_eq!(done["status"], "done", "{done}");
    }
}

async fn get_text(url: &str) -> (u16, String) {
    let res = reqwest::get(url).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Polls `url` until it answers 200 (30 s at most).
async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = get_text(url).await;
        if code == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{url}: {code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every `vigil_*` metric the Grafana dashboard queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/dashboards/vigil.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 20, "{exprs:?}");
    exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("vigil_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(e)) = map.get("expr") {
                out.push(e.clone());
            }
            map.values().for_each(|v| collect_exprs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The metric series names (with at least one sample) in Prometheus text.
fn series(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Scrapes `urls` until every dashboard metric has a sample in one of them (30 s at most:
/// the alert's escalation job runs shortly after the fetch that opened it).
async fn assert_every_panel_has_data(urls: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut have = BTreeSet::new();
        for url in urls {
            let (code, text) = get_text(&format!("{url}/metrics")).await;
            assert_eq!(code, 200, "{url}/metrics: {text}");
            have.extend(series(&text));
        }
        let missing: Vec<String> = dashboard_metrics()
            .into_iter()
            .filter(|m| !have.contains(m))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "no samples for {missing:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_and_two_workers_are_each_observable() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    let fake = fake_okta().await;
    let vigil = deployment(&smtp, &fake).await;
    let api = vigil.start("api").await;
    let base = vigil.base();
    // No worker runs: the API can still do its role.
    wait_ready(&format!("{base}/ready")).await;

    let workers: Vec<Daemon> = (0..2).map(|_| vigil.spawn(&["worker"])).collect();
    let mut probes = Vec::new();
    for w in &workers {
        let url = w.listen_url().await;
        wait_healthy(&url, w, "worker").await;
        wait_ready(&format!("{url}/ready")).await;
        probes.push(url);
    }
    let admin = vigil.token("admin").await;
    work(&base, &admin).await;

    // The fleet view, as an analyst (a read route).
    let analyst = vigil.token("analyst").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let instances = loop {
        let list = get_json(&base, &analyst, "/api/v1/instances").await;
        let all = list["results"].as_array().cloned().unwrap_or_default();
        let settled = all.len() == 3 && all.iter().all(|i| i["healthy"] == true);
        if settled || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let list = instances["results"].as_array().expect("a list");
    let roles: Vec<&str> = list.iter().map(|i| i["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "worker").count(),
        2,
        "{instances}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "api").count(),
        1,
        "{instances}"
    );
    for i in list {
        assert!(i["heartbeat"].is_string(), "{i}");
        assert_eq!(i["healthy"], true, "{i}");
        if i["role"] == "worker" {
            let queues: Vec<&str> = i["queues"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| q.as_str().unwrap())
                .collect();
            assert!(
                queues.contains(&"email") && queues.contains(&"okta_fetch"),
                "{i}"
            );
            assert!(i["actors"].as_array().unwrap().len() >= 4, "{i}");
            // Each queue actor says how many of its jobs run now, of how many at most.
            let email = i["actors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == "queue:email")
                .expect("the email queue's actor");
            assert!(
                email["concurrency"].as_u64().is_some_and(|c| c > 0),
                "{email}"
            );
            assert!(email["in_flight"].is_u64(), "{email}");
            assert!(email["worker"].is_string(), "{email}");
        }
    }
    let anonymous = reqwest::get(format!("{base}/api/v1/instances"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    for url in &probes {
        let (_, text) = get_text(&format!("{url}/metrics")).await;
        assert!(
            text.contains("vigil_jobs_succeeded_total"),
            "worker metrics: {text}"
        );
    }
    let (_, api_metrics) = get_text(&format!("{base}/metrics")).await;
    assert!(
        api_metrics.contains("vigil_http_requests_total"),
        "{api_metrics}"
    );
    let mut urls = vec![base.clone()];
    urls.extend(probes.iter().cloned());
    assert_every_panel_has_data(&urls).await;

    for w in workers {
        assert!(w.terminate().await.success());
    }
    assert!(api.terminate().await.success());
    vigil.clean_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_has_data_on_vigil_run() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    let fake = fake_okta().await;
    let vigil = deployment(&smtp, &fake).await;
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    wait_ready(&format!("{base}/ready")).await;
    work(&base, &vigil.token("admin").await).await;
    assert_every_panel_has_data(std::slice::from_ref(&base)).await;
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}
