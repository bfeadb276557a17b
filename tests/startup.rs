//! Startup and shutdown as an operator meets them, with the real binary: a daemon that
//! cannot start says why in one line and exits 1 (no panic, no backtrace); a daemon that
//! is draining says what it waits for, and a second stop signal forces it out.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Deployment, post_json, wait_status};
use vigil_testkit::smtp::SmtpServer;

/// Asserts `vigil` failed to start: exit 1, exactly one error line naming `key` (and
/// `cause`), no panic.
fn assert_one_line_failure(status: std::process::ExitStatus, logs: &str, key: &str, cause: &str) {
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(!logs.contains("panicked"), "a panic: {logs}");
    assert!(!logs.to_lowercase().contains("backtrace"), "{logs}");
    let errors: Vec<&str> = logs.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {logs}");
    assert!(errors[0].contains(key), "names `{key}`: {}", errors[0]);
    assert!(errors[0].contains(cause), "says `{cause}`: {}", errors[0]);
}

/// A deployment logging for people (so the error line is plain text).
fn pretty() -> Deployment {
    let mut d = Deployment::new(2525, &[]);
    d.set("VIGIL_LOG__FORMAT", "pretty");
    d
}

#[tokio::test]
async fn run_without_a_jwt_secret_says_so_and_exits_1() {
    let mut vigil = pretty();
    vigil.unset("VIGIL_AUTH__JWT_SECRET_FILE");
    for role in ["run", "api"] {
        let (status, logs) = vigil.run_to_exit(&[role]).await;
        assert_one_line_failure(status, &logs, "auth.jwt_secret", "required");
    }
    // A worker needs no secret: it gets past the check (and is stopped here).
    let worker = vigil.spawn(&["worker"]);
    worker
        .wait_for_log("vigil is ready", Duration::from_secs(60))
        .await;
    assert!(worker.terminate().await.success());
    vigil.clean_redis().await;
}

#[tokio::test]
async fn a_short_jwt_secret_is_refused() {
    let mut vigil = pretty();
    vigil.unset("VIGIL_AUTH__JWT_SECRET_FILE");
    vigil.set("VIGIL_AUTH__JWT_SECRET", "too-short");
    let (status, logs) = vigil.run_to_exit(&["run"]).await;
    assert_one_line_failure(status, &logs, "auth.jwt_secret", "32 bytes");
    assert!(!logs.contains("too-short"), "the secret leaked: {logs}");
}

#[tokio::test]
async fn run_on_a_taken_port_names_http_listen_and_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut vigil = pretty();
    vigil.set("VIGIL_HTTP__LISTEN", &addr);
    let (status, logs) = vigil.run_to_exit(&["run"]).await;
    assert_one_line_failure(status, &logs, "http.listen", &addr);
    assert!(logs.to_lowercase().contains("in use"), "{logs}");
    vigil.clean_redis().await;
}

#[tokio::test]
async fn a_worker_on_a_taken_port_names_worker_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut vigil = pretty();
    vigil.set("VIGIL_WORKER__LISTEN", &addr);
    let (status, logs) = vigil.run_to_exit(&["worker"]).await;
    assert_one_line_failure(status, &logs, "worker.listen", &addr);
    vigil.clean_redis().await;
}

#[tokio::test]
async fn a_bad_config_value_stops_run_before_anything_starts() {
    let mut vigil = pretty();
    vigil.set("VIGIL_SCHEDULES__OKTA_FETCH__CRON", "every minute");
    let (status, logs) = vigil.run_to_exit(&["run"]).await;
    assert_one_line_failure(status, &logs, "schedules.okta_fetch.cron", "every minute");
    assert!(!logs.contains("vigil is ready"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_forces_exit_while_jobs_drain() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    // The message hangs at DATA, so its job is still running when the signals come.
    smtp.delay_data(Some(Duration::from_secs(120)));
    let vigil = Deployment::new(
        smtp.port(),
        &[
            ("VIGIL_ENGINE__SHUTDOWN_DEADLINE_SECONDS", "120"),
            ("VIGIL_SMTP__TIMEOUT_SECONDS", "300"),
        ],
    );
    vigil.add_user("admin", "admin");
    let daemon = vigil.start("run").await;
    let base = vigil.base();
    let token = vigil.token("admin").await;
    let (code, job) = post_json(
        &base,
        &token,
        "/api/v1/jobs/email",
        &json!({"payload": {"to": ["soc@example.com"], "subject": "slow", "body": {"text": "x"}}}),
    )
    .await;
    assert_eq!(code, 202, "{job}");
    let running = wait_status(&base, &token, job["id"].as_str().unwrap(), "running").await;
    assert_eq!(running["status"], "running", "{running}");

    daemon.signal("TERM");
    daemon
        .wait_for_log("stop signal received", Duration::from_secs(10))
        .await;
    let logs = daemon.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("stop signal received"))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(
        line["running_jobs"].as_u64() >= Some(1),
        "says what it waits for: {line}"
    );
    assert_eq!(line["deadline_seconds"], 120, "{line}");

    let forced = Instant::now();
    daemon.signal("INT");
    let status = daemon.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(130), "{}", daemon.logs());
    assert!(
        forced.elapsed() < Duration::from_secs(5),
        "{:?}",
        forced.elapsed()
    );
    assert!(
        daemon.logs().contains("second stop signal"),
        "{}",
        daemon.logs()
    );
    vigil.clean_redis().await;
}
