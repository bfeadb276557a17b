#!/usr/bin/env bash
# The API's enqueue throughput beside a baseline route of the same server, in the same run:
# ONE `vigil api` process (the API role alone: no workers drain the queues, so only the
# enqueue is measured) against a private redis-server and a scratch PostgreSQL database,
# loaded by wrk over loopback, the routes interleaved in rounds; medians, and ratios to the
# baseline taken within each round.
#
#   bench/api/run.sh [SECONDS] [ROUNDS]        (defaults: 10 s per run, 3 rounds)
#   VIGIL=path/to/vigil  PG=postgres://postgres@127.0.0.1:5432  bench/api/run.sh
#   THREADS=1 CONNECTIONS=32 BULK_CONNECTIONS=8 (wrk -t / -c)  BULK_JOBS=1000 (per request)
#   REDIS_STATS=1   also print Redis's busiest commands of each run (stderr)
#
# The routes, each loaded for SECONDS per run:
#   baseline  GET  /api/v1/jobs/{id}      one job read back: one Redis pipeline (HGETALL +
#                                         HGET), then a GET for its progress. The cheapest
#                                         authenticated route that reads Redis, so it pays
#                                         what every API call pays (TCP and HTTP, the
#                                         credential check, the rate-limit script in Redis,
#                                         the request pipeline, metrics) and little more.
#                                         `/health` is not used: it skips the credential and
#                                         is exempt from the rate limiter, so a ratio to it
#                                         would mix those costs into "enqueue".
#   enqueue   POST /api/v1/jobs/email     one job per request: the email kind's own OpenAPI
#                                         example (PAYLOAD below), validated and written with
#                                         its `job.enqueue` audit record in one script, the
#                                         record then relayed to the audit queue; 202.
#   bulk      POST /api/v1/jobs/email/bulk   BULK_JOBS (1,000) of that job per request: one
#                                         script call, one audit record; 202 with a result
#                                         per job; jobs/s = req/s x BULK_JOBS.
# The email job is the example every request body in /docs carries, small (81 bytes) and
# what outside producers enqueue; `alert_escalation` with `{}` would be smaller still, but
# is the scheduler's own job, not one sent in thousands.
# wrk: one thread (`-t1`: on 2 cores wrk needs a fifth of one, the rest goes to vigil and
# Redis); `-c32` for the single-job routes (enough to keep vigil's worker threads busy: -c16
# gave less, -c64 no more and twice the latency); `-c8` for bulk (8,000 jobs in flight; wrk
# counts only requests answered within SECONDS, so each connection loses up to one
# ~0.2-0.7 s request at the end: about 2 % at -c8 over 10 s, 7 % at -c32); `--timeout 10s`.
# The wrk scripts are enqueue.lua and bulk.lua next to this file (PAYLOAD and BULK_JOBS
# come from the environment). Before the timed runs, a 2 s warm-up of each route (not
# counted); every round runs the three routes, in an order rotated by one each round.
# Before every run the private Redis is flushed (one bulk run writes a few hundred MB) and
# the baseline's job enqueued again; after it, the script waits until the server holds no
# client connection (requests still in flight when wrk stopped are answered), so nothing
# spills into the next run.
#
# Credential: an admin API key (`Authorization: Bearer vgk_...`), as scripts and OpenAPI
# clients call the API: a user made with `vigil user add`, a token from
# POST /api/v1/auth/token, then POST /api/v1/api-keys. Checking it is a SHA-256 and a
# constant-time compare; the key's row is cached (`auth.user_cache_seconds`).
#
# Rate limits: left ON (`rate_limit.enabled = true`: every request still runs the
# limiter's script in Redis, as in production) but out of reach:
# `anonymous_per_minute`, `authenticated_per_minute` and `read_per_minute` = 1,000,000,000
# in the generated config file (VIGIL_* variables of the caller are ignored).
#
# Every answer must be 2xx: wrk's "Non-2xx or 3xx responses" or "Socket errors" (connect,
# read, write, timeout) stop the script with wrk's output, and after each enqueue run the
# email queue must hold at least the jobs wrk saw accepted (`jobs_in_redis`). The single and
# bulk request shapes are also checked once with curl before any timing.
# CPU seconds of each run: vigil from /proc/PID/stat (utime + stime), redis-server from
# INFO cpu (used_cpu_sys + used_cpu_user), wrk from /usr/bin/time, "other" = the machine's
# busy time (/proc/stat) minus those three (other builds on a shared machine, this script,
# kernel time charged to no process);
# per job: vigil's and Redis's CPU over the jobs written (the baseline: over its requests).
#
# Installs wrk with apt-get when it is missing (sudo when not root); builds vigil
# (cargo build --release --bin vigil) unless VIGIL is given. Prints one JSON line per run,
# then a markdown table. Cleans up on exit: vigil, redis-server, the scratch database.
# Never touches any other Redis or database.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
COMMAND="$(if [ -n "${VIGIL:-}" ]; then printf 'VIGIL=%s ' "$VIGIL"; fi)bench/api/run.sh $*"
DURATION="${1:-10}"
ROUNDS="${2:-3}"
THREADS="${THREADS:-1}"
CONNECTIONS="${CONNECTIONS:-32}"
BULK_CONNECTIONS="${BULK_CONNECTIONS:-8}"
BULK_JOBS="${BULK_JOBS:-1000}"
WARMUP=2
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
QUEUE=email
# The email kind's OpenAPI example (jobs/src/kinds/email.rs), the job of both POST routes.
PAYLOAD='{"to":["soc@example.com"],"subject":"Weekly report","body":{"text":"All quiet."}}'
export PAYLOAD BULK_JOBS

