//! A running job's progress (a long backfill's events stored so far and position), written
//! by the worker that holds it and read with the job.
//!
//! `P:{q}:progress:<id>` is a JSON string beside the job (same queue hash tag, so one
//! Cluster slot). [`Engine::set_progress`] writes it in one script that checks the job's
//! fencing token first: a worker whose lease was lost cannot overwrite the progress of the
//! attempt that replaced it. The key expires with the job's longest retention (done or
//! dead), so it outlives the job's hash but never its record.

use std::sync::LazyLock;

use redis::Script;
use vigil_jobs::Queue;

use super::Engine;
use crate::error::EngineError;
use crate::keys::queue_of_id;
use crate::settings::QueueSettings;

/// KEYS[1] the job hash, KEYS[2] its progress key; ARGV[1] fencing token, ARGV[2] JSON,
/// ARGV[3] ttl ms. Returns 1 (written) or 0 (the job is not running under this token).
static SET_PROGRESS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'status', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"#,
    )
});

impl Engine {
    /// The progress key of job `id` (`None` for an id of no queue).
    fn progress_key(&self, id: &str) -> Option<String> {
        queue_of_id(id).map(|q| format!("{}:{{{q}}}:progress:{id}", self.keys.prefix()))
    }

    /// Records `progress` on running job `id` of `queue` held under `token`. `Ok(false)`
    /// when the job is not running under that token any more (fenced: nothing written).
    pub async fn set_progress(
        &self,
        queue: Queue,
        id: &str,
        token: &str,
        progress: &serde_json::Value,
    ) -> Result<bool, EngineError> {
        let (Some(job), Some(key)) = (self.keys.job(id), self.progress_key(id)) else {
            return Ok(false);
        };
        if queue_of_id(id) != Some(queue) {
            return Ok(false);
        }
        let ttl = self.ttl_ms(queue, |s: &QueueSettings| {
            s.retain_done.as_millis().max(s.retain_dead.as_millis())
        });
        let mut c = self.conn.clone();
        let written: i64 = SET_PROGRESS
            .key(job)
            .key(key)
            .arg(token)
            .arg(progress.to_string())
            .arg(ttl)
            .invoke_async(&mut c)
            .await?;
        Ok(written == 1)
    }

    /// The last progress recorded on job `id`, if any.
    pub async fn progress(&self, id: &str) -> Result<Option<serde_json::Value>, EngineError> {
        let Some(key) = self.progress_key(id) else {
            return Ok(None);
        };
        let mut c = self.conn.clone();
        let raw: Option<String> = redis::cmd("GET").arg(key).query_async(&mut c).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }
}
