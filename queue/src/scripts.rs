//! The Lua transitions. Each runs atomically in Redis, so a job's hash, its queue structure
//! (pending list, scheduled set, lease set) and its status index always agree.
//!
//! Every script receives `ARGV[1]` = key prefix, `ARGV[2]` = queue, `ARGV[3]` = now (ms).
//! Ids beyond a bounded `LIMIT` are never unpacked, so any backlog is handled in slices.

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = r#"
local P = ARGV[1]
local Q = ARGV[2]
local now = tonumber(ARGV[3])
local function qk(s) return P .. ':q:' .. Q .. ':' .. s end
local function jk(id) return P .. ':job:' .. id end
local function move(id, from, to)
  if from then redis.call('ZREM', qk('s:' .. from), id) end
  redis.call('ZADD', qk('s:' .. to), now, id)
end
local function wake()
  if redis.call('LLEN', qk('notify')) == 0 then redis.call('RPUSH', qk('notify'), '1') end
end
local function push_error(errors, entry)
  if not errors or errors == '' or errors == '[]' then return '[' .. entry .. ']' end
  return string.sub(errors, 1, -2) .. ',' .. entry .. ']'
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// ARGV[4] idempotency window ms, ARGV[5] count, then per job: id, payload, run_at ms,
/// max_attempts, idempotency key ('' = none). Returns flat pairs (id, duplicate 0/1).
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local window = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local out = {}
local woke = false
for i = 0, n - 1 do
  local b = 6 + i * 5
  local id, payload, run_at, maxa, idem = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3], ARGV[b + 4]
  local dup = nil
  if idem ~= '' then
    local ik = P .. ':idem:' .. Q .. ':' .. idem
    local existing = redis.call('GET', ik)
    if existing and redis.call('EXISTS', jk(existing)) == 1 then
      dup = existing
    else
      redis.call('SET', ik, id, 'PX', window)
    end
  end
  if dup then
    out[#out + 1] = dup
    out[#out + 1] = 1
  else
    local status = 'pending'
    if run_at > now then status = 'scheduled' end
    redis.call('HSET', jk(id), 'id', id, 'queue', Q, 'payload', payload, 'status', status,
      'attempts', 0, 'max_attempts', maxa, 'errors', '[]', 'idem', idem,
      'created_at', now, 'run_at', run_at, 'updated_at', now)
    if status == 'pending' then
      redis.call('LPUSH', qk('pending'), id)
      woke = true
    else
      redis.call('ZADD', qk('scheduled'), run_at, id)
    end
    redis.call('ZADD', qk('s:' .. status), now, id)
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
if woke then wake() end
return out
"#,
    )
});

/// ARGV[4] n, ARGV[5] worker id, ARGV[6] lease ms. Returns {more, next_due or -1, paused,
/// {{id, attempt, max_attempts, token, payload, created_at, run_at}...}}.
pub(crate) static LEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local n = tonumber(ARGV[4])
local worker = ARGV[5]
local lease = tonumber(ARGV[6])
local function next_due()
  local nd = redis.call('ZRANGE', qk('scheduled'), 0, 0, 'WITHSCORES')
  if nd[2] then return tonumber(nd[2]) end
  return -1
end
if redis.call('EXISTS', qk('paused')) == 1 then
  return {0, next_due(), 1, {}}
end
local due = redis.call('ZRANGEBYSCORE', qk('scheduled'), '-inf', now, 'LIMIT', 0, math.max(n, 100))
for _, id in ipairs(due) do
  redis.call('ZREM', qk('scheduled'), id)
  local st = redis.call('HGET', jk(id), 'status')
  if st == 'scheduled' or st == 'failed' then
    redis.call('HSET', jk(id), 'status', 'pending', 'updated_at', now)
    move(id, st, 'pending')
    redis.call('RPUSH', qk('pending'), id)
  end
