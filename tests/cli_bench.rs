//! `vigil bench`: the no-op drain prints its JSON line with Redis's CPU time per job, and
//! `--workload audit` drains real audit records through the batch handler beside the
//! one-record-per-transaction baseline, verifies the chain and prints the ratio; without a
//! database it says what it needs. `--workload email` sends real emails through the email
//! worker to the test kit's SMTP server beside the same messages sent directly. Figures are
//! not checked (this is not a timed test), only that each is measured.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{NO_ENV, text, vigil};
use vigil_testkit::redis::shared_url;
use vigil_testkit::smtp::SmtpServer;

fn lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_noop_bench_reports_redis_cpu_per_job() {
    let dir = tempfile::tempdir().unwrap();
    let out = vigil(
        dir.path(),
        &["bench", "--redis", &shared_url(), "-n", "2000"],
        NO_ENV,
    );
    assert!(out.status.success(), "{}", text(&out));
    let first = &lines(&out)[0];
    assert_eq!(first["system"], "vigil");
    assert_eq!(first["n"], 2000);
    assert!(
        first["process_jobs_per_s"].as_f64().unwrap() > 0.0,
        "{first}"
    );
    assert!(
        first["redis_cpu_us_per_job"].as_f64().unwrap() > 0.0,
        "Redis spent CPU on the jobs: {first}"
    );
}

#[test]
fn the_audit_workload_writes_a_verified_chain_beside_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bench.db", dir.path().display());
    let out = vigil(
        dir.path(),
        &[
            "bench",
            "--redis",
            &shared_url(),
            "--workload",
            "audit",
            "--database",
            &db,
            "-n",
            "1500",
        ],
        NO_ENV,
    );
    assert!(out.status.success(), "{}", text(&out));
    let l = lines(&out);
    assert_eq!(l.len(), 2, "{}", text(&out));
    assert_eq!(l[0]["workload"], "audit");
    assert_eq!(l[0]["n"], 1500);
    assert_eq!(l[0]["chain_verified"], true);
    assert_eq!(l[0]["batch_size"], 256, "the audit queue's own batch size");
    for line in &l {
        assert!(line["process_jobs_per_s"].as_f64().unwrap() > 0.0, "{line}");
    }
    assert_eq!(
        l[1]["n"], 1000,
        "the baseline runs N/10 jobs, at least 1,000"
    );
    assert!(
        l[1]["batched_vs_baseline"].as_f64().unwrap() > 0.0,
        "{}",
        l[1]
    );
    // Every record of both runs is in the chain.
    let out = vigil(
        dir.path(),
        &["audit", "verify"],
        &[("VIGIL_DATABASE__URL", db.as_str())],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK 2500 records"), "{}", text(&out));

    // Flags that do not apply are refused, naming them, before anything runs.
    for (args, says) in [
        (
            &["bench", "--workload", "audit"][..],
            "--workload audit needs --database URL",
        ),
        (
            &[
                "bench",
                "--workload",
                "audit",
                "--database",
                &db,
                "--spread",
            ][..],
            "--spread and --rate measure no-op jobs",
        ),
        (
            &[
                "bench",
                "--workload",
                "audit",
                "--database",
                &db,
                "--rate",
                "100",
            ][..],
            "--spread and --rate measure no-op jobs",
        ),
        (
            &["bench", "--database", &db][..],
            "--database is for --workload audit",
        ),
        (
            &[
                "bench",
                "--workload",
                "audit",
                "--database",
                &db,
                "--smtp",
                "smtp://127.0.0.1:25",
            ][..],
            "--smtp is for --workload email",
        ),
        (&["bench", "--rate", "0"][..], "--rate"),
        (&["bench", "-n", "0"][..], "-n"),
    ] {
        let out = vigil(dir.path(), args, NO_ENV);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
}

#[test]
fn the_email_workload_sends_through_the_worker_beside_its_baseline() {
    // The SMTP server runs on its own runtime while the bench runs as a child process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(SmtpServer::start());
    let smtp = format!("smtp://127.0.0.1:{}", server.port());
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bench.db", dir.path().display());
    let out = vigil(
        dir.path(),
        &[
            "bench",
            "--redis",
            &shared_url(),
            "--workload",
            "email",
            "--smtp",
            &smtp,
            "--database",
            &db,
            "-n",
            "40",
        ],
        NO_ENV,
    );
    assert!(out.status.success(), "{}", text(&out));
    let l = lines(&out);
    assert_eq!(l.len(), 2, "{}", text(&out));
    assert_eq!(l[0]["system"], "vigil");
    assert_eq!(l[0]["workload"], "email");
    assert_eq!(l[0]["n"], 40);
    assert_eq!(l[0]["recorded_sent"], 40, "every delivery recorded as sent");
    assert_eq!(l[0]["concurrency"], 4, "the email queue's own concurrency");
    assert!(
        l[0]["process_jobs_per_s"].as_f64().unwrap() > 0.0,
        "{}",
        l[0]
    );
    assert!(
        l[0]["redis_cpu_us_per_job"].as_f64().unwrap() > 0.0,
        "Redis spent CPU on the jobs: {}",
        l[0]
    );
    assert_eq!(l[1]["n"], 40);
    assert!(l[1]["baseline"].as_str().unwrap().contains("directly"));
    assert!(l[1]["emails_per_s"].as_f64().unwrap() > 0.0, "{}", l[1]);
    assert!(
        l[1]["vigil_vs_baseline"].as_f64().unwrap() > 0.0,
        "{}",
        l[1]
    );
    assert!(
        l[1]["lettre_transport_emails_per_s"].as_f64().unwrap() > 0.0,
        "{}",
        l[1]
    );
    assert!(
        l[1]["vigil_vs_lettre_transport"].as_f64().unwrap() > 0.0,
        "{}",
        l[1]
    );
    // The two baselines' 40 messages each and the worker's 40 reached the server.
    let got = rt.block_on(server.wait_for(120, Duration::from_secs(10)));
    assert_eq!(got.len(), 120);
    assert!(got.iter().all(|m| m.rcpt_to == ["bench@example.com"]));

    // What the email workload needs is named; flags that do not apply are refused.
    for (args, says) in [
        (
            &["bench", "--workload", "email", "--database", &db][..],
            "--workload email needs --smtp",
        ),
        (
            &["bench", "--workload", "email", "--smtp", &smtp][..],
            "--workload email needs --database URL",
        ),
        (
            &[
                "bench",
                "--workload",
                "email",
                "--smtp",
                "smtps://user:hunter2@mail:465",
                "--database",
                &db,
            ][..],
            "--smtp takes smtp://HOST[:PORT]",
        ),
        (
            &["bench", "--workload", "email", "--smtp", &smtp, "--spread"][..],
            "--spread and --rate measure no-op jobs",
        ),
        (
            &["bench", "--smtp", &smtp][..],
            "--smtp is for --workload email",
        ),
    ] {
        let out = vigil(dir.path(), args, NO_ENV);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("hunter2"), "{}", text(&out));
    }
}

#[test]
fn a_closed_stdout_ends_the_bench_with_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = support::command(
        dir.path(),
        &["bench", "--redis", &shared_url(), "-n", "200"],
        NO_ENV,
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // The reader goes away before the first line, as `vigil bench | head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("while writing the results to stdout"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
