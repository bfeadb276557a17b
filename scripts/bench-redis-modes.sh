#!/usr/bin/env bash
# vigil's no-op throughput on a local 3-master Redis Cluster beside a single Redis node,
# measured in the same run: private servers on free loopback ports, interleaved rounds,
# the four queues spread over the shards (`vigil bench --spread`), medians and the ratio.
#
#   scripts/bench-redis-modes.sh [JOBS] [ROUNDS]      (defaults: 100000 jobs, 3 rounds)
#
# Prints one JSON line per run and a table at the end. Everything it starts is stopped on
# exit; it never touches the Redis on 6379.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
ROUNDS="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vigil-target}"
cargo build --release -q -p vigil
VIGIL="$CARGO_TARGET_DIR/release/vigil"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { # a port with nothing listening, below 55000 (cluster bus = port + 10000)
  while :; do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && \
       ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then echo "$p"; return; fi
  done
}
start() { # port [extra args...]
  local port="$1"; shift
  mkdir -p "$WORK/$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/$port" \
    --logfile "$WORK/$port/log" "$@" &
  PIDS+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server on $port did not start" >&2; exit 1
}

SINGLE="$(free_port)"; start "$SINGLE"
NODES=()
for _ in 1 2 3; do p="$(free_port)"; start "$p" --cluster-enabled yes \
  --cluster-config-file "$WORK/$p/nodes.conf"; NODES+=("127.0.0.1:$p"); done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 1 200); do
  redis-cli -p "${NODES[0]#*:}" cluster info | grep -q cluster_state:ok && break; sleep 0.05
done
CLUSTER_CFG="$WORK/cluster.toml"
{
  echo '[redis]'; echo 'mode = "cluster"'
  printf 'nodes = [%s]\n' "$(printf '"redis://%s",' "${NODES[@]}" | sed 's/,$//')"
} > "$CLUSTER_CFG"

single=(); cluster=()
for r in $(seq 1 "$ROUNDS"); do
  "$VIGIL" bench --redis "redis://127.0.0.1:$SINGLE/0" --spread -n "$N" >"$WORK/a" 2>"$WORK/a.log"
  a="$(grep -m1 '"system":"vigil"' "$WORK/a")"
  echo "$a"; single+=("$(echo "$a" | sed -E 's/.*"process_jobs_per_s":([0-9.]+).*/\1/')")
  "$VIGIL" --config "$CLUSTER_CFG" bench --spread -n "$N" >"$WORK/b" 2>"$WORK/b.log"
  b="$(grep -m1 '"system":"vigil"' "$WORK/b")"
  echo "$b"; cluster+=("$(echo "$b" | sed -E 's/.*"process_jobs_per_s":([0-9.]+).*/\1/')")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms="$(median "${single[@]}")"; mc="$(median "${cluster[@]}")"
echo
echo "| Redis (same run, $(date -u +%F), $(nproc) cores) | no-op jobs/s, median of $ROUNDS | ratio |"
echo "|---|---:|---:|"
echo "| single node | $ms | 1.00 |"
echo "| 3-master Cluster, 4 queues over the shards | $mc | $(awk "BEGIN {printf \"%.2f\", $mc / $ms}") |"
