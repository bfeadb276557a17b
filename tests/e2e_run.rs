//! The whole path with real processes and services: `vigil run` (API + workers) against the
//! shared Redis (own key prefix), a fresh SQLite database and a real SMTP server. A user
//! signs in, enqueues an email through the API, the email worker delivers it, the job reads
//! `done`; the user changes, the sign-in, the enqueue, the daemon's start and stop are in the
//! audit trail; SIGTERM exits 0.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Deployment, wait_for_audit, wait_status};
use vigil_testkit::smtp::SmtpServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_enqueued_through_the_api_is_delivered_and_audited() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    let vigil = Deployment::new(smtp.port(), &[]);
    vigil.add_user("alice", "admin");
    vigil.add_user("bob", "admin");
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

    // The user change, the start, the sign-in and the enqueue reach the hash-chained audit
    // trail through the audit queue.
    wait_for_audit(
        &base,
        &token,
        "",
        &[
            ("daemon.start", ":"),
            ("user.add", "alice"),
            ("auth.login", "alice"),
            ("job.enqueue", job["id"].as_str().unwrap()),
        ],
    )
    .await;

    let status = daemon.terminate().await;
    assert!(status.success(), "exit status {status}");

    // The stop, and a user disabled from the CLI while vigil is down, are in the trail once
    // vigil runs again (they waited in the audit queue).
    let disable = vigil
        .command(&["user", "disable", "alice"])
        .output()
        .unwrap();
    assert!(
        disable.status.success(),
        "{}",
        String::from_utf8_lossy(&disable.stderr)
    );
    let daemon = vigil.start("run").await;
    let bob = vigil.token("bob").await;
    wait_for_audit(
        &base,
        &bob,
        "",
        &[("daemon.stop", ":"), ("user.disable", "alice")],
    )
    .await;
    assert!(daemon.terminate().await.success());
    let verify = vigil.command(&["audit", "verify"]).output().unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    vigil.clean_redis().await;
}