command -v redis-server >/dev/null || { echo "needs redis-server on PATH" >&2; exit 1; }
for tool in curl jq psql; do
  command -v "$tool" >/dev/null || { echo "needs $tool on PATH" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 1; }
if ! command -v wrk >/dev/null; then
  apt_install wrk
fi
vigil_binary

WORK="$(mktemp -d)"
DB="vigil_bench_api_$$_$RANDOM"
REDIS_PID=""
VIGIL_PID=""
DB_MADE=""
cleanup() {
  if [ -n "$VIGIL_PID" ]; then kill "$VIGIL_PID" 2>/dev/null; wait "$VIGIL_PID" 2>/dev/null; fi
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; fi
  if [ -n "$DB_MADE" ]; then
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 \
      || echo "could not drop the scratch database $DB" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "bench/api: $*" >&2; exit 1; }

start_redis "$WORK"
psql -q "$PG/postgres" -c "CREATE DATABASE $DB"
DB_MADE=1

head -c 48 /dev/urandom | base64 | tr -d '\n' >"$WORK/jwt_secret"
cat >"$WORK/vigil.toml" <<EOF
# bench/api/run.sh: one API process on a private redis-server and a scratch database.
[database]
url = "$PG/$DB"

[redis]
url = "redis://127.0.0.1:$PORT/0"

[http]
# Port 0: the system picks a free port; vigil logs it.
listen = "127.0.0.1:0"

[auth]
jwt_secret_file = "$WORK/jwt_secret"

# On, so every request still runs the limiter's script in Redis; out of reach.
[rate_limit]
enabled = true
anonymous_per_minute = 1000000000
authenticated_per_minute = 1000000000
read_per_minute = 1000000000
EOF
export VIGIL_CONFIG="$WORK/vigil.toml"
# Only the bench's own settings: no VIGIL_* from the caller's environment.
for v in $(compgen -e | grep '^VIGIL_' | grep -v '^VIGIL_CONFIG$' || true); do unset "$v"; done
"$VIGIL" check-config >"$WORK/check-config.out" 2>&1 \
  || { cat "$WORK/check-config.out" >&2; fail "the generated configuration is invalid"; }

