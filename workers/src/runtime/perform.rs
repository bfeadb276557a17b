//! Typed handlers. A job kind runs through [`Perform`]: what the handler needs (its
//! dependencies) is a type the application provides once, and decoding the payload (a bad one
//! is a permanent failure) happens here for every kind, not in each handler.
//!
//! [`Registrar`] is what the application's one registration point (`src/jobs.rs`) fills:
//! `r.job::<EmailJob>()` (or `r.batch_job::<AuditJob>()` for a [`PerformBatch`] kind) registers the kind process-wide and, when this process was given the
//! kind's dependencies ([`Registrar::provide`]), consumes its queue.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use vigil_jobs::{Job, Queue};

use crate::JobError;
use crate::runtime::{Handler, JobContext, PerformBatch, batch};

/// How a job kind runs.
pub trait Perform: Job {
    /// What the handler needs (the mailer, the audit writer, ...), shared by every job.
    type Deps: Send + Sync + 'static;

    /// Runs one attempt of this job. Must be idempotent: a job can run more than once.
    fn perform(
        self,
        ctx: JobContext,
        deps: Arc<Self::Deps>,
    ) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// The payload-agnostic [`Handler`] of `J`: decodes and validates the payload, then performs.
pub fn handler<J: Perform>(deps: Arc<J::Deps>) -> Handler {
    Arc::new(move |ctx: JobContext, payload: serde_json::Value| {
        let deps = deps.clone();
        Box::pin(async move {
            let job = J::decode(payload)
                .map_err(|e| JobError::Permanent(format!("invalid {} job: {e}", J::QUEUE)))?;
            job.perform(ctx, deps).await
        })
    })
}

/// Collects the application's job kinds and, for those whose dependencies this process has,
/// their handlers.
#[derive(Default)]
pub struct Registrar {
    deps: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    handlers: Vec<(Queue, Handler)>,
    kinds: Vec<Queue>,
}

impl Registrar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the handlers a dependency (one value per type).
    pub fn provide<T: Send + Sync + 'static>(&mut self, deps: T) -> &mut Self {
        self.deps.insert(TypeId::of::<T>(), Arc::new(deps));
        self
    }

    /// Registers the kind `J`; consumes its queue here when `J::Deps` was provided.
    pub fn job<J: Perform>(&mut self) -> &mut Self {
        self.kind::<J, J::Deps>(handler::<J>)
    }

    /// Registers the batch kind `J` ([`PerformBatch`]); consumes its queue here when
    /// `J::Deps` was provided.
    pub fn batch_job<J: PerformBatch>(&mut self) -> &mut Self {
        self.kind::<J, J::Deps>(batch::handler::<J>)
    }

    /// Registers `J` process-wide and, when a `D` was provided, its handler made by `make`.
    fn kind<J: Job, D: Send + Sync + 'static>(&mut self, make: fn(Arc<D>) -> Handler) -> &mut Self {
        vigil_jobs::register::<J>();
        self.kinds.push(J::QUEUE);
        let deps = self
            .deps
            .get(&TypeId::of::<D>())
            .cloned()
            .and_then(|d| d.downcast::<D>().ok());
        if let Some(deps) = deps {
            self.handlers.retain(|(q, _)| *q != J::QUEUE);
            self.handlers.push((J::QUEUE, make(deps)));
        }
        self
    }

    /// Every registered kind's queue, in registration order.
    pub fn kinds(&self) -> &[Queue] {
        &self.kinds
    }

    /// The queues this process consumes (their dependencies were provided).
    pub fn served(&self) -> Vec<Queue> {
        self.handlers.iter().map(|(q, _)| *q).collect()
    }

    /// The handlers, one per served queue.
    pub fn into_handlers(self) -> Vec<(Queue, Handler)> {
        self.handlers
    }
}
