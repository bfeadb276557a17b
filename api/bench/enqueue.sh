#!/usr/bin/env bash
# Enqueue throughput through the API on loopback (figures, not a test).
# Needs wrk (apt-get install wrk) and Redis on 127.0.0.1:6379 (db 15 is used and cleaned).
# Usage: api/bench/enqueue.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vigil-target}"
cargo build --release -q -p vigil-api --example bench_server
out=$(mktemp)
"$CARGO_TARGET_DIR/release/examples/bench_server" >"$out" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 50); do grep -q '^LISTEN=' "$out" && break; sleep 0.2; done
TOKEN=$(sed -n 's/^TOKEN=//p' "$out"); export TOKEN
addr=$(sed -n 's/^LISTEN=//p' "$out")
wrk -t1 -c"${2:-32}" -d"${1:-15}s" --latency -s api/bench/enqueue.lua "http://$addr"