"$VIGIL" api >"$WORK/vigil.log" 2>&1 &
VIGIL_PID=$!
deadline=$((SECONDS + 60))
API_PORT=""
until [ -n "$API_PORT" ] && curl -sf -o /dev/null "http://127.0.0.1:$API_PORT/ready"; do
  API_PORT="$(sed -nE 's#.*listening on http://127\.0\.0\.1:([0-9]+).*#\1#p' "$WORK/vigil.log" | head -1)"
  kill -0 "$VIGIL_PID" 2>/dev/null || { cat "$WORK/vigil.log" >&2; fail "vigil api exited"; }
  [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/vigil.log" >&2; fail "vigil api not ready within 60 s"; }
  sleep 0.1
done

BASE="http://127.0.0.1:$API_PORT"

# The credential: a user, its token, then an admin API key made with that token.
PASSWORD="$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=')"
printf '%s\n' "$PASSWORD" | "$VIGIL" user add bench --role admin >"$WORK/user.log" 2>&1 \
  || { cat "$WORK/user.log" >&2; fail "vigil user add failed"; }
# call METHOD PATH [BODY] [TOKEN]: the body of a 2xx answer, or the status and body and exit.
call() {
  local out status
  out="$(curl -s -w '\n%{http_code}' -X "$1" "$BASE$2" -H 'Content-Type: application/json' \
    ${4:+-H "Authorization: Bearer $4"} ${3:+--data-binary "$3"})"
  status="${out##*$'\n'}"
  [[ "$status" == 2* ]] || fail "$1 $2 answered $status: ${out%$'\n'*}"
  printf '%s' "${out%$'\n'*}"
}
TOKEN="$(call POST /api/v1/auth/token "{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" \
  | jq -er .access_token)"
KEY="$(call POST /api/v1/api-keys '{"name":"bench","role":"admin"}' "$TOKEN" | jq -er .key)"

# One check of each route as wrk will send it, before any timing.
one="$(call POST "/api/v1/jobs/$QUEUE" "{\"payload\":$PAYLOAD}" "$KEY")"
jq -e '.status == "pending"' <<<"$one" >/dev/null || fail "unexpected enqueue answer: $one"
call GET "/api/v1/jobs/$(jq -r .id <<<"$one")" "" "$KEY" | jq -e '.id' >/dev/null
printf '{"jobs":[%s]}' "$(for _ in $(seq 1 "$BULK_JOBS"); do printf '{"payload":%s},' "$PAYLOAD"; done \
  | sed 's/,$//')" >"$WORK/bulk.json"
call POST "/api/v1/jobs/$QUEUE/bulk" "@$WORK/bulk.json" "$KEY" \
  | jq -e --argjson n "$BULK_JOBS" '.count == $n and ([.results[] | select(.error)] | length) == 0' \
  >/dev/null || fail "the bulk enqueue did not accept all $BULK_JOBS jobs"

CLK_TCK="$(getconf CLK_TCK)"
vigil_cpu() { # utime + stime of the vigil process, in seconds
  local stat; stat="$(cat "/proc/$VIGIL_PID/stat")"; stat="${stat##*) }"
  awk -v t="$CLK_TCK" '{printf "%.2f", ($12 + $13) / t}' <<<"$stat"
}
redis_cpu() {
  redis-cli -p "$PORT" info cpu | tr -d '\r' \
    | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.2f", s}'
}
machine_cpu() { # busy CPU seconds of the whole machine (every core, every process)
  awk -v t="$CLK_TCK" '$1 == "cpu" {printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / t}' /proc/stat
}
pending_jobs() { redis-cli -p "$PORT" zcard "vigil:{$QUEUE}:s:pending"; }

# Fresh Redis, and the job the baseline reads.
reset_redis() {
  redis-cli -p "$PORT" flushall >/dev/null
  BASELINE_ID="$(call POST "/api/v1/jobs/$QUEUE" "{\"payload\":$PAYLOAD}" "$KEY" | jq -er .id)"
}

# Waits until the server holds no client connection: wrk has gone, and every request still
# in flight when it stopped (up to CONNECTIONS bulk requests of ~1 s) has been answered, so
# none spills into the next run (its Redis writes, its CPU time).
settle() {
  local deadline=$((SECONDS + 60))
  while [ -n "$(ss -Htn state established state close-wait "sport = :$API_PORT")" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "requests still open 60 s after wrk stopped"
    sleep 0.05
  done
}

# sample ROUTE: one request as wrk sends it, with its status and the start of its answer.
sample() {
  local args=()
  case "$1" in
    baseline) args=("$BASE/api/v1/jobs/$BASELINE_ID") ;;
    enqueue) args=(-X POST --data-binary "{\"payload\":$PAYLOAD}" "$BASE/api/v1/jobs/$QUEUE") ;;
    bulk) args=(-X POST --data-binary "@$WORK/bulk.json" "$BASE/api/v1/jobs/$QUEUE/bulk") ;;
  esac
  curl -s -w '\nHTTP %{http_code}\n' -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $KEY" "${args[@]}" | cut -c1-300 | tail -n 3
}

