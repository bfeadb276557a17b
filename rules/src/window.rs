//! Windowed state of threshold rules: per rule and grouping key, what the last `window` of
//! matching events (by each event's `published` time) adds up to.
//!
//! A window is kept as aggregates, so observing an event costs O(log n) whatever the flood:
//! - the events, by uuid (score: published ms) → count, first and last time, recent uuids;
//! - per tracked field, its values (score: the latest time each was seen) → distinct counts.
//!
//! [`RedisWindows`] keeps them in Redis sorted sets, so they survive restarts and every
//! worker shares them; one Lua call adds the event, trims what left the window and returns
//! the figures, atomically. Observing is idempotent (keyed by uuid), so an event seen twice
//! counts once. [`MemoryWindows`] does the same in memory for `vigil rules test`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use futures::future::BoxFuture;

/// The most events one window keeps (the oldest go first), bounding memory under a flood.
pub const MAX_ENTRIES_PER_WINDOW: usize = 5_000;
/// The most event uuids [`WindowStore::recent`] returns (what a new alert links).
pub const MAX_RECENT: usize = 200;

/// Why the window state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("detection window state: {0}")]
pub struct WindowError(pub String);

/// One event for a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// `{rule id}:{grouping key}`.
    pub key: String,
    pub uuid: String,
    pub at_ms: i64,
    pub window_ms: i64,
    /// The event's value of each tracked field (`None`: absent), in the threshold's order.
    pub fields: Vec<Option<String>>,
}

/// The newest events of window `key` within `[from_ms, to_ms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentQuery {
    pub key: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// What a window holds after an observation, over `[at - window, at]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowStats {
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// Distinct values of each tracked field, in the threshold's order.
    pub distinct: Vec<u64>,
}

/// One event of a tracked session (or device) for a stateful session rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionObservation {
    /// `{rule id}:s{key index}={session or device id}`.
    pub key: String,
    pub uuid: String,
    pub at_ms: i64,
    /// How long a session lives: an event later than this after the first one starts over.
    pub lifetime_ms: i64,
    /// The event's network and client values (empty: unknown), in the rule's order.
    pub values: Vec<String>,
}

/// What a session looked like when it was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOrigin {
    pub uuid: String,
    pub at_ms: i64,
    pub values: Vec<String>,
}

impl SessionOrigin {
    fn from_parts(parts: Vec<String>) -> Result<SessionOrigin, WindowError> {
        let mut it = parts.into_iter();
        let (Some(uuid), Some(at)) = (it.next(), it.next()) else {
            return Err(WindowError("unexpected session state".to_owned()));
        };
        Ok(SessionOrigin {
            uuid,
            at_ms: at.parse().unwrap_or(0),
            values: it.collect(),
        })
    }
}

/// Storage of threshold windows. Both calls take a batch and answer in its order.
pub trait WindowStore: Send + Sync {
    /// For each observation in order: the session's first event within its lifetime (this
    /// one when it is the first). Keyed by session, so replaying an event changes nothing.
    fn sessions_all<'a>(
        &'a self,
        batch: &'a [SessionObservation],
    ) -> BoxFuture<'a, Result<Vec<SessionOrigin>, WindowError>>;

    /// Applies each observation in order: adds the event to its window, forgets what fell
    /// out of it, and returns the window's figures right after that event.
    fn observe_all<'a>(
        &'a self,
        batch: &'a [Observation],
    ) -> BoxFuture<'a, Result<Vec<WindowStats>, WindowError>>;

    /// For each query, the newest (at most [`MAX_RECENT`]) event uuids.
    fn recent_all<'a>(
        &'a self,
        queries: &'a [RecentQuery],
    ) -> BoxFuture<'a, Result<Vec<Vec<String>>, WindowError>>;

    /// For each query, how many events its window holds in the range (read only).
    fn count_all<'a>(
        &'a self,
        queries: &'a [RecentQuery],
    ) -> BoxFuture<'a, Result<Vec<u64>, WindowError>>;
}

#[derive(Debug, Default)]
struct MemoryWindow {
    events: BTreeSet<(i64, String)>,
    uuids: HashSet<String>,
    /// Per field: value → latest time seen.
    fields: Vec<HashMap<String, i64>>,
}

/// Windows in this process's memory: fresh state, no side effects.
#[derive(Debug, Default)]
pub struct MemoryWindows {
    windows: Mutex<HashMap<String, MemoryWindow>>,
    sessions: Mutex<HashMap<String, SessionOrigin>>,
}

