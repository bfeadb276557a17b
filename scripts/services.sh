#!/usr/bin/env bash
# Makes sure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) answer, starting the
# local ones when they are installed but stopped. Sourced by scripts/test.sh and scripts/run.sh.
set -euo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

ensure_redis() {
  redis_up && return 0
  if ! command -v redis-server >/dev/null; then
    echo "Redis is not running and redis-server is not installed." >&2
    echo "Install it (apt-get install redis-server) or run: docker compose up -d redis" >&2
    return 1
  fi
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do redis_up && return 0; sleep 0.2; done
  echo "Redis did not start" >&2; return 1
}

ensure_postgres() {
  pg_up && return 0
  if [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 50); do pg_up && return 0; sleep 0.2; done
  echo "PostgreSQL is not answering on 127.0.0.1:5432 (tests need it; docker compose up -d postgres)" >&2
  return 1
}
