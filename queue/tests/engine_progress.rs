//! A running job's progress: written under the attempt's fencing token, read with the job,
//! kept after the job is done, refused to a worker that lost the job.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use vigil_jobs::{EmailJob, Job as _, OktaFetchJob};
use vigil_queue::{JobStatus, NewJob, Queue};

const Q: Queue = OktaFetchJob::QUEUE;

#[tokio::test]
async fn progress_is_written_under_the_fencing_token_and_outlives_the_run() {
    let t = TestEngine::with("progress", &vigil_testkit::redis::shared_url(), |e, _| {
        e.lease_seconds = 1
    })
    .await;
    let e = &t.engine;
    let id = e
        .enqueue_raw(vec![NewJob::new(Q, json!({}))])
        .await
        .unwrap()[0]
        .job
        .id
        .clone();
    assert_eq!(e.progress(&id).await.unwrap(), None, "none before it runs");
    let stale = e.lease(Q, "worker-a", 1).await.unwrap().jobs.remove(0);
    assert!(
        e.set_progress(Q, &id, &stale.token, &json!({"stored": 10}))
            .await
            .unwrap()
    );
    assert_eq!(e.progress(&id).await.unwrap(), Some(json!({"stored": 10})));

    // The lease expires and another worker takes the job: the first one's writes bounce.
    let fresh = lease_when_available(e, Q, "worker-b", Duration::from_secs(10)).await;
    assert_eq!(fresh.id, id);
    assert_eq!(fresh.attempt, 2, "the lost attempt counted");
    assert!(
        !e.set_progress(Q, &id, &stale.token, &json!({"stored": 99}))
            .await
            .unwrap(),
        "a stale worker cannot write progress"
    );
    assert!(
        !e.set_progress(EmailJob::QUEUE, &id, &fresh.token, &json!({"stored": 99}))
            .await
            .unwrap(),
        "the id's queue must be the one named"
    );
    assert!(
        e.set_progress(Q, &id, &fresh.token, &json!({"stored": 20}))
            .await
            .unwrap()
    );
    assert!(e.complete(&fresh).await.unwrap());
    assert_eq!(e.get(&id).await.unwrap().unwrap().status, JobStatus::Done);
    assert!(
        !e.set_progress(Q, &id, &fresh.token, &json!({"stored": 30}))
            .await
            .unwrap(),
        "nothing is written once the job is done"
    );
    assert_eq!(
        e.progress(&id).await.unwrap(),
        Some(json!({"stored": 20})),
        "the last progress stays readable with the done job"
    );
    assert_eq!(e.progress("not-a-job-id").await.unwrap(), None);
}
