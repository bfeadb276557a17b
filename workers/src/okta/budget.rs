//! The org's rate-limit budget, per Okta endpoint, shared by every vigil process.
//!
//! Okta counts requests per org and endpoint (`/api/v1/logs`, `/oauth2/v1/token`) in
//! windows that end at `X-Rate-Limit-Reset` (UTC epoch seconds) and reports what is left in
//! `X-Rate-Limit-Remaining`. Every response is [recorded](Budget::record) — the lowest
//! `remaining` of a window wins, since other processes may have spent more — and every
//! request first [takes](Budget::take) one unit: when the window's remaining is down to the
//! reserve, the caller is told how long to wait for the reset instead of sending a request
//! Okta would answer 429. A 429 records `remaining = 0` until its reset.
//!
//! With Redis ([`Budget::redis`]), the state is one hash per org and endpoint,
//! `<prefix>:okta:{<org host>}:rate:<endpoint>`, read and written by Lua scripts on Redis'
//! clock, so the API, workers and `vigil okta backfill` processes of one deployment share
//! it. Without Redis ([`Budget::local`], tests and tools) it lives in the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use vigil_queue::RedisConn;

/// Added to Okta's reset time before a new window is assumed (clock skew, rounding).
const RESET_MARGIN_MS: i64 = 250;

/// Takes one unit, or returns the milliseconds until the window resets.
/// KEYS[1] = state; ARGV[1] = reserve percent.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'limit', 'remaining', 'reset')
local limit, remaining, reset = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
if reset == nil or remaining == nil or now >= reset then
  return 0
end
local reserve = math.ceil((limit or 0) * tonumber(ARGV[1]) / 100)
if remaining > reserve then
  redis.call('HSET', KEYS[1], 'remaining', remaining - 1)
  return 0
end
return reset - now
";

/// Records a response's headers. KEYS[1] = state; ARGV = limit, remaining, reset (ms).
const RECORD: &str = r"
local limit, remaining, reset = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'remaining', 'reset')
local cur_remaining, cur_reset = tonumber(s[1]), tonumber(s[2])
if cur_reset ~= nil and cur_reset > reset then
  return 0
end
if cur_reset == reset and cur_remaining ~= nil and cur_remaining < remaining then
  remaining = cur_remaining
end
redis.call('HSET', KEYS[1], 'limit', limit, 'remaining', remaining, 'reset', reset)
redis.call('PEXPIREAT', KEYS[1], reset + 60000)
return 1
";

/// An Okta endpoint with its own rate-limit bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /api/v1/logs`.
    Logs,
    /// `POST /oauth2/v1/token`.
    Token,
}

impl Endpoint {
    /// The metric label and key suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Logs => "logs",
            Endpoint::Token => "token",
        }
    }
}

/// One window's state.
#[derive(Debug, Clone, Copy)]
struct Window {
    limit: i64,
    remaining: i64,
    reset_ms: i64,
}

/// The budget of one org (see the module doc).
pub struct Budget(Store);

/// Where the budget lives.
enum Store {
    /// In this process only.
    Local(Mutex<HashMap<Endpoint, Window>>),
    /// In Redis, shared by every process of the deployment.
    Redis {
        conn: RedisConn,
        /// `<prefix>:okta:{<org>}:rate:`.
        key_base: String,
    },
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Store::Local(_) => f.write_str("Budget::Local"),
            Store::Redis { key_base, .. } => write!(f, "Budget::Redis({key_base})"),
        }
    }
}

impl Budget {
    /// A budget private to this process.
    pub fn local() -> Budget {
        Budget(Store::Local(Mutex::new(HashMap::new())))
    }

    /// A budget shared through Redis under `prefix` for the org at `org_host`.
    pub fn redis(conn: RedisConn, prefix: &str, org_host: &str) -> Budget {
        let org: String = org_host
            .chars()
            .map(|c| if matches!(c, '{' | '}' | ':') { '_' } else { c })
            .collect();
        Budget(Store::Redis {
            conn,
            key_base: format!("{prefix}:okta:{{{org}}}:rate:"),
        })
    }

