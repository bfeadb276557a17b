//! The mailer against a real SMTP server (vigil-testkit's, in-process): what arrives
//! (envelope, headers, both parts, template output), what is recorded, how failures are
//! classified (server down → retryable then delivered; 4xx → retryable; 5xx → dead at once
//! with the reply kept and audited), that a re-delivered job or a shared idempotency key sends
//! one message, that sequential sends share one pooled connection, and that the shared rate
//! limit caps the count across two mailers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use vigil_jobs::{AuditActor, AuditJob, EmailBody, EmailJob};
use vigil_store::Db;
use vigil_store::emails::{self, EmailStatus};
use vigil_testkit::db::TestDb;
use vigil_testkit::smtp::{SmtpServer, Stage};
use vigil_workers::JobError;
use vigil_workers::email::{Mailer, SendOutcome, SendRateLimiter, SmtpSettings, SmtpTls};

type Audits = Arc<Mutex<Vec<AuditJob>>>;

fn settings(server: &SmtpServer) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: server.port(),
        tls: SmtpTls::None,
        from: "vigil alerts <vigil@example.com>".into(),
        reply_to: Some("SOC <soc@example.com>".into()),
        pool_max_size: 2,
        timeout_seconds: 5,
        ..SmtpSettings::default()
    }
}

/// A mailer with `s` that sends unlimited and drops its audit records.
fn unaudited_mailer(s: &SmtpSettings, db: &Db) -> Mailer {
    Mailer::new(
        s,
        db.clone(),
        SendRateLimiter::Unlimited,
        Arc::new(|_job: AuditJob| async {}),
    )
    .unwrap()
}

fn mailer(server: &SmtpServer, db: &Db, limiter: SendRateLimiter) -> (Mailer, Audits) {
    let audits: Audits = Arc::default();
    let sink = audits.clone();
    let mailer = Mailer::new(
        &settings(server),
        db.clone(),
        limiter,
        Arc::new(move |job: AuditJob| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(job);
            }
        }),
    )
    .unwrap();
    (mailer, audits)
}

fn text_job(to: &[&str], subject: &str, text: &str) -> EmailJob {
    EmailJob {
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: subject.into(),
        body: Some(EmailBody {
            text: Some(text.into()),
            html: None,
        }),
        template: None,
        vars: BTreeMap::new(),
        idempotency_key: None,
        notification_id: None,
    }
}