impl MemoryWindows {
    fn observe(&self, obs: &Observation) -> WindowStats {
        let mut all = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = all.entry(obs.key.clone()).or_default();
        let from = obs.at_ms - obs.window_ms;
        if w.uuids.insert(obs.uuid.clone()) {
            w.events.insert((obs.at_ms, obs.uuid.clone()));
        }
        while let Some(oldest) = w.events.first().cloned() {
            if oldest.0 >= from && w.events.len() <= MAX_ENTRIES_PER_WINDOW {
                break;
            }
            w.events.pop_first();
            w.uuids.remove(&oldest.1);
        }
        w.fields.resize_with(obs.fields.len(), HashMap::new);
        let mut distinct = Vec::with_capacity(obs.fields.len());
        for (values, value) in w.fields.iter_mut().zip(&obs.fields) {
            if let Some(v) = value {
                let seen = values.entry(v.clone()).or_insert(obs.at_ms);
                *seen = (*seen).max(obs.at_ms);
            }
            values.retain(|_, seen| *seen >= from);
            distinct.push(values.len() as u64);
        }
        let mut stats = WindowStats {
            distinct,
            ..WindowStats::default()
        };
        for (ms, _) in w.events.range((from, String::new())..) {
            if *ms > obs.at_ms {
                break;
            }
            if stats.count == 0 {
                stats.first_ms = *ms;
            }
            stats.count += 1;
            stats.last_ms = *ms;
        }
        stats
    }

    fn recent(&self, q: &RecentQuery) -> Vec<String> {
        let all = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        all.get(&q.key)
            .map(|w| {
                w.events
                    .range((q.from_ms, String::new())..)
                    .filter(|(ms, _)| *ms <= q.to_ms)
                    .rev()
                    .take(MAX_RECENT)
                    .map(|(_, u)| u.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl WindowStore for MemoryWindows {
    fn sessions_all<'a>(
        &'a self,
        batch: &'a [SessionObservation],
    ) -> BoxFuture<'a, Result<Vec<SessionOrigin>, WindowError>> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let out = batch
            .iter()
            .map(|o| {
                let fresh = SessionOrigin {
                    uuid: o.uuid.clone(),
                    at_ms: o.at_ms,
                    values: o.values.clone(),
                };
                let origin = all.entry(o.key.clone()).or_insert_with(|| fresh.clone());
                if o.at_ms - origin.at_ms > o.lifetime_ms {
                    *origin = fresh;
                }
                origin.clone()
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }

    fn observe_all<'a>(
        &'a self,
        batch: &'a [Observation],
    ) -> BoxFuture<'a, Result<Vec<WindowStats>, WindowError>> {
        let stats = batch.iter().map(|o| self.observe(o)).collect();
        Box::pin(async move { Ok(stats) })
    }

    fn recent_all<'a>(
        &'a self,
        queries: &'a [RecentQuery],
    ) -> BoxFuture<'a, Result<Vec<Vec<String>>, WindowError>> {
        let found = queries.iter().map(|q| self.recent(q)).collect();
        Box::pin(async move { Ok(found) })
    }

    fn count_all<'a>(
        &'a self,
        queries: &'a [RecentQuery],
    ) -> BoxFuture<'a, Result<Vec<u64>, WindowError>> {
        let all = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let counts = queries
            .iter()
            .map(|q| {
                all.get(&q.key).map_or(0, |w| {
                    w.events
                        .range((q.from_ms, String::new())..)
                        .take_while(|(ms, _)| *ms <= q.to_ms)
                        .count() as u64
                })
            })
            .collect();
        Box::pin(async move { Ok(counts) })
    }
}

/// KEYS[1] the events; KEYS[2..] one per tracked field.
/// ARGV: at_ms, uuid, window_ms, max_entries, then the value of each field ('' = absent).
const OBSERVE_LUA: &str = r"
local at = tonumber(ARGV[1])
local window = tonumber(ARGV[3])
local from = at - window
local max = tonumber(ARGV[4])
local ttl = window * 2
local events = KEYS[1]
if redis.call('ZSCORE', events, ARGV[2]) == false then
  redis.call('ZADD', events, at, ARGV[2])
