//! Delete, bulk actions and search against a real Redis: counts stay exact, a filtered run
//! walks in bounded slices resumed by its cursor, and searches find jobs by payload or error
//! text, newest created first.

mod common;

use chrono::Utc;
use common::*;
use serde_json::json;
use vigil_jobs::{AlertEscalationJob, AuditJob, Job as _};
use vigil_queue::{
    BulkAction, BulkCursor, BulkFilter, EngineError, JobMatch, JobSearch, JobStatus, NewJob, Queue,
};

const Q: Queue = AuditJob::QUEUE;
const OTHER: Queue = AlertEscalationJob::QUEUE;

async fn enqueue(t: &TestEngine, queue: Queue, payloads: Vec<serde_json::Value>) -> Vec<String> {
    t.engine
        .enqueue_raw(
            payloads
                .into_iter()
                .map(|p| NewJob::new(queue, p))
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect()
}

/// Leases every pending job of `queue` and fails each for good with `error(i)`.
async fn kill_all(t: &TestEngine, queue: Queue, error: impl Fn(&str) -> String) {
    loop {
        let jobs = t.engine.lease(queue, "w", 100).await.unwrap().jobs;
        if jobs.is_empty() {
            return;
        }
        for job in jobs {
            let payload = job.payload.to_string();
            t.engine.fail(&job, &error(&payload), true).await.unwrap();
        }
    }
}

#[tokio::test]
async fn delete_takes_a_job_out_of_every_structure_and_counts_stay_exact() {
    let t = TestEngine::new("delete").await;
    let e = &t.engine;
    let ids = enqueue(&t, Q, (0..3).map(|i| json!({"i": i})).collect()).await;
    let later = e
        .enqueue_raw(vec![NewJob {
            run_at: Some(Utc::now() + chrono::Duration::hours(1)),
            ..NewJob::new(Q, json!({"later": true}))
        }])
        .await
        .unwrap()
        .remove(0)
        .job
        .id;
    // Pending and scheduled jobs go.
    assert_eq!(e.delete(&ids[0]).await.unwrap(), JobStatus::Pending);
    assert_eq!(e.delete(&later).await.unwrap(), JobStatus::Scheduled);
    assert!(e.get(&ids[0]).await.unwrap().is_none());
    let c = e.counts(Q).await.unwrap();
    assert_eq!((c.pending, c.scheduled), (2, 0));
    // A deleted pending job is never leased; a running one cannot be deleted.
    let leased = e.lease(Q, "w", 10).await.unwrap().jobs;
    assert_eq!(leased.len(), 2);
    assert!(leased.iter().all(|j| j.id != ids[0]));
    assert!(matches!(
        e.delete(&leased[0].id).await,
        Err(EngineError::InvalidState {
            status: JobStatus::Running,
            ..
        })
    ));
    // A done job (kept as a compact record) and a dead one go too.
    assert!(e.complete(&leased[0]).await.unwrap());
    e.fail(&leased[1], "boom", true).await.unwrap();
    assert_eq!(e.delete(&leased[0].id).await.unwrap(), JobStatus::Done);
    assert_eq!(e.delete(&leased[1].id).await.unwrap(), JobStatus::Dead);
    assert_eq!(e.counts(Q).await.unwrap(), Default::default());
    assert!(e.get(&leased[0].id).await.unwrap().is_none());
    assert!(matches!(
        e.delete(&leased[0].id).await,
        Err(EngineError::NotFound(_))
    ));
    assert!(matches!(
        e.delete("nope").await,
        Err(EngineError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_filtered_bulk_retry_walks_in_bounded_slices_resumed_by_its_cursor() {
    let t = TestEngine::new("bulk-retry").await;
    let e = &t.engine;
    enqueue(&t, Q, (0..25).map(|i| json!({"i": i})).collect()).await;
    enqueue(&t, OTHER, (0..3).map(|i| json!({"o": i})).collect()).await;
    kill_all(&t, Q, |_| "smtp 554".to_owned()).await;
    kill_all(&t, OTHER, |_| "smtp 554".to_owned()).await;
    assert_eq!(e.counts(Q).await.unwrap().dead, 25);

    let filter = BulkFilter {
        queue: Some(Q),
        status: Some(JobStatus::Dead),
        matches: None,
    };
    let mut cursor = None;
    let mut calls = 0;
    let mut retried = 0;
    loop {
        let out = e
            .bulk_filter(BulkAction::Retry, &filter, cursor, 10)
            .await
            .unwrap();
        calls += 1;
        assert!(out.affected + out.skipped <= 10, "bounded: {out:?}");
        retried += out.affected;
        let Some(next) = out.next else { break };
        // The cursor survives the round trip through a client.
        cursor = Some(BulkCursor::parse(&next.to_string()).unwrap());
        assert!(calls < 10, "the run ends");
    }
    assert_eq!(retried, 25);
    assert!(calls >= 3);
    let c = e.counts(Q).await.unwrap();
    assert_eq!((c.dead, c.pending), (0, 25));
    assert_eq!(
        e.counts(OTHER).await.unwrap().dead,
        3,
        "other queues untouched"
    );
    assert!(BulkCursor::parse("garbage").is_none());
    assert!(BulkCursor::parse("1.99.0.0.x").is_none());
}

#[tokio::test]
async fn bulk_actions_by_ids_and_by_text_skip_what_they_do_not_apply_to() {
    let t = TestEngine::new("bulk-text").await;
    let e = &t.engine;
    let ids = enqueue(
        &t,
        Q,
        (0..6)
            .map(
                |i| json!({"to": if i % 2 == 0 { "alice@example.com" } else { "bob@example.com" }}),
            )
            .collect(),
    )
    .await;
    kill_all(&t, Q, |p| {
        if p.contains("alice") {
            "connection timeout".to_owned()
        } else {
            "554 refused".to_owned()
        }
    })
    .await;
    // By text in the error: the three timeouts are deleted, the others are skipped.
    let out = e
        .bulk_filter(
            BulkAction::Delete,
            &BulkFilter {
                queue: Some(Q),
                status: None,
                matches: Some(JobMatch {
                    text: Some("TIMEOUT".into()),
                    ..Default::default()
                }),
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!((out.affected, out.skipped, out.next), (3, 3, None));
    assert_eq!(e.counts(Q).await.unwrap().dead, 3);
    // By ids: a dead job is retried, a retried (pending) one and an unknown id are skipped.
    let left: Vec<String> = ids[1..].iter().step_by(2).cloned().collect();
    let out = e
        .bulk_ids(
            BulkAction::Retry,
            &[
                left[0].clone(),
                left[0].clone(),
                "audit-01JUNKUNKNOWNULID000000000".into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!((out.affected, out.skipped), (1, 2));
    // Cancel by ids takes the pending one.
    let out = e.bulk_ids(BulkAction::Cancel, &left).await.unwrap();
    assert_eq!((out.affected, out.skipped), (1, 2));
}

#[tokio::test]
async fn search_finds_jobs_by_payload_and_error_text_newest_created_first() {
    let t = TestEngine::new("search").await;
    let e = &t.engine;
    let mut ids = Vec::new();
    for i in 0..5 {
        let to = if i % 2 == 0 {
            "carol@example.com"
        } else {
            "dave@example.com"
        };
        ids.extend(enqueue(&t, Q, vec![json!({"to": to, "n": i})]).await);
        // Distinct creation milliseconds, for the time range below.
        let created = vigil_queue::created_of(ids.last().unwrap()).unwrap();
        while Utc::now().timestamp_millis() <= created.timestamp_millis() {
            tokio::task::yield_now().await;
        }
    }
    // The oldest job fails (its ledger time is now the newest); order stays by creation.
    let first = e.lease(Q, "w", 1).await.unwrap().jobs.remove(0);
    assert_eq!(first.id, ids[0]);
    e.fail(&first, "mailbox FULL for carol", true)
        .await
        .unwrap();
    let search = |text: Option<&str>| JobSearch {
        queue: None,
        status: None,
        matches: JobMatch {
            text: text.map(str::to_owned),
            ..Default::default()
        },
        page: 1,
        page_size: 50,
    };
    let all = e.search(&search(None)).await.unwrap();
    let order: Vec<&str> = all.page.jobs.iter().map(|j| j.id.as_str()).collect();
    let mut newest_first: Vec<&str> = ids.iter().map(String::as_str).collect();
    newest_first.reverse();
    assert_eq!(order, newest_first);
    assert_eq!(all.page.total, 5);

    let carol = e.search(&search(Some("carol"))).await.unwrap();
    assert_eq!(carol.page.total, 3);
    assert!(!carol.truncated);
    assert_eq!(carol.page.jobs.last().unwrap().id, ids[0]);
    let full = e.search(&search(Some("mailbox full"))).await.unwrap();
    assert_eq!(full.page.jobs.len(), 1);
    assert_eq!(full.page.jobs[0].id, ids[0]);
    let by_id = e.search(&search(Some(&ids[3]))).await.unwrap();
    assert_eq!(by_id.page.jobs.len(), 1);

    // Creation time range: from the third job on.
    let after = vigil_queue::created_of(&ids[2]).unwrap();
    let mut s = search(None);
    s.matches.created_after = Some(after);
    let recent = e.search(&s).await.unwrap();
    assert_eq!(recent.page.total, 3);
    s.matches.created_after = None;
    s.matches.created_before = Some(after);
    assert_eq!(e.search(&s).await.unwrap().page.total, 2);
    // Pages.
    let mut s = search(None);
    s.page_size = 2;
    s.page = 3;
    let last = e.search(&s).await.unwrap();
    assert_eq!(last.page.total, 5);
    assert_eq!(last.page.jobs.len(), 1);
    assert_eq!(last.page.jobs[0].id, ids[0]);
}
