#!/usr/bin/env bash
# Is vigil's drain flat in the size of the backlog? `vigil bench` drains of each backlog size
# against ONE private redis-server, in interleaved rounds, with medians and ratios to the
# first size measured in the same run.
#
#   bench/backlog/run.sh [ROUNDS] [SIZE ...]   (defaults: 3 rounds; 1000 10000 100000 1000000)
#   VIGIL=path/to/vigil bench/backlog/run.sh    (skip building vigil)
#
# Each run enqueues SIZE no-op jobs into an empty Redis, then drains them at concurrency 50
# and times the drain only (`process_jobs_per_s`); Redis CPU per job (INFO cpu before the
# enqueue and after the drain) and Redis memory per finished job come from the same line.
# The server is flushed between runs; the order of the sizes rotates every round. A
# 1,000,000-job backlog needs about 1 GB of memory in Redis while it waits.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
ROUNDS="${1:-3}"
shift || true
SIZES=("$@")
[ "${#SIZES[@]}" -gt 0 ] || SIZES=(1000 10000 100000 1000000)
CONCURRENCY=50

command -v redis-server >/dev/null || { echo "needs redis-server on PATH" >&2; exit 1; }
vigil_binary
private_redis

declare -A RATES CPUS BYTES
K="${#SIZES[@]}"
for r in $(seq 0 $((ROUNDS - 1))); do
  for i in $(seq 0 $((K - 1))); do
    n="${SIZES[$(((i + r) % K))]}"
    redis-cli -p "$PORT" flushall >/dev/null
    redis_settled "$PORT"
    "$VIGIL" bench --redis "redis://127.0.0.1:$PORT/0" -n "$n" --concurrency "$CONCURRENCY" \
      >"$WORK/out" 2>"$WORK/log" || { echo "the $n-job run failed; its log:" >&2; cat "$WORK/log" >&2; exit 1; }
    line="$(grep -m1 '"system":"vigil"' "$WORK/out")"
    echo "$line"
    RATES[$n]+="$(printf '%.0f' "$(field process_jobs_per_s "$line")") "
    CPUS[$n]+="$(field redis_cpu_us_per_job "$line") "
    BYTES[$n]+="$(field redis_bytes_per_finished_job "$line") "
  done
done

FIRST="$(median "${RATES[${SIZES[0]}]}")"
list() { echo $1 | sed 's/ /, /g'; }
echo
echo "No-op jobs, backlog enqueued first, drain timed at concurrency $CONCURRENCY, one private"
echo "redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') (no persistence), $ROUNDS interleaved rounds; vigil $("$VIGIL" --version | cut -d" " -f2) ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "$(date -u '+%F %H:%M UTC'), $(nproc) cores; \`bench/backlog/run.sh $ROUNDS ${SIZES[*]}\`"
echo
echo "| backlog | jobs/s, median (runs) | ratio to ${SIZES[0]} | Redis CPU µs/job, median (runs) | Redis bytes per finished job, median |"
echo "|---:|---:|---:|---:|---:|"
for n in "${SIZES[@]}"; do
  m="$(median "${RATES[$n]}")"
  printf '| %s | %s (%s) | %s | %s (%s) | %s |\n' "$n" "$m" "$(list "${RATES[$n]}")" \
    "$(awk "BEGIN {printf \"%.2f\", $m / $FIRST}")" \
    "$(median "${CPUS[$n]}")" "$(list "${CPUS[$n]}")" "$(median "${BYTES[$n]}")"
done
