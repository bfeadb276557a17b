//! The SMTP circuit breaker, shared by every vigil instance through one Redis hash.
//!
//! Closed, every send goes out. The first send that cannot reach the server (connection
//! refused, reset, timed out while connecting) opens it: from then on no send tries the
//! server except one *probe* at a time. Every other email job is snoozed (it waits in Redis
//! and its attempt is given back) until the next probe is due; a probe that fails doubles the
//! wait (`smtp.outage_probe_seconds` up to `smtp.outage_probe_max_seconds`); a send that
//! succeeds closes it and the queue resumes. So an outage costs no attempts and no send-rate
//! tokens, and after it every message goes out once. An outage longer than
//! `smtp.outage_give_up_seconds` makes the waiting messages dead, saying since when the
//! server has been unreachable.
//!
//! Each transition is one Lua script on Redis server time, so instances with skewed clocks
//! share one view. A probe holds its claim for a lease (the send timeout plus a margin): a
//! worker that dies mid-probe does not keep the queue waiting.

use std::time::Duration;

use vigil_queue::RedisConn;

/// KEYS[1] breaker; ARGV[1] token, ARGV[2] probe lease ms.
/// Returns {'closed'} | {'probe', since} | {'wait', ms, since}.
const GATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'state', 'until', 'probe_until', 'since')
if s[1] ~= 'open' then return {'closed'} end
local probe_until = tonumber(s[3]) or 0
if probe_until > now then return {'wait', probe_until - now, s[4]} end
local due = tonumber(s[2]) or 0
if now < due then return {'wait', due - now, s[4]} end
redis.call('HSET', KEYS[1], 'probe', ARGV[1], 'probe_until', now + tonumber(ARGV[2]))
return {'probe', s[4]}
";

/// KEYS[1] breaker; ARGV[1] token, ARGV[2] first wait ms, ARGV[3] longest wait ms.
/// A send could not reach the server. Returns {since, ms until the next probe}.
const FAILED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'state', 'until', 'probe', 'since', 'failures')
local base = tonumber(ARGV[2])
if s[1] ~= 'open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'since', now, 'failures', 1,
    'until', now + base, 'probe', '', 'probe_until', 0)
  return {now, base}
end
if s[3] == ARGV[1] then
  local failures = (tonumber(s[5]) or 1) + 1
  local wait = math.min(tonumber(ARGV[3]), base * 2 ^ math.min(failures - 1, 30))
  redis.call('HSET', KEYS[1], 'failures', failures, 'until', now + wait, 'probe', '',
    'probe_until', 0)
  return {tonumber(s[4]), wait}
end
return {tonumber(s[4]), math.max(0, (tonumber(s[2]) or now) - now)}
";

/// KEYS[1] breaker. A send reached the server. Returns the outage's start (0: was closed).
const SUCCEEDED: &str = r"
local since = redis.call('HGET', KEYS[1], 'since')
if not since then return 0 end
redis.call('DEL', KEYS[1])
return tonumber(since)
";

/// What [`Breaker::gate`] says about one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The server answers: send.
    Closed,
    /// The server was unreachable and this send is the one probe: send and report.
    Probe { since_ms: i64 },
    /// The server is unreachable: wait this long without trying (since the outage began).
    Wait { wait: Duration, since_ms: i64 },
}

/// Timing of the breaker (`[smtp]` outage keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerTiming {
    pub first_wait: Duration,
    pub longest_wait: Duration,
    pub probe_lease: Duration,
}

/// The breaker: off (no Redis: every send goes out), or a shared Redis hash.
#[derive(Clone)]
pub enum Breaker {
    Off,
    Redis {
        conn: RedisConn,
        key: String,
        timing: BreakerTiming,
    },
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Breaker::Off => f.write_str("Off"),
            Breaker::Redis { key, timing, .. } => write!(f, "Redis({key}, {timing:?})"),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Breaker {
    /// A breaker at `key` (e.g. `vigil:email:breaker`).
    pub fn redis(conn: RedisConn, key: impl Into<String>, timing: BreakerTiming) -> Breaker {
        Breaker::Redis {
            conn,
            key: key.into(),
            timing,
        }
    }

    /// Whether a send may go out now. A Redis error lets it go out (the send itself then
    /// says whether the server answers).
    pub async fn gate(&self, token: &str) -> Gate {
        let Breaker::Redis { conn, key, timing } = self else {
            return Gate::Closed;
        };
        let answer: Result<Vec<redis::Value>, _> = redis::Script::new(GATE)
            .key(key.as_str())
            .arg(token)
            .arg(ms(timing.probe_lease))
            .invoke_async(&mut conn.clone())
            .await;
        let int = |v: Option<&redis::Value>| -> i64 {
            match v {
                Some(redis::Value::Int(i)) => *i,
                Some(redis::Value::BulkString(b)) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                    .map(|f| f as i64)
                    .unwrap_or(0),
                _ => 0,
            }
        };
        let text = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        match answer {
            Ok(v) => match text(v.first()).as_str() {
                "probe" => Gate::Probe {
                    since_ms: int(v.get(1)),
                },
                "wait" => Gate::Wait {
                    wait: Duration::from_millis(u64::try_from(int(v.get(1))).unwrap_or(0)),
                    since_ms: int(v.get(2)),
                },
                _ => Gate::Closed,
            },
            Err(e) => {
                tracing::warn!(error = %e, "SMTP breaker unavailable (Redis); sending anyway");
                Gate::Closed
            }
        }
    }

    /// A send (`token`'s) could not reach the server: opens the breaker, or, for the probe,
    /// waits longer. Returns (outage start ms, wait until the next probe).
    pub async fn failed(&self, token: &str) -> Option<(i64, Duration)> {
        let Breaker::Redis { conn, key, timing } = self else {
            return None;
        };
        let answer: Result<(i64, i64), _> = redis::Script::new(FAILED)
            .key(key.as_str())
            .arg(token)
            .arg(ms(timing.first_wait))
            .arg(ms(timing.longest_wait))
            .invoke_async(&mut conn.clone())
            .await;
        match answer {
            Ok((since, wait)) => Some((
                since,
                Duration::from_millis(u64::try_from(wait).unwrap_or(0)),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "SMTP breaker unavailable (Redis)");
                None
            }
        }
    }

    /// A send reached the server: closes the breaker. Returns the outage's start when it was
    /// open.
    pub async fn succeeded(&self) -> Option<i64> {
        let Breaker::Redis { conn, key, .. } = self else {
            return None;
        };
        let since: Result<i64, _> = redis::Script::new(SUCCEEDED)
            .key(key.as_str())
            .invoke_async(&mut conn.clone())
            .await;
        match since {
            Ok(0) => None,
            Ok(since) => Some(since),
            Err(e) => {
                tracing::warn!(error = %e, "SMTP breaker unavailable (Redis)");
                None
            }
        }
    }
}
