//! `vigil run` against each production Redis deployment, started by the test on free
//! loopback ports: a TLS server (verification on, client certificate), a 3-master Cluster
//! and a Sentinel set. In each, an email enqueued through the API is delivered by the worker
//! and its `job.enqueue` record reaches the audit trail through the audit queue.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Deployment, wait_for_audit, wait_status};
use vigil_testkit::redis_topology::{RedisCluster, SentinelSet, TlsAuthClients, TlsRedis};
use vigil_testkit::smtp::SmtpServer;

async fn email_and_audit_end_to_end(extra: &[(&str, &str)]) {
    let smtp = SmtpServer::start().await;
    let vigil = Deployment::new(smtp.port(), extra);
    vigil.add_user("alice", "admin");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("alice").await;
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/jobs/email"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "e2e-modes-1")
        .json(
            &json!({"payload": {"to": ["soc@example.com"], "subject": "modes",
                                    "body": {"text": "hello"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("email-"), "{id}");
    let done = wait_status(&base, &token, &id, "done").await;
    assert_eq!(done["attempts"], 1, "{done}");
    let messages = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(messages[0].header("Subject").as_deref(), Some("modes"));
    wait_for_audit(
        &base,
        &token,
        "",
        &[("auth.login", "alice"), ("job.enqueue", id.as_str())],
    )
    .await;
    assert!(daemon.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_runs_on_tls_redis_with_verification_and_a_client_certificate() {
    let tls = TlsRedis::start(TlsAuthClients::Yes);
    let (ca, cert, key) = (
        tls.ca_file().display().to_string(),
        tls.client_cert_file().display().to_string(),
        tls.client_key_file().display().to_string(),
    );
    let url = tls.url();
    email_and_audit_end_to_end(&[
        ("VIGIL_REDIS__URL", &url),
        ("VIGIL_REDIS__CA_FILE", &ca),
        ("VIGIL_REDIS__CLIENT_CERT_FILE", &cert),
        ("VIGIL_REDIS__CLIENT_KEY_FILE", &key),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_runs_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let nodes = format!(
        "[{}]",
        cluster
            .nodes()
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    email_and_audit_end_to_end(&[
        ("VIGIL_REDIS__MODE", "cluster"),
        ("VIGIL_REDIS__NODES", &nodes),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_runs_on_sentinel() {
    let set = SentinelSet::start();
    let hosts: Vec<String> = set
        .sentinel_ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let url = format!("redis+sentinel://{}/{}", hosts.join(","), set.master_name());
    email_and_audit_end_to_end(&[("VIGIL_REDIS__URL", &url)]).await;
}