async fn record_of(db: &Db, job_id: &str) -> emails::EmailRecord {
    emails::find_by_dedup_key(db, &emails::dedup_key(job_id, None))
        .await
        .unwrap()
        .expect("a delivery record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_email_arrives_with_its_headers_and_both_parts() {
    let server = SmtpServer::start().await;
    for t in TestDb::both().await {
        let kind = t.kind();
        let before = server.messages().len();
        let (mailer, _) = mailer(&server, &t.db, SendRateLimiter::Unlimited);
        let job = EmailJob {
            to: vec!["oncall@example.com".into(), "lead@example.com".into()],
            subject: "[vigil] High alert #42: MFA push fatigue".into(),
            body: None,
            template: Some("alert_notification".into()),
            vars: serde_json::from_value(json!({
                "alert_id": 42,
                "rule": "MFA push fatigue <burst>",
                "severity": "High",
                "status": "open",
                "summary": "12 denied pushes for alice@example.com in 5 minutes",
                "count": 12,
                "url": "https://vigil.example.com/alerts/42",
                "events": [{"published": "2026-11-22T10:00:00Z", "actor": "alice@example.com", "ip": "203.0.113.7"}]
            }))
            .unwrap(),
            idempotency_key: None,
            notification_id: None,
        };
        let job_id = format!("job-template-{kind:?}");
        let outcome = mailer.send(&job_id, &job).await.unwrap();
        let SendOutcome::Sent {
            email_id,
            message_id,
            smtp_reply,
        } = outcome
        else {
            panic!("{kind:?}: not sent: {outcome:?}")
        };
        assert!(smtp_reply.starts_with("250"), "{smtp_reply}");

        let msgs = server.wait_for(before + 1, Duration::from_secs(5)).await;
        let m = &msgs[before];
        assert_eq!(m.mail_from, "vigil@example.com");
        assert_eq!(m.rcpt_to, ["oncall@example.com", "lead@example.com"]);
        assert_eq!(
            m.header("From").as_deref(),
            Some("\"vigil alerts\" <vigil@example.com>")
        );
        let to = m.header("To").unwrap();
        assert!(
            to.contains("oncall@example.com") && to.contains("lead@example.com"),
            "{to}"
        );
        assert_eq!(
            m.header("Subject").as_deref(),
            Some("[vigil] High alert #42: MFA push fatigue")
        );
        assert_eq!(
            m.header("Reply-To").as_deref(),
            Some("SOC <soc@example.com>")
        );
        assert_eq!(m.header("Message-ID").as_deref(), Some(message_id.as_str()));
        assert!(message_id.ends_with("@example.com>"), "{message_id}");
        assert!(
            m.header("Content-Type")
                .unwrap()
                .starts_with("multipart/alternative"),
            "{:?}",
            m.header("Content-Type")
        );

        let text = m.part("text/plain").expect("a text part");
        assert!(
            text.contains("High alert #42: MFA push fatigue <burst>"),
            "{text}"
        );
        assert!(text.contains("Occurrences: 12"), "{text}");
        assert!(text.contains("203.0.113.7"), "{text}");
        assert!(
            text.contains("https://vigil.example.com/alerts/42"),
            "{text}"
        );
        let html = m.part("text/html").expect("an HTML part");
        assert!(html.contains("MFA push fatigue &lt;burst&gt;"), "{html}");
        assert!(
            html.contains("href=\"https://vigil.example.com/alerts/42\"")
                || html
                    .contains("href=\"https:&#x2f;&#x2f;vigil.example.com&#x2f;alerts&#x2f;42\""),
            "{html}"
        );

        let rec = emails::get(&t.db, email_id).await.unwrap().unwrap();
        assert_eq!(rec.status, EmailStatus::Sent, "{kind:?}");
        assert_eq!(rec.attempts, 1, "{kind:?}");
        assert_eq!(rec.message_id, message_id, "{kind:?}");
        assert_eq!(rec.template.as_deref(), Some("alert_notification"));
        assert!(rec.smtp_reply.unwrap().starts_with("250"), "{kind:?}");
        assert!(rec.sent_at.is_some(), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_body_arrives_as_sent_with_dots_kept() {
    let server = SmtpServer::start().await;
    let t = TestDb::sqlite().await;
    let (mailer, _) = mailer(&server, &t.db, SendRateLimiter::Unlimited);
    let body = "Line one.\n.\n..starts with dots\nend";
    mailer
        .send("j-plain", &text_job(&["a@example.com"], "plain text", body))
        .await
        .unwrap();
    let m = &server.wait_for(1, Duration::from_secs(5)).await[0];
    assert!(m.header("Content-Type").unwrap().starts_with("text/plain"));
    let text = m.part("text/plain").unwrap();
    assert_eq!(text.replace("\r\n", "\n").trim_end(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_emails_share_one_smtp_connection() {
    let server = SmtpServer::start().await;
    let t = TestDb::sqlite().await;
    let mut s = settings(&server);
    s.pool_max_size = 1;
    let mailer = unaudited_mailer(&s, &t.db);
    for i in 0..20 {
        let job = text_job(&["a@example.com"], &format!("one connection {i}"), "hello");
        let out = mailer.send(&format!("j-seq-{i}"), &job).await.unwrap();
        assert!(matches!(out, SendOutcome::Sent { .. }), "{out:?}");
    }
    let got = server.wait_for(20, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 20);
    assert_eq!(
        got[19].header("Subject").as_deref(),
        Some("one connection 19")
    );
    assert_eq!(server.connections(), 1, "the pool reused one connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_then_up_retries_then_delivers() {
    let mut server = SmtpServer::start().await;
    let t = TestDb::sqlite().await;
    let (mailer, audits) = mailer(&server, &t.db, SendRateLimiter::Unlimited);
    let job = text_job(&["a@example.com"], "outage", "hello");

    server.stop().await;
    let err = mailer.send("j-outage", &job).await.unwrap_err();
    assert!(matches!(err, JobError::Retryable(_)), "{err:?}");
    let rec = record_of(&t.db, "j-outage").await;
    assert_eq!((rec.status, rec.attempts), (EmailStatus::Failed, 1));
    assert!(rec.last_error.is_some());

    server.restart().await;
    let out = mailer.send("j-outage", &job).await.unwrap();
    assert!(matches!(out, SendOutcome::Sent { .. }), "{out:?}");
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    let rec = record_of(&t.db, "j-outage").await;
    assert_eq!((rec.status, rec.attempts), (EmailStatus::Sent, 2));
    assert_eq!(rec.last_error, None);
    assert!(audits.lock().unwrap().is_empty(), "no dead letter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_slower_than_the_timeout_is_retryable() {
    let server = SmtpServer::start().await;
    let t = TestDb::sqlite().await;
    let mut s = settings(&server);
    s.timeout_seconds = 1;
    let mailer = unaudited_mailer(&s, &t.db);
    server.delay_data(Some(Duration::from_secs(3)));
    let job = text_job(&["a@example.com"], "slow", "hello");
    let err = mailer.send("j-slow", &job).await.unwrap_err();
    assert!(matches!(err, JobError::Retryable(_)), "{err:?}");
    let rec = record_of(&t.db, "j-slow").await;
    assert_eq!(rec.status, EmailStatus::Failed);
    assert!(rec.last_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_reply_is_retryable_and_the_next_attempt_delivers() {
    let server = SmtpServer::start().await;
    let t = TestDb::sqlite().await;
    let (mailer, _) = mailer(&server, &t.db, SendRateLimiter::Unlimited);
    server.inject(Stage::Data, "451 4.3.0 try again later", Some(1));
    let job = text_job(&["a@example.com"], "greylisted", "hello");
    let err = mailer.send("j-4xx", &job).await.unwrap_err();
    assert!(matches!(err, JobError::Retryable(_)), "{err:?}");
    let rec = record_of(&t.db, "j-4xx").await;
    assert_eq!(rec.status, EmailStatus::Failed);
    assert!(rec.smtp_reply.unwrap().starts_with("451"), "reply kept");

    mailer.send("j-4xx", &job).await.unwrap();
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    assert_eq!(record_of(&t.db, "j-4xx").await.status, EmailStatus::Sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_reply_is_dead_at_once_with_the_reply_recorded_and_audited() {
    let server = SmtpServer::start().await;
    for t in TestDb::both().await {
        let kind = t.kind();
        let (mailer, audits) = mailer(&server, &t.db, SendRateLimiter::Unlimited);
        server.inject(
            Stage::Rcpt,
            "550 5.1.1 <ghost@example.com>: Recipient address rejected",
            None,
        );
        let job_id = format!("j-5xx-{kind:?}");
        let job = text_job(&["ghost@example.com"], "bounce", "hello");
        let err = mailer.send(&job_id, &job).await.unwrap_err();
        assert!(matches!(err, JobError::Permanent(_)), "{kind:?}: {err:?}");
        assert!(err.to_string().contains("550"), "{err}");

        let rec = record_of(&t.db, &job_id).await;
        assert_eq!(
            (rec.status, rec.attempts),
            (EmailStatus::Dead, 1),
            "{kind:?}"
        );
        assert_eq!(
            rec.smtp_reply.as_deref(),
            Some("550 5.1.1 <ghost@example.com>: Recipient address rejected"),
            "{kind:?}"
        );

        let audits = audits.lock().unwrap().clone();
        assert_eq!(audits.len(), 1, "{kind:?}");
        let a = &audits[0];
        assert_eq!(a.action, "email.dead");
        assert_eq!(a.actor, AuditActor::Job(job_id.clone()));
        assert_eq!(
            (a.target_type.as_str(), a.target_id.clone()),
            ("email", rec.id.to_string())
        );
        assert!(a.details["smtp_reply"].as_str().unwrap().starts_with("550"));

        // A re-delivered dead job stays dead and contacts nobody.
        server.clear_injections();
        let conns = server.connections();
        let again = mailer.send(&job_id, &job).await.unwrap_err();
        assert!(matches!(again, JobError::Permanent(_)), "{again:?}");
        assert_eq!(server.connections(), conns, "{kind:?}");
        assert!(server.messages().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_template_or_bad_address_is_dead_without_sending() {
    let server = SmtpServer::start().await;
    let t = TestDb::sqlite().await;
    let (mailer, audits) = mailer(&server, &t.db, SendRateLimiter::Unlimited);
    let mut job = text_job(&["a@example.com"], "x", "y");
    job.body = None;
    job.template = Some("does_not_exist".into());
    let err = mailer.send("j-tmpl", &job).await.unwrap_err();
    assert!(matches!(err, JobError::Permanent(_)), "{err:?}");
    assert!(err.to_string().contains("unknown email template"), "{err}");
    assert_eq!(record_of(&t.db, "j-tmpl").await.status, EmailStatus::Dead);

    let bad = text_job(&["not an address"], "x", "y");
    let err = mailer.send("j-addr", &bad).await.unwrap_err();
    assert!(matches!(err, JobError::Permanent(_)), "{err:?}");
    assert_eq!(record_of(&t.db, "j-addr").await.status, EmailStatus::Dead);
    assert_eq!(audits.lock().unwrap().len(), 2);
    assert_eq!(server.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_job_or_shared_idempotency_key_sends_one_message() {
    let server = SmtpServer::start().await;
    let t = TestDb::postgres().await;
    let (mailer, _) = mailer(&server, &t.db, SendRateLimiter::Unlimited);

    // The same job delivered five times at once, then once more.
    let job = text_job(&["a@example.com"], "dup", "once");
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (m, j) = (mailer.clone(), job.clone());
        tasks.push(tokio::spawn(async move { m.send("j-dup", &j).await }));
    }
    let mut sent = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(SendOutcome::Sent { .. }) => sent += 1,
            Ok(SendOutcome::AlreadySent { .. }) | Err(JobError::Retryable(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sent, 1);
    let again = mailer.send("j-dup", &job).await.unwrap();
    assert!(
        matches!(again, SendOutcome::AlreadySent { .. }),
        "{again:?}"
    );

    // Two jobs sharing an idempotency key (e.g. one alert level notified twice).
    let mut keyed = text_job(&["b@example.com"], "keyed", "once");
    keyed.idempotency_key = Some("alert-7-level-1".into());
    mailer.send("j-key-1", &keyed).await.unwrap();
    let second = mailer.send("j-key-2", &keyed).await.unwrap();
    assert!(
        matches!(second, SendOutcome::AlreadySent { .. }),
        "{second:?}"
    );

    // Every send above has returned, and the server records a message before it answers
    // 250: what it holds now is everything that was sent.
    let msgs = server.messages();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert_eq!(
        msgs.iter()
            .filter(|m| m.rcpt_to == ["a@example.com"])
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_shared_by_every_mailer() {
    let server = SmtpServer::start().await;
    let t = TestDb::sqlite().await;
    let settings = vigil_queue::RedisSettings {
        url: vigil_testkit::redis::shared_url(),
        ..Default::default()
    };
    let conn = vigil_queue::Connector::new(&settings)
        .unwrap()
        .shared()
        .await
        .unwrap();
    let key = format!(
        "{}:email:rate",
        vigil_testkit::redis::unique_prefix("email-rate")
    );
    // Two instances, one budget of 3 per minute, no waiting for the next token.
    let limiter = || SendRateLimiter::redis(conn.clone(), key.clone(), 3, Duration::ZERO);
    let (a, _) = mailer(&server, &t.db, limiter());
    let (b, _) = mailer(&server, &t.db, limiter());

    let mut sent = 0;
    let mut limited = 0;
    for i in 0..6 {
        let m = if i % 2 == 0 { &a } else { &b };
        let job = text_job(&["a@example.com"], &format!("n{i}"), "x");
        match m.send(&format!("j-rate-{i}"), &job).await {
            Ok(SendOutcome::Sent { .. }) => sent += 1,
            Err(JobError::Retryable(e)) => {
                assert!(e.contains("rate limit"), "{e}");
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((sent, limited), (3, 3));
    assert_eq!(server.messages().len(), 3);
    // A limited job is recorded as failed (retried later), not dead.
    let rec = record_of(&t.db, "j-rate-5").await;
    assert_eq!(rec.status, EmailStatus::Failed);

    let mut c = conn.clone();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// Benchmark (figures, not a test): `cargo test -p vigil-workers --test email_delivery --
/// --ignored --nocapture`. Sends `VIGIL_BENCH_EMAILS` (default 1000) template emails through
/// the pooled transport to the in-process SMTP server with 16 sends in flight, recording
/// each in PostgreSQL. Prints one JSON line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_emails_per_second() {
    let server = SmtpServer::start().await;
    let t = TestDb::postgres().await;
    let mut s = settings(&server);
    s.pool_max_size = 8;
    let mailer = unaudited_mailer(&s, &t.db);
    let n: usize = std::env::var("VIGIL_BENCH_EMAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let job = EmailJob {
        to: vec!["soc@example.com".into()],
        subject: "[vigil] bench".into(),
        body: None,
        template: Some("alert_notification".into()),
        vars: serde_json::from_value(json!({"alert_id": 1, "rule": "bench", "severity": "High"}))
            .unwrap(),
        idempotency_key: None,
        notification_id: None,
    };
    let start = std::time::Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (m, j, next) = (mailer.clone(), job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                m.send(&format!("bench-{i}"), &j).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(server.wait_for(n, Duration::from_secs(10)).await.len(), n);
    println!(
        "{}",
        json!({
            "bench": "emails_sent",
            "smtp": "vigil-testkit in-process",
            "database": "postgres",
            "emails": n,
            "in_flight": 16,
            "pool_max_size": 8,
            "smtp_connections": server.connections(),
            "seconds": (secs * 1000.0).round() / 1000.0,
            "emails_per_second": (n as f64 / secs).round(),
        })
    );
}
