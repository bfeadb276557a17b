#!/usr/bin/env bash
# `vigil bench --workload email`, RUNS times: real email jobs through the email worker
# (deliveries recorded in PostgreSQL, messages sent over vigil's SMTP pool) beside the same
# messages sent directly over one connection of that pool, measured in the same run (the ratio
# `vigil_vs_baseline`; `vigil_vs_lettre_transport`: against lettre's own transport, whose
# socket lacks TCP_NODELAY). Against a private redis-server, the SMTP sink next to this script
# and a scratch PostgreSQL database (created, then dropped).
#
#   bench/email/run.sh [JOBS] [RUNS]          (defaults: 5000 emails, 3 runs)
#   VIGIL=path/to/vigil  PG=postgres://postgres@127.0.0.1:5432  bench/email/run.sh
#
# Prints the JSON lines of every run, then the median ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh
N="${1:-5000}"
RUNS="${2:-3}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
vigil_binary

WORK="$(mktemp -d)"
DB="vigil_bench_email_$$"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}" ${REDIS_PID:-}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_redis "$WORK"

node bench/email/smtp-sink.mjs 0 >"$WORK/sink.out" &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q listening "$WORK/sink.out" && break
  sleep 0.05
done
SMTP_PORT="$(sed -nE 's/^listening ([0-9]+)$/\1/p' "$WORK/sink.out")"
[ -n "$SMTP_PORT" ] || { echo "the SMTP sink did not start" >&2; exit 1; }
psql -q "$PG/postgres" -c "CREATE DATABASE $DB"

ratios=()
lettre=()
for _ in $(seq 1 "$RUNS"); do
  out="$("$VIGIL" bench --workload email --redis "redis://127.0.0.1:$PORT/0" \
    --smtp "smtp://127.0.0.1:$SMTP_PORT" --database "$PG/$DB" -n "$N" 2>"$WORK/vigil.log")" \
    || { cat "$WORK/vigil.log" >&2; exit 1; }
  echo "$out"
  ratios+=("$(sed -nE 's/.*"vigil_vs_baseline":([0-9.]+).*/\1/p' <<<"$out")")
  lettre+=("$(sed -nE 's/.*"vigil_vs_lettre_transport":([0-9.]+).*/\1/p' <<<"$out")")
done
echo
echo "vigil_vs_baseline, median of $RUNS: $(median "${ratios[*]}") (runs: ${ratios[*]});"
echo "vigil_vs_lettre_transport, median of $RUNS: $(median "${lettre[*]}") (runs: ${lettre[*]}); $N emails per run,"
echo "$(date -u '+%F %H:%M UTC'), $(nproc) cores; \`bench/email/run.sh $N $RUNS\`"
