//! Detection and escalation in the real daemon: `vigil run` fetches a brute force from the
//! fake Okta org (SSWS), the built-in rule opens one alert, the escalation policy in
//! config.toml emails the SOC (real SMTP server) and calls a webhook (real HTTP receiver,
//! valid signature) at once, an admin acknowledges it through the API, and every step is in
//! the audit trail.

mod support;

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use support::{Deployment, get_json as get, post_json, wait_for_audit, wait_status};
use vigil_testkit::fake_okta::{FakeOkta, FakeOktaConfig, generated_event};
use vigil_testkit::smtp::SmtpServer;
use vigil_testkit::webhook::WebhookReceiver;

const TOKEN: &str = "00e2e-ssws-token";
const SECRET: &str = "e2e-webhook-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brute_force_from_okta_opens_an_alert_that_escalates_until_acknowledged() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    let hooks = WebhookReceiver::start().await;
    let fake = FakeOkta::start(FakeOktaConfig {
        api_token: Some(TOKEN.to_owned()),
        ..Default::default()
    })
    .await;
    // 25 failed sign-ins from one IP over the last 25 minutes, and some noise.
    let start = Utc::now() - chrono::Duration::minutes(30);
    fake.add_events((0..40).map(|i| {
        let mut e = generated_event(i, start + chrono::Duration::minutes(i as i64 / 2 + 1));
        if i < 25 {
            e["outcome"] = json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"});
            e["client"]["ipAddress"] = json!("198.51.100.23");
        } else {
            e["outcome"] = json!({"result": "SUCCESS", "reason": null});
        }
        e
    }));

    let domain = fake.base_url();
    let vigil = Deployment::new(smtp.port(), &support::okta_settings(&domain, TOKEN));
    std::fs::write(
        vigil.dir.path().join("config.toml"),
        format!(
            "[escalation]\nwebhook_secret = \"{SECRET}\"\n\n[[escalation.policies]]\nname = \"soc\"\n\
             severities = [\"high\", \"critical\"]\nlevels = [{{ after_seconds = 0, emails = [\"soc@example.com\"], \
             webhooks = [\"{}\"] }}]\n",
            hooks.url("/vigil")
        ),
    )
    .unwrap();
    vigil.add_user("alice", "admin");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("alice").await;

    // Fetch now instead of waiting for the minute's schedule.
    let (status, job) = post_json(
        &base,
        &token,
        "/api/v1/jobs/okta_fetch",
        &json!({"payload": {}}),
    )
    .await;
    assert_eq!(status, 202);
    let done = wait_status(&base, &token, job["id"].as_str().unwrap(), "done").await;
    assert_eq!(done["status"], "done", "{done}");

    // One alert for the IP, counting every failure, not one per failure.
    let alerts = get(&base, &token, "/api/v1/alerts?rule=okta_brute_force_ip").await;
    assert_eq!(alerts["count"], 1, "{alerts}");
    let alert = &alerts["results"][0];
    assert_eq!(alert["group_key"], "198.51.100.23");
    assert_eq!(alert["severity"], "high");
    assert_eq!(
        alert["count"], 25,
        "20 in the window that fired it, then 5 repeats"
    );
    assert_eq!(alert["escalation_policy"], "soc");
    let id = alert["id"].as_i64().unwrap();

    // 25 users tried once each from one IP within 15 minutes is also credential stuffing:
    // a second alert, of its own rule.
    let stuffing = get(
        &base,
        &token,
        "/api/v1/alerts?rule=okta_credential_stuffing",
    )
    .await;
    assert_eq!(stuffing["count"], 1, "{stuffing}");
    let all = get(&base, &token, "/api/v1/alerts").await;
    assert_eq!(all["count"], 2, "nothing else fired: {all}");

    // Level 1 is due at once: for each alert the SOC gets an email and the webhook a call.
    let mails = smtp.wait_for(2, Duration::from_secs(30)).await;
    let mail = mails
        .iter()
        .find(|m| {
            m.header("Subject")
                .unwrap()
                .contains(&format!("alert #{id}:"))
        })
        .expect("the brute-force alert's email");
    assert_eq!(mail.rcpt_to, ["soc@example.com"]);
    let calls = hooks.wait_for(2, Duration::from_secs(30)).await;
    for call in &calls {
        let sig = &call.headers["x-vigil-signature"];
        let t: i64 = sig
            .split(',')
            .find_map(|p| p.strip_prefix("t="))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            sig,
            &vigil_workers::alerts::sign(SECRET.as_bytes(), t, call.body.as_bytes())
        );
    }
    let bodies: Vec<Value> = calls
        .iter()
        .map(|c| serde_json::from_str(&c.body).unwrap())
        .collect();
    let body = bodies
        .iter()
        .find(|b| b["alert"]["id"] == id)
        .expect("its webhook");
    assert_eq!(body["level"], 1);
    assert_eq!(body["alert"]["rule_id"], "okta_brute_force_ip");

    // Acknowledged through the API: escalation stops, the history says who.
    let ack = reqwest::Client::new()
        .patch(format!("{base}/api/v1/alerts/{id}"))
        .bearer_auth(&token)
        .json(&json!({"action": "acknowledge", "comment": "blocking 198.51.100.23"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), 200);
    let detail = get(&base, &token, &format!("/api/v1/alerts/{id}")).await;
    assert_eq!(detail["status"], "acknowledged");
    assert_eq!(detail["acknowledged_by"], "user:alice");
    assert!(detail["next_escalation_at"].is_null());
    assert_eq!(detail["escalations"][0]["level"], 1);
    assert_eq!(
        detail["escalations"][0]["emails"],
        json!(["soc@example.com"])
    );
    assert_eq!(detail["events"].as_array().unwrap().len(), 25);
    assert_eq!(detail["events"][0]["kind"], "okta");

    // Every step reached the audit trail.
    let target = id.to_string();
    wait_for_audit(
        &base,
        &token,
        &format!("?target=alert:{id}"),
        &[
            ("alert.open", &target),
            ("alert.escalate", &target),
            ("alert.acknowledge", &target),
        ],
    )
    .await;

    // Every series the Grafana dashboard charts exists in this process's /metrics.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dashboard = include_str!("../deploy/grafana/dashboards/vigil.json");
    let mut missing: Vec<String> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("vigil_"))
        .map(|w| w.trim_end_matches("_bucket").to_owned())
        .filter(|name| !metrics.contains(&format!("# TYPE {name} ")))
        .collect();
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "charted but not exported: {missing:?}");

    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}
