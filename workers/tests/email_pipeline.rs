//! The email and audit queues end to end: jobs enqueued on the real engine (Redis), run by the
//! actor runtime through the `email` and `audit` kinds' handlers, delivered to a real SMTP server,
//! recorded in the database. A server that is down when the job first runs gets the message
//! after the engine's retries; a 5xx reply makes the job dead at once, and its `email.dead`
//! record travels through the audit queue into the verified chain; a transient failure on the
//! last attempt also ends in `dead`, audited.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{cleanup, eventually, system};

use prometheus::Registry;
use serde_json::json;
use vigil_jobs::JobStatus;
use vigil_jobs::{AuditJob, EmailJob, Job as _};
use vigil_queue::{Engine, NewJob, SchedulesSettings};
use vigil_store::audit::{self, AuditFilter, Verification};
use vigil_store::emails::{self, EmailStatus};
use vigil_testkit::db::TestDb;
use vigil_testkit::smtp::{SmtpServer, Stage};
use vigil_workers::audit::AuditWriter;
use vigil_workers::email::{EngineAuditSink, Mailer, SendRateLimiter, SmtpSettings, SmtpTls};
use vigil_workers::runtime::Runtime;

async fn engine(prefix: &str) -> Engine {
    common::engine(prefix, |_, q| {
        *q.get_mut(EmailJob::QUEUE) = common::quick_queue();
        *q.get_mut(AuditJob::QUEUE) = common::quick_queue();
    })
    .await
}

fn email(to: &str, subject: &str) -> serde_json::Value {
    json!({"to": [to], "subject": subject, "template": "generic",
           "vars": {"title": "Hello", "message": "from the pipeline"}})
}

#[test]
fn email_jobs_retry_through_an_outage_and_dead_letters_reach_the_audit_chain() {
    system(async {
        let mut server = SmtpServer::start().await;
        let t = TestDb::postgres().await;
        let prefix = vigil_testkit::redis::unique_prefix("email-pipeline");
        let e = engine(&prefix).await;

        let settings = SmtpSettings {
            host: "127.0.0.1".into(),
            port: server.port(),
            tls: SmtpTls::None,
            from: "vigil@example.com".into(),
            timeout_seconds: 2,
            ..SmtpSettings::default()
        };
        let mailer = Mailer::new(
            &settings,
            t.db.clone(),
            SendRateLimiter::Unlimited,
            Arc::new(EngineAuditSink::new(e.clone())),
        )
        .unwrap();
        let writer = AuditWriter::new(t.db.clone(), None).start_writer();
        let registry = Registry::new();
        let rt = Runtime::builder(e.clone(), SchedulesSettings(BTreeMap::new()), &registry)
            .job::<EmailJob>(mailer)
            .batch_job::<AuditJob>(writer)
            .start()
            .expect("runtime starts");

        // 1. The server is down when the job first runs: retried, then delivered.
        server.stop().await;
        let outage = e
            .enqueue(NewJob::new(
                EmailJob::QUEUE,
                email("a@example.com", "outage"),
            ))
            .await
            .unwrap()
            .job
            .id;
        let dedup = emails::dedup_key(&outage, None);
        eventually(Duration::from_secs(20), "a failed attempt", || async {
            emails::find_by_dedup_key(&t.db, &dedup)
                .await
                .unwrap()
                .is_some_and(|r| r.status == EmailStatus::Failed)
        })
        .await;
        server.restart().await;
        eventually(Duration::from_secs(20), "the job done", || async {
            e.get(&outage).await.unwrap().unwrap().status == JobStatus::Done
        })
        .await;
        let msgs = server.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0]
                .part("text/plain")
                .unwrap()
                .contains("from the pipeline")
        );
        let rec = emails::find_by_dedup_key(&t.db, &dedup)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, EmailStatus::Sent);
        assert!(rec.attempts >= 2, "{rec:?}");
        let job = e.get(&outage).await.unwrap().unwrap();
        assert!(
            !job.errors.is_empty(),
            "the failed attempt is in the job's history"
        );

        // 2. A 5xx reply: dead at once (one attempt), audited through the audit queue.
        server.inject(Stage::Rcpt, "550 5.1.1 no such user", None);
        let bounce = e
            .enqueue(NewJob::new(
                EmailJob::QUEUE,
                email("ghost@example.com", "bounce"),
            ))
            .await
            .unwrap()
            .job
            .id;
        eventually(Duration::from_secs(20), "the job dead", || async {
            e.get(&bounce).await.unwrap().unwrap().status == JobStatus::Dead
        })
        .await;
        assert_eq!(e.get(&bounce).await.unwrap().unwrap().attempts, 1);
        let dead_filter = AuditFilter {
            action: Some("email.dead".into()),
            ..Default::default()
        };
        eventually(Duration::from_secs(20), "email.dead audited", || async {
            audit::list(&t.db, &dead_filter, 1, 10).await.unwrap().total == 1
        })
        .await;
        let rec = emails::find_by_dedup_key(&t.db, &emails::dedup_key(&bounce, None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, EmailStatus::Dead);
        assert_eq!(rec.smtp_reply.as_deref(), Some("550 5.1.1 no such user"));
        let a = &audit::list(&t.db, &dead_filter, 1, 10).await.unwrap().items[0];
        assert_eq!(a.actor, format!("job:{bounce}"));
        assert_eq!(a.target_id, rec.id.to_string());

        // 3. Transient failures until the last attempt: the delivery ends dead, audited.
        server.clear_injections();
        server.inject(Stage::Data, "451 4.3.0 try later", None);
        let flaky = e
            .enqueue(NewJob::new(
                EmailJob::QUEUE,
                email("b@example.com", "flaky"),
            ))
            .await
            .unwrap()
            .job
            .id;
        eventually(Duration::from_secs(30), "the flaky job dead", || async {
            e.get(&flaky).await.unwrap().unwrap().status == JobStatus::Dead
        })
        .await;
        assert_eq!(e.get(&flaky).await.unwrap().unwrap().attempts, 4);
        let rec = emails::find_by_dedup_key(&t.db, &emails::dedup_key(&flaky, None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((rec.status, rec.attempts), (EmailStatus::Dead, 4));
        eventually(
            Duration::from_secs(20),
            "both dead letters audited",
            || async { audit::list(&t.db, &dead_filter, 1, 10).await.unwrap().total == 2 },
        )
        .await;

        assert_eq!(server.messages().len(), 1, "only the first email arrived");
        assert!(matches!(
            audit::verify(&t.db).await.unwrap(),
            Verification::Ok { count: 2 }
        ));
        rt.shutdown().await;
        cleanup(&e).await;
    });
}
