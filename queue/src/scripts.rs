//! The Lua transitions. Each runs atomically in Redis, so a job's hash, its queue structure
//! (pending list, scheduled set, lease set) and its status index always agree.
//!
//! Every queue script receives the queue's keys as `KEYS` ([`crate::keys::SCRIPT_KEYS`], then
//! the ledger per status), all in the queue's hash slot; job hashes are `KEYS[6] .. id` in the
//! same slot. "Now" is the Redis server's `TIME`, never the caller's clock, so hosts whose
//! clocks differ cannot reap each other's healthy jobs. Ids beyond a bounded `LIMIT` are never
//! unpacked, so any backlog is handled in slices.

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Numbers handed to redis.call are printed with '%.17g' (slow for 13-digit times): hot
-- scripts pass times and counts as strings made with '%d'.
local now_s = string.format('%d', now)
local K = {pending = KEYS[1], scheduled = KEYS[2], leases = KEYS[3], notify = KEYS[4],
  paused = KEYS[5], job = KEYS[6], idem = KEYS[7], stat = KEYS[8], outbox = KEYS[9],
  lease = KEYS[10], fin = KEYS[11]}
-- The ledger. Running jobs are the lease set itself (KEYS[14] is KEYS[3]): the scripts
-- add and remove leases explicitly, and `move` leaves that set alone.
local S = {pending = KEYS[12], scheduled = KEYS[13], running = KEYS[14], done = KEYS[15],
  failed = KEYS[16], dead = KEYS[17], cancelled = KEYS[18]}
local function jk(id) return K.job .. id end
local function known(id)
  return redis.call('EXISTS', jk(id)) == 1 or redis.call('HEXISTS', K.fin, id) == 1
end
local function missing_or_done(id)
  if redis.call('HEXISTS', K.fin, id) == 1 then return {'invalid', 'done'} end
  return {'missing'}
end
local function move(id, from, to)
  if from and from ~= 'running' then redis.call('ZREM', S[from], id) end
  if to ~= 'running' then redis.call('ZADD', S[to], now, id) end