# run_wrk ROUTE SECONDS: wrk against ROUTE; its output in $WORK/wrk.out, its CPU in wrk.cpu.
run_wrk() {
  local url script=() c
  c="$(connections "$1")"
  case "$1" in
    baseline) url="$BASE/api/v1/jobs/$BASELINE_ID" ;;
    enqueue) url="$BASE/api/v1/jobs/$QUEUE"; script=(-s bench/api/enqueue.lua) ;;
    bulk) url="$BASE/api/v1/jobs/$QUEUE/bulk"; script=(-s bench/api/bulk.lua) ;;
  esac
  /usr/bin/time -f '%U %S' -o "$WORK/wrk.cpu" \
    wrk -t "$THREADS" -c "$c" -d "${2}s" --timeout 10s --latency "${script[@]}" \
    -H "Authorization: Bearer $KEY" "$url" >"$WORK/wrk.out" 2>&1 \
    || { cat "$WORK/wrk.out" >&2; fail "wrk failed on $1"; }
  settle
  # A bench that measured refusals is worthless: stop at the first non-2xx or socket error.
  if grep -qE 'Non-2xx or 3xx responses|Socket errors' "$WORK/wrk.out"; then
    cat "$WORK/wrk.out" >&2
    echo "The same request now:" >&2; sample "$1" >&2
    echo "vigil's log, last lines:" >&2; tail -n 20 "$WORK/vigil.log" >&2
    fail "$1: wrk saw non-2xx answers or socket errors (above)"
  fi
}
connections() { if [ "$1" = bulk ]; then echo "$BULK_CONNECTIONS"; else echo "$CONNECTIONS"; fi; }
jobs_per_request() { case "$1" in baseline) echo 0 ;; enqueue) echo 1 ;; bulk) echo "$BULK_JOBS" ;; esac; }

