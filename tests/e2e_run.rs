//! The whole path with real processes and services: `vigil run` (API + workers) against the
//! shared Redis (own key prefix), a fresh SQLite database and a real SMTP server. A user
//! signs in, enqueues an email through the API, the email worker delivers it, the job reads
//! `done`; the sign-in and the enqueue are in the audit trail; SIGTERM exits 0.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Deployment, wait_status};
use vigil_testkit::smtp::SmtpServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_enqueued_through_the_api_is_delivered_and_audited() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    let vigil = Deployment::new(smtp.port(), &[]);
    vigil.add_user("alice", "admin");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("alice").await;
    let client = reqwest::Client::new();

    let res = client
        .post(format!("{base}/api/v1/jobs/email"))
        .bearer_auth(&token)
        .json(
            &json!({"payload": {"to": ["soc@example.com"], "subject": "vigil e2e",
                                  "body": {"text": "hello from vigil"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let done = wait_status(&base, &token, job["id"].as_str().unwrap(), "done").await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["attempts"], 1);

    let messages = smtp.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].rcpt_to, vec!["soc@example.com".to_owned()]);
    assert_eq!(messages[0].header("Subject").as_deref(), Some("vigil e2e"));
    assert!(messages[0].data.contains("hello from vigil"));

    // The sign-in and the enqueue reach the hash-chained audit trail through the audit queue.
    let deadline = Instant::now() + Duration::from_secs(15);
    let actions: Vec<String> = loop {
        let page: Value = client
            .get(format!("{base}/api/v1/audit-logs?page=1&page_size=50"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let actions: Vec<String> = page["records"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|x| x["action"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let complete = ["daemon.start", "auth.login", "job.enqueue"]
            .iter()
            .all(|a| actions.iter().any(|x| x == a));
        if complete || Instant::now() > deadline {
            break actions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(actions.iter().any(|a| a == "daemon.start"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "auth.login"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "job.enqueue"), "{actions:?}");

    let status = daemon.terminate().await;
    assert!(status.success(), "exit status {status}");
    let verify = vigil.command(&["audit", "verify"]).output().unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    vigil.clean_redis().await;
}