end
local out = {}
local taken = 0
local rounds = 0
while taken < n and rounds < 8 do
  rounds = rounds + 1
  local ids = redis.call('RPOP', qk('pending'), n - taken)
  if not ids then break end
  for _, id in ipairs(ids) do
    local k = jk(id)
    local st = redis.call('HGET', k, 'status')
    if st == 'pending' then
      local att = redis.call('HINCRBY', k, 'attempts', 1)
      local token = worker .. ':' .. att
      redis.call('HSET', k, 'status', 'running', 'started_at', now, 'token', token, 'updated_at', now)
      move(id, 'pending', 'running')
      redis.call('ZADD', qk('leases'), now + lease, id)
      local f = redis.call('HMGET', k, 'max_attempts', 'payload', 'created_at', 'run_at')
      out[#out + 1] = {id, att, tonumber(f[1]), token, f[2], tonumber(f[3]), tonumber(f[4])}
      taken = taken + 1
    end
  end
end
local more = 0
if redis.call('LLEN', qk('pending')) > 0 then
  more = 1
  wake()
end
return {more, next_due(), 0, out}
"#,
    )
});

/// ARGV[4] ttl ms of finished hashes, ARGV[5] done-counter key, ARGV[6] count, then pairs
/// (id, token). Returns one 1 (done) or 0 (fenced) per job.
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local ttl = tonumber(ARGV[4])
local stat = ARGV[5]
local n = tonumber(ARGV[6])
local out = {}
local done = 0
for i = 0, n - 1 do
  local id = ARGV[7 + 2 * i]
  local token = ARGV[8 + 2 * i]
  local k = jk(id)
  local f = redis.call('HMGET', k, 'status', 'token')
  if f[1] == 'running' and f[2] == token then
    redis.call('HSET', k, 'status', 'done', 'finished_at', now, 'updated_at', now)
    redis.call('ZREM', qk('leases'), id)
    move(id, 'running', 'done')
    redis.call('PEXPIRE', k, ttl)
    out[#out + 1] = 1
    done = done + 1
  else
    out[#out + 1] = 0
  end
end
if done > 0 then
  redis.call('INCRBY', stat, done)
  redis.call('EXPIRE', stat, 130)
end
return out
"#,
    )
});

/// ARGV[4] ttl ms, ARGV[5] failed-counter key, ARGV[6] id, ARGV[7] token, ARGV[8] error
/// entry (JSON object), ARGV[9] permanent 0/1, ARGV[10] retry delay ms.
/// Returns {0} fenced, {1, run_at} retry, {2} dead.
pub(crate) static FAIL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local ttl = tonumber(ARGV[4])
local stat = ARGV[5]
local id = ARGV[6]
local k = jk(id)
local f = redis.call('HMGET', k, 'status', 'token', 'attempts', 'max_attempts', 'errors')
if f[1] ~= 'running' or f[2] ~= ARGV[7] then return {0} end
local errors = push_error(f[5], ARGV[8])
redis.call('INCR', stat)
redis.call('EXPIRE', stat, 130)
redis.call('ZREM', qk('leases'), id)
if ARGV[9] == '1' or tonumber(f[3]) >= tonumber(f[4]) then
  redis.call('HSET', k, 'status', 'dead', 'errors', errors, 'finished_at', now, 'updated_at', now)
  move(id, 'running', 'dead')
  redis.call('PEXPIRE', k, ttl)
  return {2}
end
local run_at = now + tonumber(ARGV[10])
redis.call('HSET', k, 'status', 'failed', 'errors', errors, 'run_at', run_at, 'updated_at', now)
move(id, 'running', 'failed')
redis.call('ZADD', qk('scheduled'), run_at, id)
return {1, run_at}
"#,
    )
});

/// ARGV[4] lease ms, ARGV[5] count, then pairs (id, token). Returns 1 (renewed) / 0 (lost).
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local lease = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local out = {}
for i = 0, n - 1 do
  local id = ARGV[6 + 2 * i]
  local f = redis.call('HMGET', jk(id), 'status', 'token')
  if f[1] == 'running' and f[2] == ARGV[7 + 2 * i] then
    redis.call('ZADD', qk('leases'), 'XX', now + lease, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"#,
    )
});