end
redis.call('ZREMRANGEBYSCORE', events, '-inf', '(' .. from)
local n = redis.call('ZCARD', events)
if n > max then redis.call('ZREMRANGEBYRANK', events, 0, n - max - 1) end
if redis.call('PTTL', events) < ttl then redis.call('PEXPIRE', events, ttl) end
local count = redis.call('ZCOUNT', events, from, at)
local first = redis.call('ZRANGEBYSCORE', events, from, at, 'WITHSCORES', 'LIMIT', 0, 1)
local last = redis.call('ZREVRANGEBYSCORE', events, at, from, 'WITHSCORES', 'LIMIT', 0, 1)
local out = { count, tonumber(first[2]) or 0, tonumber(last[2]) or 0 }
for i = 2, #KEYS do
  local value = ARGV[3 + i]
  if value ~= '' then redis.call('ZADD', KEYS[i], 'GT', at, value) end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. from)
  local m = redis.call('ZCARD', KEYS[i])
  if m > max then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, m - max - 1) end
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  out[#out + 1] = redis.call('ZCOUNT', KEYS[i], from, '+inf')
end
return out
";

/// Windows in Redis, shared by every worker and kept across restarts. Keys, expiring after
/// twice the window: `{prefix}:rules:{<rule>}:<grouping key>` (events) and
/// `…:<grouping key>:f{i}` (values of tracked field i). Every key of one rule carries the
/// rule's hash tag, so one observation's script touches one Cluster slot, and on a Cluster the
/// pipelines are sent per rule. Works over any async connection (`C`), e.g. vigil-queue's
/// `RedisConn` for Sentinel and Cluster deployments.
#[derive(Clone)]
pub struct RedisWindows<C = redis::aio::ConnectionManager> {
    conn: C,
    prefix: String,
    per_slot: bool,
    script: redis::Script,
    session_script: redis::Script,
}

impl<C> std::fmt::Debug for RedisWindows<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWindows")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<C> RedisWindows<C> {
    /// Windows under `{prefix}:rules:`, on a standalone or Sentinel-managed Redis.
    pub fn new(conn: C, prefix: &str) -> RedisWindows<C> {
        RedisWindows {
            conn,
            prefix: format!("{prefix}:rules:"),
            per_slot: false,
            script: redis::Script::new(OBSERVE_LUA),
            session_script: redis::Script::new(SESSION_LUA),
        }
    }

    /// The same on a Redis Cluster: pipelines are split per rule (per hash slot).
    pub fn clustered(mut self, cluster: bool) -> RedisWindows<C> {
        self.per_slot = cluster;
        self
    }

    /// The Redis key of window `{rule}:{grouping key}`. The grouping key is event data
    /// (often what an attacker typed as a user name), so its `%`, `:` and braces are escaped:
    /// else the events of user `x:f0` would land in the values of field 0 of user `x`'s
    /// window, or a brace would move the key to another slot.
    fn key(&self, window: &str) -> String {
        let (rule, group) = window.split_once(':').unwrap_or((window, ""));
        let mut key = self.prefix.clone();
        key.push('{');
        escape_into(&mut key, rule);
        key.push_str("}:");
        escape_into(&mut key, group);
        key
    }
}

fn escape_into(key: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '%' => key.push_str("%25"),
            ':' => key.push_str("%3A"),
            '{' => key.push_str("%7B"),
            '}' => key.push_str("%7D"),
            c => key.push(c),
        }
    }
}

/// Indexes of `keys` grouped by rule (the part before the first `:`), in first-seen order;
/// one group with everything when `per_slot` is false.
fn groups<'a>(per_slot: bool, keys: impl Iterator<Item = &'a str>) -> Vec<Vec<usize>> {
    let keys: Vec<&str> = keys.collect();
    if !per_slot {
        return vec![(0..keys.len()).collect()];
    }
    let mut order: Vec<&str> = Vec::new();
    let mut by: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let rule = k.split_once(':').map(|(r, _)| r).unwrap_or(k);
        by.entry(rule)
            .or_insert_with(|| {
                order.push(rule);
                Vec::new()
            })
            .push(i);
    }
    order.into_iter().filter_map(|r| by.remove(r)).collect()
}

fn redis_err(e: redis::RedisError) -> WindowError {
    WindowError(e.to_string())
}

/// Observations per pipeline (bounds one request's size).
const PIPELINE_CHUNK: usize = 2_000;

fn stats_from(out: &[i64]) -> Result<WindowStats, WindowError> {
    let [count, first_ms, last_ms, distinct @ ..] = out else {
        return Err(WindowError(format!("unexpected answer {out:?}")));
    };
    Ok(WindowStats {
        count: u64::try_from(*count).unwrap_or(0),
        first_ms: *first_ms,
        last_ms: *last_ms,
        distinct: distinct
            .iter()
            .map(|d| u64::try_from(*d).unwrap_or(0))
            .collect(),
    })
}