# run_one ROUTE ROUND -> one JSON line on stdout.
run_one() {
  local route="$1" v0 r0 m0 v1 r1 m1 requests rps p50 p99 per jobs_rps held
  reset_redis
  redis-cli -p "$PORT" config resetstat >/dev/null
  v0="$(vigil_cpu)"; r0="$(redis_cpu)"; m0="$(machine_cpu)"
  run_wrk "$route" "$DURATION"
  v1="$(vigil_cpu)"; r1="$(redis_cpu)"; m1="$(machine_cpu)"
  if [ -n "${REDIS_STATS:-}" ]; then
    redis-cli -p "$PORT" info commandstats | tr -d '\r' | grep '^cmdstat' \
      | sed -E 's/^cmdstat_([^:]+):calls=([0-9]+),usec=([0-9]+).*/\3 \2 \1/' | sort -rn | head -12 \
      | awk -v r="$route" '{printf "%s %-20s calls=%-9s usec=%s\n", r, $3, $2, $1}' >&2
  fi
  requests="$(sed -nE 's/^ *([0-9]+) requests in .*/\1/p' "$WORK/wrk.out")"
  rps="$(sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' "$WORK/wrk.out")"
  p50="$(awk '$1 == "50%" {print $2}' "$WORK/wrk.out")"
  p99="$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")"
  [ -n "$requests" ] && [ -n "$rps" ] || { cat "$WORK/wrk.out" >&2; fail "cannot read wrk's output"; }
  per="$(jobs_per_request "$route")"
  jobs_rps="$(awk "BEGIN {printf \"%.0f\", $rps * $per}")"
  # The baseline's own job is one pending job; every accepted enqueue adds `per` more (the
  # server may finish a few requests after wrk stopped counting, never fewer).
  held=$(($(pending_jobs) - 1))
  if [ "$per" -gt 0 ] && [ "$held" -lt $((requests * per)) ]; then
    fail "$route: wrk saw $((requests * per)) jobs accepted but Redis holds $held"
  fi
  # CPU per job (per request for the baseline) over what the server did, tail included.
  # Everything else the machine ran meanwhile (other builds; this script's polling).
  local done_n vcpu rcpu wcpu other
  done_n="$held"; [ "$per" -gt 0 ] || done_n="$requests"
  vcpu="$(awk "BEGIN {printf \"%.2f\", $v1 - $v0}")"
  rcpu="$(awk "BEGIN {printf \"%.2f\", $r1 - $r0}")"
  wcpu="$(awk '{printf "%.2f", $1 + $2}' "$WORK/wrk.cpu")"
  other="$(awk "BEGIN {printf \"%.2f\", $m1 - $m0 - $vcpu - $rcpu - $wcpu}")"
  printf '{"route":"%s","round":%d,"seconds":%s,"threads":%s,"connections":%s,"requests":%s,"req_per_s":%.0f,"jobs_per_s":%s,"jobs_in_redis":%s,"latency_p50":"%s","latency_p99":"%s","vigil_cpu_s":%s,"redis_cpu_s":%s,"wrk_cpu_s":%s,"other_cpu_s":%s,"vigil_cpu_us_per_job":%.1f,"redis_cpu_us_per_job":%.1f}\n' \
    "$route" "$2" "$DURATION" "$THREADS" "$(connections "$route")" "$requests" "$rps" "$jobs_rps" \
    "$held" "$p50" "$p99" "$vcpu" "$rcpu" "$wcpu" "$other" \
    "$(awk "BEGIN {print $vcpu * 1e6 / $done_n}")" "$(awk "BEGIN {print $rcpu * 1e6 / $done_n}")"
}

ROUTES=(baseline enqueue bulk)
for route in "${ROUTES[@]}"; do reset_redis; run_wrk "$route" "$WARMUP"; done

declare -A RATES JOBS RATIO VCPU RCPU WCPU OCPU VUS RUS
BULK_VS_ONE=""
for r in $(seq 0 $((ROUNDS - 1))); do
  declare -A rate=() jobs=()
  for i in 0 1 2; do
    route="${ROUTES[$(((i + r) % 3))]}"
    line="$(run_one "$route" "$((r + 1))")"
    echo "$line"
    rate[$route]="$(field req_per_s "$line")"
    jobs[$route]="$(field jobs_per_s "$line")"
    RATES[$route]+="${rate[$route]} "
    JOBS[$route]+="${jobs[$route]} "
    VCPU[$route]+="$(field vigil_cpu_s "$line") "
    RCPU[$route]+="$(field redis_cpu_s "$line") "
    WCPU[$route]+="$(field wrk_cpu_s "$line") "
    OCPU[$route]+="$(field other_cpu_s "$line") "
    VUS[$route]+="$(field vigil_cpu_us_per_job "$line") "
    RUS[$route]+="$(field redis_cpu_us_per_job "$line") "
  done
  # Within the round: each route's jobs/s (the baseline's own req/s) to the baseline's req/s.
  for route in "${ROUTES[@]}"; do
    n="${jobs[$route]}"; [ "$route" != baseline ] || n="${rate[baseline]}"
    RATIO[$route]+="$(awk "BEGIN {printf \"%.2f\", $n / ${rate[baseline]}}") "
  done
  BULK_VS_ONE+="$(awk "BEGIN {printf \"%.2f\", ${jobs[bulk]} / ${jobs[enqueue]}}") "
  unset rate jobs
