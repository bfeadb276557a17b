#!/usr/bin/env bash
# Makes sure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) answer, starting the
# local ones when they are installed but stopped. Sourced by scripts/test.sh and scripts/run.sh.
set -euo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

# Installs redis-server with apt when it can (root, or sudo without a password prompt).
install_redis() {
  command -v apt-get >/dev/null || return 1
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || return 1
    sudo="sudo -n"
  fi
  echo "redis-server is not installed; installing it with apt-get..." >&2
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

ensure_redis() {
  redis_up && return 0
  if ! command -v redis-server >/dev/null && ! install_redis; then
    echo "Redis is not running on 127.0.0.1:6379 and redis-server is not installed." >&2
    echo "Install it, then run this script again:  sudo apt-get install -y redis-server" >&2
    echo "(or start any Redis and point vigil at it: VIGIL_REDIS__URL=redis://HOST:PORT/0)" >&2
    return 1
  fi
  # The system folders when writable, else a folder of this user's.
  local dir=/var/lib/redis log=/var/log/redis/vigil.log
  if ! mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || [ ! -w /var/lib/redis ]; then
    dir="${XDG_STATE_HOME:-$HOME/.local/state}/vigil-redis"; log="$dir/redis.log"; mkdir -p "$dir"
  fi
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir "$dir" --logfile "$log"
  for _ in $(seq 1 50); do redis_up && return 0; sleep 0.2; done
  echo "Redis did not start; see $log" >&2; return 1
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
