//! The live view behind `GET /api/v1/stream` (server-sent events), so a dashboard tab holds
//! one connection instead of polling.
//!
//! One task per process (started by [`LiveHub`], its loop in `routes::stream`) reads every section — queue counts, instances, the
//! newest alerts, schedules — once per [`LIVE_EVERY`] while at least one stream is open (and
//! stops when the last one closes), and publishes the snapshot on a `watch` channel. Each
//! stream sends a section when its value differs from what that stream last sent, so the cost
//! of the reads does not grow with the number of tabs, and a tab gets each change within about
//! a second however many jobs a second the engine runs (a burst is one `queues` event).
//! `jobs` is a change signal: it moves whenever a queue's per-status counts change (every job
//! transition changes them), and tells the page to reload the job list it shows.
//!
//! A stream ends after [`STREAM_LIFETIME`] (the client reconnects, with a fresh token: a
//! revoked session or an expired token is refused then) and when the server shuts down, so
//! open dashboards never hold up a graceful shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use poem_openapi::{Enum, Object};
use serde_json::Value;
use tokio::sync::watch;

/// How often the hub reads the sections while a stream is open.
pub const LIVE_EVERY: Duration = Duration::from_secs(1);
/// How long one stream lasts before the client must reconnect.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(120);
/// How many of the newest alerts the `alerts` section carries.
pub const LIVE_ALERTS: u32 = 20;

/// A part of the live view; the SSE event type of its updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "snake_case")]
pub enum LiveSection {
    /// Every queue at a glance, as `GET /api/v1/queues`'s `results`.
    Queues,
    /// `{"changed_at"}`: job counts changed; reload the job list shown.
    Jobs,
    /// The newest alerts, as `GET /api/v1/alerts?page=1&page_size=20`.
    Alerts,
    /// The fleet, as `GET /api/v1/instances`'s `results`.
    Instances,
    /// The schedules, as `GET /api/v1/schedules`'s `results`.
    Schedules,
}

/// One update of the stream: a section's new value (also the SSE event type).
#[derive(Debug, Clone, Object)]
pub struct LiveEvent {
    pub section: LiveSection,
    /// The section's value, shaped as the route it mirrors.
    pub data: Value,
}

/// The sections' latest values.
type Snapshot = Arc<HashMap<LiveSection, Value>>;

/// The sections' values, as a reader builds them.
pub type Sections = HashMap<LiveSection, Value>;

/// The per-process publisher of the live view (see the module doc).
pub struct LiveHub {
    tx: watch::Sender<Snapshot>,
    /// True while the reading task runs; changed only under this lock, with the receiver
    /// count checked under it too, so a new stream never finds a task about to stop.
    running: Mutex<bool>,
    closed: watch::Sender<bool>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self {
            tx: watch::Sender::new(Arc::default()),
            running: Mutex::new(false),
            closed: watch::Sender::new(false),
        }
    }
}

impl LiveHub {
    /// Ends every open stream and refuses new ones (the server is shutting down).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// A new stream of live events for one client. When no reader runs, `start` is called
    /// to start one (it reads the sections, [`publish`](Self::publish)es them, and stops
    /// when [`stop_if_idle`](Self::stop_if_idle) says so: `routes::stream` has it).
    pub fn subscribe(&self, start: impl FnOnce()) -> BoxStream<'static, LiveEvent> {
        let mut rx = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let rx = self.tx.subscribe();
            if !*running {
                *running = true;
                start();
            }
            rx
        };
        // The current snapshot goes out at once.
        rx.mark_changed();
        let stream = Stream {
            rx,
            closed: self.closed.subscribe(),
            sent: HashMap::new(),
            queue: Vec::new(),
            until: tokio::time::Instant::now() + STREAM_LIFETIME,
        };
        Box::pin(futures::stream::unfold(stream, Stream::next))
    }

    /// The sections as last published.
    pub fn sections(&self) -> Sections {
        (**self.tx.borrow()).clone()
    }

    /// Publishes the sections read (streams see a change only when one differs).
    pub fn publish(&self, next: Sections) {
        self.tx.send_if_modified(|current| {
            if **current == next {
                return false;
            }
            *current = Arc::new(next);
            true
        });
    }

    /// True (and the reader must stop) when no stream is open (under the lock, see `running`).
    pub fn stop_if_idle(&self) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if self.tx.receiver_count() == 0 {
            *running = false;
            return true;
        }
        false
    }
}

/// One client's stream: what it last sent per section.
struct Stream {
    rx: watch::Receiver<Snapshot>,
    closed: watch::Receiver<bool>,
    sent: HashMap<LiveSection, Value>,
    /// Updates found but not yet sent.
    queue: Vec<LiveEvent>,
    until: tokio::time::Instant,
}

impl Stream {
    async fn next(mut self) -> Option<(LiveEvent, Stream)> {
        loop {
            if *self.closed.borrow() {
                return None;
            }
            if let Some(event) = self.queue.pop() {
                return Some((event, self));
            }
            tokio::select! {
                changed = self.rx.changed() => changed.ok()?,
                _ = self.closed.changed() => return None,
                () = tokio::time::sleep_until(self.until) => return None,
            }
            let snapshot = self.rx.borrow_and_update().clone();
            // Popped from the end: pushed in reverse so sections go out in a stable order.
            for section in [
                LiveSection::Schedules,
                LiveSection::Instances,
                LiveSection::Alerts,
                LiveSection::Jobs,
                LiveSection::Queues,
            ] {
                let Some(value) = snapshot.get(&section) else {
                    continue;
                };
                if self.sent.get(&section) != Some(value) {
                    self.sent.insert(section, value.clone());
                    self.queue.push(LiveEvent {
                        section,
                        data: value.clone(),
                    });
                }
            }
        }
    }
}
