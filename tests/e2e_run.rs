//! The whole path with real processes and services: `vigil run` (API + workers) against the
//! shared Redis (own key prefix), a fresh SQLite database and a real SMTP server. A user
//! signs in, enqueues an email through the API, the email worker delivers it, the job reads
//! `done`; the sign-in and the enqueue are in the audit trail; SIGTERM exits 0.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_testkit::redis::{free_port, shared_url, unique_prefix};
use vigil_testkit::smtp::SmtpServer;

const PASSWORD: &str = "correct-horse-battery-staple";

fn env(dir: &Path, port: u16, smtp_port: u16, prefix: &str) -> Vec<(String, String)> {
    std::fs::write(
        dir.join("jwt"),
        "0123456789abcdef0123456789abcdef0123456789",
    )
    .unwrap();
    [
        (
            "VIGIL_DATABASE__URL",
            format!("sqlite://{}/vigil.db", dir.display()),
        ),
        ("VIGIL_REDIS__URL", shared_url()),
        ("VIGIL_REDIS__PREFIX", prefix.to_owned()),
        ("VIGIL_HTTP__LISTEN", format!("127.0.0.1:{port}")),
        (
            "VIGIL_AUTH__JWT_SECRET_FILE",
            dir.join("jwt").display().to_string(),
        ),
        ("VIGIL_SMTP__HOST", "127.0.0.1".to_owned()),
        ("VIGIL_SMTP__PORT", smtp_port.to_string()),
        ("VIGIL_SMTP__TLS", "none".to_owned()),
        ("VIGIL_LOG__FORMAT", "json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn vigil(dir: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("VIGIL_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("vigil run never answered /health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_enqueued_through_the_api_is_delivered_and_audited() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start().await;
    let port = free_port();
    let prefix = unique_prefix("e2e");
    let env = env(dir.path(), port, smtp.port(), &prefix);

    let mut add = vigil(
        dir.path(),
        &env,
        &["user", "add", "alice", "--role", "admin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    use std::io::Write;
    writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(add.wait().unwrap().success(), "vigil user add failed");

    let daemon = Daemon(
        vigil(dir.path(), &env, &["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_healthy(&client, &base).await;

    let tokens: Value = client
        .post(format!("{base}/api/v1/auth/token"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().expect("a token").to_owned();

    let res = client
        .post(format!("{base}/api/v1/jobs/email"))
        .bearer_auth(&token)
        .json(&json!({"payload": {"to": ["soc@example.com"], "subject": "vigil e2e", "body": {"text": "hello from vigil"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let j: Value = client
            .get(format!("{base}/api/v1/jobs/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["status"] == "done" || Instant::now() > deadline {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
        if (actions.iter().any(|a| a == "auth.login") && actions.iter().any(|a| a == "job.enqueue"))
            || Instant::now() > deadline
        {
            break actions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(actions.iter().any(|a| a == "auth.login"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "job.enqueue"), "{actions:?}");

    // SIGTERM: clean stop, exit 0.
    let mut daemon = daemon;
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "vigil did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    let verify = vigil(dir.path(), &env, &["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let mut conn = redis::Client::open(shared_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