impl<C> RedisWindows<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Runs `build` over each group of `items` as one pipeline (concurrently on a Cluster) and
    /// puts the answers back in the order of `items`.
    async fn per_group<I, T, F>(
        &self,
        items: &[I],
        load: Option<&redis::Script>,
        key_of: impl Fn(&I) -> &str,
        build: F,
    ) -> Result<Vec<T>, WindowError>
    where
        T: redis::FromRedisValue + Send,
        F: Fn(&mut redis::Pipeline, &I),
    {
        let groups = groups(self.per_slot, items.iter().map(&key_of));
        // Groups (slots) run concurrently; the chunks of one group in order, so each
        // observation still sees the ones before it.
        let build = &build;
        let calls = groups.iter().map(|group| {
            let mut conn = self.conn.clone();
            async move {
                let mut answers = Vec::with_capacity(group.len());
                for chunk in group.chunks(PIPELINE_CHUNK) {
                    let mut pipe = redis::pipe();
                    // Loaded in the same pipeline (on the node it goes to): a restarted
                    // Redis forgets scripts, and a pipeline does not retry.
                    if let Some(script) = load {
                        pipe.load_script(script).ignore();
                    }
                    for &i in chunk {
                        build(&mut pipe, &items[i]);
                    }
                    let out: Vec<T> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
                    answers.push((chunk, out));
                }
                Ok::<_, WindowError>(answers)
            }
        });
        let mut slots: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
        for done in futures::future::join_all(calls).await {
            for (chunk, out) in done? {
                for (&i, v) in chunk.iter().zip(out) {
                    slots[i] = Some(v);
                }
            }
        }
        slots
            .into_iter()
            .map(|v| v.ok_or_else(|| WindowError("missing answer from Redis".into())))
            .collect()
    }
}

/// A session's first event: KEYS[1] the session (a list: uuid, time, values...); ARGV
/// at_ms, uuid, lifetime_ms, values... Returns the first event within the lifetime,
/// recording this one when there is none (the key expires after twice the lifetime).
const SESSION_LUA: &str = r"
local cur = redis.call('LRANGE', KEYS[1], 0, -1)
if #cur >= 2 and tonumber(ARGV[1]) - tonumber(cur[2]) <= tonumber(ARGV[3]) then
  return cur
end
local new = {ARGV[2], ARGV[1]}
for i = 4, #ARGV do new[#new + 1] = ARGV[i] end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], unpack(new))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return new
";

impl<C> WindowStore for RedisWindows<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    fn sessions_all<'a>(
        &'a self,
        batch: &'a [SessionObservation],
    ) -> BoxFuture<'a, Result<Vec<SessionOrigin>, WindowError>> {
        Box::pin(async move {
            let out: Vec<Vec<String>> = self
                .per_group(
                    batch,
                    Some(&self.session_script),
                    |o| o.key.as_str(),
                    |pipe, obs| {
                        let mut call = self.session_script.key(self.key(&obs.key));
                        call.arg(obs.at_ms).arg(&obs.uuid).arg(obs.lifetime_ms);
                        for v in &obs.values {
                            call.arg(v);
                        }
                        pipe.invoke_script(&call);
                    },
                )
                .await?;
            out.into_iter().map(SessionOrigin::from_parts).collect()
        })
    }

    fn observe_all<'a>(
        &'a self,
        batch: &'a [Observation],
    ) -> BoxFuture<'a, Result<Vec<WindowStats>, WindowError>> {
        Box::pin(async move {
            let out: Vec<Vec<i64>> = self
                .per_group(
                    batch,
                    Some(&self.script),
                    |o| o.key.as_str(),
                    |pipe, obs| {
                        let events = self.key(&obs.key);
                        let mut call = self.script.key(&events);
                        for i in 0..obs.fields.len() {
                            call.key(format!("{events}:f{i}"));
                        }
                        call.arg(obs.at_ms)
                            .arg(&obs.uuid)
                            .arg(obs.window_ms)
                            .arg(MAX_ENTRIES_PER_WINDOW);
                        for value in &obs.fields {
                            call.arg(value.as_deref().unwrap_or(""));
                        }
                        pipe.invoke_script(&call);
                    },
                )
                .await?;
            out.iter().map(|o| stats_from(o)).collect()
        })
    }

    fn recent_all<'a>(
        &'a self,
        queries: &'a [RecentQuery],
    ) -> BoxFuture<'a, Result<Vec<Vec<String>>, WindowError>> {
        Box::pin(async move {
            self.per_group(
                queries,
                None,
                |q| q.key.as_str(),
                |pipe, q| {
                    pipe.cmd("ZREVRANGEBYSCORE")
                        .arg(self.key(&q.key))
                        .arg(q.to_ms)
                        .arg(q.from_ms)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(MAX_RECENT);
                },
            )
            .await
        })
    }

    fn count_all<'a>(
        &'a self,
        queries: &'a [RecentQuery],
    ) -> BoxFuture<'a, Result<Vec<u64>, WindowError>> {
        Box::pin(async move {
            self.per_group(
                queries,
                None,
                |q| q.key.as_str(),
                |pipe, q| {
                    pipe.cmd("ZCOUNT")
                        .arg(self.key(&q.key))
                        .arg(q.from_ms)
                        .arg(q.to_ms);
                },
            )
            .await
        })
    }
}
