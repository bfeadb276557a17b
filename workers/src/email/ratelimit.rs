//! The global send rate limit: a token bucket in Redis shared by every vigil instance.
//!
//! The bucket holds up to `per_minute` tokens and refills continuously at `per_minute / 60`
//! per second; each message takes one. The check-and-take is one Lua script using Redis'
//! own clock (`TIME`), so instances with skewed clocks still share one budget. A send that
//! finds the bucket empty waits for the next token (the script says how long), up to a
//! maximum wait; then its job is handed back to the engine to retry later.

use std::time::Duration;

use vigil_queue::RedisConn;

/// Takes one token, or returns how many milliseconds until one is free.
/// KEYS[1] = bucket; ARGV[1] = capacity (tokens per minute).
const TAKE: &str = r"
local capacity = tonumber(ARGV[1])
local per_ms = capacity / 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * per_ms)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('PEXPIRE', KEYS[1], 120000)
return wait
";

/// Gives one token back (a send that never reached the server), up to the capacity.
/// KEYS[1] = bucket; ARGV[1] = capacity.
const REFUND: &str = r"
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens == nil then return 0 end
redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(tonumber(ARGV[1]), tokens + 1)))
return 1
";

/// Why no token was obtained.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("send rate limit reached ({per_minute}/minute); retry later")]
    Exhausted { per_minute: u32 },
    #[error("rate limiter unavailable (Redis): {0}")]
    Redis(#[from] redis::RedisError),
}

/// The limiter: unlimited, or a Redis token bucket.
#[derive(Clone)]
pub enum SendRateLimiter {
    /// No limit.
    Unlimited,
    /// A bucket shared through Redis.
    Redis {
        conn: RedisConn,
        key: String,
        per_minute: u32,
        max_wait: Duration,
    },
}

impl std::fmt::Debug for SendRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendRateLimiter::Unlimited => f.write_str("Unlimited"),
            SendRateLimiter::Redis {
                key, per_minute, ..
            } => write!(f, "Redis({key}, {per_minute}/min)"),
        }
    }
}

impl SendRateLimiter {
    /// A shared bucket at `key` (e.g. `vigil:email:rate`); `per_minute == 0` means no limit.
    pub fn redis(
        conn: RedisConn,
        key: impl Into<String>,
        per_minute: u32,
        max_wait: Duration,
    ) -> SendRateLimiter {
        if per_minute == 0 {
            return SendRateLimiter::Unlimited;
        }
        SendRateLimiter::Redis {
            conn,
            key: key.into(),
            per_minute,
            max_wait,
        }
    }

    /// Gives back the token of a send that never reached the server (so an outage does not
    /// use up the send budget). Errors are logged: the budget is advisory then.
    pub async fn refund(&self) {
        let SendRateLimiter::Redis {
            conn,
            key,
            per_minute,
            ..
        } = self
        else {
            return;
        };
        let done: Result<i64, _> = redis::Script::new(REFUND)
            .key(key.as_str())
            .arg(*per_minute)
            .invoke_async(&mut conn.clone())
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "could not give a send-rate token back");
        }
    }

    /// Takes a token, waiting up to the maximum wait for one.
    pub async fn acquire(&self) -> Result<(), RateLimitError> {
        let SendRateLimiter::Redis {
            conn,
            key,
            per_minute,
            max_wait,
        } = self
        else {
            return Ok(());
        };
        let script = redis::Script::new(TAKE);
        let deadline = tokio::time::Instant::now() + *max_wait;
        let mut conn = conn.clone();
        loop {
            let wait_ms: u64 = script
                .key(key.as_str())
                .arg(*per_minute)
                .invoke_async(&mut conn)
                .await?;
            if wait_ms == 0 {
                return Ok(());
            }
            let wake = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
            if wake > deadline {
                return Err(RateLimitError::Exhausted {
                    per_minute: *per_minute,
                });
            }
            tokio::time::sleep_until(wake).await;
        }
    }
}
