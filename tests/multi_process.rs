//! Several real processes on one Redis and one database: one `vigil api` and two
//! `vigil worker`s. One worker is killed with SIGKILL again and again while it is sending
//! email; every job still completes (at-least-once under the lease), attempts are counted,
//! and every message reaches the SMTP server.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Deployment, get_json, post_json};
use vigil_testkit::smtp::SmtpServer;

const JOBS: usize = 40;

async fn jobs(base: &str, token: &str) -> Vec<Value> {
    let page = get_json(base, token, "/api/v1/jobs?queue=email&page=1&page_size=100").await;
    page["results"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_worker_killed_mid_send_again_and_again() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    // Each message takes a while at DATA, so a kill always finds sends in flight.
    smtp.delay_data(Some(Duration::from_millis(250)));
    let vigil = Deployment::new(
        smtp.port(),
        &[
            ("VIGIL_ENGINE__LEASE_SECONDS", "3"),
            ("VIGIL_ENGINE__REAPER_INTERVAL_MS", "500"),
            ("VIGIL_QUEUES__EMAIL__MAX_ATTEMPTS", "20"),
            ("VIGIL_QUEUES__EMAIL__BACKOFF_BASE_MS", "100"),
            ("VIGIL_QUEUES__EMAIL__BACKOFF_MAX_MS", "1000"),
            ("VIGIL_SMTP__RATE_PER_MINUTE", "0"),
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
        ],
    );
    vigil.add_user("admin", "admin");
    let api = vigil.start("api").await;
    let steady = vigil.start("worker").await;
    let mut victim = vigil.start("worker").await;
    let base = vigil.base();
    let token = vigil.token("admin").await;

    let client = reqwest::Client::new();
    for i in 0..JOBS {
        let res = client
            .post(format!("{base}/api/v1/jobs/email"))
            .bearer_auth(&token)
            .json(
                &json!({"payload": {"to": ["soc@example.com"], "subject": format!("job {i}"),
                                      "body": {"text": "x"}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }

    // Kill one worker with SIGKILL five times while it works, starting a fresh one each time.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(victim); // Daemon's drop is SIGKILL + wait: no shutdown code runs
        victim = vigil.start("worker").await;
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    let all = loop {
        let all = jobs(&base, &token).await;
        let done = all.iter().filter(|j| j["status"] == "done").count();
        if done == JOBS || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(all.len(), JOBS, "no job lost");
    let not_done: Vec<&Value> = all.iter().filter(|j| j["status"] != "done").collect();
    assert!(not_done.is_empty(), "every job completes: {not_done:?}");
    let rerun = all
        .iter()
        .filter(|j| j["attempts"].as_u64().unwrap_or(0) >= 2)
        .count();
    assert!(
        rerun >= 1,
        "a killed worker's jobs ran again, with their attempts counted"
    );

    let subjects: HashSet<String> = smtp
        .messages()
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    for i in 0..JOBS {
        assert!(
            subjects.contains(&format!("job {i}")),
            "message job {i} was delivered"
        );
    }

    for d in [victim, steady, api] {
        assert!(d.terminate().await.success());
    }
    vigil.clean_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_work_finishes_running_jobs_and_loses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    smtp.delay_data(Some(Duration::from_millis(300)));
    let vigil = Deployment::new(
        smtp.port(),
        &[
            ("VIGIL_SMTP__RATE_PER_MINUTE", "0"),
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
        ],
    );
    vigil.add_user("admin", "admin");
    let api = vigil.start("api").await;
    let worker = vigil.start("worker").await;
    let base = vigil.base();
    let token = vigil.token("admin").await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let res = client
            .post(format!("{base}/api/v1/jobs/email"))
            .bearer_auth(&token)
            .json(
                &json!({"payload": {"to": ["soc@example.com"], "subject": format!("term {i}"),
                                      "body": {"text": "x"}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    // The first message is in: the worker is mid-work (4 at a time, 300 ms each).
    smtp.wait_for(1, Duration::from_secs(30)).await;
    // Graceful stop while sends are in flight: they finish, the rest go back to the queue.
    assert!(worker.terminate().await.success(), "SIGTERM exits 0");
    let after_stop = smtp.messages().len();
    assert!(
        after_stop < 20,
        "the stop happened mid-work ({after_stop} sent)"
    );
    let running = jobs(&base, &token)
        .await
        .into_iter()
        .filter(|j| j["status"] == "running")
        .count();
    assert_eq!(
        running, 0,
        "no job is left holding a lease after a graceful stop"
    );

    let worker = vigil.start("worker").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = jobs(&base, &token)
            .await
            .iter()
            .filter(|j| j["status"] == "done")
            .count();
        if done == 20 || Instant::now() > deadline {
            assert_eq!(done, 20, "every job completes after the restart");
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut subjects: Vec<String> = smtp
        .messages()
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    subjects.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("term {i}")).collect();
    expected.sort();
    assert_eq!(
        subjects, expected,
        "each message exactly once: a graceful stop duplicates nothing"
    );
    for d in [worker, api] {
        assert!(d.terminate().await.success());
    }
    vigil.clean_redis().await;
}

/// A job whose every attempt takes its worker down (here: the worker is SIGKILLed whenever it
/// runs that job) stops at `max_attempts` and goes dead, instead of looping forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_every_time_goes_dead_at_max_attempts() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start().await;
    // The send never finishes by itself: whoever runs the job is still on it when killed.
    smtp.delay_data(Some(Duration::from_secs(120)));
    let vigil = Deployment::new(
        smtp.port(),
        &[
            ("VIGIL_ENGINE__LEASE_SECONDS", "2"),
            ("VIGIL_ENGINE__REAPER_INTERVAL_MS", "300"),
            ("VIGIL_QUEUES__EMAIL__MAX_ATTEMPTS", "3"),
            ("VIGIL_QUEUES__EMAIL__BACKOFF_BASE_MS", "100"),
            ("VIGIL_QUEUES__EMAIL__BACKOFF_MAX_MS", "200"),
            ("VIGIL_SMTP__TIMEOUT_SECONDS", "300"),
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
        ],
    );
    vigil.add_user("admin", "admin");
    let api = vigil.start("api").await;
    let mut worker = vigil.start("worker").await;
    let base = vigil.base();
    let token = vigil.token("admin").await;
    let (status, job) = post_json(
        &base,
        &token,
        "/api/v1/jobs/email",
        &json!({"payload": {"to": ["soc@example.com"], "subject": "poison", "body": {"text": "x"}}}),
    )
    .await;
    assert_eq!(status, 202);
    let id = job["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/jobs/{id}");

    // Attempts 1, 2 and 3 each die with their worker.
    for attempt in 1..=3u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let j = get_json(&base, &token, &path).await;
            if j["status"] == "running" && j["attempts"] == attempt {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "attempt {attempt} never started: {j}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Mid-send: the message is transmitted and the server holds its answer.
        let deadline = Instant::now() + Duration::from_secs(30);
        while smtp.data_ended() < attempt {
            assert!(
                Instant::now() < deadline,
                "attempt {attempt} never sent its data"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(worker); // SIGKILL
        worker = vigil.start("worker").await;
    }

    // The lease of attempt 3 expires: no fourth attempt, the job is dead with its history.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let j = get_json(&base, &token, &path).await;
        if j["status"] == "dead" {
            break j;
        }
        assert!(Instant::now() < deadline, "the job never went dead: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead["attempts"], 3, "{dead}");
    let errors = dead["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "one error per lost attempt: {dead}");
    assert!(
        errors
            .iter()
            .all(|e| e["error"].as_str().unwrap().contains("lease")),
        "{dead}"
    );
    // It stays dead: the live worker does not pick it up again, though it has since run
    // (and reaped around) a later job of the same queue.
    smtp.delay_data(None);
    let (status, later) = post_json(
        &base,
        &token,
        "/api/v1/jobs/email",
        &json!({"payload": {"to": ["soc@example.com"], "subject": "later", "body": {"text": "x"}}}),
    )
    .await;
    assert_eq!(status, 202);
    let later_path = format!("/api/v1/jobs/{}", later["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(&base, &token, &later_path).await["status"] != "done" {
        assert!(Instant::now() < deadline, "the later job never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = get_json(&base, &token, &path).await;
    assert_eq!(still["status"], "dead");
    assert_eq!(still["attempts"], 3);

    for d in [worker, api] {
        assert!(d.terminate().await.success());
    }
    vigil.clean_redis().await;
}

/// Two `vigil worker` processes with the same schedules: every tick enqueues exactly one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_run_each_schedule_tick_once() {
    let smtp = SmtpServer::start().await;
    let vigil = Deployment::new(
        smtp.port(),
        &[
            ("VIGIL_SCHEDULES__ALERT_ESCALATION__CRON", "* * * * * *"),
            ("VIGIL_RATE_LIMIT__ENABLED", "false"),
        ],
    );
    vigil.add_user("admin", "admin");
    let api = vigil.start("api").await;
    let a = vigil.start("worker").await;
    let b = vigil.start("worker").await;
    let base = vigil.base();
    let token = vigil.token("admin").await;
    let scheduled = || async {
        let page = get_json(
            &base,
            &token,
            "/api/v1/jobs?queue=alert_escalation&page_size=100",
        )
        .await;
        let keys: Vec<String> = page["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|j| j["idempotency_key"].as_str())
            .filter(|k| k.starts_with("schedule:alert_escalation:"))
            .map(str::to_owned)
            .collect();
        keys
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while scheduled().await.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the schedule never fired 3 times"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each tick is claimed by one process: together they fired no more often than there are
    // jobs (the idempotency key alone would hide a tick fired by both).
    let before = scheduled().await.len();
    let mut fired = 0.0;
    for w in [&a, &b] {
        let metrics = reqwest::get(format!("{}/metrics", w.listen_url().await))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        fired += metrics
            .lines()
            .filter(|l| {
                l.starts_with("vigil_schedule_ticks_total{")
                    && l.contains("schedule=\"alert_escalation\"")
                    && l.contains("outcome=\"fired\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    let keys = scheduled().await;
    assert!(
        fired as usize >= before && fired as usize <= keys.len(),
        "{fired} fires for {} ticks: {keys:?}",
        keys.len()
    );
    assert!(a.terminate().await.success());
    assert!(b.terminate().await.success());
    let keys = scheduled().await;
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "no tick ran twice: {keys:?}");
    assert!(api.terminate().await.success());
    vigil.clean_redis().await;
}