/// ARGV[4] limit, ARGV[5] ttl ms, ARGV[6] failed-counter key, ARGV[7] now as RFC 3339.
/// Jobs whose lease expired: back to pending (attempt stays counted) or dead at max attempts.
/// Returns {requeued, dead}.
pub(crate) static REAP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local ttl = tonumber(ARGV[5])
local stat = ARGV[6]
local ids = redis.call('ZRANGEBYSCORE', qk('leases'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local requeued, dead = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', qk('leases'), id)
  local k = jk(id)
  local f = redis.call('HMGET', k, 'status', 'token', 'attempts', 'max_attempts', 'errors')
  if f[1] == 'running' then
    local entry = cjson.encode({attempt = tonumber(f[3]), at = ARGV[7],
      error = 'lease expired: worker ' .. (f[2] or '?') .. ' stopped without reporting (crashed or stalled)'})
    local errors = push_error(f[5], entry)
    if tonumber(f[3]) >= tonumber(f[4]) then
      redis.call('HSET', k, 'status', 'dead', 'errors', errors, 'finished_at', now, 'updated_at', now)
      move(id, 'running', 'dead')
      redis.call('PEXPIRE', k, ttl)
      dead = dead + 1
    else
      redis.call('HSET', k, 'status', 'pending', 'errors', errors, 'updated_at', now)
      move(id, 'running', 'pending')
      redis.call('RPUSH', qk('pending'), id)
      requeued = requeued + 1
    end
  end
end
if requeued > 0 then wake() end
if requeued + dead > 0 then
  redis.call('INCRBY', stat, requeued + dead)
  redis.call('EXPIRE', stat, 130)
end
return {requeued, dead}
"#,
    )
});

/// ARGV[4] id, ARGV[5] token, ARGV[6] uncount 0/1. Gives a leased job back. Returns 1/0.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[4]
local k = jk(id)
local f = redis.call('HMGET', k, 'status', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[5] then return 0 end
redis.call('ZREM', qk('leases'), id)
if ARGV[6] == '1' then redis.call('HINCRBY', k, 'attempts', -1) end
redis.call('HSET', k, 'status', 'pending', 'updated_at', now)
move(id, 'running', 'pending')
redis.call('RPUSH', qk('pending'), id)
wake()
return 1
"#,
    )
});

/// ARGV[4] id, ARGV[5] ttl ms. Returns {'ok'} / {'missing'} / {'invalid', status}.
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[4]
local k = jk(id)
local st = redis.call('HGET', k, 'status')
if not st then return {'missing'} end
if st ~= 'pending' and st ~= 'scheduled' and st ~= 'failed' then return {'invalid', st} end
redis.call('ZREM', qk('scheduled'), id)
redis.call('HSET', k, 'status', 'cancelled', 'finished_at', now, 'updated_at', now)
move(id, st, 'cancelled')
redis.call('PEXPIRE', k, tonumber(ARGV[5]))
return {'ok'}
"#,
    )
});

/// ARGV[4] id, ARGV[5] the queue's max_attempts. Dead/failed -> pending with a fresh set
/// of attempts (attempt numbers keep growing, so old fencing tokens stay invalid).
pub(crate) static RETRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[4]
local k = jk(id)
local f = redis.call('HMGET', k, 'status', 'attempts')
if not f[1] then return {'missing'} end
if f[1] ~= 'dead' and f[1] ~= 'failed' then return {'invalid', f[1]} end
redis.call('ZREM', qk('scheduled'), id)
redis.call('HSET', k, 'status', 'pending', 'max_attempts', tonumber(f[2]) + tonumber(ARGV[5]),
  'run_at', now, 'updated_at', now)
redis.call('HDEL', k, 'finished_at')
redis.call('PERSIST', k)
move(id, f[1], 'pending')
redis.call('RPUSH', qk('pending'), id)
wake()
return {'ok'}
"#,
    )
});

/// ARGV[4] cutoff ms, ARGV[5] limit. Deletes finished jobs that finished before the cutoff.
pub(crate) static PRUNE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local cutoff = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
local removed = 0
for _, st in ipairs({'done', 'dead', 'cancelled'}) do
  local ids = redis.call('ZRANGEBYSCORE', qk('s:' .. st), '-inf', cutoff, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    redis.call('DEL', jk(id))
    redis.call('ZREM', qk('s:' .. st), id)
    removed = removed + 1
  end
end
return removed
"#,
    )
});
