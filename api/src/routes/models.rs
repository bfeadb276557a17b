//! Documented mirrors of vigil-jobs / vigil-queue types (poem-openapi `Enum`s and `Object`s)
//! and their conversions, shared by the route groups.

use chrono::{DateTime, Utc};
use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use poem_openapi::{Enum, Object};
use vigil_jobs::{JobRecord, JobStatus, Queue, QueueCounts};

/// A job queue: one of the registered job kinds' queues (the OpenAPI document lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueName(pub Queue);

impl From<QueueName> for Queue {
    fn from(q: QueueName) -> Queue {
        q.0
    }
}

impl From<Queue> for QueueName {
    fn from(q: Queue) -> QueueName {
        QueueName(q)
    }
}

impl Type for QueueName {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "QueueName".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |_| MetaSchema {
            description: Some("A job queue: one per registered job kind."),
            enum_items: Queue::all()
                .into_iter()
                .map(|q| serde_json::Value::from(q.as_str()))
                .collect(),
            ..MetaSchema::new("string")
        });
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for QueueName {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(s)) => Self::parse_from_parameter(&s),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl ParseFromParameter for QueueName {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        value
            .parse::<Queue>()
            .map(QueueName)
            .map_err(ParseError::custom)
    }
}

impl ToJSON for QueueName {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::from(self.0.as_str()))
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum StatusName {
    Pending,
    Scheduled,
    Running,
    Done,
    Failed,
    Dead,
    Cancelled,
}

impl From<StatusName> for JobStatus {
    fn from(s: StatusName) -> JobStatus {
        match s {
            StatusName::Pending => JobStatus::Pending,
            StatusName::Scheduled => JobStatus::Scheduled,
            StatusName::Running => JobStatus::Running,
            StatusName::Done => JobStatus::Done,
            StatusName::Failed => JobStatus::Failed,
            StatusName::Dead => JobStatus::Dead,
            StatusName::Cancelled => JobStatus::Cancelled,
        }
    }
}

impl From<JobStatus> for StatusName {
    fn from(s: JobStatus) -> StatusName {
        match s {
            JobStatus::Pending => StatusName::Pending,
            JobStatus::Scheduled => StatusName::Scheduled,
            JobStatus::Running => StatusName::Running,
            JobStatus::Done => StatusName::Done,
            JobStatus::Failed => StatusName::Failed,
            JobStatus::Dead => StatusName::Dead,
            JobStatus::Cancelled => StatusName::Cancelled,
        }
    }
}

/// Links to act on a job.
#[derive(Debug, Clone, Object)]
pub struct JobLinks {
    /// This job.
    #[oai(rename = "self")]
    pub self_: String,
    /// `POST` here to retry (dead or failed jobs).
    pub retry: String,
    /// `POST` here to cancel (pending, scheduled or failed jobs).
    pub cancel: String,
}

impl JobLinks {
    pub fn for_id(id: &str) -> Self {
        Self {
            self_: format!("/api/v1/jobs/{id}"),
            retry: format!("/api/v1/jobs/{id}/retry"),
            cancel: format!("/api/v1/jobs/{id}/cancel"),
        }
    }
}

/// One failed attempt.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AttemptErrorView {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When it failed.
    pub at: DateTime<Utc>,
    pub error: String,
    /// When it started (absent for a lease that expired).
    pub started_at: Option<DateTime<Utc>>,
    /// The worker that ran it (`INSTANCE-QUEUE-ULID`).
    pub worker: Option<String>,
}

/// A job and its state.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobView {
    /// ULID.
    pub id: String,
    pub queue: QueueName,
    pub status: StatusName,
    /// The payload as enqueued.
    pub payload: serde_json::Value,
    /// Attempts started so far.
    pub attempts: u32,
    pub max_attempts: u32,
    /// The latest failed attempt's error.
    pub last_error: Option<String>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptErrorView>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the job is (or was) due.
    pub run_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker of the latest attempt (its instance is the part before the queue).
    pub worker: Option<String>,
    /// How long the latest attempt ran (ms), once it ended.
    pub duration_ms: Option<i64>,
    /// What an admin may do with the job now: `retry`, `cancel` (the engine's rule, so
    /// clients and the dashboard need no copy of it).
    pub actions: Vec<String>,
    /// What a long job reported about its progress (on `GET /api/v1/jobs/{id}`): an Okta
    /// backfill's events stored so far and position reached, in total and per org.
    pub progress: Option<serde_json::Value>,
    pub links: JobLinks,
}

impl From<JobRecord> for JobView {
    fn from(j: JobRecord) -> Self {
        JobView {
            duration_ms: duration_ms(&j),
            last_error: j.last_error().map(str::to_owned),
            links: JobLinks::for_id(&j.id),
            actions: [
                ("retry", j.status.is_retryable()),
                ("cancel", j.status.is_cancellable()),
            ]
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(a, _)| a.to_owned())
            .collect(),
            id: j.id,
            queue: j.queue.into(),
            status: j.status.into(),
            payload: j.payload,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            errors: j
                .errors
                .into_iter()
                .map(|e| AttemptErrorView {
                    attempt: e.attempt,
                    at: e.at,
                    error: e.error,
                    started_at: e.started_at,
                    worker: e.worker,
                })
                .collect(),
            idempotency_key: j.idempotency_key,
            created_at: j.created_at,
            run_at: j.run_at,
            worker: j.worker,
            started_at: j.started_at,
            finished_at: j.finished_at,
            progress: None,
        }
    }
}

