#!/usr/bin/env bash
# vigil beside BullMQ, Sidekiq and apalis-redis: no-op drains against ONE private
# redis-server, in interleaved rounds, with medians and ratios to vigil measured in the same
# run.
#
#   bench/peers/run.sh [JOBS] [ROUNDS]        (defaults: 50000 jobs, 3 rounds)
#   VIGIL=path/to/vigil bench/peers/run.sh    (skip building vigil)
#   APALIS_TARGET_DIR=dir bench/peers/run.sh  (where the apalis drain is built;
#                                              default /var/tmp/vigil-apalis-target)
#
# Each run enqueues JOBS no-op jobs into an empty Redis, then drains the backlog at
# concurrency 50 and times the drain only (not the enqueue):
#   vigil    `vigil bench --redis ... -n JOBS --concurrency 50` (process_jobs_per_s)
#   BullMQ   bullmq/drain.mjs: addBulk, then one Worker (concurrency 50)
#   Sidekiq  sidekiq/drain.rb: push_bulk, then one `sidekiq -c 50` process (basic fetch)
#   apalis-redis  apalis/ (`drain`, a Cargo project of its own): push_bulk, the backlog
#            moved from apalis-redis's scheduled set to its active list (its first fetch
#            cannot move 8,000 or more), then one apalis worker (concurrency 50) on the
#            storage with lock_tasks(false)
# and reports Redis's CPU time per job the same way for all four: INFO cpu
# (used_cpu_sys + used_cpu_user) before the enqueue and after the drain, divided by JOBS.
# The server is flushed between runs; the order of the systems rotates every round.
#
# Installs what is missing: node_modules (npm ci in bench/peers/bullmq), Debian's
# ruby-sidekiq (apt-get), the apalis drain (cargo build --release --locked --manifest-path
# bench/peers/apalis/Cargo.toml, when its binary is missing or older than its sources), and
# builds vigil (cargo build --release --bin vigil). Prints one JSON line per run, then a
# markdown table. Never touches any other Redis.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
N="${1:-50000}"
ROUNDS="${2:-3}"
CONCURRENCY=50
PEERS=bench/peers

command -v redis-server >/dev/null || { echo "needs redis-server on PATH" >&2; exit 1; }
command -v node >/dev/null || { echo "needs node (20 or later) and npm on PATH" >&2; exit 1; }
if [ ! -d "$PEERS/bullmq/node_modules/bullmq" ]; then
  (cd "$PEERS/bullmq" && npm ci --no-audit --no-fund)
fi
if ! command -v sidekiq >/dev/null || ! ruby -e 'require "sidekiq"' 2>/dev/null; then
  apt_install ruby-sidekiq
fi
APALIS_TARGET_DIR="${APALIS_TARGET_DIR:-/var/tmp/vigil-apalis-target}"
APALIS="$APALIS_TARGET_DIR/release/drain"
if [ ! -x "$APALIS" ] || [ -n "$(find "$PEERS/apalis" -newer "$APALIS" -type f | head -1)" ]; then
  CARGO_TARGET_DIR="$APALIS_TARGET_DIR" \
    cargo build --release --locked --manifest-path "$PEERS/apalis/Cargo.toml"
fi
vigil_binary
private_redis

run_one() { # system -> one JSON line on stdout
  redis-cli -p "$PORT" flushall >/dev/null
  redis_settled "$PORT"
  case "$1" in
    vigil) "$VIGIL" bench --redis "redis://127.0.0.1:$PORT/0" -n "$N" \
             --concurrency "$CONCURRENCY" >"$WORK/vigil.out" 2>"$WORK/vigil.log"
           grep -m1 '"system":"vigil"' "$WORK/vigil.out" ;;
    bullmq) node "$PEERS/bullmq/drain.mjs" "$PORT" "$N" "$CONCURRENCY" 2>"$WORK/bullmq.log" ;;
    sidekiq) ruby "$PEERS/sidekiq/drain.rb" "$PORT" "$N" "$CONCURRENCY" 2>"$WORK/sidekiq.log" ;;
    apalis-redis) "$APALIS" "$PORT" "$N" "$CONCURRENCY" 2>"$WORK/apalis-redis.log" ;;
  esac
}

SYSTEMS=(vigil bullmq sidekiq apalis-redis)
declare -A RATES CPUS VERSION
for r in $(seq 0 $((ROUNDS - 1))); do
  for i in "${!SYSTEMS[@]}"; do
    s="${SYSTEMS[$(((i + r) % ${#SYSTEMS[@]}))]}"
    line="$(run_one "$s")" || { echo "the $s run failed; its log:" >&2; cat "$WORK/$s.log" >&2; exit 1; }
    echo "$line"
    RATES[$s]+="$(printf '%.0f' "$(field process_jobs_per_s "$line")") "
    CPUS[$s]+="$(field redis_cpu_us_per_job "$line") "
  done
done

locked() { awk -v c="$1" '$0 == "name = \"" c "\"" {getline; gsub(/version = |"/, ""); print}' \
  "$PEERS/apalis/Cargo.lock"; }
VERSION[vigil]="$("$VIGIL" --version | cut -d" " -f2) ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
VERSION[bullmq]="$(node -p "require('./$PEERS/bullmq/node_modules/bullmq/package.json').version")"
VERSION[sidekiq]="$(ruby -e 'require "sidekiq"; print Sidekiq::VERSION')"
VERSION[apalis-redis]="$(locked apalis-redis) (apalis $(locked apalis))"
VIGIL_MEDIAN="$(median "${RATES[vigil]}")"
echo
echo "No-op jobs, $N per run, concurrency $CONCURRENCY, drain timed (backlog enqueued first), one"
echo "private redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') (no persistence), $ROUNDS interleaved rounds;"
echo "$(date -u '+%F %H:%M UTC'), $(nproc) cores; \`bench/peers/run.sh $N $ROUNDS\`"
echo
echo "| system | version | jobs/s, median (runs) | ratio to vigil | Redis CPU µs/job, median (runs) |"
echo "|---|---|---:|---:|---:|"
for s in "${SYSTEMS[@]}"; do
  m="$(median "${RATES[$s]}")"; c="$(median "${CPUS[$s]}")"
  printf '| %s | %s | %s (%s) | %s | %s (%s) |\n' "$s" "${VERSION[$s]}" "$m" \
    "$(echo ${RATES[$s]} | tr ' ' ',' | sed 's/,/, /g')" \
    "$(awk "BEGIN {printf \"%.2f\", $m / $VIGIL_MEDIAN}")" \
    "$c" "$(echo ${CPUS[$s]} | tr ' ' ',' | sed 's/,/, /g')"
done
