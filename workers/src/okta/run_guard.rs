//! One polling run per org at a time, across every process.
//!
//! A polling job first [claims](RunGuard::claim) the org's run. It is skipped — finished at
//! once, counted in `vigil_okta_runs_skipped_total`, never queued — when another run of the
//! org is going, or when a run started after this job was created (ticks that waited in the
//! queue behind a long run: that run, or the one after it, already read what they would).
//! So ticks that fire during a long run collapse into at most one follow-up run.
//!
//! With Redis the claim is `<prefix>:okta:{<org>}:run` (a token, set only when absent, with a
//! lease renewed while the run lasts, so a crashed run frees the org within the lease) and
//! `...:run_started` (when the last run started). Without Redis it lives in the process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_queue::RedisConn;

/// How long a claim outlives its last renewal (a crashed process frees the org after this).
const LEASE: Duration = Duration::from_secs(30);

/// Claims when free and not superseded. KEYS = run, run_started; ARGV = token, lease ms,
/// job created ms. Returns 1 (claimed), 0 (a run is going), -1 (superseded).
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local started = tonumber(redis.call('GET', KEYS[2]) or '0')
if started > tonumber(ARGV[3]) then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], now, 'PX', 86400000)
return 1
";

/// Renews (ARGV[2] = lease ms) or, with ARGV[2] = 0, releases the claim held by ARGV[1].
const RENEW_OR_RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
";

/// Why a polling job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Another run of the org is going.
    Running,
    /// A run started after this job was created.
    Superseded,
}

/// The org's run claim.
#[derive(Clone)]
pub enum RunGuard {
    /// In this process: (running, when the last run started in ms).
    Local(Arc<Mutex<(bool, i64)>>),
    /// In Redis, for every process.
    Redis { conn: RedisConn, key: String },
}

impl std::fmt::Debug for RunGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunGuard::Local(_) => f.write_str("RunGuard::Local"),
            RunGuard::Redis { key, .. } => write!(f, "RunGuard::Redis({key})"),
        }
    }
}

/// A claimed run; release it with [`Claim::release`] (a dropped claim expires by its lease).
pub struct Claim {
    guard: RunGuard,
    token: String,
    renew: Option<tokio::task::JoinHandle<()>>,
}

impl RunGuard {
    /// A guard private to this process.
    pub fn local() -> RunGuard {
        RunGuard::Local(Arc::new(Mutex::new((false, 0))))
    }

    /// A guard shared through Redis under `prefix` for the org `org`.
    pub fn redis(conn: RedisConn, prefix: &str, org: &str) -> RunGuard {
        RunGuard::Redis {
            conn,
            key: format!("{prefix}:okta:{{{org}}}:run"),
        }
    }

    /// Claims the org's run for a job created at `created_ms` (epoch ms; `None` when
    /// unknown: then only a run going now makes it skip).
    pub async fn claim(&self, created_ms: Option<i64>) -> Result<Claim, Skip> {
        let created_ms = created_ms.unwrap_or(i64::MAX);
        let token = uuid::Uuid::new_v4().simple().to_string();
        match self {
            RunGuard::Local(state) => {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if s.0 {
                    return Err(Skip::Running);
                }
                if s.1 > created_ms {
                    return Err(Skip::Superseded);
                }
                *s = (true, chrono::Utc::now().timestamp_millis());
            }
            RunGuard::Redis { conn, key } => {
                let mut c = conn.clone();
                let r: redis::RedisResult<i64> = redis::Script::new(CLAIM)
                    .key(key.as_str())
                    .key(format!("{key}_started"))
                    .arg(&token)
                    .arg(LEASE.as_millis() as u64)
                    .arg(created_ms)
                    .invoke_async(&mut c)
                    .await;
                match r {
                    Ok(1) => {}
                    Ok(0) => return Err(Skip::Running),
                    Ok(_) => return Err(Skip::Superseded),
                    Err(e) => {
                        // Without Redis there is no queue either; run rather than stall.
                        tracing::warn!(error = %e, "cannot claim the Okta run (Redis); running anyway");
                    }
                }
            }
        }
        let renew = match self {
            RunGuard::Local(_) => None,
            RunGuard::Redis { conn, key } => {
                let (mut c, key, token) = (conn.clone(), key.clone(), token.clone());
                Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(LEASE / 3).await;
                        let _: redis::RedisResult<i64> = redis::Script::new(RENEW_OR_RELEASE)
                            .key(key.as_str())
                            .arg(&token)
                            .arg(LEASE.as_millis() as u64)
                            .invoke_async(&mut c)
                            .await;
                    }
                }))
            }
        };
        Ok(Claim {
            guard: self.clone(),
            token,
            renew,
        })
    }
}

impl Claim {
    /// Frees the org for the next run.
    pub async fn release(mut self) {
        if let Some(r) = self.renew.take() {
            r.abort();
        }
        match &self.guard {
            RunGuard::Local(state) => state.lock().unwrap_or_else(|p| p.into_inner()).0 = false,
            RunGuard::Redis { conn, key } => {
                let mut c = conn.clone();
                let r: redis::RedisResult<i64> = redis::Script::new(RENEW_OR_RELEASE)
                    .key(key.as_str())
                    .arg(&self.token)
                    .arg(0)
                    .invoke_async(&mut c)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot release the Okta run claim; it expires with its lease");
                }
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(r) = self.renew.take() {
            r.abort();
        }
        if let RunGuard::Local(state) = &self.guard {
            state.lock().unwrap_or_else(|p| p.into_inner()).0 = false;
        }
    }
}

/// When the job `job_id` (`<queue>-<ULID>`) was created, in epoch ms.
pub fn created_ms(job_id: &str) -> Option<i64> {
    job_id
        .rsplit_once('-')
        .and_then(|(_, u)| ulid::Ulid::from_string(u).ok())
        .and_then(|u| i64::try_from(u.timestamp_ms()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_run_is_skipped_and_queued_ticks_collapse() {
        let g = RunGuard::local();
        let now = chrono::Utc::now().timestamp_millis();
        let first = g.claim(Some(now - 10)).await.unwrap();
        assert_eq!(g.claim(Some(now)).await.err(), Some(Skip::Running));
        assert_eq!(g.claim(None).await.err(), Some(Skip::Running));
        first.release().await;
        // A tick created before the last run started was covered by it.
        assert_eq!(g.claim(Some(now - 20)).await.err(), Some(Skip::Superseded));
        // A tick created after it runs, and so does a job of unknown age.
        let later = chrono::Utc::now().timestamp_millis() + 5;
        g.claim(Some(later)).await.unwrap().release().await;
        assert!(g.claim(None).await.is_ok());
        let id = format!(
            "okta_fetch-{}",
            ulid::Ulid::from_parts(1_700_000_000_123, 42)
        );
        assert_eq!(created_ms(&id), Some(1_700_000_000_123));
        assert_eq!(created_ms("not-a-job-id"), None);
    }
}
