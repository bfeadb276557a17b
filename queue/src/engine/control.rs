//! Acting on jobs and queues (retry, cancel, pause, resume) and the fleet's health reports.

use std::time::Duration;

use chrono::Utc;
use redis::AsyncCommands;
use vigil_jobs::{JobRecord, JobStatus, Queue};

use super::{Engine, with_keys};
use crate::error::EngineError;
use crate::keys::queue_of_id;
use crate::model::ActorHealth;
use crate::scripts;

impl Engine {
    async fn id_action(
        &self,
        script: &redis::Script,
        id: &str,
        action: &'static str,
        extra: u64,
        allowed: fn(JobStatus) -> bool,
    ) -> Result<JobRecord, EngineError> {
        let queue = queue_of_id(id).ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
        let mut inv = script.prepare_invoke();
        with_keys(&mut inv, &self.keys, queue);
        inv.arg(id).arg(extra).arg(allowed_statuses(allowed));
        let mut c = self.conn.clone();
        let answer: Vec<String> = inv
            .invoke_async(&mut c)
            .await
            .map_err(EngineError::from_write)?;
        match answer.first().map(String::as_str) {
            Some("ok") => self
                .get(id)
                .await?
                .ok_or_else(|| EngineError::NotFound(id.to_owned())),
            Some("invalid") => Err(EngineError::InvalidState {
                id: id.to_owned(),
                status: answer
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(JobStatus::Running),
                action,
            }),
            _ => Err(EngineError::NotFound(id.to_owned())),
        }
    }

    /// A retryable job ([`JobStatus::is_retryable`]: dead or failed) back to pending, with a
    /// fresh set of attempts.
    pub async fn retry(&self, id: &str) -> Result<JobRecord, EngineError> {
        let queue = queue_of_id(id).ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
        let max = self.queues.get(queue).max_attempts.max(1) as u64;
        self.id_action(&scripts::RETRY, id, "retry", max, JobStatus::is_retryable)
            .await
    }

    /// A cancellable job ([`JobStatus::is_cancellable`]: pending, scheduled or failed) to
    /// cancelled.
    pub async fn cancel(&self, id: &str) -> Result<JobRecord, EngineError> {
        let queue = queue_of_id(id).ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
        let ttl = self.ttl_ms(queue, |q| q.retain_cancelled.as_millis());
        self.id_action(
            &scripts::CANCEL,
            id,
            "cancel",
            ttl,
            JobStatus::is_cancellable,
        )
        .await
    }

    /// Stops every instance from leasing jobs of `queue` (running jobs finish).
    pub async fn pause(&self, queue: Queue) -> Result<(), EngineError> {
        let mut c = self.conn.clone();
        let _: () = c
            .set(self.keys.paused(queue), Utc::now().to_rfc3339())
            .await?;
        Ok(())
    }

    pub async fn resume(&self, queue: Queue) -> Result<(), EngineError> {
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.del(self.keys.paused(queue)).ignore();
        pipe.rpush(self.keys.notify(queue), "1").ignore();
        pipe.ltrim(self.keys.notify(queue), 0, 0).ignore();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    pub async fn is_paused(&self, queue: Queue) -> Result<bool, EngineError> {
        let mut c = self.conn.clone();
        Ok(c.exists(self.keys.paused(queue)).await?)
    }

    /// Publishes the health of one instance's actors for `ttl` (expiry by server time).
    pub async fn report_actors(
        &self,
        instance: &str,
        actors: &[ActorHealth],
        ttl: Duration,
    ) -> Result<(), EngineError> {
        let json = serde_json::to_string(actors).map_err(EngineError::Encode)?;
        let mut c = self.conn.clone();
        let _: i64 = scripts::REPORT
            .key(self.keys.actors(instance))
            .key(self.keys.instances())
            .arg(json)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(instance)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// Removes an instance's health report (clean shutdown).
    pub async fn forget_instance(&self, instance: &str) -> Result<(), EngineError> {
        let mut pipe = redis::pipe();
        pipe.del(self.keys.actors(instance)).ignore();
        pipe.zrem(self.keys.instances(), instance).ignore();
        let mut c = self.conn.clone();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// The actors of every live instance.
    pub async fn actors(&self) -> Result<Vec<ActorHealth>, EngineError> {
        let mut c = self.conn.clone();
        let values: Vec<String> = scripts::FLEET
            .key(self.keys.instances())
            .key(self.keys.actors_base())
            .invoke_async(&mut c)
            .await?;
        Ok(values
            .into_iter()
            .filter_map(|v| serde_json::from_str::<Vec<ActorHealth>>(&v).ok())
            .flatten()
            .collect())
    }
}

/// The statuses `allowed` accepts, as the scripts take them (`,a,b,`). The rules live in
/// [`JobStatus`] (`is_retryable`, `is_cancellable`, `is_deletable`); a script only checks a
/// job's status against the list it is given, atomically.
pub(super) fn allowed_statuses(allowed: impl Fn(JobStatus) -> bool) -> String {
    let from: Vec<&str> = JobStatus::ALL
        .into_iter()
        .filter(|s| allowed(*s))
        .map(JobStatus::as_str)
        .collect();
    format!(",{},", from.join(","))
}