end
-- One call for many arguments (`key` first when given), in slices Lua's unpack can take.
-- Hot scripts gather their per-job writes and issue them through this: a redis.call costs
-- more than the command it runs.
local function many(cmd, key, args)
  for i = 1, #args, 4000 do
    local j = math.min(i + 3999, #args)
    if key then redis.call(cmd, key, unpack(args, i, j)) else redis.call(cmd, unpack(args, i, j)) end
  end
end
local function wake()
  if redis.call('LLEN', K.notify) == 0 then redis.call('RPUSH', K.notify, '1') end
end
local function bump(what, n)
  local k = K.stat .. what .. ':' .. math.floor(now / 10000)
  if redis.call('INCRBY', k, n) == n then redis.call('EXPIRE', k, 130) end
end
-- Per-minute series (`stat:m:<minute>` hashes, kept 25 h): counts (e enqueued, d done,
-- f failed and retrying, x dead) and histograms of enqueue-to-start wait (w<i>) and run
-- duration (r<i>) in the buckets of BOUNDS (ms; i = #BOUNDS + 1 is the overflow).
local function series_add(field, n)
  local k = K.stat .. 'm:' .. math.floor(now / 60000)
  if redis.call('HINCRBY', k, field, n) == n then redis.call('PEXPIRE', k, SERIES_TTL) end
end
local function hist_add(h, prefix, ms)
  local i = #BOUNDS + 1
  for j, b in ipairs(BOUNDS) do
    if ms <= b then i = j break end
  end
  local f = prefix .. i
  h[f] = (h[f] or 0) + 1
end
local function series_flush(h)
  for f, n in pairs(h) do series_add(f, n) end
end
local function worker_of(token) return string.match(token or '', '^(.*):%d+$') or '' end
local function push_error(errors, entry)
  if not errors or errors == '' or errors == '[]' then return '[' .. entry .. ']' end
  return string.sub(errors, 1, -2) .. ',' .. entry .. ']'
end
"#;

/// Upper bounds (ms) of the wait and run-duration histogram buckets of the per-minute series.
pub(crate) const SERIES_BOUNDS_MS: [u64; 16] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
];

/// How long a per-minute series hash is kept (25 hours: the 24-hour chart plus its edge).
pub(crate) const SERIES_TTL_MS: u64 = 25 * 3_600_000;

fn script(body: &str) -> Script {
    let bounds: Vec<String> = SERIES_BOUNDS_MS.iter().map(u64::to_string).collect();
    Script::new(&format!(
        "local BOUNDS = {{{}}}\nlocal SERIES_TTL = {SERIES_TTL_MS}\n{PRELUDE}\n{body}",
        bounds.join(", ")
    ))
}

/// ARGV[1] idempotency window ms, ARGV[2] count, then per job: id, payload, delay ms (from
/// server now), max_attempts, idempotency key ('' = none), explicit id 0/1 (an existing job
/// with that id is a duplicate), companion ('' = none; kept in the outbox until relayed).
/// Returns flat (id, duplicate 0/1, created_at ms, run_at ms) per job.
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local window = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local out = {}
local fresh = 0
local pushed, later, entered = {}, {}, {pending = {}, scheduled = {}}
for i = 0, n - 1 do
  local b = 3 + i * 7
  local id, payload, delay, maxa, idem = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3], ARGV[b + 4]
  local explicit, companion = ARGV[b + 5], ARGV[b + 6]
  local dup = nil
  if explicit == '1' and known(id) then dup = id end
  if not dup and idem ~= '' then
    local ik = K.idem .. idem
    local existing = redis.call('GET', ik)
    if existing and known(existing) then
      dup = existing
    else
      redis.call('SET', ik, id, 'PX', window)
    end
  end
  if dup then
    local f = redis.call('HMGET', jk(dup), 'created_at', 'run_at')
    local created, run_at = tonumber(f[1]), tonumber(f[2])
    if not created then
      local c, r = string.match(redis.call('HGET', K.fin, dup) or '', '^%d|%d+|%d+|(%d+)|(%-?%d+)|')
      created = tonumber(c)
      if created then run_at = created + tonumber(r) end
    end
    out[#out + 1] = dup
    out[#out + 1] = 1
    out[#out + 1] = created or now
    out[#out + 1] = run_at or now
  else
    local run_at = now + math.max(delay, 0)
    local status, run_at_s = 'pending', now_s
    if run_at > now then status, run_at_s = 'scheduled', string.format('%d', run_at) end
    if idem ~= '' then
      redis.call('HSET', jk(id), 'payload', payload, 'status', status, 'attempts', '0',
        'max_attempts', maxa, 'created_at', now_s, 'run_at', run_at_s, 'idem', idem)
    else
      redis.call('HSET', jk(id), 'payload', payload, 'status', status, 'attempts', '0',
        'max_attempts', maxa, 'created_at', now_s, 'run_at', run_at_s)
    end
    if status == 'pending' then
      pushed[#pushed + 1] = id
      entered.pending[#entered.pending + 1] = now_s
      entered.pending[#entered.pending + 1] = id
    else
      later[#later + 1] = run_at_s
      later[#later + 1] = id
      entered.scheduled[#entered.scheduled + 1] = now_s
      entered.scheduled[#entered.scheduled + 1] = id
    end
    if companion ~= '' then redis.call('HSET', K.outbox, id, companion) end
    fresh = fresh + 1
    out[#out + 1] = id
    out[#out + 1] = 0
    out[#out + 1] = now
    out[#out + 1] = run_at
  end
end
many('LPUSH', K.pending, pushed)
many('ZADD', K.scheduled, later)
many('ZADD', S.pending, entered.pending)
many('ZADD', S.scheduled, entered.scheduled)
if #pushed > 0 then wake() end
if fresh > 0 then series_add('e', fresh) end
return out
"#,
    )
});

/// ARGV[1] n, ARGV[2] worker id, ARGV[3] lease ms, ARGV[4] request id, ARGV[5] the same
/// worker's previous request id whose reply arrived ('' = none: its record is dropped, so a
/// worker keeps at most one). A request id seen before (a retry after a lost reply, from the
/// same worker) gets the jobs that call leased back, where they still run under its tokens (the record holds `id:attempt` pairs: a token is
/// `worker:attempt`). Returns {more, next_due or -1, paused, {{id, attempt, max_attempts,
/// token, payload, created_at, run_at, started_at}...}}.
pub(crate) static LEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local n = tonumber(ARGV[1])
local worker = ARGV[2]
local lease = tonumber(ARGV[3])
local req = K.lease .. ARGV[4]
if ARGV[5] ~= '' and ARGV[5] ~= ARGV[4] then redis.call('DEL', K.lease .. ARGV[5]) end
local function next_due()
  local nd = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  if nd[2] then return tonumber(nd[2]) end
  return -1
end
local function row(id, k, att, token)
  local f = redis.call('HMGET', k, 'max_attempts', 'payload', 'created_at', 'run_at', 'started_at')
  return {id, att, tonumber(f[1]), token, f[2], tonumber(f[3]), tonumber(f[4]), tonumber(f[5])}
end
local prior = redis.call('GET', req)
if prior then
  local out = {}
  for id, att in string.gmatch(prior, '([^,:]+):(%d+)') do
    local k = jk(id)
    local f = redis.call('HMGET', k, 'status', 'token')
    local token = worker .. ':' .. att
    if f[1] == 'running' and f[2] == token then
      out[#out + 1] = row(id, k, tonumber(att), token)
    end
  end
  return {0, next_due(), 0, out}
end
if redis.call('EXISTS', K.paused) == 1 then
  return {0, next_due(), 1, {}}
end
local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', now, 'LIMIT', 0, math.max(n, 100))
for _, id in ipairs(due) do
  redis.call('ZREM', K.scheduled, id)
  local st = redis.call('HGET', jk(id), 'status')
  if st == 'scheduled' or st == 'failed' then
    redis.call('HSET', jk(id), 'status', 'pending')
    move(id, st, 'pending')
    -- behind the jobs already waiting: retries never starve first attempts
    redis.call('LPUSH', K.pending, id)
  end
end
local out = {}
local handed = {}
local waits = {}
local left, leased = {}, {}
local until_s = string.format('%d', now + lease)
local taken = 0
local rounds = 0
while taken < n and rounds < 8 do
  rounds = rounds + 1
  local ids = redis.call('RPOP', K.pending, n - taken)
  if not ids then break end
  for _, id in ipairs(ids) do
    local k = jk(id)
    -- one read and one write per job: the hash's fields, then its new state
    local f = redis.call('HMGET', k, 'status', 'attempts', 'max_attempts', 'payload', 'created_at',
      'run_at')
    if f[1] == 'pending' then
      local att = (tonumber(f[2]) or 0) + 1
      local att_s = string.format('%d', att)
      local token = worker .. ':' .. att_s
      redis.call('HSET', k, 'status', 'running', 'attempts', att_s, 'started_at', now_s,
        'token', token)
      left[#left + 1] = id
      leased[#leased + 1] = until_s
      leased[#leased + 1] = id
      local run_at = tonumber(f[6]) or now
      hist_add(waits, 'w', now - run_at)
      out[#out + 1] = {id, att, tonumber(f[3]), token, f[4], tonumber(f[5]), run_at, now}
      handed[#handed + 1] = id .. ':' .. att_s
      taken = taken + 1
    end
  end
end
many('ZREM', S.pending, left)
many('ZADD', K.leases, leased)
if taken > 0 then
  redis.call('SET', req, table.concat(handed, ','), 'PX', lease)
  series_flush(waits)
end
local more = 0
if redis.call('LLEN', K.pending) > 0 then
  more = 1
  wake()
end
return {more, next_due(), 0, out}
"#,
    )
});

/// ARGV[1] count, then pairs (id, token). Returns one 1 (done) or 0 (fenced) per job.
///
/// A done job's hash is replaced by one field of `fin` (id -> compact record), version 2:
/// `2|attempts|max_attempts|created_at|run_at-created_at|started_at-created_at|
/// finished_at-started_at|len(idem)|len(errors)|len(worker)|` then idem, errors (JSON,
/// empty when none), the worker of the last attempt (the last 12 characters of its id,
/// which `fin:workers` maps to the whole id) and the payload, back to back (lengths in
/// bytes; times in ms). `read::record_from_fin` reads it (and version 1, without the
/// worker, written before).
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local n = tonumber(ARGV[1])
local out = {}
local done = 0
local runs = {}
local shorts, named, seen = {}, {}, {}
local recs, gone, unleased, entered = {}, {}, {}, {}
for i = 0, n - 1 do
  local id = ARGV[2 + 2 * i]
  local token = ARGV[3 + 2 * i]
  local k = jk(id)
  local f = redis.call('HMGET', k, 'status', 'token', 'attempts', 'max_attempts', 'created_at',
    'run_at', 'started_at', 'idem', 'errors', 'payload')
  -- `seen`: the hash is deleted only after the loop, so an id given twice counts once
  if f[1] == 'running' and f[2] == token and not seen[id] then
    seen[id] = true
    local created = tonumber(f[5]) or now
    local started = tonumber(f[7]) or now
    local idem, errors = f[8] or '', f[9] or ''
    if errors == '[]' then errors = '' end
    -- The record keeps the worker's last 12 characters (its id's random tail); the full
    -- id is written once per worker in `fin:workers`.
    local short = shorts[token]
    if not short then
      local worker = worker_of(token)
      short = string.sub(worker, -12)
      if worker ~= '' and not named[short] then
        redis.call('HSETNX', K.fin .. ':workers', short, worker)
        named[short] = true
      end
      shorts[token] = short
    end
    local head = string.format('2|%s|%s|%d|%d|%d|%d|%d|%d|%d|', f[3] or '0', f[4] or '0',
      created, (tonumber(f[6]) or created) - created, started - created, now - started, #idem,
      #errors, #short)
    recs[#recs + 1] = id
    recs[#recs + 1] = head .. idem .. errors .. short .. (f[10] or '')
    hist_add(runs, 'r', now - started)
    gone[#gone + 1] = k
    unleased[#unleased + 1] = id
    entered[#entered + 1] = now_s
    entered[#entered + 1] = id
    out[#out + 1] = 1
    done = done + 1
  else
    out[#out + 1] = 0
  end
end
many('HSET', K.fin, recs)
many('DEL', nil, gone)
many('ZREM', K.leases, unleased)
many('ZADD', S.done, entered)
if done > 0 then
  bump('done', done)
  series_add('d', done)
  series_flush(runs)
end
return out
"#,
    )
});

/// ARGV[1] ttl ms of dead hashes, ARGV[2] id, ARGV[3] token, ARGV[4] error entry (JSON
/// object), ARGV[5] permanent 0/1, ARGV[6] retry delay ms.
/// Returns {0} fenced, {1, run_at} retry, {2} dead.
pub(crate) static FAIL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local ttl = tonumber(ARGV[1])
local id = ARGV[2]
local k = jk(id)
local f = redis.call('HMGET', k, 'status', 'token', 'attempts', 'max_attempts', 'errors',
  'started_at')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return {0} end
local errors = push_error(f[5], ARGV[4])
bump('failed', 1)
local runs = {}
hist_add(runs, 'r', now - (tonumber(f[6]) or now))
series_flush(runs)
redis.call('ZREM', K.leases, id)
if ARGV[5] == '1' or tonumber(f[3]) >= tonumber(f[4]) then
  redis.call('HSET', k, 'status', 'dead', 'errors', errors, 'finished_at', now)
  move(id, 'running', 'dead')
  redis.call('PEXPIRE', k, ttl)
  series_add('x', 1)
  return {2}
end
series_add('f', 1)
local run_at = now + tonumber(ARGV[6])
redis.call('HSET', k, 'status', 'failed', 'errors', errors, 'run_at', run_at)
move(id, 'running', 'failed')
redis.call('ZADD', K.scheduled, run_at, id)
return {1, run_at}
"#,
    )
});

/// ARGV[1] lease ms, ARGV[2] count, then pairs (id, token). Returns 1 (renewed) / 0 (lost).
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local lease = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local id = ARGV[3 + 2 * i]
  local f = redis.call('HMGET', jk(id), 'status', 'token')
  if f[1] == 'running' and f[2] == ARGV[4 + 2 * i] then
    redis.call('ZADD', K.leases, 'XX', now + lease, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"#,
    )
});

/// ARGV[1] limit, ARGV[2] ttl ms of dead hashes, ARGV[3] the reaper's time as RFC 3339 (for
/// the error entry only; expiry is judged by server time). Jobs whose lease expired: back to
/// pending (attempt stays counted) or dead at max attempts. Returns {requeued, dead}.
pub(crate) static REAP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local ttl = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', K.leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local requeued, dead = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', K.leases, id)
  local k = jk(id)
  local f = redis.call('HMGET', k, 'status', 'token', 'attempts', 'max_attempts', 'errors')
  if f[1] == 'running' then
    local entry = cjson.encode({attempt = tonumber(f[3]), at = ARGV[3], worker = worker_of(f[2]),
      error = 'lease expired: worker ' .. (f[2] or '?') .. ' stopped without reporting (crashed or stalled)'})
    local errors = push_error(f[5], entry)
    if tonumber(f[3]) >= tonumber(f[4]) then
      redis.call('HSET', k, 'status', 'dead', 'errors', errors, 'finished_at', now)
      move(id, 'running', 'dead')
      redis.call('PEXPIRE', k, ttl)
      dead = dead + 1
    else
      redis.call('HSET', k, 'status', 'pending', 'errors', errors)
      move(id, 'running', 'pending')
      redis.call('RPUSH', K.pending, id)
      requeued = requeued + 1
    end
  end
end
if requeued > 0 then wake() end
if requeued + dead > 0 then bump('failed', requeued + dead) end
if requeued > 0 then series_add('f', requeued) end
if dead > 0 then series_add('x', dead) end
return {requeued, dead}
"#,
    )
});

/// ARGV[1] id, ARGV[2] token, ARGV[3] uncount 0/1. Gives a leased job back. Returns 1/0.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[1]
local k = jk(id)
local f = redis.call('HMGET', k, 'status', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return 0 end
redis.call('ZREM', K.leases, id)
if ARGV[3] == '1' then redis.call('HINCRBY', k, 'attempts', -1) end
redis.call('HSET', k, 'status', 'pending')
move(id, 'running', 'pending')
redis.call('RPUSH', K.pending, id)
wake()
return 1
"#,
    )
});

/// ARGV[1] id, ARGV[2] ttl ms, ARGV[3] the statuses that may be cancelled (`,a,b,`).
/// Returns {'ok'} / {'missing'} / {'invalid', status}.
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[1]
local k = jk(id)
local st = redis.call('HGET', k, 'status')
if not st then return missing_or_done(id) end
if not string.find(ARGV[3], ',' .. st .. ',', 1, true) then return {'invalid', st} end
redis.call('ZREM', K.scheduled, id)
redis.call('HSET', k, 'status', 'cancelled', 'finished_at', now)
move(id, st, 'cancelled')
redis.call('PEXPIRE', k, tonumber(ARGV[2]))
return {'ok'}
"#,
    )
});

/// ARGV[1] id, ARGV[2] the queue's max_attempts, ARGV[3] the statuses that may be retried
/// (`,a,b,`). Back to pending with a fresh set of attempts (attempt numbers keep growing, so
/// old fencing tokens stay invalid).
pub(crate) static RETRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[1]
local k = jk(id)
local f = redis.call('HMGET', k, 'status', 'attempts')
if not f[1] then return missing_or_done(id) end
if not string.find(ARGV[3], ',' .. f[1] .. ',', 1, true) then return {'invalid', f[1]} end
redis.call('ZREM', K.scheduled, id)
redis.call('HSET', k, 'status', 'pending', 'max_attempts', tonumber(f[2]) + tonumber(ARGV[2]),
  'run_at', now)
redis.call('HDEL', k, 'finished_at')
redis.call('PERSIST', k)
move(id, f[1], 'pending')
redis.call('RPUSH', K.pending, id)
wake()
return {'ok'}
"#,
    )
});

/// ARGV[1..3] retention ms of done, dead and cancelled jobs, ARGV[4] limit. Deletes finished
/// jobs older than their retention. Returns how many.
pub(crate) static PRUNE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local limit = tonumber(ARGV[4])
local removed = 0
for i, st in ipairs({'done', 'dead', 'cancelled'}) do
  local cutoff = now - tonumber(ARGV[i])
  local ids = redis.call('ZRANGEBYSCORE', S[st], '-inf', cutoff, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    redis.call('DEL', jk(id))
    if st == 'done' then redis.call('HDEL', K.fin, id) end
    redis.call('ZREM', S[st], id)
    removed = removed + 1
  end
end
return removed
"#,
    )
});

/// No ARGV. Returns {count per status (JobStatus::ALL order)..., paused 0/1, done in the last
/// minute, failed in the last minute, server now ms}.
pub(crate) static STATS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local out = {}
for _, st in ipairs({'pending', 'scheduled', 'running', 'done', 'failed', 'dead', 'cancelled'}) do
  out[#out + 1] = redis.call('ZCARD', S[st])
end
out[#out + 1] = redis.call('EXISTS', K.paused)
local bucket = math.floor(now / 10000)
for _, what in ipairs({'done', 'failed'}) do
  local sum = 0
  for b = bucket - 5, bucket do
    sum = sum + (tonumber(redis.call('GET', K.stat .. what .. ':' .. b)) or 0)
  end
  out[#out + 1] = sum
end
out[#out + 1] = now
return out
"#,
    )
});

/// The fleet: KEYS[1] the instance's actor key, KEYS[2] the instances zset; ARGV[1] JSON,
/// ARGV[2] ttl ms, ARGV[3] instance.
pub(crate) static REPORT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return 1
"#,
    )
});