done

commas() { sed -E ':a; s/([0-9])([0-9]{3})($|[^0-9.])/\1,\2\3/; ta' <<<"$1"; }
runs() { commas "$(echo $1 | sed 's/ /, /g')"; }
echo
echo "\`vigil api\` alone (no workers) on $(nproc) cores, loaded by wrk 4 over loopback (-t$THREADS; -c$CONNECTIONS, bulk"
echo "-c$BULK_CONNECTIONS), $DURATION s per run, $ROUNDS round(s), the route order rotated each round, after a ${WARMUP} s warm-up of each;"
echo "a private redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') (no persistence, flushed before each run) and a scratch"
echo "PostgreSQL database; an admin API key; rate limits on, out of reach; every answer 2xx."
echo "The job: the email kind's example (a ${#PAYLOAD}-byte payload). vigil $("$VIGIL" --version | cut -d' ' -f2) ($VIGIL,"
echo "file dated $(date -u -r "$VIGIL" '+%F %H:%M UTC'); this tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?')); $(date -u '+%F %H:%M UTC');"
echo "\`$COMMAND\`"
echo
echo "| route | req/s, median (runs) | jobs/s, median | ratio to the baseline's req/s, median (runs) | CPU s per run, vigil / Redis / wrk / other | CPU µs per job, vigil / Redis |"
echo "|---|---:|---:|---:|---:|---:|"
for route in "${ROUTES[@]}"; do
  case "$route" in
    baseline) name="baseline: \`GET /api/v1/jobs/{id}\`"; jobs="—" ;;
    enqueue) name="\`POST /api/v1/jobs/$QUEUE\`"; jobs="$(commas "$(median "${JOBS[$route]}")")" ;;
    bulk) name="\`POST /api/v1/jobs/$QUEUE/bulk\`, $(commas "$BULK_JOBS") jobs"; jobs="$(commas "$(median "${JOBS[$route]}")")" ;;
  esac
  printf '| %s | %s (%s) | %s | %s (%s) | %s / %s / %s / %s | %s / %s |\n' "$name" \
    "$(commas "$(median "${RATES[$route]}")")" "$(runs "${RATES[$route]}")" "$jobs" \
    "$(median "${RATIO[$route]}")" "$(runs "${RATIO[$route]}")" \
    "$(median "${VCPU[$route]}")" "$(median "${RCPU[$route]}")" "$(median "${WCPU[$route]}")" "$(median "${OCPU[$route]}")" \
    "$(median "${VUS[$route]}")" "$(median "${RUS[$route]}")"
done
echo
echo "Ratios are taken within each round: the route's jobs/s (the baseline's req/s) over the"
echo "baseline's req/s. Bulk jobs/s over single-enqueue jobs/s, same round: $(median "$BULK_VS_ONE")"
echo "(runs: $(runs "$BULK_VS_ONE")). CPU medians are per column (the baseline: per request);"
echo "\"other\" is the machine's busy time minus vigil, Redis and wrk: other processes (builds on a"
echo "shared machine, this script) and kernel time charged to no process (softirqs)."
echo "The issue's targets are absolute rates (this machine, this run): enqueue >= 15,000 req/s"
echo "(median $(commas "$(median "${RATES[enqueue]}")")), bulk >= 100,000 jobs/s (median $(commas "$(median "${JOBS[bulk]}")"))."
