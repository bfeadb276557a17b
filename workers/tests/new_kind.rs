//! A job kind that vigil does not ship, declared the way ARCHITECTURE.md's walkthrough says:
//! one file holds the payload, its `Job` declaration and its `Perform` handler, and one line
//! registers it. The test proves that is all it takes: config sections resolve onto the kind's
//! defaults, the engine validates its payloads, lists and counts its queue, and the runtime
//! runs and retries its jobs, with no other file naming it.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cleanup, eventually, system};
use prometheus::Registry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_jobs::{
    DefaultSchedule, Job, JobStatus, Queue, QueueSettings, Validate, ValidationError,
};
use vigil_queue::{EngineError, NewJob, QueuesSettings, SchedulesSettings};
use vigil_workers::JobError;
use vigil_workers::runtime::{JobContext, Perform, Runtime};

// ---- the one file of a new kind ------------------------------------------------------------

/// Post a chat message (here: remember it); `fail_first` fails the first attempt.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatJob {
    text: String,
    #[serde(default)]
    fail_first: bool,
}

impl Validate for ChatJob {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.text.is_empty() || self.text.len() > 200 {
            return Err(ValidationError::new("text", "must be 1 to 200 characters"));
        }
        Ok(())
    }
}

impl Job for ChatJob {
    const QUEUE: Queue = Queue::new("chat_test");

    fn settings() -> QueueSettings {
        QueueSettings {
            max_attempts: 3,
            concurrency: 2,
            backoff_base_ms: 50,
            backoff_max_ms: 100,
            ..QueueSettings::default()
        }
    }

    fn schedules() -> Vec<DefaultSchedule> {
        vec![DefaultSchedule::new("chat_test", "0 0 * * * *")]
    }

    fn example() -> serde_json::Value {
        json!({"text": "hello"})
    }
}

/// What the handler needs: where messages go.
#[derive(Default, Clone)]
struct ChatRoom {
    posted: Arc<Mutex<Vec<(String, u32)>>>,
}

impl Perform for ChatJob {
    type Deps = ChatRoom;

    async fn perform(self, ctx: JobContext, room: Arc<ChatRoom>) -> Result<(), JobError> {
        if self.fail_first && ctx.attempt == 1 {
            return Err(JobError::Retryable("chat service busy".into()));
        }
        room.posted.lock().unwrap().push((self.text, ctx.attempt));
        Ok(())
    }
}

// ---- the tests -----------------------------------------------------------------------------

#[test]
fn a_kind_declared_in_one_file_is_configured_validated_listed_and_run() {
    // The registration line (the application's is in src/jobs.rs).
    vigil_jobs::register::<ChatJob>();

    // `[queues.chat_test]` overrides one field; the others are the kind's defaults.
    let queues: QueuesSettings =
        serde_json::from_value(json!({"chat_test": {"concurrency": 5}})).unwrap();
    let s = queues.get(ChatJob::QUEUE);
    assert_eq!((s.concurrency, s.max_attempts), (5, 3));
    let err = serde_json::from_value::<QueuesSettings>(json!({"chat_test": {"concurency": 5}}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("queues.chat_test") && err.contains("concurency"),
        "{err}"
    );
    // Its default schedule is listed under its queue's name.
    assert_eq!(
        SchedulesSettings::default().0["chat_test"].cron,
        "0 0 * * * *"
    );
    assert_eq!("chat_test".parse::<Queue>().unwrap(), ChatJob::QUEUE);

    system(async {
        let prefix = vigil_testkit::redis::unique_prefix("new-kind");
        let e = common::engine(&prefix, |_, _| {}).await;
        // The engine validates the kind's payloads.
        let bad = e
            .enqueue(NewJob::new(ChatJob::QUEUE, json!({"text": ""})))
            .await
            .unwrap_err();
        assert!(
            matches!(&bad, EngineError::Invalid(v) if v.field == "text"),
            "{bad:?}"
        );
        let room = ChatRoom::default();
        let registry = Registry::new();
        let rt = Runtime::builder(e.clone(), SchedulesSettings(BTreeMap::new()), &registry)
            .job::<ChatJob>(room.clone())
            .start()
            .expect("runtime starts");
        let a = e
            .enqueue(NewJob::new(ChatJob::QUEUE, json!({"text": "one"})))
            .await
            .unwrap();
        let b = e
            .enqueue(NewJob::new(
                ChatJob::QUEUE,
                json!({"text": "two", "fail_first": true}),
            ))
            .await
            .unwrap();
        eventually(Duration::from_secs(30), "both chat jobs done", || async {
            let mut done = true;
            for id in [&a.job.id, &b.job.id] {
                done &= e.get(id).await.unwrap().map(|j| j.status) == Some(JobStatus::Done);
            }
            done
        })
        .await;
        let retried = e.get(&b.job.id).await.unwrap().unwrap();
        assert_eq!(
            retried.attempts, 2,
            "the first attempt failed and was retried"
        );
        let mut posted = room.posted.lock().unwrap().clone();
        posted.sort();
        assert_eq!(posted, [("one".to_owned(), 1), ("two".to_owned(), 2)]);
        // The queue is listed and counted like the built-in ones.
        let stats = e.stats().await.unwrap();
        let chat = stats
            .iter()
            .find(|s| s.queue == ChatJob::QUEUE)
            .expect("listed");
        assert_eq!(chat.counts.done, 2);
        rt.shutdown().await;
        cleanup(&e).await;
    });
}