/// KEYS[1] the instances zset, KEYS[2] the actor key prefix (same slot). Returns the JSON
/// reports of live instances.
pub(crate) static FLEET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, i in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'LIMIT', 0, 1000)) do
  local v = redis.call('GET', KEYS[2] .. i)
  if v then out[#out + 1] = v end
end
return out
"#,
    )
});

/// ARGV[1] id, ARGV[2] token, ARGV[3] delay ms. A snooze: the running job waits in
/// `scheduled` until `now + delay` and its attempt is given back (nothing failed: the handler
/// waits for something outside the job, e.g. a mail server that is down). Returns
/// {1, run_at} / {0} when fenced.
pub(crate) static SNOOZE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[1]
local k = jk(id)
local f = redis.call('HMGET', k, 'status', 'token')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return {0} end
redis.call('ZREM', K.leases, id)
redis.call('HINCRBY', k, 'attempts', -1)
local run_at = now + tonumber(ARGV[3])
redis.call('HSET', k, 'status', 'scheduled', 'run_at', run_at)
move(id, 'running', 'scheduled')
redis.call('ZADD', K.scheduled, run_at, id)
return {1, run_at}
"#,
    )
});

/// ARGV[1] id, ARGV[3] the statuses that may be deleted (`,a,b,`). Deletes the job wherever it is (its hash or its `fin`
/// record, its ledger entry, its place in `scheduled`); an id left in `pending` is skipped by
/// the next lease, which only takes jobs whose hash says pending. Returns {'ok', status},
/// {'invalid', 'running'} or {'missing'}.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[1]
local k = jk(id)
local st = redis.call('HGET', k, 'status')
if not st then
  if not string.find(ARGV[3], ',done,', 1, true) then
    if redis.call('HEXISTS', K.fin, id) == 1 then return {'invalid', 'done'} end
    return {'missing'}
  end
  if redis.call('HDEL', K.fin, id) == 1 then
    redis.call('ZREM', S.done, id)
    return {'ok', 'done'}
  end
  return {'missing'}
end
if not string.find(ARGV[3], ',' .. st .. ',', 1, true) then return {'invalid', st} end
redis.call('ZREM', K.scheduled, id)
redis.call('ZREM', S[st], id)
redis.call('DEL', k)
return {'ok', st}
"#,
    )
});
