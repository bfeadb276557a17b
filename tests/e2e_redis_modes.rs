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
    let url = set.url();
    email_and_audit_end_to_end(&[("VIGIL_REDIS__URL", &url)]).await;
}

/// Under continuous API enqueues, `SENTINEL FAILOVER` with `redis.min_replicas_ack = 1`: every
/// email the API acknowledged (202) is delivered exactly once. A client that gets a 503 retries
/// with the same `Idempotency-Key`, as the error body tells it to, and names the email itself
/// with the payload's `idempotency_key`: a first try answered 503 "outcome unknown" may have
/// run and then been lost with the old master (its write was not replica-acknowledged), so the
/// retry is a second job, and only the delivery record in the database, keyed by the
/// payload's key, keeps it from sending again. A job outcome written to the
/// old master in its last moment is not replicated (outcomes are not replica-confirmed): that
/// job runs again once its lease (5 s here) expires, and the mailer's delivery record keeps
/// the second run from sending again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_run_delivers_every_acknowledged_email_once_through_a_sentinel_failover() {
    let set = SentinelSet::start();
    let url = set.url();
    let smtp = SmtpServer::start().await;
    let vigil = Deployment::new(
        smtp.port(),
        &[
            ("VIGIL_REDIS__URL", &url),
            ("VIGIL_REDIS__MIN_REPLICAS_ACK", "1"),
            ("VIGIL_REDIS__REPLICA_ACK_TIMEOUT_MS", "1000"),
            ("VIGIL_ENGINE__LEASE_SECONDS", "5"),
            ("VIGIL_SMTP__RATE_PER_MINUTE", "60000"),
            ("VIGIL_RATE_LIMIT__AUTHENTICATED_PER_MINUTE", "100000"),
        ],
    );
    vigil.add_user("alice", "admin");
    let daemon = vigil.start("run").await;
    let (base, token) = (vigil.base(), vigil.token("alice").await);
    const N: usize = 120;
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let traffic = {
        let (base, token, acked) = (base.clone(), token.clone(), acked.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ids, mut refused) = (Vec::new(), 0);
            for i in 0..N {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let res = client
                        .post(format!("{base}/api/v1/jobs/email"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", format!("failover-{i}"))
                        .json(&json!({"payload": {"to": ["soc@example.com"],
                            "subject": format!("failover {i}"), "body": {"text": "x"},
                            "idempotency_key": format!("failover-{i}")}}))
                        .send()
                        .await;
                    if let Ok(r) = res {
                        if r.status() == 202 {
                            let job: Value = r.json().await.unwrap();
                            ids.push(job["id"].as_str().unwrap().to_owned());
                            acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                        assert_eq!(r.status(), 503, "only 'unavailable' while Redis fails over");
                    }
                    refused += 1;
                    assert!(
                        std::time::Instant::now() < deadline,
                        "enqueue {i} never accepted"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            (ids, refused)
        })
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < N / 3 {
        assert!(std::time::Instant::now() < until, "enqueues did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old = set.master_port();
    tokio::task::block_in_place(|| set.failover());
    assert_ne!(set.master_port(), old, "the master changed");
    let (ids, refused) = traffic.await.unwrap();
    eprintln!(
        "API enqueues through SENTINEL FAILOVER: {N} acknowledged, {refused} answers were 503 and retried"
    );
    for id in &ids {
        let job = wait_status(&base, &token, id, "done").await;
        if job["status"] != "done" {
            let logs = daemon.logs();
            let tail: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            panic!("{job}\n{}", tail.join("\n"));
        }
    }
    let messages = smtp.wait_for(N, Duration::from_secs(30)).await;
    let mut subjects: Vec<String> = messages
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    subjects.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("failover {i}")).collect();
    want.sort();
    assert_eq!(
        subjects, want,
        "every acknowledged email, each exactly once"
    );
    assert!(daemon.terminate().await.success());
}
