//! Email rides out an SMTP outage: the server goes down with 200 messages queued and comes
//! back 3 minutes later (a 30-minute outage has the same mechanism, only longer). With the shared
//! circuit breaker, waiting jobs snooze without spending attempts: every message is
//! delivered exactly once, none goes dead, and no job uses more than 2 attempts even with
//! `max_attempts = 3`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::{cleanup, eventually, jobs, system};
use prometheus::Registry;
use vigil_jobs::Job as _;
use vigil_jobs::{EmailBody, EmailJob, JobStatus};
use vigil_queue::{NewJob, SchedulesSettings};
use vigil_testkit::db::TestDb;
use vigil_testkit::smtp::SmtpServer;
use vigil_workers::email::{
    Breaker, EngineAuditSink, Mailer, SendRateLimiter, SmtpSettings, SmtpTls,
};
use vigil_workers::runtime::Runtime;

#[test]
fn an_smtp_outage_costs_no_attempts_and_every_message_goes_out_once() {
    system(async {
        let mut smtp = SmtpServer::start().await;
        let t = TestDb::postgres().await;
        let prefix = vigil_testkit::redis::unique_prefix("outage");
        let e = common::engine(&prefix, |_, q| {
            *q.get_mut(EmailJob::QUEUE) = vigil_queue::QueueSettings {
                max_attempts: 3,
                concurrency: 4,
                timeout_seconds: 30,
                ..common::quick_queue()
            };
        })
        .await;
        let settings = SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp.port(),
            tls: SmtpTls::None,
            from: "vigil@example.com".into(),
            timeout_seconds: 2,
            outage_probe_seconds: 1,
            outage_probe_max_seconds: 4,
            ..SmtpSettings::default()
        };
        let mailer = Mailer::new(
            &settings,
            t.db.clone(),
            SendRateLimiter::Unlimited,
            Arc::new(EngineAuditSink::new(e.clone())),
        )
        .unwrap()
        .with_breaker(Breaker::redis(
            e.redis(),
            format!("{}:email:breaker", e.prefix()),
            Mailer::breaker_timing(&settings),
        ));

        smtp.stop().await;
        let n = 200;
        let batch: Vec<NewJob> = (0..n)
            .map(|i| {
                let job = EmailJob {
                    to: vec![format!("user{i}@example.com")],
                    subject: format!("message {i}"),
                    body: Some(EmailBody {
                        text: Some("hello".into()),
                        html: None,
                    }),
                    template: None,
                    vars: BTreeMap::new(),
                    idempotency_key: None,
                    notification_id: None,
                };
                NewJob::new(EmailJob::QUEUE, serde_json::to_value(job).unwrap())
            })
            .collect();
        e.enqueue_many(batch).await.unwrap();
        let registry = Registry::new();
        let rt = Runtime::builder(e.clone(), SchedulesSettings(BTreeMap::new()), &registry)
            .job::<EmailJob>(mailer)
            .start()
            .unwrap();

        // Down for 3 minutes (the outage is the behaviour under test, not a wait for
        // something): nothing delivered, nothing dead.
        tokio::time::sleep(Duration::from_secs(180)).await;
        let during = jobs(&e, EmailJob::QUEUE).await;
        assert!(
            during.iter().all(|j| j.status != JobStatus::Dead),
            "no message dies during the outage"
        );
        assert!(
            during.iter().all(|j| j.attempts <= 1),
            "waiting does not spend attempts: {:?}",
            during.iter().map(|j| j.attempts).collect::<Vec<_>>()
        );
        smtp.restart().await;

        eventually(Duration::from_secs(90), "every message delivered", || {
            let e = e.clone();
            async move {
                jobs(&e, EmailJob::QUEUE)
                    .await
                    .iter()
                    .all(|j| j.status == JobStatus::Done)
            }
        })
        .await;
        let mut per_recipient: HashMap<String, usize> = HashMap::new();
        for m in smtp.messages() {
            for r in m.rcpt_to {
                *per_recipient.entry(r).or_default() += 1;
            }
        }
        assert_eq!(per_recipient.len(), n, "every message delivered");
        assert!(per_recipient.values().all(|c| *c == 1), "each exactly once");
        let done = jobs(&e, EmailJob::QUEUE).await;
        let most = done.iter().map(|j| j.attempts).max().unwrap();
        assert!(most <= 2, "attempts per message bounded: at most {most}");
        rt.shutdown().await;
        cleanup(&e).await;
    });
}