    /// Takes one request of `endpoint`'s window, keeping `reserve_percent` of its limit
    /// unused; `Some(wait)` when the window is spent down to the reserve. A Redis failure
    /// lets the request go (Okta's own 429 still protects the org).
    pub async fn take(&self, endpoint: Endpoint, reserve_percent: u8) -> Option<Duration> {
        let wait_ms = match &self.0 {
            Store::Local(m) => {
                let now = now_ms();
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                match m.get_mut(&endpoint) {
                    Some(w) if now < w.reset_ms => {
                        let reserve = (w.limit.max(0) * i64::from(reserve_percent) + 99) / 100;
                        if w.remaining > reserve {
                            w.remaining -= 1;
                            0
                        } else {
                            w.reset_ms - now
                        }
                    }
                    _ => 0,
                }
            }
            Store::Redis { conn, key_base } => {
                let mut conn = conn.clone();
                let r: redis::RedisResult<i64> = redis::Script::new(TAKE)
                    .key(format!("{key_base}{}", endpoint.as_str()))
                    .arg(reserve_percent.min(100))
                    .invoke_async(&mut conn)
                    .await;
                r.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "the shared Okta rate budget is unreadable (Redis); going ahead");
                    0
                })
            }
        };
        (wait_ms > 0).then(|| Duration::from_millis(wait_ms as u64))
    }

    /// Records what a response of `endpoint` said (`X-Rate-Limit-*`); `reset` in epoch
    /// seconds. Nothing is recorded without a reset and a remaining count.
    pub async fn record(
        &self,
        endpoint: Endpoint,
        limit: Option<i64>,
        remaining: Option<i64>,
        reset: Option<i64>,
    ) {
        let (Some(remaining), Some(reset)) = (remaining, reset) else {
            return;
        };
        let Some(reset_ms) = reset
            .checked_mul(1000)
            .and_then(|r| r.checked_add(RESET_MARGIN_MS))
        else {
            return;
        };
        let w = Window {
            limit: limit.unwrap_or(0),
            remaining,
            reset_ms,
        };
        match &self.0 {
            Store::Local(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let cur = m.get(&endpoint).copied();
                let keep = match cur {
                    Some(c) if c.reset_ms > w.reset_ms => c,
                    Some(c) if c.reset_ms == w.reset_ms => Window {
                        remaining: c.remaining.min(w.remaining),
                        ..w
                    },
                    _ => w,
                };
                m.insert(endpoint, keep);
            }
            Store::Redis { conn, key_base } => {
                let mut conn = conn.clone();
                let r: redis::RedisResult<i64> = redis::Script::new(RECORD)
                    .key(format!("{key_base}{}", endpoint.as_str()))
                    .arg(w.limit)
                    .arg(w.remaining)
                    .arg(w.reset_ms)
                    .invoke_async(&mut conn)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "could not share the Okta rate budget (Redis)");
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_window_keeps_its_reserve_and_the_lowest_remaining() {
        let b = Budget::local();
        assert!(b.take(Endpoint::Logs, 20).await.is_none(), "unknown: go");
        let reset = chrono::Utc::now().timestamp() + 30;
        b.record(Endpoint::Logs, Some(10), Some(4), Some(reset))
            .await;
        b.record(Endpoint::Logs, Some(10), Some(6), Some(reset))
            .await;
        assert!(b.take(Endpoint::Logs, 20).await.is_none(), "4 > 2");
        assert!(b.take(Endpoint::Logs, 20).await.is_none(), "3 > 2");
        let wait = b
            .take(Endpoint::Logs, 20)
            .await
            .expect("2 left = the reserve");
        assert!(wait > Duration::from_secs(25), "{wait:?}");
        assert!(
            b.take(Endpoint::Token, 0).await.is_none(),
            "endpoints apart"
        );
        b.record(Endpoint::Token, Some(2), Some(0), Some(reset))
            .await;
        assert!(b.take(Endpoint::Token, 0).await.is_some());
    }
}
