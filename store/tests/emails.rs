//! Email delivery records on both engines: one row per dedup key, one attempt at a time,
//! sent rows never re-attempted, list newest first.

use vigil_store::emails::{self, EmailStatus, NewEmail};
use vigil_testkit::db::TestDb;

fn new_email(job: &str, key: Option<&str>) -> NewEmail {
    NewEmail {
        dedup_key: emails::dedup_key(job, key),
        job_id: job.to_owned(),
        idempotency_key: key.map(str::to_owned),
        message_id: format!("<{job}@vigil.test>"),
        recipients: vec!["soc@example.com".into(), "oncall@example.com".into()],
        subject: "Alert 7".into(),
        template: Some("alert_notification".into()),
    }
}

#[tokio::test]
async fn a_delivery_is_recorded_once_and_sent_once() {
    for t in TestDb::both().await {
        let kind = t.kind();
        let e = emails::record(&t.db, &new_email("j1", None)).await.unwrap();
        assert_eq!((e.status, e.attempts), (EmailStatus::Queued, 0), "{kind:?}");
        assert_eq!(e.recipients.len(), 2, "{kind:?}");
        let again = emails::record(&t.db, &new_email("j1", None)).await.unwrap();
        assert_eq!(again.id, e.id, "{kind:?}: same dedup key, same row");

        assert!(
            emails::start_attempt(&t.db, e.id, 60_000).await.unwrap(),
            "{kind:?}"
        );
        assert!(
            !emails::start_attempt(&t.db, e.id, 60_000).await.unwrap(),
            "{kind:?}: a second attempt waits while the first holds the lease"
        );
        emails::mark_failed(&t.db, e.id, EmailStatus::Failed, "connection refused", None)
            .await
            .unwrap();
        assert!(
            emails::start_attempt(&t.db, e.id, 60_000).await.unwrap(),
            "{kind:?}"
        );
        emails::mark_sent(&t.db, e.id, "250 2.0.0 Ok: queued")
            .await
            .unwrap();
        assert!(
            !emails::start_attempt(&t.db, e.id, 60_000).await.unwrap(),
            "{kind:?}: sent is final"
        );
        let sent = emails::get(&t.db, e.id).await.unwrap().unwrap();
        assert_eq!(sent.status, EmailStatus::Sent, "{kind:?}");
        assert_eq!(sent.attempts, 2, "{kind:?}");
        assert_eq!(sent.last_error, None, "{kind:?}");
        assert_eq!(
            sent.smtp_reply.as_deref(),
            Some("250 2.0.0 Ok: queued"),
            "{kind:?}"
        );
        assert!(sent.sent_at.is_some(), "{kind:?}");

        // An expired lease (a worker died mid-send) can be taken over.
        let d = emails::record(&t.db, &new_email("j2", Some("alert-7-level-1")))
            .await
            .unwrap();
        assert!(
            emails::start_attempt(&t.db, d.id, -1).await.unwrap(),
            "{kind:?}"
        );
        assert!(
            emails::start_attempt(&t.db, d.id, 60_000).await.unwrap(),
            "{kind:?}"
        );
        emails::mark_failed(
            &t.db,
            d.id,
            EmailStatus::Dead,
            "550 no such user",
            Some("550 5.1.1 no such user"),
        )
        .await
        .unwrap();
        let other_job = emails::record(&t.db, &new_email("j3", Some("alert-7-level-1")))
            .await
            .unwrap();
        assert_eq!(
            other_job.id, d.id,
            "{kind:?}: the idempotency key dedups across jobs"
        );
        assert_eq!(other_job.status, EmailStatus::Dead, "{kind:?}");
        assert_eq!(
            other_job.smtp_reply.as_deref(),
            Some("550 5.1.1 no such user"),
            "{kind:?}"
        );
        assert!(
            emails::mark_failed(&t.db, d.id, EmailStatus::Sent, "x", None)
                .await
                .is_err()
        );

        let page = emails::list(&t.db, None, 1, 10).await.unwrap();
        assert_eq!(page.total, 2, "{kind:?}");
        assert_eq!(page.items[0].id, d.id, "{kind:?}: newest first");
        let dead = emails::list(&t.db, Some(EmailStatus::Dead), 1, 10)
            .await
            .unwrap();
        assert_eq!((dead.total, dead.items[0].id), (1, d.id), "{kind:?}");
        assert!(
            emails::get(&t.db, 999_999).await.unwrap().is_none(),
            "{kind:?}"
        );
    }
}
