//! Delivery truth in the real daemon: an escalation level whose webhook receivers are down
//! (one unreachable, one answering 503) shows each notification dead on the alert
//! (`GET /api/v1/alerts/{id}`) with every error, counts and audits it, and the next level is
//! escalated to at once instead of an hour later; an admin retries a dead notification from
//! the alert. PagerDuty hears `trigger`, then `acknowledge` and `resolve` as people answer
//! the alert in vigil, on one incident (the local PagerDuty receiver keeps its dedup rules).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Deployment, get_json as get, post_json, wait_for_audit};
use vigil_testkit::channels::ChannelReceiver;
use vigil_testkit::smtp::SmtpServer;
use vigil_testkit::webhook::WebhookReceiver;

const SECRET: &str = "e2e-webhook-secret";

/// A URL on which nothing listens.
fn unreachable_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/down")
}

/// The alert's detail once `check` holds (panics after 60 s with the last detail).
async fn detail_when(base: &str, token: &str, id: i64, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = get(base, token, &format!("/api/v1/alerts/{id}")).await;
        if check(&d) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; detail: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn patch(base: &str, token: &str, id: i64, action: &str) {
    let r = reqwest::Client::new()
        .patch(format!("{base}/api/v1/alerts/{id}"))
        .bearer_auth(token)
        .json(&json!({ "action": action }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{action}");
}

async fn critical_alert(base: &str, token: &str) -> i64 {
    let (status, event) = post_json(
        base,
        token,
        "/api/v1/events/security",
        &json!({"source": "edr", "event_type": "malware.detected", "severity": 4,
                "description": "beacon on laptop-7"}),
    )
    .await;
    assert_eq!(status, 201, "{event}");
    event["alert_id"]
        .as_i64()
        .expect("a critical event opens an alert")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_whose_webhooks_are_down_shows_them_dead_and_escalates_at_once() {
    let smtp = SmtpServer::start().await;
    let flaky = WebhookReceiver::start().await;
    flaky.answer_next(&[503, 503]);
    let down = unreachable_url();
    let vigil = Deployment::new(
        smtp.port(),
        &[
            ("VIGIL_QUEUES__NOTIFICATION__MAX_ATTEMPTS", "2"),
            ("VIGIL_QUEUES__NOTIFICATION__BACKOFF_BASE_MS", "100"),
            ("VIGIL_QUEUES__NOTIFICATION__BACKOFF_MAX_MS", "200"),
        ],
    );
    std::fs::write(
        vigil.dir.path().join("config.toml"),
        format!(
            "[escalation]\nwebhook_secret = \"{SECRET}\"\n\n[[escalation.policies]]\n\
             name = \"soc\"\nseverities = [\"critical\"]\nlevels = [\n\
             {{ after_seconds = 0, webhooks = [\"{down}\", \"{}\"] }},\n\
             {{ after_seconds = 3600, emails = [\"oncall@example.com\"] }},\n]\n",
            flaky.url("/flaky")
        ),
    )
    .unwrap();
    vigil.add_user("alice", "admin");
    vigil.add_user("bob", "analyst");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("alice").await;
    let analyst = vigil.token("bob").await;
    let id = critical_alert(&base, &token).await;

    // Both webhooks die (2 attempts each); the level failed, so level 2 (due in an hour)
    // is escalated to at once and its email is sent.
    let d = detail_when(&base, &token, id, |d| {
        d["escalations"][1]["status"] == "notified"
    })
    .await;
    let level1 = &d["escalations"][0];
    assert_eq!(level1["level"], 1);
    assert_eq!(level1["status"], "failed", "{d:#}");
    assert!(
        level1["notified_at"].is_null(),
        "a dead level is never notified"
    );
    assert!(level1["failed_at"].is_string());
    let dead = level1["notifications"].as_array().unwrap();
    assert_eq!(dead.len(), 2);
    for n in dead {
        assert_eq!(n["channel"], "webhook");
        assert_eq!(n["status"], "dead", "{n:#}");
        assert_eq!(n["attempts"], 2);
        assert_eq!(
            n["errors"].as_array().unwrap().len(),
            2,
            "every error: {n:#}"
        );
        assert_eq!(
            n["retry_url"],
            format!("/api/v1/alerts/{id}/notifications/{}/retry", n["id"])
        );
        assert!(
            !n["target"].as_str().unwrap().contains("/down")
                && !n["target"].as_str().unwrap().contains("/flaky"),
            "URLs are shown without their path: {n}"
        );
    }
    let reason = |n: &Value| n["last_error"].as_str().unwrap().to_owned();
    let unreachable = dead
        .iter()
        .find(|n| reason(n).contains("could not be reached"));
    assert!(unreachable.is_some(), "{dead:#?}");
    let flaky_n = dead
        .iter()
        .find(|n| reason(n).contains("503"))
        .expect("the 503 receiver's notification")
        .clone();
    assert_eq!(d["notifications_dead"], 2);
    let level2 = &d["escalations"][1];
    assert_eq!(level2["level"], 2);
    assert!(level2["notified_at"].is_string());
    let email = &level2["notifications"][0];
    assert_eq!(email["channel"], "email");
    assert_eq!(email["target"], "oncall@example.com");
    assert_eq!(email["status"], "sent");
    assert!(
        email["response_status"]
            .as_str()
            .unwrap()
            .starts_with("250")
    );
    assert!(email["response_id"].as_str().unwrap().starts_with('<'));
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails[0].rcpt_to, ["oncall@example.com"]);
    assert!(
        mails[0]
            .header("Subject")
            .unwrap()
            .contains("ESCALATION level 2")
    );

    // Counted and audited.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"vigil_notifications_total{channel="webhook",outcome="dead"} 2"#),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("vigil_notifications_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains("vigil_escalation_levels_failed_total 1"));
    let target = id.to_string();
    wait_for_audit(
        &base,
        &token,
        &format!("?target=alert:{id}"),
        &[
            ("alert.notification.dead", &target),
            ("alert.escalation.failed", &target),
            ("alert.escalate", &target),
        ],
    )
    .await;

    // Retried from the alert (admins only): the receiver answers now; the level is partial.
    let retry = flaky_n["retry_url"].as_str().unwrap();
    let (status, _) = post_json(&base, &analyst, retry, &json!({})).await;
    assert_eq!(status, 403);
    let (status, body) = post_json(&base, &token, retry, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    // Queued again; a fast worker may have delivered it before the answer was written.
    let now = &body["notification"]["status"];
    assert!(now == "queued" || now == "sent", "{body}");
    let d = detail_when(&base, &token, id, |d| {
        d["escalations"][0]["status"] == "partial"
    })
    .await;
    let again = d["escalations"][0]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == flaky_n["id"])
        .unwrap()
        .clone();
    assert_eq!(again["status"], "sent", "{again:#}");
    assert_eq!(again["response_status"], "HTTP 200");
    assert_eq!(again["errors"], flaky_n["errors"], "history kept");
    assert_eq!(d["notifications_dead"], 1);
    assert_eq!(
        flaky.received().len() as i64,
        flaky_n["attempts"].as_i64().unwrap() + 1
    );
    let (status, body) = post_json(&base, &token, retry, &json!({})).await;
    assert_eq!(status, 409, "a sent notification is not retried: {body}");
    assert_eq!(body["error"], "conflict");
    let (status, _) = post_json(
        &base,
        &token,
        &format!("/api/v1/alerts/{id}/notifications/999999/retry"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 404);
    wait_for_audit(
        &base,
        &token,
        &format!("?target=alert:{id}"),
        &[("alert.notification.retry", &target)],
    )
    .await;

    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_slack_and_teams_hear_the_alert_and_pagerduty_follows_vigil() {
    let smtp = SmtpServer::start().await;
    let key = "R0UT1NGKEY0123456789abcdef012345";
    let channels = ChannelReceiver::start(key).await;
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("pd_key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let slack_file = secrets.path().join("slack_url");
    std::fs::write(&slack_file, channels.slack_url()).unwrap();
    let vigil = Deployment::new(smtp.port(), &[]);
    std::fs::write(
        vigil.dir.path().join("config.toml"),
        format!(
            "[escalation]\nalert_link = \"https://vigil.example.com/dashboard/#/alerts/{{id}}\"\n\n\
             [escalation.channels.soc-slack]\nkind = \"slack\"\nurl_file = \"{}\"\n\n\
             [escalation.channels.soc-teams]\nkind = \"teams\"\nurl = \"{}\"\n\n\
             [escalation.channels.pd]\nkind = \"pagerduty\"\nurl = \"{}\"\nrouting_key_file = \"{}\"\n\n\
             [[escalation.policies]]\nname = \"soc\"\nseverities = [\"critical\"]\nlevels = [\n\
             {{ after_seconds = 0, channels = [\"soc-slack\", \"soc-teams\", \"pd\"] }},\n]\n",
            slack_file.display(),
            channels.teams_url(),
            channels.pagerduty_url(),
            key_file.display()
        ),
    )
    .unwrap();
    vigil.add_user("alice", "admin");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("alice").await;
    let id = critical_alert(&base, &token).await;

    let d = detail_when(&base, &token, id, |d| {
        d["escalations"][0]["status"] == "notified"
    })
    .await;
    let shown: Vec<&str> = d["escalations"][0]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        shown,
        ["slack:soc-slack", "teams:soc-teams", "pagerduty:pd"]
    );
    let pd = &d["escalations"][0]["notifications"][2];
    assert_eq!(pd["response_id"], format!("vigil-alert-{id}"));
    assert!(channels.rejected().is_empty(), "{:?}", channels.rejected());
    let slack = channels.slack();
    assert_eq!(slack.len(), 1);
    let link = format!("https://vigil.example.com/dashboard/#/alerts/{id}");
    assert_eq!(slack[0]["blocks"][2]["elements"][0]["url"], link);
    assert_eq!(channels.teams().len(), 1);
    let incidents = channels.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].status, "triggered");
    assert_eq!(incidents[0].severity, "critical");

    // Acknowledged in vigil: PagerDuty's incident is acknowledged; resolved: resolved.
    patch(&base, &token, id, "acknowledge").await;
    channels
        .wait_until("the acknowledge", Duration::from_secs(30), |c| {
            c.incidents()[0].status == "acknowledged"
        })
        .await;
    patch(&base, &token, id, "resolve").await;
    channels
        .wait_until("the resolve", Duration::from_secs(30), |c| {
            c.incidents()[0].status == "resolved"
        })
        .await;
    let actions: Vec<String> = channels
        .pagerduty()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event_action"].as_str().unwrap(),
                e["dedup_key"].as_str().unwrap()
            )
        })
        .collect();
    let key_of = format!("vigil-alert-{id}");
    assert_eq!(
        actions,
        [
            format!("trigger {key_of}"),
            format!("acknowledge {key_of}"),
            format!("resolve {key_of}")
        ]
    );
    let d = detail_when(&base, &token, id, |d| {
        d["escalations"][0]["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["status"] == "sent")
            .count()
            == 5
    })
    .await;
    let events: Vec<&str> = d["escalations"][0]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["trigger", "trigger", "trigger", "acknowledge", "resolve"]
    );
    assert_eq!(d["escalations"][0]["status"], "notified");

    // The channel URLs and the routing key never reach the logs.
    let logs = daemon.logs();
    for secret in [key, "s3cr3tS1ackT0ken", "s3cr3t-teams-token"] {
        assert!(!logs.contains(secret), "`{secret}` in the logs");
    }
    assert!(daemon.terminate().await.success());
    vigil.clean_redis().await;
}