/// How long the latest attempt ran: to the end of a done job, or to the failure of the
/// latest attempt when it failed.
fn duration_ms(j: &JobRecord) -> Option<i64> {
    let started = j.started_at?;
    let ended = match j.status {
        vigil_jobs::JobStatus::Done => j.finished_at?,
        _ => {
            j.errors
                .last()
                .filter(|e| e.attempt == j.attempts && e.at >= started)?
                .at
        }
    };
    Some((ended - started).num_milliseconds().max(0))
}

/// Jobs of one queue per status.
#[derive(Debug, Clone, Object)]
pub struct CountsView {
    pub pending: u64,
    pub scheduled: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
    pub cancelled: u64,
}

impl From<QueueCounts> for CountsView {
    fn from(c: QueueCounts) -> Self {
        CountsView {
            pending: c.pending,
            scheduled: c.scheduled,
            running: c.running,
            done: c.done,
            failed: c.failed,
            dead: c.dead,
            cancelled: c.cancelled,
        }
    }
}

/// Percent-encodes a query value for the `next`/`previous` links (a filter echoes user
/// input).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Declares a list route's answer: the one list envelope of every list route,
/// `{count, next, previous, results}` (`next`/`previous` are the neighbouring pages' URLs,
/// null when there is none), plus any fields given in braces after the item type. Without
/// extra fields it also gets `whole(results)`, for a list that is always one page.
macro_rules! list_envelope {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $crate::routes::models::list_envelope!($(#[$doc])* $name, $item, {});

        impl $name {
            /// Every item on one page.
            pub fn whole(results: Vec<$item>) -> Self {
                Self {
                    count: results.len() as u64,
                    next: None,
                    previous: None,
                    results,
                }
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $item:ty, { $($(#[$fdoc:meta])* $field:ident : $fty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, poem_openapi::Object)]
        pub struct $name {
            /// Items matching the request, on every page.
            pub count: u64,
            /// The next page's URL; null on the last page.
            pub next: Option<String>,
            /// The previous page's URL; null on the first page.
            pub previous: Option<String>,
            pub results: Vec<$item>,
            $($(#[$fdoc])* pub $field: $fty,)*
        }
    };
}
pub(crate) use list_envelope;

/// A severity, taken as its name (`low`, `medium`, `high`, `critical`, any case) or its
/// number (1 to 4) wherever a request gives one; answers use the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The name, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// 1 (low) to 4 (critical).
    pub fn level(self) -> i64 {
        self as i64
    }

    fn of_level(n: i64) -> Option<Severity> {
        Self::ALL.into_iter().find(|s| s.level() == n)
    }

    fn of_text(s: &str) -> Option<Severity> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .or_else(|| s.parse().ok().and_then(Self::of_level))
    }

    fn refusal(given: impl std::fmt::Display) -> String {
        format!("`{given}` is not a severity; valid: low, medium, high, critical, or 1 to 4")
    }
}

impl Type for Severity {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "Severity".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |_| MetaSchema {
            description: Some(
                "A severity: its name (`low`, `medium`, `high`, `critical`) or its number, \
                 1 (low) to 4 (critical).",
            ),
            one_of: vec![
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    enum_items: Self::ALL
                        .into_iter()
                        .map(|s| serde_json::Value::from(s.as_str()))
                        .collect(),
                    ..MetaSchema::new("string")
                })),
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    minimum: Some(1.0),
                    maximum: Some(4.0),
                    ..MetaSchema::new_with_format("integer", "int64")
                })),
            ],
            ..MetaSchema::ANY
        });
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for Severity {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(s)) => {
                Self::of_text(&s).ok_or_else(|| ParseError::custom(Self::refusal(s)))
            }
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .and_then(Self::of_level)
                .ok_or_else(|| ParseError::custom(Self::refusal(n))),
            other => Err(ParseError::custom(Self::refusal(other.unwrap_or_default()))),
        }
    }
}

impl ParseFromParameter for Severity {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::of_text(value).ok_or_else(|| ParseError::custom(Self::refusal(value)))
    }
}

impl ToJSON for Severity {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::from(self.as_str()))
    }
}

/// A request body's documented example, written as JSON (so it reads like what a client
/// sends). The examples are posted as-is by `api/tests/contract.rs`: a broken one fails there
/// (and here, at startup, so it cannot ship).
pub fn example_of<T: ParseFromJSON>(value: serde_json::Value) -> T {
    match T::parse_from_json(Some(value)) {
        Ok(v) => v,
        Err(e) => panic!(
            "a documented example does not fit its schema: {}",
            e.message()
        ),
    }
}

/// Implements `poem_openapi::types::Example` for `$ty` from a JSON value.
macro_rules! example {
    ($ty:ty, $json:expr) => {
        impl poem_openapi::types::Example for $ty {
            fn example() -> Self {
                $crate::routes::models::example_of($json)
            }
        }
    };
}
pub(crate) use example;
