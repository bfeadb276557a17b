//! Request budgets shared by every API instance through Redis.
//!
//! A fixed one-minute window per (route group, caller): one Lua script increments the
//! counter, starts the window on the first hit and returns the count and the time left, so
//! concurrent requests on any number of instances are counted exactly. Callers with a valid
//! token are counted per user, API keys per key (with the key's own budget when it has one),
//! others per client IP. A user's reads (`GET`, `HEAD`) are counted apart, in one read
//! budget across groups (`rate_limit.read_per_minute`), so a script's writes cannot lock the
//! same person out of the dashboard and an open dashboard cannot spend their write budget.
//! If Redis cannot be reached the request
//! is let through (logged): rate limiting must not take the API down with it.

use vigil_queue::RedisConn;

/// How long a request waits for its rate-limit check before it is let through.
pub const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

use crate::settings::{GroupLimit, RateLimitSettings};

const WINDOW_MS: u64 = 60_000;

const SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

/// Who is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A request without a valid token, by client IP.
    Anonymous(String),
    /// A request with a valid token, by username.
    User(String),
    /// A request with a valid API key, by key id, with the key's own budget if it has one.
    Key { id: String, per_minute: Option<u64> },
}

/// The outcome of one check, with what the `X-RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

/// The shared limiter.
pub struct RateLimiter {
    conn: RedisConn,
    prefix: String,
    settings: RateLimitSettings,
    script: redis::Script,
}

impl RateLimiter {
    /// A limiter on `conn`, keys under `<prefix>:ratelimit:`.
    pub fn new(conn: RedisConn, prefix: &str, settings: RateLimitSettings) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            settings,
            script: redis::Script::new(SCRIPT),
        }
    }

    /// The route group of `path`, or None when the path is not limited.
    pub fn group_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        if !self.settings.enabled || self.settings.exempt_paths.iter().any(|p| p == path) {
            return None;
        }
        Some(
            path.strip_prefix("/api/v1/")
                .and_then(|rest| rest.split('/').next())
                .filter(|g| !g.is_empty())
                .unwrap_or("default"),
        )
    }

    /// The budget of `group` and the bucket it is counted in.
    fn budget(&self, group: &str) -> (GroupLimit, String) {
        match self.settings.groups.get(group) {
            Some(limit) => (*limit, group.to_owned()),
            None => (
                GroupLimit {
                    anonymous_per_minute: self.settings.anonymous_per_minute,
                    authenticated_per_minute: self.settings.authenticated_per_minute,
                },
                "default".to_owned(),
            ),
        }
    }

    /// Counts one request of `caller` in `group`; `read` for `GET`/`HEAD`, which a user
    /// spends from their read budget instead of the group's.
    pub async fn check(
        &self,
        group: &str,
        caller: &Caller,
        read: bool,
    ) -> Result<Decision, redis::RedisError> {
        let (budget, mut bucket) = self.budget(group);
        let (limit, who) = match caller {
            Caller::Anonymous(ip) => (budget.anonymous_per_minute, format!("ip:{ip}")),
            Caller::User(name) if read => {
                bucket = "read".to_owned();
                (self.settings.read_per_minute, format!("user:{name}"))
            }
            Caller::User(name) => (budget.authenticated_per_minute, format!("user:{name}")),
            Caller::Key { id, per_minute } => (
                per_minute.unwrap_or(budget.authenticated_per_minute),
                format!("key:{id}"),
            ),
        };
        let key = format!("{}:ratelimit:{bucket}:{who}", self.prefix);
        let mut conn = self.conn.clone();
        let (count, ttl_ms): (u64, i64) = self
            .script
            .key(key)
            .arg(WINDOW_MS)
            .invoke_async(&mut conn)
            .await?;
        let ttl_ms = ttl_ms.max(0) as u64;
        Ok(Decision {
            allowed: count <= limit,
            limit,
            remaining: limit.saturating_sub(count),
            reset_secs: ttl_ms.div_ceil(1000).max(1),
        })
    }
}
